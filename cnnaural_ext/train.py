"""Train the paper's CNNs on a folder-per-class corpus, split by track, with a linear baseline.

`train(data_dir, out, ...)` scans ``data_dir/<class>/<track>``, splits the *tracks* into
train / validation / test (no track in two splits), caches fixed clips as network inputs
(`data.ClipCache`), trains a plain `models.ARCHITECTURES[arch]` model with early stopping on the
validation loss (best weights restored), evaluates it by track (the clip softmax averaged over a
track's clips, then argmax), fits a logistic-regression baseline on log-mel statistics on the
same split and writes everything into one checkpoint (`models.save_checkpoint`).

There is no input normalisation layer: the model stays a plain block chain the DeconvNet reads,
and the scale of the input is handled by the Spectrogram's ``scale`` (log1p by default) and,
optionally, ``batchnorm=True``.
"""
from __future__ import annotations

import copy
import json
import math
import random
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import models
from .audio import atomic_write
from .data import ClipCache, ClipDataset, class_names, fold_splits, scan_tracks, split_by_track
from .errors import CnnauralError
from .spectrogram import Spectrogram

OPTIMIZERS = ("rmsprop", "adam")
SPLITS = ("train", "val", "test")


# ------------------------------------------------------------------------------------------------
# Metrics
# ------------------------------------------------------------------------------------------------
def confusion_matrix(y_true, y_pred, n_classes: int):
    """(n_classes, n_classes) nested lists of ints: rows = true class, columns = predicted."""
    m = np.zeros((n_classes, n_classes), dtype=np.int64)
    for t, p in zip(y_true, y_pred):
        m[int(t), int(p)] += 1
    return m.tolist()


def per_class_scores(confusion, classes):
    """{class: {precision, recall, f1, support}} from a confusion matrix (rows = true)."""
    m = np.asarray(confusion, dtype=np.float64)
    out = {}
    for i, c in enumerate(classes):
        tp = m[i, i]
        pred = m[:, i].sum()
        true = m[i, :].sum()
        p = tp / pred if pred else 0.0
        r = tp / true if true else 0.0
        f = 2 * p * r / (p + r) if p + r else 0.0
        out[c] = dict(precision=float(p), recall=float(r), f1=float(f), support=int(true))
    return out


def _balanced_accuracy(confusion):
    m = np.asarray(confusion, dtype=np.float64)
    rows = m.sum(axis=1)
    rec = [m[i, i] / rows[i] for i in range(len(m)) if rows[i] > 0]
    return float(np.mean(rec)) if rec else 0.0


def track_predictions(probs, track_index, n_tracks):
    """Average the clip probabilities (N, C) of each track: -> (n_tracks, C)."""
    probs = np.asarray(probs, dtype=np.float64)
    track_index = np.asarray(track_index)
    out = np.zeros((n_tracks, probs.shape[1]))
    counts = np.bincount(track_index, minlength=n_tracks)
    np.add.at(out, track_index, probs)
    return out / np.maximum(counts, 1)[:, None]


# ------------------------------------------------------------------------------------------------
# Linear baseline on log-mel statistics
# ------------------------------------------------------------------------------------------------
def logmel_stats(clips, spectrogram, n_mels: int = 40):
    """Per clip: mean and std over time of log(1 + mel(|X|)), (N, 2 * n_mels) float64.

    Args:
        clips: (N, F', T) network inputs of `spectrogram`. If the Spectrogram is mel-free with
            scale linear or log1p, |X| is recovered exactly (inverse scale) and a
            ``Spectrogram(n_mels=n_mels)`` filterbank is applied; if it already is the
            log1p-mel representation with `n_mels` bands, it is used as it is.
    """
    x = torch.from_numpy(np.array(clips, dtype=np.float64))
    if spectrogram.n_mels == n_mels and spectrogram.scale == "log1p" and spectrogram.gain == 1.0:
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


def _fit_logistic(X, y, n_classes, l2=1e-3, seed=0):
    """Multinomial logistic regression (standardised features, L2), full-batch L-BFGS."""
    g = torch.Generator().manual_seed(seed)
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


