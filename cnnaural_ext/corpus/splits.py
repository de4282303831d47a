"""A folder-per-class corpus on disk -> tracks -> train / validation / test by *track*.

No track is ever in two splits, and versions of one piece (`track_group`) stay together, so a
remix of a test track is never trained on.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from ..errors import CnnauralError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus", ".mp3")
_VARIANT_SUFFIX = re.compile(r"([ _-]+(enhanced|old|remix|remastered|edit|alt|version))+$")


def scan_tracks(data_dir):
    """List the tracks of a folder-per-class corpus.

    Every non-hidden sub-folder holding audio files (wav, flac, ogg, opus, mp3; searched
    recursively) is a class named after the folder.

    Returns:
        sorted list of (Path, class_name); class names are sorted too (`class_names`).

    Raises:
        CnnauralError: `data_dir` is not a folder or holds no class folder with audio.
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise CnnauralError(f"data folder not found: {root} (make one with `cnnaural dataset {root}`)")
    tracks = []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(f for f in d.rglob("*")
                       if f.suffix.lower() in AUDIO_EXTENSIONS and f.is_file()
                       and not any(part.startswith(".") for part in f.relative_to(d).parts))
        tracks += [(f, d.name) for f in files]
    if not tracks:
        raise CnnauralError(f"no class folders with audio in {root}: expected one sub-folder per class "
                            f"holding {'/'.join(e[1:] for e in AUDIO_EXTENSIONS)} files "
                            f"(make a corpus with `cnnaural dataset {root}`)")
    return tracks


def class_names(tracks):
    """Sorted distinct class names of a track list."""
    return sorted({c for _, c in tracks})


def track_group(path) -> str:
    """Key that keeps versions of one piece together in a split.

    The lower-cased file stem without an album prefix ``<album>__`` (as `prepare_corpus` names
    the warzone2100 tracks) and without variant suffixes (``_enhanced``, ``-old``, ``_remix``,
    ...): ``menu.opus`` and ``aftermath_soundtrack__menu_enhanced.opus`` share the key ``menu``,
    ``frantic.ogg`` and ``frantic-old.ogg`` share ``frantic``.
    """
    stem = Path(path).stem.lower().split("__")[-1]
    return _VARIANT_SUFFIX.sub("", stem) or stem


def _class_groups(tracks, c, group):
    """The tracks of class `c` grouped by ``group(path)`` (None: one group per track): (sorted keys, {key: tracks})."""
    groups = {}
    for t in sorted((t for t in tracks if t[1] == c), key=lambda t: str(t[0])):
        groups.setdefault(group(t[0]) if group is not None else str(t[0]), []).append(t)
    return sorted(groups), groups


def _sorted_split(split: dict) -> dict:
    return {k: sorted(v, key=lambda t: (t[1], str(t[0]))) for k, v in split.items()}


def split_by_track(tracks, val: float = 0.15, test: float = 0.15, random_seed: int = 0, group=track_group):
    """Split tracks into train / val / test, stratified per class, no track in two splits.

    Tracks of one class with the same ``group(path)`` (versions of one piece, see `track_group`;
    ``group=None`` makes every track its own group) always land in the same split, so a remix
    of a test track is never trained on. Per class, with g groups: g >= 3 gives
    max(1, round(g * test)) test and max(1, round(g * val)) validation groups (at least one
    training group is always kept); g == 2 gives one training and one test group; g == 1 only
    training. The assignment is a seeded permutation, deterministic for a given `random_seed`.

    Args:
        tracks: list of (Path, class_name), e.g. from `scan_tracks`.
        val, test: fractions of each class's groups held out, in [0, 1) with val + test < 1.
        random_seed: seeds the permutation.
        group: path -> group key (None: one group per track).

    Returns:
        {"train": [...], "val": [...], "test": [...]}: lists of (Path, class_name), sorted.
    """
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise CnnauralError(f"val and test fractions must be in [0, 1) with val + test < 1 (got {val}, {test})")
    rng = np.random.default_rng(random_seed)
    out = {"train": [], "val": [], "test": []}
    for c in class_names(tracks):
        keys, groups = _class_groups(tracks, c, group)
        n = len(keys)
        keys = [keys[i] for i in rng.permutation(n)]
        if n >= 3:
            n_test = max(1, int(round(n * test))) if test > 0 else 0
            n_val = max(1, int(round(n * val))) if val > 0 else 0
            while n_test + n_val > n - 1:
                if (n_val >= n_test and n_val > 1) or n_test <= 1:
                    n_val -= 1
                else:
                    n_test -= 1
        elif n == 2:
            n_test, n_val = (1 if test > 0 else 0), 0
        else:
            n_test, n_val = 0, 0
        for i, k in enumerate(keys):
            part = "test" if i < n_test else "val" if i < n_test + n_val else "train"
            out[part] += groups[k]
    return _sorted_split(out)


def fold_splits(tracks, folds: int = 5, val: float = 0.15, random_seed: int = 0, group=track_group):
    """K-fold cross-validation splits by track: every track is in exactly one test fold.

    Per class, the groups of tracks (`track_group`: versions of one piece stay together) are
    dealt in a seeded random order onto the `folds` folds, so each fold holds about 1/folds of
    every class. For fold i the test split is fold i; of the remaining groups of each class,
    max(1, round(g * val)) (g: the class's groups) are drawn as validation, at least one is
    kept for training.

    Args:
        tracks: list of (Path, class_name), e.g. from `scan_tracks`.
        folds: number of folds, >= 2.
        val: fraction of each class's groups drawn for validation in every fold, in [0, 1).
        random_seed: seeds the dealing and the validation draws.
        group: path -> group key (None: one group per track).

    Returns:
        a list of `folds` dicts {"train", "val", "test"} of sorted (Path, class_name) lists.

    Raises:
        CnnauralError: folds < 2, val outside [0, 1), or a class with too few groups: fewer
            than `folds` (a test fold without that class), or so few that a fold would keep no
            training (or, with val > 0, no validation) group.
    """
    if int(folds) != folds or folds < 2:
        raise CnnauralError(f"folds must be an integer >= 2 (got {folds})")
    if not 0 <= val < 1:
        raise CnnauralError(f"the validation fraction must be in [0, 1) (got {val})")
    folds = int(folds)
    rng = np.random.default_rng(random_seed)
    out = [{"train": [], "val": [], "test": []} for _ in range(folds)]
    for c in class_names(tracks):
        keys, groups = _class_groups(tracks, c, group)
        n = len(keys)
        left = 2 if val > 0 else 1  # pieces each fold must keep out of its test split
        if n < folds or n - math.ceil(n / folds) < left:
            raise CnnauralError(f"class {c!r} has {n} distinct pieces; {folds}-fold cross-validation needs at "
                                f"least {max(folds, left + 1)} (one per test fold, with training"
                                f"{' and validation' if val > 0 else ''} pieces left in every fold): "
                                "use fewer --folds or add tracks")
        keys = [keys[i] for i in rng.permutation(n)]
        n_val = max(1, int(round(n * val))) if val > 0 else 0
        for i, split in enumerate(out):
            test_keys = keys[i::folds]
            rest = [k for k in keys if k not in test_keys]
            rest = [rest[j] for j in rng.permutation(len(rest))]
            k_val = min(n_val, len(rest) - 1)
            split["test"] += [t for k in test_keys for t in groups[k]]
            split["val"] += [t for k in rest[:k_val] for t in groups[k]]
            split["train"] += [t for k in rest[k_val:] for t in groups[k]]
    return [_sorted_split(split) for split in out]
