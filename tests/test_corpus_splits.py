"""`corpus.splits`: scanning a folder-per-class corpus, splits and folds by track."""
from __future__ import annotations

from pathlib import Path

import pytest

from cnnaural_ext.corpus import class_names, fold_splits, scan_tracks, split_by_track, track_group
from cnnaural_ext.errors import CnnauralError


def _tracks(sizes):
    return [(Path(f"/x/c{k}/t{i}.wav"), f"c{k}") for k, n in enumerate(sizes) for i in range(n)]


def _disjoint(split):
    names = {k: {str(p) for p, _ in v} for k, v in split.items()}
    assert not names["train"] & names["val"] and not names["train"] & names["test"] \
        and not names["val"] & names["test"]
    return names


VERSIONS = ["menu.opus", "a__menu_enhanced.opus", "x-old.ogg", "x.ogg"] + [f"t{i}.ogg" for i in range(8)]


# ------------------------------------------------------------------------------------------------
# tracks
# ------------------------------------------------------------------------------------------------
def test_scan_tracks(synthetic_corpus):
    tracks = scan_tracks(synthetic_corpus)
    assert len(tracks) == 12
    assert class_names(tracks) == ["clicks", "noise", "tones"]
    assert tracks == sorted(tracks, key=lambda t: (t[1], str(t[0])))
    assert all(p.parent.name == c for p, c in tracks)


def test_scan_tracks_errors(tmp_path):
    with pytest.raises(CnnauralError, match="not found.*cnnaural dataset"):
        scan_tracks(tmp_path / "nope")
    (tmp_path / "cls").mkdir()
    with pytest.raises(CnnauralError, match="one sub-folder per class"):
        scan_tracks(tmp_path)


def test_track_group():
    assert track_group("/c/electronic/aftermath_soundtrack__menu_enhanced.opus") == "menu"
    assert track_group("/c/electronic/menu.opus") == "menu"
    assert track_group("/c/orchestral/frantic-old.ogg") == "frantic"
    assert track_group("/c/electronic/legacy_soundtrack__track13.opus") == "track13"


# ------------------------------------------------------------------------------------------------
# one split
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sizes", [(3, 3, 3), (4, 7, 20), (41, 30, 20), (3, 100, 5), (1, 2, 9)])
@pytest.mark.parametrize("random_seed", [0, 1])
def test_split_by_track_disjoint_and_stratified(sizes, random_seed):
    tracks = _tracks(sizes)
    split = split_by_track(tracks, val=0.15, test=0.15, random_seed=random_seed)
    names = _disjoint(split)
    assert sorted(names["train"] | names["val"] | names["test"]) == sorted(str(p) for p, _ in tracks)
    for k, n in enumerate(sizes):
        counts = {s: sum(1 for _, c in split[s] if c == f"c{k}") for s in split}
        assert counts["train"] >= 1
        if n >= 3:
            assert counts["val"] >= 1 and counts["test"] >= 1
            assert abs(counts["test"] - max(1, round(0.15 * n))) <= 1
    assert split == split_by_track(tracks, random_seed=random_seed)  # deterministic


def test_split_keeps_versions_of_a_piece_together():
    tracks = [(Path("/c/k") / n, "k") for n in VERSIONS]
    for random_seed in range(20):
        split = split_by_track(tracks, random_seed=random_seed)
        where = {p.name: s for s, v in split.items() for p, _ in v}
        assert where["menu.opus"] == where["a__menu_enhanced.opus"]
        assert where["x.ogg"] == where["x-old.ogg"]
        assert all(split[s] for s in split)
    # group=None: every file on its own
    split = split_by_track(tracks, random_seed=0, group=None)
    assert sum(len(v) for v in split.values()) == len(tracks)


def test_split_by_track_bad_fractions():
    with pytest.raises(CnnauralError, match="val and test fractions"):
        split_by_track(_tracks((5, 5)), val=0.6, test=0.5)


# ------------------------------------------------------------------------------------------------
# folds
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sizes,folds", [((4, 4, 4), 2), ((41, 30, 20), 5), ((5, 9, 7), 3), ((10, 12, 6), 5)])
@pytest.mark.parametrize("random_seed", [0, 3])
def test_fold_splits_test_every_track_once(sizes, folds, random_seed):
    tracks = _tracks(sizes)
    splits = fold_splits(tracks, folds=folds, val=0.15, random_seed=random_seed)
    assert len(splits) == folds
    tested = [str(p) for s in splits for p, _ in s["test"]]
    assert sorted(tested) == sorted(str(p) for p, _ in tracks)  # every track tested exactly once
    for s in splits:
        names = _disjoint(s)
        assert len(names["train"] | names["val"] | names["test"]) == len(tracks)
        for k, n in enumerate(sizes):
            counts = {part: sum(1 for _, c in s[part] if c == f"c{k}") for part in s}
            assert counts["train"] >= 1 and counts["val"] >= 1
            assert counts["test"] in (n // folds, -(-n // folds))  # stratified: an even share
    assert splits == fold_splits(tracks, folds=folds, val=0.15, random_seed=random_seed)  # deterministic


def test_fold_splits_keep_versions_of_a_piece_together():
    tracks = [(Path("/c/k") / n, "k") for n in VERSIONS]
    for random_seed in range(10):
        for s in fold_splits(tracks, folds=3, random_seed=random_seed):
            where = {p.name: part for part, v in s.items() for p, _ in v}
            assert where["menu.opus"] == where["a__menu_enhanced.opus"]
            assert where["x.ogg"] == where["x-old.ogg"]


def test_fold_splits_errors():
    tracks = [(Path(f"/x/{c}/t{i}.wav"), c) for c, n in (("a", 3), ("b", 8)) for i in range(n)]
    with pytest.raises(CnnauralError, match="'a' has 3 distinct pieces.*fewer --folds"):
        fold_splits(tracks, folds=4)
    with pytest.raises(CnnauralError, match="'a' has 3 distinct pieces"):
        fold_splits(tracks, folds=2)  # 3 pieces: a test fold of 2 leaves no validation piece
    assert len(fold_splits(tracks, folds=2, val=0)) == 2  # ... unless there is no validation
    with pytest.raises(CnnauralError, match="folds must be an integer >= 2"):
        fold_splits(tracks, folds=1)
    with pytest.raises(CnnauralError, match="validation fraction"):
        fold_splits(tracks, folds=2, val=1.0)