def linear_baseline(train_tracks, test_tracks, classes, *, spectrogram=None, cache_dir=None,
                    sample_rate: int = 11025, n_fft: int = 512, hop_length: int = 256,
                    clip_seconds: float = 4.0, clips_per_track: int = 10, n_mels: int = 40,
                    source_cache: ClipCache | None = None, train_clips_per_track: int | None = None,
                    train_source_cache: ClipCache | None = None, seed: int = 0, progress: bool = True) -> dict:
    """Logistic regression on per-clip log-mel statistics, trained on `train_tracks`, scored by track.

    Features: mean and std over time of log(1 + mel(|X|)) with `n_mels` bands (the project's
    Spectrogram mel filterbank) for the same clips the CNN sees. When `source_cache` (the CNN's
    ClipCache) holds a mel-free linear/log1p input, the features are derived from its cached
    arrays (no audio is decoded again); otherwise a separate ClipCache of the log1p-mel
    Spectrogram is built. `train_clips_per_track` (default `clips_per_track`) cuts that many
    clips from each training track, as `train(train_clips=...)` does for the CNN;
    `train_source_cache` is the CNN's ClipCache of those.

    Returns:
        dict(test_track_accuracy, test_track_balanced_accuracy, test_clip_accuracy, confusion
        (by track, rows = true), per_class, test_track_predictions ([name, true class,
        predicted class, probability] per test track), n_features, features (a description)).
    """
    classes = list(classes)
    train_clips_per_track = clips_per_track if train_clips_per_track is None else train_clips_per_track

    def reusable(c):  # a CNN cache whose mel-free linear/log1p input the features can be made from
        return c is not None and not c.spectrogram.n_mels and c.spectrogram.scale in ("linear", "log1p")

    if reusable(source_cache):
        spec = source_cache.spectrogram
    else:
        if spectrogram is not None:
            sample_rate, n_fft, hop_length = spectrogram.sample_rate, spectrogram.n_fft, spectrogram.hop_length
        spec = Spectrogram(sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length,
                           scale="log1p", n_mels=n_mels)

    def clip_cache(given, n_clips):
        if reusable(given) and given.spectrogram is spec and given.clips_per_track == n_clips:
            return given
        return ClipCache(spec, cache_dir, clip_seconds=clip_seconds, clips_per_track=n_clips, progress=progress)

    cache = clip_cache(source_cache, clips_per_track)
    train_cache = cache if train_clips_per_track == clips_per_track else clip_cache(train_source_cache,
                                                                                     train_clips_per_track)

    def features(tracks, desc, cache):
        ds = ClipDataset(tracks, classes, cache, desc=desc)
        X, y, t = [], [], []
        for i, arr in enumerate(ds.arrays):
            X.append(logmel_stats(arr, spec, n_mels))
            y += [ds.labels[i]] * arr.shape[0]
            t += [i] * arr.shape[0]
        return np.concatenate(X), np.asarray(y), np.asarray(t), ds

    Xtr, ytr, _, _ = features(train_tracks, "baseline train", train_cache)
    Xte, yte, tte, dte = features(test_tracks, "baseline test", cache)
    predict = _fit_logistic(Xtr, ytr, len(classes), seed=seed)
    p = predict(Xte)
    tp = track_predictions(p, tte, len(dte.tracks))
    pred_track = tp.argmax(1)
    conf = confusion_matrix(dte.labels, pred_track, len(classes))
    return dict(
        test_track_predictions=[[str(path.name), c, classes[int(k)], float(tp[i].max())]
                                for i, ((path, c), k) in enumerate(zip(dte.tracks, pred_track))],
        test_track_accuracy=float(np.mean(pred_track == np.asarray(dte.labels))),
        test_track_balanced_accuracy=_balanced_accuracy(conf),
        test_clip_accuracy=float(np.mean(p.argmax(1) == yte)),
        confusion=conf, per_class=per_class_scores(conf, classes), n_features=int(Xtr.shape[1]),
        n_train_clips=int(Xtr.shape[0]),
        features=f"mean and std over time of log(1 + mel{n_mels}(|X|)) per {clip_seconds:g} s clip; "
                 "multinomial logistic regression (standardised, L2 1e-3, L-BFGS)")


# ------------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------------
def _first_conv(model):
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return m
    raise CnnauralError("the model has no Conv2d layer")


@torch.no_grad()
def predict(model, dataset, batch_size: int = 64):
    """Clip softmax of a model over a ClipDataset: (probs (N, C), labels (N,), track index (N,), mean loss)."""
    model.eval()
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    probs, labels, tracks, loss_sum = [], [], [], 0.0
    for x, y, t in loader:
        logits = model(x)
        loss_sum += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
        probs.append(torch.softmax(logits.double(), -1).numpy())
        labels.append(y.numpy())
        tracks.append(t.numpy())
    n = max(len(dataset), 1)
    if not probs:
        return np.zeros((0, 0)), np.zeros(0, int), np.zeros(0, int), float("nan")
    return np.concatenate(probs), np.concatenate(labels), np.concatenate(tracks), loss_sum / n


def _evaluate(model, ds, classes, batch_size):
    p, y, t, loss = predict(model, ds, batch_size)
    tp = track_predictions(p, t, len(ds.tracks))
    pred = tp.argmax(1)
    conf = confusion_matrix(ds.labels, pred, len(classes))
    return dict(loss=float(loss), clip_accuracy=float(np.mean(p.argmax(1) == y)),
                track_accuracy=float(np.mean(pred == np.asarray(ds.labels))),
                track_balanced_accuracy=_balanced_accuracy(conf), confusion=conf,
                per_class=per_class_scores(conf, classes),
                track_predictions=[[str(path.name), c, classes[int(k)], float(tp[i].max())]
                                   for i, ((path, c), k) in enumerate(zip(ds.tracks, pred))])


def _default_recipe(data_dir, out, kwargs):
    args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    return f"cnnaural_ext.train.train({str(data_dir)!r}, {str(out)!r}, {args})"


