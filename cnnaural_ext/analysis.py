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

from .errors import CnnauralError


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
    (+-mean_window) by delta (relative to the envelope's maximum), at least min_gap apart."""
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
    """Precision, recall and F-measure of detected onsets against reference onsets (seconds):
    each reference onset matches at most one detection within +-tolerance (greedy in time,
    as mir_eval's onset evaluation does for well-separated onsets)."""
    det = np.sort(np.asarray(detected, dtype=np.float64))
    ref = np.sort(np.asarray(reference, dtype=np.float64))
    used = np.zeros(det.size, dtype=bool)
    hits = 0
    for r in ref:
        lo, hi = np.searchsorted(det, r - tolerance), np.searchsorted(det, r + tolerance, side="right")
        cand = [i for i in range(lo, hi) if not used[i]]
        if cand:
            used[min(cand, key=lambda i: abs(det[i] - r))] = True
            hits += 1
    p = hits / det.size if det.size else 0.0
    r_ = hits / ref.size if ref.size else 0.0
    f = 2 * p * r_ / (p + r_) if p + r_ else 0.0
    return {"precision": p, "recall": r_, "f_measure": f, "detected": int(det.size), "reference": int(ref.size)}


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


def class_selectivity(model, spectrogram, tracks, *, layer=None, cache_dir=None, batch_size: int = 16,
                      off_ratio: float = 0.25, progress: bool = False) -> dict:
    """Mean activation of every feature of `layer` per class, over the clips of `tracks`.

    The paper heard a deepest-layer feature that hiphop "mostly deactivated"; here that is a
    table: a feature is switched off by a class when its mean activation on that class is below
    `off_ratio` times its mean on the other classes.

    Args:
        model: a CNN DeconvNet can read; spectrogram: its input representation.
        tracks: [(path, class name)], e.g. from `data.scan_tracks`.
        layer: 1-based conv layer (default: the deepest).
        cache_dir: where `data.ClipCache` keeps the clips' network inputs.

    Returns:
        {"layer", "classes", "clips" (per class), "mean" (n_classes x C nested lists),
         "switched_off": {class: [features]}}
    """
    from .data import ClipCache
    from .deconvnet import DeconvNet

    dn = DeconvNet(model)
    layer = dn.n_layers if layer is None else layer
    n_feat = dn.channels(layer)
    classes = sorted({c for _, c in tracks})
    if len(classes) < 2:
        raise CnnauralError(f"class selectivity needs tracks of at least two classes (got {classes})")
    cache = ClipCache(spectrogram, cache_dir, progress=progress)
    sums = torch.zeros(len(classes), n_feat, dtype=torch.float64)
    counts = torch.zeros(len(classes), dtype=torch.float64)
    for path, cls in tracks:
        clips = cache.get(path)
        if clips is None:
            continue
        c = classes.index(cls)
        for k in range(0, clips.shape[0], batch_size):
            x = torch.from_numpy(np.array(clips[k:k + batch_size], dtype=np.float32))[:, None]  # off the mmap
            act = dn.activations(x, layer)
            sums[c] += act.double().mean(dim=(2, 3)).sum(dim=0)
            counts[c] += x.shape[0]
    if (counts == 0).any():
        empty = [classes[i] for i in range(len(classes)) if counts[i] == 0]
        raise CnnauralError(f"no readable clips for class(es) {', '.join(empty)}")
    mean = sums / counts[:, None]
    off = {}
    for c, name in enumerate(classes):
        others = torch.cat([mean[:c], mean[c + 1:]]).mean(dim=0)
        off[name] = [int(f) for f in torch.nonzero((mean[c] < off_ratio * others) & (others > 0)).flatten()]
    return {"layer": layer, "classes": classes, "clips": {n: int(counts[i]) for i, n in enumerate(classes)},
            "mean": mean.tolist(), "off_ratio": off_ratio, "switched_off": off}
