"""Train the paper's CNNs on a folder-per-class corpus, split by track, and score them by track.

`train(data_dir, out, ...)` scans ``data_dir/<class>/<track>``, splits the *tracks* into
train / validation / test (no track in two splits), caches fixed clips as network inputs
(`corpus.ClipCache`), trains a plain `models.ARCHITECTURES[arch]` model with early stopping on
the validation loss (best weights restored), evaluates it by track (the clip softmax averaged
over a track's clips, then argmax), fits the logistic-regression baseline on log-mel statistics
on the same split (`baseline.linear_baseline`) and writes everything into one checkpoint
(`io.checkpoint.save_checkpoint`).

There is no input normalisation layer: the model stays a plain block chain the DeconvNet reads,
and the scale of the input is handled by the Spectrogram's ``scale`` (log1p by default, with its
``compression``) and, optionally, ``batchnorm=True``.
"""
from __future__ import annotations

import contextlib
import copy
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import models
from ..corpus import ClipCache, ClipDataset, class_names, scan_tracks, split_by_track
from ..errors import CnnauralError
from ..io.checkpoint import save_checkpoint
from ..spectrogram import Spectrogram
from .baseline import linear_baseline
from .metrics import score_tracks
from .summary import format_summary

OPTIMIZERS = ("rmsprop", "adam")
SPLITS = ("train", "val", "test")


def default_recipe(function: str, data_dir, out, kwargs: dict) -> str:
    """The Python call ``cnnaural_ext.training.<function>(data_dir, out, **kwargs)`` as text."""
    args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    return f"cnnaural_ext.training.{function}({str(data_dir)!r}, {str(out)!r}, {args})"


def split_paths(split: dict, root) -> dict:
    """{split: [path relative to `root` (as given if outside it)]} of {split: [(path, class)]}."""
    def rel(p):
        p = Path(p)
        try:
            return str(p.relative_to(root))
        except ValueError:
            return str(p)

    return {k: [rel(p) for p, _ in split[k]] for k in SPLITS}


@torch.no_grad()
def predict(model, dataset, batch_size: int = 64):
    """Clip softmax of a model over a ClipDataset.

    Returns:
        (probs (N, C) float64, labels (N,), track index (N,), mean cross-entropy loss), N the
        dataset's clips; an empty dataset gives empty arrays and a NaN loss.
    """
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


def evaluate(model, dataset, classes, batch_size: int = 64) -> dict:
    """Score a model on a ClipDataset by clip and by track.

    Returns:
        dict(loss, clip_accuracy, track_accuracy, track_balanced_accuracy, confusion (by track,
        rows = true), per_class, track_predictions ([file name, true class, predicted class,
        probability] per track)).
    """
    p, y, t, loss = predict(model, dataset, batch_size)
    return dict(loss=float(loss), clip_accuracy=float(np.mean(p.argmax(1) == y)),
                **score_tracks(p, t, dataset.tracks, dataset.labels, classes))