def train(data_dir, out, *, arch: str = "paper_cnn5", channels=48, batchnorm: bool = False,
          dense=(512, 256), dropout=None, scale: str = "log1p", gain: float = 1.0, n_mels: int | None = None,
          sample_rate: int = 11025, n_fft: int = 512, hop_length: int = 256,
          clip_seconds: float = 4.0, clips_per_track: int = 10, train_clips: int | None = None, epochs: int = 30,
          batch_size: int = 32, lr: float = 5e-4, optimizer: str = "rmsprop", weight_decay: float = 0.0,
          patience: int = 5, seed: int = 0, val: float = 0.15, test: float = 0.15, cache_dir=None,
          max_minutes: float | None = None, threads: int | None = None, progress: bool = True,
          baseline: bool = True, recipe: str | None = None, split: dict | None = None) -> dict:
    """Train `models.ARCHITECTURES[arch]` on ``data_dir/<class>/<track>`` and write a checkpoint.

    Args:
        data_dir: corpus, one sub-folder per class (`cnnaural dataset` makes one).
        out: checkpoint path (`models.load_checkpoint` reads it).
        arch, channels, batchnorm, dense, dropout: the model (`dropout` None: the architecture's
            default); input_shape = (spec.n_bins, spec.n_frames(int(clip_seconds * sample_rate))).
        scale, gain, n_mels, sample_rate, n_fft, hop_length: the Spectrogram of the network input
            (`gain` multiplies |X| inside log1p).
        clip_seconds, clips_per_track: the clips cut from every track (`data.ClipCache`), 10 as
            in the paper; validation and test are always scored on these.
        train_clips: clips per training track (default `clips_per_track`): more clips, evenly
            spaced over each track, give the network more of every training track to learn
            from; the baseline is fitted on the same clips.
        epochs, batch_size, lr, optimizer ("rmsprop" | "adam"), weight_decay: the optimisation.
        patience: stop after this many epochs without a lower validation loss; the weights of
            the best epoch are restored.
        seed: seeds the split, the initialisation, the shuffling and dropout (runs are
            deterministic for a given seed, thread count and torch build).
        val, test: fractions of each class's tracks held out.
        cache_dir: clip cache root (default `data.default_cache_dir()`).
        max_minutes: wall-clock budget of the training loop; it stops after the batch that
            crosses it (the best weights so far are kept).
        threads: torch threads during training (restored afterwards).
        progress: tqdm bars and one line per epoch.
        baseline: also fit and report the linear log-mel baseline.
        recipe: the command line to record in the checkpoint (default: this call, as Python).
        split: a given {"train", "val", "test"} split of (path, class) tracks (e.g. a fold of
            `data.fold_splits`) instead of ``split_by_track(..., val, test, seed)``.

    Returns:
        the metrics dict stored in the checkpoint: ``clip_accuracy`` {split: acc},
        ``test_track_accuracy``, ``val_track_accuracy``, ``test_track_balanced_accuracy``,
        ``per_class`` {class: precision/recall/f1/support} and ``confusion`` (test, by track,
        rows = true class), ``baseline`` (see `linear_baseline`), ``history``, ``best_epoch``,
        ``stopped`` ("patience" | "max_minutes" | "epochs"), ``n_tracks``/``n_clips`` per split,
        ``train_seconds``.

    Raises:
        CnnauralError: bad options, no class folders, fewer than 2 classes, a class with fewer
            than 3 readable tracks.
    """
    call_kwargs = dict(arch=arch, channels=channels, batchnorm=batchnorm, dense=dense, dropout=dropout,
                       scale=scale, gain=gain, n_mels=n_mels, sample_rate=sample_rate, n_fft=n_fft,
                       hop_length=hop_length, clip_seconds=clip_seconds, clips_per_track=clips_per_track,
                       train_clips=train_clips, epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer,
                       weight_decay=weight_decay, patience=patience, seed=seed, val=val, test=test,
                       max_minutes=max_minutes, threads=threads)
    if arch not in models.ARCHITECTURES:
        raise CnnauralError(f"unknown architecture {arch!r} (known: {', '.join(models.ARCHITECTURES)})")
    if optimizer not in OPTIMIZERS:
        raise CnnauralError(f"optimizer must be one of {', '.join(OPTIMIZERS)} (got {optimizer!r})")
    if epochs < 1 or batch_size < 1 or lr <= 0 or patience < 1:
        raise CnnauralError(f"need epochs >= 1, batch_size >= 1, lr > 0 and patience >= 1 "
                            f"(got {epochs}, {batch_size}, {lr}, {patience})")
    if train_clips is not None and train_clips < 1:
        raise CnnauralError(f"train_clips must be >= 1 (got {train_clips})")
    if max_minutes is not None and max_minutes <= 0:
        raise CnnauralError(f"max_minutes must be > 0 (got {max_minutes})")
    if threads is not None and threads < 1:
        raise CnnauralError(f"threads must be >= 1 (got {threads})")
    data_dir, out = Path(data_dir), Path(out)
    if out.is_dir():
        raise CnnauralError(f"--out must be a checkpoint file path, not a folder: {out}")
    recipe = recipe or _default_recipe(data_dir, out, call_kwargs)

    # -- data ------------------------------------------------------------------------------------
    tracks = scan_tracks(data_dir)
    classes = class_names(tracks)
    if len(classes) < 2:
        raise CnnauralError(f"need at least 2 class folders in {data_dir}, found {len(classes)} "
                            f"({', '.join(classes)}): add one sub-folder of audio files per class")
    few = {c: n for c in classes if (n := sum(1 for _, k in tracks if k == c)) < 3}
    if few:
        raise CnnauralError("every class needs at least 3 tracks (one each for train, validation and "
                            "test); too few in " + ", ".join(f"{c} ({n})" for c, n in few.items()))
    spec = Spectrogram(sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length, scale=scale, n_mels=n_mels,
                       gain=gain)
    cache = ClipCache(spec, cache_dir, clip_seconds=clip_seconds, clips_per_track=clips_per_track,
                      progress=progress)
    train_cache = cache
    if train_clips is not None and train_clips != clips_per_track:
        train_cache = ClipCache(spec, cache_dir, clip_seconds=clip_seconds, clips_per_track=train_clips,
                                progress=progress)
    if split is None:
        split = split_by_track(tracks, val=val, test=test, seed=seed)
    ds = {k: ClipDataset(split[k], classes, train_cache if k == "train" else cache, desc=f"{k} clips")
          for k in SPLITS}
    for k in SPLITS:
        missing = [c for c in classes if c not in {cl for _, cl in ds[k].tracks}]
        if missing:
            raise CnnauralError(f"after skipping unreadable files the {k} split has no track of "
                                f"{', '.join(missing)}: add more (readable) tracks to those classes")
    if progress:
        caches = [cache] if train_cache is cache else [cache, train_cache]
        print(f"classes: {', '.join(classes)}; tracks train/val/test: "
              + "/".join(str(len(ds[k].tracks)) for k in SPLITS)
              + "; clips: " + "/".join(str(len(ds[k])) for k in SPLITS)
              + f"; cache: {cache.directory} ({sum(c.computed for c in caches)} computed, "
              f"{sum(c.reused for c in caches)} reused)")

    # -- model -----------------------------------------------------------------------------------
    n_samples = int(clip_seconds * sample_rate)
    input_shape = (spec.n_bins, spec.n_frames(n_samples))
    arch_kwargs = dict(n_classes=len(classes), channels=channels, input_shape=input_shape,
                       batchnorm=bool(batchnorm), dense=tuple(dense))
    if dropout is not None:
        arch_kwargs["dropout"] = dropout

    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    old_det_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        if threads is not None:
            torch.set_num_threads(int(threads))
        torch.use_deterministic_algorithms(True, warn_only=True)
        random.seed(seed)
        np.random.seed(seed % 2 ** 32)
        torch.manual_seed(seed)
        model = models.ARCHITECTURES[arch](**arch_kwargs)
        initial_conv1 = _first_conv(model).weight.detach().clone().float()
        result = _fit(model, ds, classes, epochs=epochs, batch_size=batch_size, lr=lr,
                      optimizer=optimizer, weight_decay=weight_decay, patience=patience, seed=seed,
                      max_minutes=max_minutes, progress=progress)
        evals = {k: _evaluate(model, ds[k], classes, 64) for k in SPLITS}
        base = None
        if baseline:
            base = linear_baseline(ds["train"].tracks, ds["test"].tracks, classes, spectrogram=spec,
                                   cache_dir=cache_dir, clip_seconds=clip_seconds,
                                   clips_per_track=clips_per_track, source_cache=cache,
                                   train_clips_per_track=train_clips or clips_per_track,
                                   train_source_cache=train_cache, seed=seed,
                                   progress=progress)
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det, warn_only=old_det_warn)

    metrics = dict(
        classes=list(classes),
        clip_accuracy={k: evals[k]["clip_accuracy"] for k in SPLITS},
        loss={k: evals[k]["loss"] for k in SPLITS},
        val_track_accuracy=evals["val"]["track_accuracy"],
        test_track_accuracy=evals["test"]["track_accuracy"],
        test_track_balanced_accuracy=evals["test"]["track_balanced_accuracy"],
        per_class=evals["test"]["per_class"],
        confusion=evals["test"]["confusion"],
        test_track_predictions=evals["test"]["track_predictions"],
        baseline=base,
        n_tracks={k: len(ds[k].tracks) for k in SPLITS},
        n_clips={k: len(ds[k]) for k in SPLITS},
        skipped=[[str(p), r] for p, r in cache.skipped],
        **result,
    )
    model.eval()
    rel = {k: [_rel(p, data_dir) for p, _ in ds[k].tracks] for k in SPLITS}
    models.save_checkpoint(out, model.cpu(), spec, arch=arch, arch_kwargs=arch_kwargs, classes=classes,
                           initial_conv1=initial_conv1, metrics=metrics, recipe=recipe, split=rel,
                           clips=dict(clip_seconds=float(clip_seconds), clips_per_track=int(clips_per_track),
                                      train_clips=int(train_clips or clips_per_track)))
    if progress:
        print(format_summary(metrics))
        print(f"checkpoint written to {out}")
    return metrics


