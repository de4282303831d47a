"""Cross-validation by track (`data.fold_splits`, `train.cross_validate`, `cnnaural crossval`)
and the log1p input gain, on the tiny synthetic corpus of test_data_train."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnaural_ext import cli, data, models
from cnnaural_ext import train as tr
from cnnaural_ext.errors import CnnauralError
from cnnaural_ext.spectrogram import Spectrogram

from test_data_train import SR, TINY, _make_corpus

CV = dict(TINY, epochs=2, patience=2)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return _make_corpus(tmp_path_factory.mktemp("cv_corpus"))


# ------------------------------------------------------------------------------------------------
# folds
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sizes,folds", [((4, 4, 4), 2), ((41, 30, 20), 5), ((5, 9, 7), 3), ((10, 12, 6), 5)])
@pytest.mark.parametrize("seed", [0, 3])
def test_fold_splits_test_every_track_once(sizes, folds, seed):
    tracks = [(Path(f"/x/c{k}/t{i}.wav"), f"c{k}") for k, n in enumerate(sizes) for i in range(n)]
    splits = data.fold_splits(tracks, folds=folds, val=0.15, seed=seed)
    assert len(splits) == folds
    tested = [str(p) for s in splits for p, _ in s["test"]]
    assert sorted(tested) == sorted(str(p) for p, _ in tracks)  # every track tested exactly once
    for s in splits:
        names = {k: {str(p) for p, _ in v} for k, v in s.items()}
        assert not names["train"] & names["val"] and not names["train"] & names["test"] \
            and not names["val"] & names["test"]
        assert len(names["train"] | names["val"] | names["test"]) == len(tracks)
        for k, n in enumerate(sizes):
            counts = {part: sum(1 for _, c in s[part] if c == f"c{k}") for part in s}
            assert counts["train"] >= 1 and counts["val"] >= 1
            assert counts["test"] in (n // folds, -(-n // folds))  # stratified: an even share
    assert splits == data.fold_splits(tracks, folds=folds, val=0.15, seed=seed)  # deterministic


def test_fold_splits_keep_versions_of_a_piece_together():
    names = ["menu.opus", "a__menu_enhanced.opus", "x-old.ogg", "x.ogg"] + [f"t{i}.ogg" for i in range(8)]
    tracks = [(Path("/c/k") / n, "k") for n in names]
    for seed in range(10):
        for s in data.fold_splits(tracks, folds=3, seed=seed):
            where = {p.name: part for part, v in s.items() for p, _ in v}
            assert where["menu.opus"] == where["a__menu_enhanced.opus"]
            assert where["x.ogg"] == where["x-old.ogg"]


def test_fold_splits_errors():
    tracks = [(Path(f"/x/{c}/t{i}.wav"), c) for c, n in (("a", 3), ("b", 8)) for i in range(n)]
    with pytest.raises(CnnauralError, match="'a' has 3 distinct pieces.*fewer --folds"):
        data.fold_splits(tracks, folds=4)
    with pytest.raises(CnnauralError, match="'a' has 3 distinct pieces"):
        data.fold_splits(tracks, folds=2)  # 3 pieces: a test fold of 2 leaves no validation piece
    assert len(data.fold_splits(tracks, folds=2, val=0)) == 2  # ... unless there is no validation
    with pytest.raises(CnnauralError, match="folds must be an integer >= 2"):
        data.fold_splits(tracks, folds=1)
    with pytest.raises(CnnauralError, match="validation fraction"):
        data.fold_splits(tracks, folds=2, val=1.0)


# ------------------------------------------------------------------------------------------------
# pooled comparison
# ------------------------------------------------------------------------------------------------
def test_mcnemar_exact_p():
    assert tr._mcnemar_p(0, 0) == 1.0
    assert tr._mcnemar_p(0, 5) == pytest.approx(2 / 32)
    assert tr._mcnemar_p(5, 0) == pytest.approx(2 / 32)
    assert tr._mcnemar_p(3, 3) == 1.0
    # b=1, c=7: 2 * P(X <= 1), X ~ Bin(8, 1/2) = 2 * 9/256
    assert tr._mcnemar_p(1, 7) == pytest.approx(18 / 256)


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
    s = tr.summarise_folds([f1, f2], ["a", "b"])
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
    assert tr.summarise_folds([f1, f2], ["a", "b"])["cnn"]["clip_accuracy"] == pytest.approx(0.7)
    md = tr.format_crossval(dict(s, recipe="cnnaural crossval x", folds=2))
    assert "| CNN | 0.800 (4/5)" in md and "| linear log-mel baseline | 0.400 (2/5)" in md
    assert "`b1` (b; a)" in md
    bad = _fold_metrics([("a1", "a", "a", "a")])
    bad["baseline"]["test_track_predictions"][0][0] = "other"
    with pytest.raises(CnnauralError, match="different tracks"):
        tr.summarise_folds([bad], ["a", "b"])


# ------------------------------------------------------------------------------------------------
# cross_validate and the CLI
# ------------------------------------------------------------------------------------------------
def test_cross_validate_trains_every_fold_and_resumes(corpus, tmp_path, monkeypatch):
    out = tmp_path / "cv"
    s = tr.cross_validate(corpus, out, folds=2, cache_dir=tmp_path / "cache", **CV)
    assert s["n_tracks"] == 12 and len(s["per_fold"]) == 2
    assert sorted(r["track"] for r in s["tracks"]) == sorted(p.name for p, _ in data.scan_tracks(corpus))
    for i in (1, 2):
        _, _, meta = models.load_checkpoint(out / f"fold{i}.pt")
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

    monkeypatch.setattr(tr, "train", no_training)
    again = tr.cross_validate(corpus, out, folds=2, cache_dir=tmp_path / "cache", **CV)
    assert again["tracks"] == s["tracks"]
    # another recipe does not reuse them
    with pytest.raises(AssertionError, match="trained again"):
        tr.cross_validate(corpus, out, folds=2, cache_dir=tmp_path / "cache", **dict(CV, lr=1e-3))


def test_cross_validate_user_errors(corpus, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(CnnauralError, match="must be a folder"):
        tr.cross_validate(corpus, f, folds=2, **CV)
    with pytest.raises(CnnauralError, match="fewer --folds"):
        tr.cross_validate(corpus, tmp_path / "cv", folds=5, **CV)
    with pytest.raises(CnnauralError, match="sets 'split' itself"):
        tr.cross_validate(corpus, tmp_path / "cv", folds=2, split={}, **CV)


def test_cli_crossval(corpus, tmp_path, capsys):
    args = [str(corpus), "--out", str(tmp_path / "cv"), "--folds", "2", "--channels", "4", "--dense", "8",
            "--sample-rate", str(SR), "--n-fft", "256", "--hop-length", "128", "--clip-seconds", "1",
            "--clips-per-track", "2", "--epochs", "1", "--threads", "1", "--cache-dir", str(tmp_path / "cache"),
            "--no-progress"]
    assert cli.main(["crossval", *args]) == 0
    out = capsys.readouterr().out
    assert "Cross-validation by track: 2 folds, 12 tracks" in out
    _, _, meta = models.load_checkpoint(tmp_path / "cv" / "fold1.pt")
    assert meta["recipe"].startswith("cnnaural crossval ") and "--folds 2" in meta["recipe"]
    with pytest.raises(SystemExit):  # crossval always fits the baseline: no such option
        cli.main(["crossval", *args, "--no-baseline"])
    assert "unrecognized arguments: --no-baseline" in capsys.readouterr().err
    assert cli.main(["crossval", *args[:3], "--folds", "9", *args[5:]]) == 2
    assert "fewer --folds" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------
# log1p gain
# ------------------------------------------------------------------------------------------------
def test_log1p_gain_scale_and_inverse():
    spec = Spectrogram(sample_rate=SR, n_fft=256, hop_length=128, scale="log1p", gain=1000.0)
    X, S = spec(torch.randn(4000) * 0.1)
    torch.testing.assert_close(S, torch.log1p(1000.0 * X.abs()))
    mag = torch.rand(30, 7, dtype=torch.float64) * 5
    torch.testing.assert_close(spec.inverse_scale(spec.scale_magnitude(mag)), mag, rtol=1e-12, atol=1e-12)
    assert Spectrogram(**spec.config()).gain == 1000.0
    assert Spectrogram().gain == 1.0  # the default (and checkpoints without a gain) keep log(1 + |X|)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(CnnauralError, match="gain must be a finite number > 0"):
            Spectrogram(scale="log1p", gain=bad)
    with pytest.raises(CnnauralError, match="gain only applies to scale='log1p'"):
        Spectrogram(scale="db", gain=10.0)


def test_train_with_gain_records_it_and_baseline_sees_the_same_magnitudes(corpus, tmp_path):
    """The gain reaches the checkpoint's Spectrogram; the log-mel baseline undoes it exactly."""
    kw = dict(CV, epochs=1)
    m1 = tr.train(corpus, tmp_path / "g1.pt", cache_dir=tmp_path / "cache", **kw)
    m2 = tr.train(corpus, tmp_path / "g.pt", cache_dir=tmp_path / "cache", gain=100.0, **kw)
    _, spec, _ = models.load_checkpoint(tmp_path / "g.pt")
    assert spec.scale == "log1p" and spec.gain == 100.0
    b1, b2 = m1["baseline"]["test_track_predictions"], m2["baseline"]["test_track_predictions"]
    assert [r[:3] for r in b2] == [r[:3] for r in b1]
    np.testing.assert_allclose([r[3] for r in b2], [r[3] for r in b1], rtol=1e-4)
    p = tr.add_arguments(argparse.ArgumentParser())
    args = p.parse_args([str(corpus), "--out", "x.pt", "--gain", "1000"])
    assert "--gain 1000" in tr.recipe_from_args(args)