def train(data_dir, out, *, arch: str = "paper_cnn5", width=48, batchnorm: bool = False,
          dense=(512, 256), dropout=None, scale: str = "log1p", compression: float = 1.0,
          n_mels: int | None = None, sample_rate: int = 11025, n_fft: int = 512, hop_length: int = 256,
          clip_seconds: float = 4.0, clips_per_track: int = 10, train_clips: int | None = None, epochs: int = 30,
          batch_size: int = 32, lr: float = 5e-4, optimizer: str = "rmsprop", weight_decay: float = 0.0,
          patience: int = 5, random_seed: int = 0, val: float = 0.15, test: float = 0.15, cache_dir=None,
          max_minutes: float | None = None, threads: int | None = None, progress: bool = True,
          baseline: bool = True, recipe: str | None = None, split: dict | None = None) -> dict:
    """Train `models.ARCHITECTURES[arch]` on ``data_dir/<class>/<track>`` and write a checkpoint.

    Args:
        data_dir: corpus, one sub-folder per class (`cnnaural dataset` makes one).
        out: checkpoint path (`io.checkpoint.load_checkpoint` reads it).
        arch, width, batchnorm, dense, dropout: the model (`width`: conv channels per block;
            `dropout` None: the architecture's default); input_shape = (spec.n_bins,
            spec.n_frames(int(clip_seconds * sample_rate))).
        scale, compression, n_mels, sample_rate, n_fft, hop_length: the Spectrogram of the
            network input (`compression` multiplies |X| inside log1p).
        clip_seconds, clips_per_track: the clips cut from every track (`corpus.ClipCache`), 10
            as in the paper; validation and test are always scored on these.
        train_clips: clips per training track (default `clips_per_track`): more clips, evenly
            spaced over each track, give the network more of every training track to learn
            from; the baseline is fitted on the same clips.
        epochs, batch_size, lr, optimizer ("rmsprop" | "adam"), weight_decay: the optimisation.
        patience: stop after this many epochs without a lower validation loss; the weights of
            the best epoch are restored.
        random_seed: seeds the split, the initialisation, the shuffling and dropout (runs are
            deterministic for a given seed, thread count and torch build).
        val, test: fractions of each class's tracks held out.
        cache_dir: clip cache root (default `corpus.default_cache_dir()`).
        max_minutes: wall-clock budget of the training loop; it stops after the batch that
            crosses it (the best weights so far are kept).
        threads: torch threads during training (restored afterwards).
        progress: tqdm bars and one line per epoch.
        baseline: also fit and report the linear log-mel baseline.
        recipe: the command line to record in the checkpoint (default: this call, as Python).
        split: a given {"train", "val", "test"} split of (path, class) tracks (e.g. a fold of
            `corpus.fold_splits`) instead of ``split_by_track(..., val, test, random_seed)``.

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
    call_kwargs = dict(arch=arch, width=width, batchnorm=batchnorm, dense=dense, dropout=dropout,
                       scale=scale, compression=compression, n_mels=n_mels, sample_rate=sample_rate, n_fft=n_fft,
                       hop_length=hop_length, clip_seconds=clip_seconds, clips_per_track=clips_per_track,
                       train_clips=train_clips, epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer,
                       weight_decay=weight_decay, patience=patience, random_seed=random_seed, val=val, test=test,
                       max_minutes=max_minutes, threads=threads)
    _check_options(arch, optimizer, epochs, batch_size, lr, patience, train_clips, max_minutes, threads)
    data_dir, out = Path(data_dir), Path(out)
    if out.is_dir():
        raise CnnauralError(f"--out must be a checkpoint file path, not a folder: {out}")
    recipe = recipe or default_recipe("train", data_dir, out, call_kwargs)

    tracks, classes = _scan(data_dir)
    spec = Spectrogram(sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length, scale=scale, n_mels=n_mels,
                       compression=compression)
    cache = ClipCache(spec, cache_dir, clip_seconds=clip_seconds, clips_per_track=clips_per_track,
                      progress=progress)
    train_cache = cache
    if train_clips is not None and train_clips != clips_per_track:
        train_cache = ClipCache(spec, cache_dir, clip_seconds=clip_seconds, clips_per_track=train_clips,
                                progress=progress)
    if split is None:
        split = split_by_track(tracks, val=val, test=test, random_seed=random_seed)
    ds = _datasets(split, classes, cache, train_cache, progress)

    arch_kwargs = dict(n_classes=len(classes), width=width,
                       input_shape=(spec.n_bins, spec.n_frames(int(clip_seconds * sample_rate))),
                       batchnorm=bool(batchnorm), dense=tuple(dense))
    if dropout is not None:
        arch_kwargs["dropout"] = dropout
    with _torch_settings(threads):
        random.seed(random_seed)
        np.random.seed(random_seed % 2 ** 32)
        torch.manual_seed(random_seed)
        model = models.ARCHITECTURES[arch](**arch_kwargs)
        initial_conv1 = _first_conv(model).weight.detach().clone().float()
        result = _fit(model, ds, classes, epochs=epochs, batch_size=batch_size, lr=lr,
                      optimizer=optimizer, weight_decay=weight_decay, patience=patience, random_seed=random_seed,
                      max_minutes=max_minutes, progress=progress)
        evals = {k: evaluate(model, ds[k], classes, 64) for k in SPLITS}
        base = None
        if baseline:
            base = linear_baseline(ds["train"].tracks, ds["test"].tracks, classes, spectrogram=spec,
                                   cache_dir=cache_dir, clip_seconds=clip_seconds,
                                   clips_per_track=clips_per_track, source_cache=cache,
                                   train_clips_per_track=train_clips or clips_per_track,
                                   train_source_cache=train_cache, random_seed=random_seed,
                                   progress=progress)

    metrics = _metrics(classes, evals, base, ds, cache, result)
    model.eval()
    save_checkpoint(out, model.cpu(), spec, arch=arch, arch_kwargs=arch_kwargs, classes=classes,
                    initial_conv1=initial_conv1, metrics=metrics, recipe=recipe,
                    split=split_paths({k: ds[k].tracks for k in SPLITS}, data_dir),
                    clips=dict(clip_seconds=float(clip_seconds), clips_per_track=int(clips_per_track),
                               train_clips=int(train_clips or clips_per_track)))
    if progress:
        print(format_summary(metrics))
        print(f"checkpoint written to {out}")
    return metrics


def _check_options(arch, optimizer, epochs, batch_size, lr, patience, train_clips, max_minutes, threads):
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


def _scan(data_dir):
    """(tracks, classes) of a corpus that has at least 2 classes of at least 3 tracks each."""
    tracks = scan_tracks(data_dir)
    classes = class_names(tracks)
    if len(classes) < 2:
        raise CnnauralError(f"need at least 2 class folders in {data_dir}, found {len(classes)} "
                            f"({', '.join(classes)}): add one sub-folder of audio files per class")
    few = {c: n for c in classes if (n := sum(1 for _, k in tracks if k == c)) < 3}
    if few:
        raise CnnauralError("every class needs at least 3 tracks (one each for train, validation and "
                            "test); too few in " + ", ".join(f"{c} ({n})" for c, n in few.items()))
    return tracks, classes


def _datasets(split, classes, cache, train_cache, progress):
    """{split name: ClipDataset}; every class must keep a readable track in every split."""
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
    return ds


@contextlib.contextmanager
def _torch_settings(threads):
    """Deterministic algorithms (warn only) and `threads` torch threads inside; restored after."""
    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    old_det_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        if threads is not None:
            torch.set_num_threads(int(threads))
        torch.use_deterministic_algorithms(True, warn_only=True)
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det, warn_only=old_det_warn)


def _first_conv(model):
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return m
    raise CnnauralError("the model has no Conv2d layer")


def _metrics(classes, evals, base, ds, cache, result) -> dict:
    """The metrics dict of `train` from the evaluations of every split, the baseline and the fit."""
    return dict(
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


def _fit(model, ds, classes, *, epochs, batch_size, lr, optimizer, weight_decay, patience, random_seed,
         max_minutes, progress):
    """The training loop with early stopping; leaves the best weights in `model`."""
    g = torch.Generator().manual_seed(random_seed)
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
        te = time.monotonic()
        seen, loss_sum, correct, out_of_time = _train_epoch(model, loader, opt, epoch, epochs, deadline, progress)
        v = evaluate(model, ds["val"], classes, 64)
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


def _train_epoch(model, loader, opt, epoch, epochs, deadline, progress):
    """One pass over `loader`: (clips seen, summed loss, correct clips, whether the deadline passed)."""
    from tqdm import tqdm

    model.train()
    seen, loss_sum, correct = 0, 0.0, 0
    bar = tqdm(loader, desc=f"epoch {epoch}/{epochs}", unit="batch", leave=False, disable=not progress, file=sys.stderr)
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
    return seen, loss_sum, correct, out_of_time