def _rel(p, root):
    p = Path(p)
    try:
        return str(p.relative_to(root))
    except ValueError:
        return str(p)


def _fit(model, ds, classes, *, epochs, batch_size, lr, optimizer, weight_decay, patience, seed,
         max_minutes, progress):
    """The training loop with early stopping; leaves the best weights in `model`."""
    from tqdm import tqdm

    g = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(ds["train"], batch_size=batch_size, shuffle=True,
                                         generator=g, drop_last=len(ds["train"]) > batch_size)
    if optimizer == "rmsprop":
        opt = torch.optim.RMSprop(model.parameters(), lr=lr, weight_decay=weight_decay)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    t0 = time.monotonic()
    deadline = None if max_minutes is None else t0 + 60.0 * max_minutes
    best = dict(loss=math.inf, epoch=0, state=copy.deepcopy(model.state_dict()))
    history, stopped, bad = [], "epochs", 0
    for epoch in range(1, epochs + 1):
        model.train()
        te = time.monotonic()
        seen, loss_sum, correct = 0, 0.0, 0
        bar = tqdm(loader, desc=f"epoch {epoch}/{epochs}", unit="batch", leave=False,
                   disable=not progress, file=sys.stderr)
        out_of_time = False
        for x, y, _ in bar:
            opt.zero_grad(set_to_none=True)
            logits = model(x)
            loss = nn.functional.cross_entropy(logits, y)
            if not torch.isfinite(loss.detach()):
                raise CnnauralError(f"the training loss became {loss.item()} at epoch {epoch}: "
                                    "lower the learning rate (--lr) or use --batchnorm")
            loss.backward()
            opt.step()
            seen += y.shape[0]
            loss_sum += loss.item() * y.shape[0]
            correct += int((logits.argmax(1) == y).sum())
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
            if deadline is not None and time.monotonic() > deadline:
                out_of_time = True
                break
        bar.close()
        v = _evaluate(model, ds["val"], classes, 64)
        rec = dict(epoch=epoch, train_loss=loss_sum / max(seen, 1), train_clip_accuracy=correct / max(seen, 1),
                   val_loss=v["loss"], val_clip_accuracy=v["clip_accuracy"],
                   val_track_accuracy=v["track_accuracy"], seconds=time.monotonic() - te,
                   partial=out_of_time)
        history.append(rec)
        improved = v["loss"] < best["loss"]
        if improved:
            best.update(loss=v["loss"], epoch=epoch, state=copy.deepcopy(model.state_dict()))
            bad = 0
        else:
            bad += 1
        if progress:
            print(f"epoch {epoch:3d}: train loss {rec['train_loss']:.4f} acc {rec['train_clip_accuracy']:.3f} | "
                  f"val loss {rec['val_loss']:.4f} acc {rec['val_clip_accuracy']:.3f} "
                  f"track acc {rec['val_track_accuracy']:.3f} | {rec['seconds']:.1f} s"
                  + (" *" if improved else ""), flush=True)
        if out_of_time:
            stopped = "max_minutes"
            break
        if bad >= patience:
            stopped = "patience"
            break
    model.load_state_dict(best["state"])
    return dict(history=history, best_epoch=best["epoch"], best_val_loss=float(best["loss"]),
                epochs_run=len(history), stopped=stopped, train_seconds=time.monotonic() - t0)


