"""The paper's listening claims as numbers: layer-1 features scored as onset detectors.

"By listening to these deconvolved signals, it turns out that this feature provides an
onset detector-like filter" (Choi et al., 2015, Section 4.2). Here every feature of a layer is
auralised, an onset-strength envelope (spectral flux) is taken of each clip, peaks are picked,
and the detections are scored against ground-truth onsets (the MIDI note-on times of a rendered
score) with the F-measure at +-50 ms. The same detector on the original audio is the baseline.
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import CnnauralError


def onset_strength(audio: torch.Tensor, sample_rate: int, n_fft: int = 1024, hop_length: int = 256,
                   compression: float = 100.0) -> tuple[np.ndarray, float]:
    """Spectral flux of log-compressed magnitudes: sum over bins of the positive frame-to-frame
    increase of log(1 + compression * |X|) (Dixon 2006; librosa's default envelope is similar).

    Args:
        audio (Tensor): (n,) or (K, n).

    Returns:
        (envelope (..., T) float64 with frame t at t * hop_length / sample_rate seconds, frame rate).
    """
    a = torch.as_tensor(audio, dtype=torch.float64)
    window = torch.hann_window(n_fft, periodic=True, dtype=torch.float64)
    X = torch.stft(a, n_fft, hop_length, window=window, center=True, return_complex=True)
    S = torch.log1p(compression * X.abs())
    flux = torch.relu(S[..., 1:] - S[..., :-1]).sum(dim=-2)
    flux = torch.cat([torch.zeros_like(flux[..., :1]), flux], dim=-1)
    return flux.numpy(), sample_rate / hop_length


def pick_peaks(envelope: np.ndarray, frame_rate: float, *, window: float = 0.05, mean_window: float = 0.1,
               delta: float = 0.07, min_gap: float = 0.03) -> np.ndarray:
    """Onset times (s) from an envelope: local maxima within +-window that exceed the local mean
    (+-mean_window) by delta (relative to the envelope's maximum), at least min_gap apart.

    The rule of librosa.util.peak_pick (Böck et al. 2012), written here in a few numpy lines
    rather than taking librosa (and numba with it) as a dependency for one function."""
    env = np.asarray(envelope, dtype=np.float64)
    if env.size == 0 or env.max() <= 0:
        return np.zeros(0)
    env = env / env.max()
    w, m, g = (max(1, int(round(v * frame_rate))) for v in (window, mean_window, min_gap))
    padded = np.pad(env, (w, w), mode="constant", constant_values=-np.inf)
    local_max = np.lib.stride_tricks.sliding_window_view(padded, 2 * w + 1).max(axis=1)
    kernel = np.ones(2 * m + 1) / (2 * m + 1)
    local_mean = np.convolve(np.pad(env, (m, m), mode="edge"), kernel, mode="valid")
    peaks = np.flatnonzero((env >= local_max) & (env >= local_mean + delta) & (env > 0))
    kept, last = [], -np.inf
    for p in peaks:
        if p - last >= g:
            kept.append(p)
            last = p
    return np.asarray(kept, dtype=np.float64) / frame_rate


def f_measure(detected, reference, tolerance: float = 0.05) -> dict:
    """Precision, recall and F-measure of detected onsets against reference onsets (seconds), by
    mir_eval's onset evaluation (the field's reference implementation): each reference onset
    matches at most one detection within +-tolerance, the matching maximal."""
    import warnings

    import mir_eval

    det = np.sort(np.asarray(detected, dtype=np.float64))
    ref = np.sort(np.asarray(reference, dtype=np.float64))
    with warnings.catch_warnings():  # mir_eval warns about empty onset lists, which score 0 here
        warnings.simplefilter("ignore")
        f, p, r = mir_eval.onset.f_measure(ref, det, window=tolerance)
    return {"precision": float(p), "recall": float(r), "f_measure": float(f), "detected": int(det.size),
            "reference": int(ref.size)}


def score_onset_features(auraliser, waveform: torch.Tensor, onsets, *, layer=1, features="all",
                         tolerance: float = 0.05, mode: str = "mask") -> dict:
    """Auralise every requested feature of `layer` and score each clip as an onset detector.

    Args:
        auraliser: an Auraliser.
        waveform (Tensor): (n,) at the auraliser's sample rate.
        onsets: ground-truth onset times (s) inside the waveform.

    Returns:
        {"baseline": scores of the detector on the original audio,
         "features": [ {feature, precision, recall, f_measure, ...} ] sorted by F-measure, best first}
    """
    onsets = np.asarray(onsets, dtype=np.float64)
    duration = waveform.shape[-1] / auraliser.sample_rate
    onsets = onsets[(onsets >= 0) & (onsets < duration)]
    if onsets.size == 0:
        raise CnnauralError("no ground-truth onsets fall inside the audio")
    sr = auraliser.sample_rate

    def detect(audio):
        env, rate = onset_strength(audio, sr)
        return pick_peaks(env, rate)

    res = auraliser.auralise(waveform, layer=layer, features=features, mode=mode, normalize=True)
    rows = []
    for k, clip, stats in zip(res.features, res.audio, res.stats):
        rows.append({"feature": k, **f_measure(detect(clip), onsets, tolerance), "mean_activation": stats["mean"]})
    rows.sort(key=lambda r: (-r["f_measure"], r["feature"]))
    return {"layer": layer, "tolerance": tolerance, "duration": duration,
            "baseline": f_measure(detect(waveform), onsets, tolerance), "features": rows}


def bwv846_onsets(auraliser, layer=1, duration: float = 30.0, tolerance: float = 0.05):
    """`score_onset_features` on the first `duration` seconds of J.S. Bach's BWV 846 Prelude,
    rendered from the music21 score (cached), its MIDI note-on times as ground truth.

    Returns:
        (result dict, waveform (n,) at the auraliser's rate, MIDI onset times (s) of the whole piece)
    """
    from ..corpus import default_cache_dir, render_bwv846
    from ..io.audio import resample

    if not duration > 0 or not tolerance > 0:
        raise CnnauralError(f"duration and tolerance must be positive (got {duration:g}, {tolerance:g})")
    auraliser.deconvnet.n_features(layer)
    wave, onsets = render_bwv846(sample_rate=22050, cache_dir=default_cache_dir())
    x = resample(wave, 22050, auraliser.sample_rate)[: int(duration * auraliser.sample_rate)]
    res = score_onset_features(auraliser, x, onsets, layer=layer, tolerance=tolerance)
    return res, x, onsets
