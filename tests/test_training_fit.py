"""`training.fit`: training on the synthetic corpus, the checkpoint it writes, its metrics, user errors.

Everything here is fast (CPU, one thread, an 8-channel CNN on 1 s clips).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cnnaural_ext.corpus import ClipCache, ClipDataset
from cnnaural_ext.errors import CnnauralError
from cnnaural_ext.io.checkpoint import load_checkpoint
from cnnaural_ext.training import format_summary, predict, train


def test_train_writes_a_checkpoint_that_reloads(tiny_trained, synthetic_corpus, tiny):
    out, metrics, cache_dir = tiny_trained
    assert out.is_file() and out.stat().st_size < 2_000_000
    model, spec, meta = load_checkpoint(out)
    assert meta["classes"] == ["clicks", "noise", "tones"]
    assert spec.config() == tiny.spectrogram().config()
    assert meta["arch"] == "paper_cnn5" and meta["arch_kwargs"]["width"] == 8
    assert "channels" not in meta["arch_kwargs"]
    assert meta["recipe"].startswith("cnnaural_ext.training.train(") and "random_seed=0" in meta["recipe"]
    # the split is by track and recorded
    s = meta["split"]
    assert set(s) == {"train", "val", "test"}
    assert not set(s["train"]) & set(s["test"]) and not set(s["val"]) & set(s["test"]) \
        and not set(s["train"]) & set(s["val"])
    assert len(s["train"]) + len(s["val"]) + len(s["test"]) == 12
    # initial first-layer weights differ from the learned ones, same shape
    w0 = meta["initial_conv1"]
    w1 = model.features.block1[0].weight
    assert w0.shape == w1.shape and w0.dtype == torch.float32 and not torch.equal(w0, w1)

    # the reloaded model gives the logits the metrics were computed from
    cache = ClipCache(spec, cache_dir, clip_seconds=1.0, clips_per_track=4, progress=False)
    test_tracks = [(synthetic_corpus / p, Path(p).parts[0]) for p in s["test"]]
    ds = ClipDataset(test_tracks, meta["classes"], cache)
    assert cache.computed == 0  # everything came from the training run's cache
    probs, labels, _, loss = predict(model, ds)
    assert loss == pytest.approx(metrics["loss"]["test"], rel=1e-5, abs=1e-6)
    assert float(np.mean(probs.argmax(1) == labels)) == pytest.approx(metrics["clip_accuracy"]["test"])
    # and loading twice gives identical logits
    model2, _, _ = load_checkpoint(out)
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    with torch.no_grad():
        assert torch.equal(model(x), model2(x))


def test_train_metrics(tiny_trained, tiny):
    _, metrics, _ = tiny_trained
    for k in ("clip_accuracy", "test_track_accuracy", "val_track_accuracy", "per_class", "confusion",
              "baseline", "history", "best_epoch", "stopped", "n_tracks", "n_clips", "train_seconds"):
        assert k in metrics, k
    assert set(metrics["clip_accuracy"]) == {"train", "val", "test"}
    assert metrics["n_tracks"] == {"train": 6, "val": 3, "test": 3}
    conf = np.asarray(metrics["confusion"])
    assert conf.shape == (3, 3) and conf.sum() == 3
    assert set(metrics["per_class"]) == {"clicks", "noise", "tones"}
    assert all(set(v) == {"precision", "recall", "f1", "support"} for v in metrics["per_class"].values())
    # easy synthetic classes: far above chance (1/3)
    assert metrics["clip_accuracy"]["test"] >= 0.75
    assert metrics["test_track_accuracy"] >= 2 / 3
    b = metrics["baseline"]
    assert np.asarray(b["confusion"]).sum() == 3 and b["n_features"] == 80
    assert b["test_track_accuracy"] >= 2 / 3
    assert 1 <= metrics["best_epoch"] <= metrics["epochs_run"] <= tiny.train["epochs"]
    assert "confusion matrix" in format_summary(metrics)


def test_train_is_deterministic(synthetic_corpus, tiny_trained, tiny, tmp_path):
    _, _, cache_dir = tiny_trained
    kw = dict(tiny.train, epochs=2, patience=5)
    m1 = train(synthetic_corpus, tmp_path / "a.pt", cache_dir=cache_dir, baseline=False, **kw)
    m2 = train(synthetic_corpus, tmp_path / "b.pt", cache_dir=cache_dir, baseline=False, **kw)
    assert [h["train_loss"] for h in m1["history"]] == [h["train_loss"] for h in m2["history"]]
    a = torch.load(tmp_path / "a.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "b.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_train_clips_give_training_tracks_more_clips(synthetic_corpus, tiny_trained, tiny, tmp_path):
    """--train-clips: more clips per training track for the CNN and the baseline; validation and
    test stay on --clips-per-track."""
    _, base_metrics, cache_dir = tiny_trained
    kw = dict(tiny.train, epochs=1)
    n = 2 * tiny.train["clips_per_track"]
    m = train(synthetic_corpus, tmp_path / "more.pt", cache_dir=cache_dir, train_clips=n, **kw)
    assert m["n_clips"]["val"] == base_metrics["n_clips"]["val"]
    assert m["n_clips"]["test"] == base_metrics["n_clips"]["test"]
    assert m["n_clips"]["train"] > base_metrics["n_clips"]["train"]
    assert m["baseline"]["n_train_clips"] == m["n_clips"]["train"]
    assert base_metrics["baseline"]["n_train_clips"] == base_metrics["n_clips"]["train"]
    assert torch.load(tmp_path / "more.pt", weights_only=True)["clips"]["train_clips"] == n
    with pytest.raises(CnnauralError, match="train_clips"):
        train(synthetic_corpus, tmp_path / "bad.pt", cache_dir=cache_dir, train_clips=0, **kw)


def test_bad_data_dirs(tiny, tmp_path):
    with pytest.raises(CnnauralError, match="not found"):
        train(tmp_path / "nope", tmp_path / "m.pt", **tiny.train)
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(CnnauralError, match="one sub-folder per class"):
        train(tmp_path / "empty", tmp_path / "m.pt", **tiny.train)
    one = tiny.make_corpus(tmp_path / "one", n_tracks=3, classes=("tones",))
    with pytest.raises(CnnauralError, match="at least 2 class"):
        train(one, tmp_path / "m.pt", **tiny.train)
    few = tiny.make_corpus(tmp_path / "few", n_tracks=2, classes=("tones", "noise"))
    tiny.make_corpus(few, n_tracks=3, classes=("clicks",))
    with pytest.raises(CnnauralError, match=r"at least 3 tracks.*noise \(2\)"):
        train(few, tmp_path / "m.pt", **tiny.train)
    with pytest.raises(CnnauralError, match="optimizer"):
        train(few, tmp_path / "m.pt", **dict(tiny.train, optimizer="sgd"))
    with pytest.raises(CnnauralError, match="architecture"):
        train(few, tmp_path / "m.pt", **dict(tiny.train, arch="resnet"))
    with pytest.raises(CnnauralError, match="not a folder"):
        train(few, tmp_path, **tiny.train)
    assert not (tmp_path / "m.pt").exists()