# ------------------------------------------------------------------------------------------------
# Cross-validation
# ------------------------------------------------------------------------------------------------
def cross_validate(data_dir, out_dir, *, folds: int = 5, seed: int = 0, val: float = 0.15,
                   recipe: str | None = None, progress: bool = True, **train_kwargs) -> dict:
    """K-fold cross-validation by track of the CNN and the linear baseline on one corpus.

    Every track of ``data_dir`` is tested exactly once (`data.fold_splits`: folds by track,
    stratified per class, versions of one piece together; validation drawn from the rest). For
    each fold `train` writes ``out_dir/fold<i>.pt`` with both classifiers' test metrics. A fold
    whose checkpoint already exists with the same recipe and split is not trained again, so an
    interrupted run resumes where it stopped.

    The summary compares the two classifiers on all tracks pooled: accuracy by track over the
    whole corpus and per fold, accuracy by clip over all test clips, the tracks only one of them
    gets right (the discordant pairs of a McNemar test, with its exact two-sided p-value) and
    the pooled confusion matrices. It is written to ``out_dir/crossval.json`` and
    ``out_dir/crossval.md``.

    Args:
        folds, seed, val: see `data.fold_splits` (`seed` also seeds each fold's training).
        recipe: the command line recorded in every fold's checkpoint (with `` (fold i/K)``).
        train_kwargs: the model, input and optimisation options of `train` (not `split`, `test`).

    Returns:
        the summary dict (as in crossval.json).
    """
    for k in ("split", "test", "out", "recipe", "baseline"):
        if k in train_kwargs:
            raise CnnauralError(f"cross_validate sets {k!r} itself")
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise CnnauralError(f"--out must be a folder for cross-validation, not a file: {out_dir}")
    tracks = scan_tracks(data_dir)
    classes = class_names(tracks)  # train() rejects fewer than 2
    splits = fold_splits(tracks, folds=folds, val=val, seed=seed)
    base_recipe = recipe or _default_recipe(data_dir, out_dir, dict(folds=folds, seed=seed, val=val, **train_kwargs))
    out_dir.mkdir(parents=True, exist_ok=True)
    per_fold = []
    for i, split in enumerate(splits, 1):
        path = out_dir / f"fold{i}.pt"
        fold_recipe = f"{base_recipe} (fold {i}/{folds})"
        rel = {k: [_rel(p, data_dir) for p, _ in split[k]] for k in SPLITS}
        metrics = None
        if path.is_file():
            try:
                _, _, meta = models.load_checkpoint(path)
            except CnnauralError:
                meta = {}
            if meta.get("recipe") == fold_recipe and meta.get("split") == rel \
                    and (meta.get("metrics") or {}).get("baseline"):
                metrics = meta["metrics"]
                if progress:
                    print(f"fold {i}/{folds}: reusing {path}", flush=True)
        if metrics is None:
            if progress:
                print(f"fold {i}/{folds}: tracks train/val/test "
                      + "/".join(str(len(split[k])) for k in SPLITS), flush=True)
            metrics = train(data_dir, path, seed=seed, val=val, split=split, recipe=fold_recipe,
                            progress=progress, baseline=True, **train_kwargs)
        per_fold.append(metrics)
    summary = summarise_folds(per_fold, classes)
    summary.update(folds=int(folds), seed=int(seed), val=float(val), recipe=base_recipe,
                   checkpoints=[f"fold{i}.pt" for i in range(1, folds + 1)])
    atomic_write(out_dir / "crossval.json", lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=1)))
    atomic_write(out_dir / "crossval.md", lambda tmp: Path(tmp).write_text(format_crossval(summary) + "\n"))
    if progress:
        print(format_crossval(summary))
        print(f"written: {out_dir / 'crossval.md'}, {out_dir / 'crossval.json'}")
    return summary


