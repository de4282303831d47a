"""K-fold cross-validation by track of the CNN against the linear baseline.

Every track of the corpus is tested exactly once; the two classifiers are compared on all tracks
pooled (accuracy, the tracks only one of them gets right and the exact McNemar p-value).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..corpus import class_names, fold_splits, scan_tracks
from ..errors import CnnauralError
from ..io.checkpoint import load_checkpoint
from ..io.files import write_json, write_text
from .fit import SPLITS, default_recipe, split_paths, train
from .metrics import balanced_accuracy, mcnemar_p
from .summary import format_crossval


def cross_validate(data_dir, out_dir, *, folds: int = 5, random_seed: int = 0, val: float = 0.15,
                   recipe: str | None = None, progress: bool = True, **train_kwargs) -> dict:
    """K-fold cross-validation by track of the CNN and the linear baseline on one corpus.

    Every track of ``data_dir`` is tested exactly once (`corpus.fold_splits`: folds by track,
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
        folds, random_seed, val: see `corpus.fold_splits` (`random_seed` also seeds each fold's
            training).
        recipe: the command line recorded in every fold's checkpoint (with `` (fold i/K)``).
        train_kwargs: the model, input and optimisation options of `train` (not `split`, `test`).

    Returns:
        the summary dict (as in crossval.json): `summarise_folds` plus folds, random_seed, val,
        recipe and the checkpoints' file names.
    """
    for k in ("split", "test", "out", "recipe", "baseline"):
        if k in train_kwargs:
            raise CnnauralError(f"cross_validate sets {k!r} itself")
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise CnnauralError(f"--out must be a folder for cross-validation, not a file: {out_dir}")
    tracks = scan_tracks(data_dir)
    classes = class_names(tracks)  # train() rejects fewer than 2
    splits = fold_splits(tracks, folds=folds, val=val, random_seed=random_seed)
    base_recipe = recipe or default_recipe("cross_validate", data_dir, out_dir,
                                           dict(folds=folds, random_seed=random_seed, val=val, **train_kwargs))
    out_dir.mkdir(parents=True, exist_ok=True)
    per_fold = []
    for i, split in enumerate(splits, 1):
        path = out_dir / f"fold{i}.pt"
        fold_recipe = f"{base_recipe} (fold {i}/{folds})"
        metrics = _finished_fold(path, fold_recipe, split_paths(split, data_dir))
        if metrics is not None and progress:
            print(f"fold {i}/{folds}: reusing {path}", flush=True)
        if metrics is None:
            if progress:
                print(f"fold {i}/{folds}: tracks train/val/test "
                      + "/".join(str(len(split[k])) for k in SPLITS), flush=True)
            metrics = train(data_dir, path, random_seed=random_seed, val=val, split=split, recipe=fold_recipe,
                            progress=progress, baseline=True, **train_kwargs)
        per_fold.append(metrics)
    summary = summarise_folds(per_fold, classes)
    summary.update(folds=int(folds), random_seed=int(random_seed), val=float(val), recipe=base_recipe,
                   checkpoints=[f"fold{i}.pt" for i in range(1, folds + 1)])
    write_json(out_dir / "crossval.json", summary)
    write_text(out_dir / "crossval.md", format_crossval(summary) + "\n")
    if progress:
        print(format_crossval(summary))
        print(f"written: {out_dir / 'crossval.md'}, {out_dir / 'crossval.json'}")
    return summary


def _finished_fold(path: Path, recipe: str, split: dict):
    """The metrics of an existing fold checkpoint with this recipe, split and baseline metrics; else None."""
    if not path.is_file():
        return None
    try:
        _, _, meta = load_checkpoint(path)
    except CnnauralError:
        return None
    if meta.get("recipe") == recipe and meta.get("split") == split and (meta.get("metrics") or {}).get("baseline"):
        return meta["metrics"]
    return None


def summarise_folds(per_fold, classes) -> dict:
    """Pool the test-track predictions of the folds' CNN and baseline (see `cross_validate`).

    Args:
        per_fold: the metrics of each fold as `train` returns them (with baseline metrics).
        classes: the class names.

    Returns:
        dict(classes, n_tracks, cnn, baseline (each: track_accuracy, correct, clip_accuracy,
        balanced_accuracy, confusion, fold_mean, fold_std), only_cnn_right / only_baseline_right
        ([track, true class, the other's answer]), mcnemar_p, per_fold, tracks).

    Raises:
        CnnauralError: a fold whose CNN and baseline were scored on different tracks.
    """
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
    ok = {k: np.array([r[k] == r["true"] for r in rows]) for k in ("cnn", "baseline")}
    only_cnn = [r for r, a, b in zip(rows, ok["cnn"], ok["baseline"]) if a and not b]
    only_base = [r for r, a, b in zip(rows, ok["cnn"], ok["baseline"]) if b and not a]

    def pooled(key):
        n_clips = sum(f["n_test_clips"] for f in folds)  # by clip: the folds weighted by their test clips
        return dict(track_accuracy=float(ok[key].mean()) if rows else 0.0, correct=int(ok[key].sum()),
                    clip_accuracy=float(sum(f[key + "_clip"] * f["n_test_clips"] for f in folds) / n_clips)
                    if n_clips else 0.0,
                    balanced_accuracy=balanced_accuracy(conf[key]), confusion=conf[key].tolist(),
                    fold_mean=float(np.mean([f[key] for f in folds])), fold_std=float(np.std([f[key] for f in folds])))

    return dict(
        classes=classes, n_tracks=len(rows), cnn=pooled("cnn"), baseline=pooled("baseline"),
        only_cnn_right=[[r["track"], r["true"], r["baseline"]] for r in only_cnn],
        only_baseline_right=[[r["track"], r["true"], r["cnn"]] for r in only_base],
        mcnemar_p=mcnemar_p(len(only_cnn), len(only_base)),
        per_fold=folds, tracks=rows)
