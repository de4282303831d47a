"""The linear baseline the CNN is compared with: logistic regression on log-mel statistics.

Features are the mean and std over time of log(1 + mel(|X|)) of the same clips the CNN sees;
tracks are scored as the CNN's are (clip probabilities averaged per track, then argmax).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..corpus import ClipCache, ClipDataset
from ..errors import CnnauralError
from ..spectrogram import Spectrogram
from .metrics import score_tracks


def logmel_stats(clips, spectrogram, n_mels: int = 40):
    """Per clip: mean and std over time of log(1 + mel(|X|)), (N, 2 * n_mels) float64.

    Args:
        clips: (N, F', T) network inputs of `spectrogram`. If the Spectrogram is mel-free with
            scale linear or log1p (any compression), |X| is recovered exactly (inverse scale)
            and a ``Spectrogram(n_mels=n_mels)`` filterbank is applied; if it already is the
            log1p-mel representation with `n_mels` bands and compression 1, it is used as it is.
        spectrogram: the `Spectrogram` the clips were made with.
        n_mels: mel bands of the features.

    Raises:
        CnnauralError: clips of any other representation.
    """
    x = torch.from_numpy(np.array(clips, dtype=np.float64))
    if spectrogram.n_mels == n_mels and spectrogram.scale == "log1p" and spectrogram.compression == 1.0:
        lm = x
    elif not spectrogram.n_mels and spectrogram.scale in ("linear", "log1p"):
        mag = spectrogram.inverse_scale(x).clamp_min(0)
        fb = Spectrogram(sample_rate=spectrogram.sample_rate, n_fft=spectrogram.n_fft,
                         hop_length=spectrogram.hop_length, n_mels=n_mels).mel_fb.to(torch.float64)
        lm = torch.log1p(torch.matmul(fb, mag))
    else:
        raise CnnauralError("logmel_stats needs clips of a mel-free linear/log1p Spectrogram "
                            f"or of a log1p Spectrogram with {n_mels} mels")
    return torch.cat([lm.mean(dim=-1), lm.std(dim=-1)], dim=-1).numpy()


def fit_logistic(X, y, n_classes: int, l2: float = 1e-3, random_seed: int = 0):
    """Multinomial logistic regression (standardised features, L2), full-batch L-BFGS.

    Args:
        X: (N, D) features.
        y: (N,) class indices.
        n_classes: number of classes.
        l2: weight of the squared-weight penalty.
        random_seed: seeds the (small random) initial weights.

    Returns:
        predict(X (M, D)) -> (M, n_classes) class probabilities, np.ndarray float64.
    """
    g = torch.Generator().manual_seed(random_seed)
    X = torch.as_tensor(X, dtype=torch.float64)
    y = torch.as_tensor(y, dtype=torch.int64)
    mu, sd = X.mean(0), X.std(0).clamp_min(1e-8)
    Z = (X - mu) / sd
    W = (0.01 * torch.randn(Z.shape[1], n_classes, generator=g, dtype=torch.float64)).requires_grad_()
    b = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], lr=1.0, max_iter=500, tolerance_grad=1e-9,
                            tolerance_change=1e-12, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(Z @ W + b, y) + l2 * (W ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    W, b = W.detach(), b.detach()
    return lambda Xn: torch.softmax(((torch.as_tensor(Xn, dtype=torch.float64) - mu) / sd) @ W + b, -1).numpy()


def _reusable(cache) -> bool:
    """A CNN cache whose mel-free linear/log1p input the features can be made from."""
    return cache is not None and not cache.spectrogram.n_mels and cache.spectrogram.scale in ("linear", "log1p")


def _features(tracks, classes, cache, spec, n_mels, desc):
    """(X (N, 2 n_mels), y (N,), track index (N,), dataset) of every clip of `tracks`."""
    ds = ClipDataset(tracks, classes, cache, desc=desc)
    X, y, t = [], [], []
    for i, arr in enumerate(ds.arrays):
        X.append(logmel_stats(arr, spec, n_mels))
        y += [ds.labels[i]] * arr.shape[0]
        t += [i] * arr.shape[0]
    return np.concatenate(X), np.asarray(y), np.asarray(t), ds


def linear_baseline(train_tracks, test_tracks, classes, *, spectrogram=None, cache_dir=None,
                    sample_rate: int = 11025, n_fft: int = 512, hop_length: int = 256,
                    clip_seconds: float = 4.0, clips_per_track: int = 10, n_mels: int = 40,
                    source_cache: ClipCache | None = None, train_clips_per_track: int | None = None,
                    train_source_cache: ClipCache | None = None, random_seed: int = 0,
                    progress: bool = True) -> dict:
    """Logistic regression on per-clip log-mel statistics, trained on `train_tracks`, scored by track.

    Features: mean and std over time of log(1 + mel(|X|)) with `n_mels` bands (the project's
    Spectrogram mel filterbank) for the same clips the CNN sees. When `source_cache` (the CNN's
    ClipCache) holds a mel-free linear/log1p input, the features are derived from its cached
    arrays (no audio is decoded again); otherwise a separate ClipCache of the log1p-mel
    Spectrogram is built (with the STFT settings of `spectrogram` if given, else `sample_rate`,
    `n_fft`, `hop_length`). `train_clips_per_track` (default `clips_per_track`) cuts that many
    clips from each training track, as `train(train_clips=...)` does for the CNN;
    `train_source_cache` is the CNN's ClipCache of those. `random_seed` seeds the initial weights.

    Returns:
        dict(test_track_accuracy, test_track_balanced_accuracy, test_clip_accuracy, confusion
        (by track, rows = true), per_class, test_track_predictions ([name, true class,
        predicted class, probability] per test track), n_features, n_train_clips, features
        (a description)).
    """
    classes = list(classes)
    train_clips_per_track = clips_per_track if train_clips_per_track is None else train_clips_per_track
    if _reusable(source_cache):
        spec = source_cache.spectrogram
    else:
        if spectrogram is not None:
            sample_rate, n_fft, hop_length = spectrogram.sample_rate, spectrogram.n_fft, spectrogram.hop_length
        spec = Spectrogram(sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length,
                           scale="log1p", n_mels=n_mels)

    def clip_cache(given, n_clips):
        if _reusable(given) and given.spectrogram is spec and given.clips_per_track == n_clips:
            return given
        return ClipCache(spec, cache_dir, clip_seconds=clip_seconds, clips_per_track=n_clips, progress=progress)

    cache = clip_cache(source_cache, clips_per_track)
    train_cache = cache if train_clips_per_track == clips_per_track else clip_cache(train_source_cache,
                                                                                     train_clips_per_track)
    Xtr, ytr, _, _ = _features(train_tracks, classes, train_cache, spec, n_mels, "baseline train")
    Xte, yte, tte, dte = _features(test_tracks, classes, cache, spec, n_mels, "baseline test")
    p = fit_logistic(Xtr, ytr, len(classes), random_seed=random_seed)(Xte)
    s = score_tracks(p, tte, dte.tracks, dte.labels, classes)
    return dict(
        test_track_predictions=s["track_predictions"], test_track_accuracy=s["track_accuracy"],
        test_track_balanced_accuracy=s["track_balanced_accuracy"],
        test_clip_accuracy=float(np.mean(p.argmax(1) == yte)),
        confusion=s["confusion"], per_class=s["per_class"], n_features=int(Xtr.shape[1]),
        n_train_clips=int(Xtr.shape[0]),
        features=f"mean and std over time of log(1 + mel{n_mels}(|X|)) per {clip_seconds:g} s clip; "
                 "multinomial logistic regression (standardised, L2 1e-3, L-BFGS)")