def _mcnemar_p(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value for b and c discordant pairs (binomial, p = 1/2)."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, j) for j in range(k + 1)) / 2.0 ** n
    return float(min(1.0, 2.0 * tail))


def summarise_folds(per_fold, classes) -> dict:
    """Pool the test-track predictions of the folds' CNN and baseline (see `cross_validate`)."""
    classes = list(classes)
    index = {c: i for i, c in enumerate(classes)}
    rows, folds = [], []
    conf = {"cnn": np.zeros((len(classes),) * 2, int), "baseline": np.zeros((len(classes),) * 2, int)}
    for i, m in enumerate(per_fold, 1):
        cnn, base = m["test_track_predictions"], m["baseline"]["test_track_predictions"]
        if [r[:2] for r in cnn] != [r[:2] for r in base]:
            raise CnnauralError(f"fold {i}: the CNN and the baseline were scored on different tracks")
        for (name, true, p_cnn, _), (_, _, p_base, _) in zip(cnn, base):
            rows.append(dict(fold=i, track=name, true=true, cnn=p_cnn, baseline=p_base))
            conf["cnn"][index[true], index[p_cnn]] += 1
            conf["baseline"][index[true], index[p_base]] += 1
        folds.append(dict(fold=i, n_test_tracks=len(cnn), n_test_clips=int(m["n_clips"]["test"]),
                          cnn=m["test_track_accuracy"],
                          baseline=m["baseline"]["test_track_accuracy"],
                          cnn_clip=m["clip_accuracy"]["test"], baseline_clip=m["baseline"]["test_clip_accuracy"],
                          best_epoch=m.get("best_epoch"), epochs_run=m.get("epochs_run"),
                          train_minutes=round(m.get("train_seconds", 0.0) / 60, 1)))
    n = len(rows)
    cnn_ok = np.array([r["cnn"] == r["true"] for r in rows])
    base_ok = np.array([r["baseline"] == r["true"] for r in rows])
    only_cnn = [r for r, a, b in zip(rows, cnn_ok, base_ok) if a and not b]
    only_base = [r for r, a, b in zip(rows, cnn_ok, base_ok) if b and not a]

    def acc(ok):
        return float(ok.mean()) if n else 0.0

    def clip_acc(key):  # over all test clips: the folds' clip accuracies weighted by their clips
        w = sum(f["n_test_clips"] for f in folds)
        return float(sum(f[key] * f["n_test_clips"] for f in folds) / w) if w else 0.0

    return dict(
        classes=classes, n_tracks=n,
        cnn=dict(track_accuracy=acc(cnn_ok), correct=int(cnn_ok.sum()), clip_accuracy=clip_acc("cnn_clip"),
                 balanced_accuracy=_balanced_accuracy(conf["cnn"]), confusion=conf["cnn"].tolist(),
                 fold_mean=float(np.mean([f["cnn"] for f in folds])), fold_std=float(np.std([f["cnn"] for f in folds]))),
        baseline=dict(track_accuracy=acc(base_ok), correct=int(base_ok.sum()), clip_accuracy=clip_acc("baseline_clip"),
                      balanced_accuracy=_balanced_accuracy(conf["baseline"]), confusion=conf["baseline"].tolist(),
                      fold_mean=float(np.mean([f["baseline"] for f in folds])),
                      fold_std=float(np.std([f["baseline"] for f in folds]))),
        only_cnn_right=[[r["track"], r["true"], r["baseline"]] for r in only_cnn],
        only_baseline_right=[[r["track"], r["true"], r["cnn"]] for r in only_base],
        mcnemar_p=_mcnemar_p(len(only_cnn), len(only_base)),
        per_fold=folds, tracks=rows)


def format_crossval(summary) -> str:
    """The cross-validation summary as markdown."""
    c, b, classes = summary["cnn"], summary["baseline"], summary["classes"]
    n = summary["n_tracks"]
    lines = [f"# Cross-validation by track: {summary.get('folds', len(summary['per_fold']))} folds, {n} tracks",
             "", f"Recipe: `{summary['recipe']}`" if summary.get("recipe") else "", "",
             "| classifier | accuracy by track (all tracks) | balanced | mean over folds | by clip (all clips) |",
             "|---|---|---|---|---|",
             f"| CNN | {c['track_accuracy']:.3f} ({c['correct']}/{n}) | {c['balanced_accuracy']:.3f} | "
             f"{c['fold_mean']:.3f} ± {c['fold_std']:.3f} | {c['clip_accuracy']:.3f} |",
             f"| linear log-mel baseline | {b['track_accuracy']:.3f} ({b['correct']}/{n}) | "
             f"{b['balanced_accuracy']:.3f} | {b['fold_mean']:.3f} ± {b['fold_std']:.3f} | {b['clip_accuracy']:.3f} |", "",
             f"Tracks only the CNN gets right: {len(summary['only_cnn_right'])}; only the baseline: "
             f"{len(summary['only_baseline_right'])} (exact McNemar p = {summary['mcnemar_p']:.3g}).", "",
             "| fold | test tracks | CNN by track | baseline by track | CNN by clip | baseline by clip | best epoch |",
             "|---|---|---|---|---|---|---|"]
    for f in summary["per_fold"]:
        lines.append(f"| {f['fold']} | {f['n_test_tracks']} | {f['cnn']:.3f} | {f['baseline']:.3f} | "
                     f"{f['cnn_clip']:.3f} | {f['baseline_clip']:.3f} | {f['best_epoch']} of {f['epochs_run']} |")
    for title, key in (("only the CNN right", "only_cnn_right"), ("only the baseline right", "only_baseline_right")):
        if summary[key]:
            lines += ["", f"{title} (track, true class, the other's answer):"]
            lines += [f"- `{t}` ({true}; {other})" for t, true, other in summary[key]]
    for name, key in (("CNN", "cnn"), ("linear baseline", "baseline")):
        lines += ["", f"Confusion, {name} (all tracks, rows = true):", "```",
                  format_confusion(summary[key]["confusion"], classes), "```"]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# Summary and CLI
# ------------------------------------------------------------------------------------------------
def format_confusion(confusion, classes) -> str:
    w = max(8, *(len(c) for c in classes)) + 1
    lines = ["true \\ pred".ljust(w) + "".join(c[:w - 1].rjust(w) for c in classes)]
    for c, row in zip(classes, confusion):
        lines.append(c.ljust(w) + "".join(str(v).rjust(w) for v in row))
    return "\n".join(lines)


def format_summary(metrics) -> str:
    classes = metrics["classes"]
    ca = metrics["clip_accuracy"]
    lines = [f"best epoch {metrics['best_epoch']} of {metrics['epochs_run']} (stopped: {metrics['stopped']}, "
             f"{metrics['train_seconds'] / 60:.1f} min)",
             f"clip accuracy  train {ca['train']:.3f}  val {ca['val']:.3f}  test {ca['test']:.3f}",
             f"test accuracy by track: CNN {metrics['test_track_accuracy']:.3f} "
             f"(balanced {metrics['test_track_balanced_accuracy']:.3f}, {metrics['n_tracks']['test']} tracks)"]
    if metrics.get("baseline"):
        b = metrics["baseline"]
        lines.append(f"                        linear log-mel baseline {b['test_track_accuracy']:.3f} "
                     f"(balanced {b['test_track_balanced_accuracy']:.3f})")
    lines.append("per class (test, by track): " + "; ".join(
        f"{c} P {s['precision']:.2f} R {s['recall']:.2f} F1 {s['f1']:.2f}" for c, s in metrics["per_class"].items()))
    lines.append("confusion matrix (test tracks, CNN):")
    lines.append(format_confusion(metrics["confusion"], classes))
    if metrics.get("baseline"):
        lines.append("confusion matrix (test tracks, linear baseline):")
        lines.append(format_confusion(metrics["baseline"]["confusion"], classes))
    return "\n".join(lines)


def add_arguments(parser):
    """Arguments of `cnnaural train`."""
    parser.add_argument("data_dir", metavar="DATA_DIR", help="corpus: one sub-folder of audio files per class")
    parser.add_argument("--out", required=True, metavar="CKPT", help="checkpoint file to write")
    parser.add_argument("--no-baseline", action="store_true", help="skip the linear log-mel baseline")
    return _add_options(parser)


def add_crossval_arguments(parser):
    """Arguments of `cnnaural crossval`: those of `cnnaural train`, plus --folds; --out is a folder."""
    parser.add_argument("data_dir", metavar="DATA_DIR", help="corpus: one sub-folder of audio files per class")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="folder for fold<i>.pt, crossval.md and crossval.json (existing folds are reused)")
    parser.add_argument("--folds", type=int, default=5, help="number of folds by track (default 5)")
    parser.add_argument("--val", type=float, default=0.15,
                        help="fraction of each class's pieces drawn for validation in every fold (default 0.15)")
    return _add_options(parser)


