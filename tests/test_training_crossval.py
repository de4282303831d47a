"""`training.crossval`: k-fold cross-validation by track and the pooled comparison with the baseline."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cnnaural_ext.corpus import scan_tracks
from cnnaural_ext.errors import CnnauralError
from cnnaural_ext.io.checkpoint import load_checkpoint
from cnnaural_ext.training import cross_validate, format_crossval, summarise_folds
from cnnaural_ext.training import crossval as crossval_module


@pytest.fixture
def cv(tiny):
    """The tiny recipe with 2 epochs."""
    return dict(tiny.train, epochs=2, patience=2)


def _fold_metrics(rows):
    """Metrics as `train` returns them, from (track, true, cnn, baseline) rows."""
    cnn = [[t, true, c, 0.9] for t, true, c, _ in rows]
    base = [[t, true, b, 0.8] for t, true, _, b in rows]
    acc = lambda preds: float(np.mean([p[1] == p[2] for p in preds]))  # noqa: E731
    return dict(test_track_predictions=cnn, test_track_accuracy=acc(cnn), clip_accuracy={"test": 0.5},
                n_clips={"test": 10 * len(rows)},
                best_epoch=3, epochs_run=5, train_seconds=60.0,
                baseline=dict(test_track_predictions=base, test_track_accuracy=acc(base), test_clip_accuracy=0.4))


def test_summarise_folds_pools_the_tracks():
    f1 = _fold_metrics([("a1", "a", "a", "a"), ("b1", "b", "b", "a"), ("b2", "b", "a", "a")])
    f2 = _fold_metrics([("a2", "a", "a", "b"), ("b3", "b", "b", "b")])
    s = summarise_folds([f1, f2], ["a", "b"])
    assert s["n_tracks"] == 5
    assert s["cnn"]["correct"] == 4 and s["cnn"]["track_accuracy"] == pytest.approx(0.8)
    assert s["baseline"]["correct"] == 2 and s["baseline"]["track_accuracy"] == pytest.approx(0.4)
    assert s["cnn"]["confusion"] == [[2, 0], [1, 2]]
    assert s["baseline"]["confusion"] == [[1, 1], [2, 1]]
    assert s["only_cnn_right"] == [["b1", "b", "a"], ["a2", "a", "b"]]
    assert s["only_baseline_right"] == []
    assert s["mcnemar_p"] == pytest.approx(0.5)
    assert s["cnn"]["fold_mean"] == pytest.approx((2 / 3 + 1) / 2)
    assert [f["n_test_tracks"] for f in s["per_fold"]] == [3, 2]
    assert s["cnn"]["clip_accuracy"] == pytest.approx(0.5) and s["baseline"]["clip_accuracy"] == pytest.approx(0.4)
    f2["clip_accuracy"]["test"] = 1.0  # by clip, folds weigh by their clips: (0.5 * 30 + 1.0 * 20) / 50
    assert summarise_folds([f1, f2], ["a", "b"])["cnn"]["clip_accuracy"] == pytest.approx(0.7)
    md = format_crossval(dict(s, recipe="cnnaural crossval x", folds=2))
    assert "| CNN | 0.800 (4/5)" in md and "| linear log-mel baseline | 0.400 (2/5)" in md
    assert "`b1` (b; a)" in md
    bad = _fold_metrics([("a1", "a", "a", "a")])
    bad["baseline"]["test_track_predictions"][0][0] = "other"
    with pytest.raises(CnnauralError, match="different tracks"):
        summarise_folds([bad], ["a", "b"])


def test_cross_validate_trains_every_fold_and_resumes(synthetic_corpus, cv, tmp_path, monkeypatch):
    out = tmp_path / "cv"
    s = cross_validate(synthetic_corpus, out, folds=2, cache_dir=tmp_path / "cache", **cv)
    assert s["n_tracks"] == 12 and len(s["per_fold"]) == 2
    assert s["random_seed"] == 0 and s["recipe"].startswith("cnnaural_ext.training.cross_validate(")
    assert sorted(r["track"] for r in s["tracks"]) == sorted(p.name for p, _ in scan_tracks(synthetic_corpus))
    for i in (1, 2):
        _, _, meta = load_checkpoint(out / f"fold{i}.pt")
        assert meta["recipe"].endswith(f"(fold {i}/2)")
        assert meta["metrics"]["baseline"]["test_track_predictions"]
        assert meta["split"]["test"] == sorted(str(Path(c) / t) for t, c in
                                               [(r["track"], r["true"]) for r in s["tracks"] if r["fold"] == i])
    on_disk = json.loads((out / "crossval.json").read_text())
    assert on_disk["cnn"] == json.loads(json.dumps(s["cnn"]))
    assert "Cross-validation by track: 2 folds, 12 tracks" in (out / "crossval.md").read_text()
    assert not list(out.glob(".*part*"))

    # a second run with the same recipe reuses both folds and trains nothing
    def no_training(*a, **k):
        raise AssertionError("trained again")

    monkeypatch.setattr(crossval_module, "train", no_training)
    again = cross_validate(synthetic_corpus, out, folds=2, cache_dir=tmp_path / "cache", **cv)
    assert again["tracks"] == s["tracks"]
    # another recipe does not reuse them
    with pytest.raises(AssertionError, match="trained again"):
        cross_validate(synthetic_corpus, out, folds=2, cache_dir=tmp_path / "cache", **dict(cv, lr=1e-3))


def test_cross_validate_user_errors(synthetic_corpus, cv, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(CnnauralError, match="must be a folder"):
        cross_validate(synthetic_corpus, f, folds=2, **cv)
    with pytest.raises(CnnauralError, match="fewer --folds"):
        cross_validate(synthetic_corpus, tmp_path / "cv", folds=5, **cv)
    with pytest.raises(CnnauralError, match="sets 'split' itself"):
        cross_validate(synthetic_corpus, tmp_path / "cv", folds=2, split={}, **cv)