def _add_options(parser):
    parser.add_argument("--arch", default="paper_cnn5", choices=sorted(models.ARCHITECTURES))
    parser.add_argument("--channels", type=int, default=48, help="conv channels per block (default 48)")
    parser.add_argument("--dense", default="512,256", help="hidden Linear widths, comma-separated (default 512,256)")
    parser.add_argument("--batchnorm", action="store_true", help="BatchNorm2d after every conv")
    parser.add_argument("--scale", default="log1p", choices=["linear", "log1p", "db"], help="network input scale")
    parser.add_argument("--gain", type=float, default=1.0,
                        help="with --scale log1p: the input is log(1 + GAIN |X|) (default 1)")
    parser.add_argument("--n-mels", type=int, default=None, help="mel bands of the input (default: linear STFT bins)")
    parser.add_argument("--sample-rate", type=int, default=11025)
    parser.add_argument("--n-fft", type=int, default=512)
    parser.add_argument("--hop-length", type=int, default=256)
    parser.add_argument("--clip-seconds", type=float, default=4.0)
    parser.add_argument("--clips-per-track", type=int, default=10,
                        help="clips of --clip-seconds per track, evenly spaced (default 10, as the paper); "
                             "validation and test are scored on these")
    parser.add_argument("--train-clips", type=int, default=None,
                        help="clips per training track (default: --clips-per-track); the baseline is fitted on the same")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--optimizer", default="rmsprop", choices=OPTIMIZERS)
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--patience", type=int, default=5, help="epochs without a better validation loss before stopping")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-minutes", type=float, default=None, help="time budget of the training loop")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--cache-dir", default=None, help="clip cache root (default ~/.cache/cnnaural)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars or per-epoch lines")
    return parser


def _parse_ints(text, name):
    try:
        return tuple(int(v) for v in str(text).split(",") if v.strip())
    except ValueError:
        raise CnnauralError(f"{name} must be comma-separated integers (got {text!r})") from None


def recipe_from_args(args, command: str = "train") -> str:
    """The full `cnnaural train` (or `crossval`) command line for these arguments (every option explicit)."""
    parts = ["cnnaural", command, str(args.data_dir), "--out", str(args.out)]
    if command == "crossval":
        parts += ["--folds", str(args.folds), "--val", f"{args.val:g}"]
    parts += ["--arch", args.arch, "--channels", str(args.channels), "--dense", str(args.dense), "--scale", args.scale]
    if args.batchnorm:
        parts.append("--batchnorm")
    if args.gain != 1.0:
        parts += ["--gain", f"{args.gain:g}"]
    if args.n_mels:
        parts += ["--n-mels", str(args.n_mels)]
    for opt in ("sample_rate", "n_fft", "hop_length", "clip_seconds", "clips_per_track", "train_clips", "epochs",
                "batch_size", "lr", "optimizer", "weight_decay", "patience", "seed", "max_minutes",
                "threads", "cache_dir"):
        v = getattr(args, opt)
        if v is not None:
            parts += ["--" + opt.replace("_", "-"), str(v)]
    if getattr(args, "no_baseline", False):  # `train` only: crossval always fits the baseline
        parts.append("--no-baseline")
    return shlex.join(parts)


def _options(args) -> dict:
    """The `train` keyword arguments shared by `cnnaural train` and `cnnaural crossval`."""
    return dict(arch=args.arch, channels=args.channels, batchnorm=args.batchnorm,
                dense=_parse_ints(args.dense, "--dense"), scale=args.scale, gain=args.gain, n_mels=args.n_mels,
                sample_rate=args.sample_rate, n_fft=args.n_fft, hop_length=args.hop_length,
                clip_seconds=args.clip_seconds, clips_per_track=args.clips_per_track, train_clips=args.train_clips,
                epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer,
                weight_decay=args.weight_decay, patience=args.patience, seed=args.seed, cache_dir=args.cache_dir,
                max_minutes=args.max_minutes, threads=args.threads, progress=not args.no_progress)


def run(args) -> int:
    """`cnnaural train`: returns the exit code."""
    metrics = train(args.data_dir, args.out, baseline=not args.no_baseline, recipe=recipe_from_args(args),
                    **_options(args))
    if args.no_progress:  # with progress on, train() has printed it already
        print(format_summary(metrics))
    return 0


def run_crossval(args) -> int:
    """`cnnaural crossval`: returns the exit code."""
    summary = cross_validate(args.data_dir, args.out, folds=args.folds, val=args.val,
                             recipe=recipe_from_args(args, "crossval"), **_options(args))
    if args.no_progress:
        print(format_crossval(summary))
    return 0


def main(argv=None) -> int:
    """`python -m cnnaural_ext.train ...` (the same as `cnnaural train ...`)."""
    import argparse

    parser = add_arguments(argparse.ArgumentParser(prog="cnnaural train", description=__doc__.splitlines()[0]))
    args = parser.parse_args(argv)
    try:
        return run(args)
    except CnnauralError as e:
        print(f"cnnaural: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
