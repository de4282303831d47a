"""Data preparation, clip cache, track splits and training, on a tiny synthetic corpus.

Everything here is fast (CPU, one thread, a 4-channel CNN on 1 s clips). Tests that need the
Debian audio packages or music21 / pretty_midi / tinysoundfont skip cleanly without them.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from cnnaural_ext import data, models
from cnnaural_ext import train as tr
from cnnaural_ext.errors import CnnauralError
from cnnaural_ext.spectrogram import Spectrogram

SR_FILE = 16000          # rate the synthetic files are written at (resampled to SR on load)
SR = 8000                # Spectrogram rate of the tiny model
TINY = dict(arch="paper_cnn5", channels=8, dense=(), dropout=0.0, sample_rate=SR, n_fft=256,
            hop_length=128, clip_seconds=1.0, clips_per_track=4, batch_size=4, lr=3e-3, batchnorm=True,
            optimizer="adam", epochs=15, patience=15, seed=0, threads=1, progress=False)


def _signal(kind: str, seconds: float, rng) -> np.ndarray:
    n = int(seconds * SR_FILE)
    t = np.arange(n) / SR_FILE
    if kind == "tones":  # steady harmonic tones, a new pitch every 0.5 s
        f0 = rng.uniform(200, 600, size=int(np.ceil(seconds / 0.5)))[(t // 0.5).astype(int)]
        ph = 2 * np.pi * np.cumsum(f0) / SR_FILE
        x = sum(np.sin(k * ph) / k for k in (1, 2, 3))
    elif kind == "noise":  # white-noise bursts
        x = rng.standard_normal(n) * (np.sin(2 * np.pi * rng.uniform(1, 3) * t) > -0.3)
    else:  # click trains
        x = np.zeros(n)
        period = int(SR_FILE / rng.uniform(4, 9))
        x[::period] = 1.0
        x = np.convolve(x, np.exp(-np.arange(40) / 4.0), mode="same")
    x = x / np.abs(x).max() * 0.5
    return x.astype(np.float32)


def _make_corpus(root: Path, n_tracks: int = 4, classes=("clicks", "noise", "tones")) -> Path:
    rng = np.random.default_rng(1234)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n_tracks):
            sf.write(root / c / f"{c}_{i}.wav", _signal(c, 3.0 + (i % 3), rng), SR_FILE)
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return _make_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    """One tiny training run shared by the checkpoint and metric tests."""
    d = tmp_path_factory.mktemp("trained")
    out = d / "tiny.pt"
    metrics = tr.train(corpus, out, cache_dir=d / "cache", **TINY)
    return out, metrics, d / "cache"


def _spec():
    return Spectrogram(sample_rate=SR, n_fft=256, hop_length=128, scale="log1p")


# ------------------------------------------------------------------------------------------------
# tracks and splits
# ------------------------------------------------------------------------------------------------
def test_scan_tracks(corpus):
    tracks = data.scan_tracks(corpus)
    assert len(tracks) == 12
    assert data.class_names(tracks) == ["clicks", "noise", "tones"]
    assert tracks == sorted(tracks, key=lambda t: (t[1], str(t[0])))
    assert all(p.parent.name == c for p, c in tracks)


@pytest.mark.parametrize("sizes", [(3, 3, 3), (4, 7, 20), (41, 30, 20), (3, 100, 5), (1, 2, 9)])
@pytest.mark.parametrize("seed", [0, 1])
def test_split_by_track_disjoint_and_stratified(sizes, seed):
    tracks = [(Path(f"/x/c{k}/t{i}.wav"), f"c{k}") for k, n in enumerate(sizes) for i in range(n)]
    split = data.split_by_track(tracks, val=0.15, test=0.15, seed=seed)
    names = {k: {str(p) for p, _ in v} for k, v in split.items()}
    assert not names["train"] & names["val"] and not names["train"] & names["test"] \
        and not names["val"] & names["test"]
    assert sorted(names["train"] | names["val"] | names["test"]) == sorted(str(p) for p, _ in tracks)
    for k, n in enumerate(sizes):
        counts = {s: sum(1 for _, c in split[s] if c == f"c{k}") for s in split}
        assert counts["train"] >= 1
        if n >= 3:
            assert counts["val"] >= 1 and counts["test"] >= 1
            assert abs(counts["test"] - max(1, round(0.15 * n))) <= 1
    assert split == data.split_by_track(tracks, seed=seed)  # deterministic


def test_split_keeps_versions_of_a_piece_together():
    assert data.track_group("/c/electronic/aftermath_soundtrack__menu_enhanced.opus") == "menu"
    assert data.track_group("/c/electronic/menu.opus") == "menu"
    assert data.track_group("/c/orchestral/frantic-old.ogg") == "frantic"
    assert data.track_group("/c/electronic/legacy_soundtrack__track13.opus") == "track13"
    names = ["menu.opus", "a__menu_enhanced.opus", "x-old.ogg", "x.ogg"] + [f"t{i}.ogg" for i in range(8)]
    tracks = [(Path("/c/k") / n, "k") for n in names]
    for seed in range(20):
        split = data.split_by_track(tracks, seed=seed)
        where = {p.name: s for s, v in split.items() for p, _ in v}
        assert where["menu.opus"] == where["a__menu_enhanced.opus"]
        assert where["x.ogg"] == where["x-old.ogg"]
        assert all(split[s] for s in split)
    # group=None: every file on its own
    split = data.split_by_track(tracks, seed=0, group=None)
    assert sum(len(v) for v in split.values()) == len(tracks)


def test_clip_offsets():
    assert data.clip_offsets(10.0, 1.0, 10) == pytest.approx(list(np.arange(10) * 1.0))
    offs = data.clip_offsets(100.0, 4.0, 10)
    assert len(offs) == 10 and offs[0] == 0 and offs[-1] == pytest.approx(96.0)
    assert len(data.clip_offsets(9.0, 4.0, 10)) == 2    # short: fewer, non-overlapping clips
    assert data.clip_offsets(2.5, 4.0, 10) == [0.0]      # shorter than one clip: one padded clip


# ------------------------------------------------------------------------------------------------
# clip cache
# ------------------------------------------------------------------------------------------------
def test_clip_cache_is_reused(corpus, tmp_path, monkeypatch):
    tracks = data.scan_tracks(corpus)
    cache = data.ClipCache(_spec(), tmp_path, clip_seconds=1.0, clips_per_track=4, progress=False)
    arrays = cache.load(tracks)
    assert cache.computed == 12 and cache.reused == 0 and not cache.skipped
    for (p, _), a in zip(tracks, arrays):
        dur = sf.info(str(p)).duration
        assert a.shape == (min(4, int(dur)), 129, SR // 128 + 1) and a.dtype == np.float32
        assert isinstance(a, np.memmap)
    files = sorted(cache.directory.glob("*.npy"))
    assert len(files) == 12
    mtimes = {f: f.stat().st_mtime_ns for f in files}

    # the second load must not decode or transform anything
    def boom(*a, **k):
        raise AssertionError("STFT recomputed")

    monkeypatch.setattr(Spectrogram, "forward", boom)
    monkeypatch.setattr(data.ClipCache, "_compute", boom)
    cache2 = data.ClipCache(_spec(), tmp_path, clip_seconds=1.0, clips_per_track=4, progress=False)
    arrays2 = cache2.load(tracks)
    assert cache2.computed == 0 and cache2.reused == 12
    assert all(np.array_equal(a, b) for a, b in zip(arrays, arrays2))
    assert {f: f.stat().st_mtime_ns for f in files} == mtimes
    monkeypatch.undo()

    # other clip settings or another Spectrogram: another key, another folder
    other = data.ClipCache(_spec(), tmp_path, clip_seconds=1.0, clips_per_track=3, progress=False)
    assert other.directory != cache.directory
    other_spec = data.ClipCache(Spectrogram(sample_rate=SR, n_fft=256, hop_length=128, scale="linear"),
                                tmp_path, clip_seconds=1.0, clips_per_track=4, progress=False)
    assert other_spec.directory != cache.directory


def test_clip_values_match_spectrogram(corpus, tmp_path):
    """A cached clip is exactly the Spectrogram of that stretch of audio."""
    from cnnaural_ext.audio import load

    path = sorted((corpus / "tones").glob("*.wav"))[0]
    cache = data.ClipCache(_spec(), tmp_path, clip_seconds=1.0, clips_per_track=4, progress=False)
    arr = cache.get(path)
    off = data.clip_offsets(sf.info(str(path)).duration, 1.0, 4)[1]
    x, _ = load(path, SR, offset=off, duration=1.0)
    _, s = _spec()(x[:SR])
    np.testing.assert_allclose(arr[1], s.numpy(), rtol=1e-4, atol=1e-4)


def test_short_track_is_padded_and_tiny_track_skipped(tmp_path, capsys):
    sf.write(tmp_path / "short.wav", np.full(int(0.6 * SR), 0.1, np.float32), SR)
    sf.write(tmp_path / "tiny.wav", np.full(int(0.05 * SR), 0.1, np.float32), SR)
    cache = data.ClipCache(_spec(), tmp_path / "c", clip_seconds=1.0, clips_per_track=4, progress=False)
    a = cache.get(tmp_path / "short.wav")
    assert a.shape[0] == 1
    assert np.all(a[0, :, -5:] == 0)  # zero padding at the end
    assert cache.get(tmp_path / "tiny.wav") is None
    assert "tiny.wav" in capsys.readouterr().err


def test_corrupt_file_is_reported_and_skipped(tmp_path, capsys):
    root = _make_corpus(tmp_path / "corpus", n_tracks=3)
    (root / "noise" / "broken.wav").write_bytes(b"RIFF\x00\x00not really a wav file" * 10)
    tracks = data.scan_tracks(root)
    assert len(tracks) == 10
    cache = data.ClipCache(_spec(), tmp_path / "cache", clip_seconds=1.0, clips_per_track=2, progress=False)
    ds = data.ClipDataset(tracks, data.class_names(tracks), cache)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if "broken.wav" in ln]
    assert len(lines) == 1 and "skipping" in lines[0]
    assert len(ds.tracks) == 9 and len(cache.skipped) == 1
    x, y, t = ds[0]
    assert x.shape == (1, 129, SR // 128 + 1) and x.dtype == torch.float32
    assert ds.tracks[t][1] == ds.classes[y]
    assert len(ds) == sum(a.shape[0] for a in ds.arrays)


# ------------------------------------------------------------------------------------------------
# training
# ------------------------------------------------------------------------------------------------
def test_train_writes_a_checkpoint_that_reloads(trained, corpus):
    out, metrics, cache_dir = trained
    assert out.is_file() and out.stat().st_size < 2_000_000
    model, spec, meta = models.load_checkpoint(out)
    assert meta["classes"] == ["clicks", "noise", "tones"]
    assert spec.config() == _spec().config()
    assert meta["arch"] == "paper_cnn5" and meta["arch_kwargs"]["channels"] == 8
    assert "train(" in meta["recipe"]
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
    cache = data.ClipCache(spec, cache_dir, clip_seconds=1.0, clips_per_track=4, progress=False)
    test_tracks = [(corpus / p, Path(p).parts[0]) for p in s["test"]]
    ds = data.ClipDataset(test_tracks, meta["classes"], cache)
    assert cache.computed == 0  # everything came from the training run's cache
    probs, labels, _, loss = tr.predict(model, ds)
    assert loss == pytest.approx(metrics["loss"]["test"], rel=1e-5, abs=1e-6)
    assert float(np.mean(probs.argmax(1) == labels)) == pytest.approx(metrics["clip_accuracy"]["test"])
    # and loading twice gives identical logits
    model2, _, _ = models.load_checkpoint(out)
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    with torch.no_grad():
        assert torch.equal(model(x), model2(x))


def test_train_metrics(trained):
    _, metrics, _ = trained
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
    assert 1 <= metrics["best_epoch"] <= metrics["epochs_run"] <= TINY["epochs"]
    assert "confusion matrix" in tr.format_summary(metrics)


def test_train_is_deterministic(corpus, trained, tmp_path):
    _, metrics, cache_dir = trained
    kw = dict(TINY, epochs=2, patience=5)
    m1 = tr.train(corpus, tmp_path / "a.pt", cache_dir=cache_dir, baseline=False, **kw)
    m2 = tr.train(corpus, tmp_path / "b.pt", cache_dir=cache_dir, baseline=False, **kw)
    assert [h["train_loss"] for h in m1["history"]] == [h["train_loss"] for h in m2["history"]]
    a = torch.load(tmp_path / "a.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "b.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_train_clips_give_training_tracks_more_clips(corpus, trained, tmp_path):
    """--train-clips: more clips per training track for the CNN and the baseline; validation and
    test stay on --clips-per-track."""
    _, base_metrics, cache_dir = trained
    kw = dict(TINY, epochs=1)
    m = tr.train(corpus, tmp_path / "more.pt", cache_dir=cache_dir, train_clips=2 * TINY["clips_per_track"], **kw)
    assert m["n_clips"]["val"] == base_metrics["n_clips"]["val"]
    assert m["n_clips"]["test"] == base_metrics["n_clips"]["test"]
    assert m["n_clips"]["train"] > base_metrics["n_clips"]["train"]
    assert m["baseline"]["n_train_clips"] == m["n_clips"]["train"]
    assert base_metrics["baseline"]["n_train_clips"] == base_metrics["n_clips"]["train"]
    assert torch.load(tmp_path / "more.pt", weights_only=True)["clips"]["train_clips"] == 2 * TINY["clips_per_track"]
    with pytest.raises(CnnauralError, match="train_clips"):
        tr.train(corpus, tmp_path / "bad.pt", cache_dir=cache_dir, train_clips=0, **kw)


def test_linear_baseline_from_a_mel_cache(corpus, tmp_path):
    """The baseline also works without a reusable CNN cache (its own log-mel ClipCache)."""
    tracks = data.scan_tracks(corpus)
    split = data.split_by_track(tracks, seed=0)
    b = tr.linear_baseline(split["train"] + split["val"], split["test"], data.class_names(tracks),
                           sample_rate=SR, n_fft=256, hop_length=128, clip_seconds=1.0,
                           clips_per_track=4, cache_dir=tmp_path, progress=False)
    assert b["test_track_accuracy"] >= 2 / 3 and b["n_features"] == 80


def test_logmel_stats_derivation_matches_a_mel_spectrogram():
    x = torch.randn(2, 4000) * 0.3
    lin = _spec()
    mel = Spectrogram(sample_rate=SR, n_fft=256, hop_length=128, scale="log1p", n_mels=40)
    a = tr.logmel_stats(lin(x)[1].numpy(), lin)
    b = tr.logmel_stats(mel(x)[1].numpy(), mel)
    assert a.shape == (2, 80)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------------------------
# user errors
# ------------------------------------------------------------------------------------------------
def test_bad_data_dirs(tmp_path):
    with pytest.raises(CnnauralError, match="not found"):
        tr.train(tmp_path / "nope", tmp_path / "m.pt", **TINY)
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(CnnauralError, match="one sub-folder per class"):
        tr.train(tmp_path / "empty", tmp_path / "m.pt", **TINY)
    one = _make_corpus(tmp_path / "one", n_tracks=3, classes=("tones",))
    with pytest.raises(CnnauralError, match="at least 2 class"):
        tr.train(one, tmp_path / "m.pt", **TINY)
    few = _make_corpus(tmp_path / "few", n_tracks=2, classes=("tones", "noise"))
    _make_corpus(few, n_tracks=3, classes=("clicks",))
    with pytest.raises(CnnauralError, match=r"at least 3 tracks.*noise \(2\)"):
        tr.train(few, tmp_path / "m.pt", **TINY)
    with pytest.raises(CnnauralError, match="optimizer"):
        tr.train(few, tmp_path / "m.pt", **dict(TINY, optimizer="sgd"))
    with pytest.raises(CnnauralError, match="architecture"):
        tr.train(few, tmp_path / "m.pt", **dict(TINY, arch="resnet"))
    assert not (tmp_path / "m.pt").exists()


def test_cli_train_error_exit_code(tmp_path, capsys):
    (tmp_path / "d").mkdir()
    rc = tr.main([str(tmp_path / "d"), "--out", str(tmp_path / "m.pt"), "--no-progress"])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cnnaural dataset" in err[0]


def test_cli_train_parses_and_records_recipe(corpus, trained, tmp_path):
    _, _, cache_dir = trained
    p = tr.add_arguments(argparse.ArgumentParser())
    args = p.parse_args([str(corpus), "--out", str(tmp_path / "m.pt"), "--channels", "4", "--dense", "16",
                         "--sample-rate", str(SR), "--n-fft", "256", "--hop-length", "128",
                         "--clip-seconds", "1", "--clips-per-track", "2", "--epochs", "1",
                         "--threads", "1", "--cache-dir", str(cache_dir), "--no-progress", "--no-baseline"])
    assert tr.run(args) == 0
    _, _, meta = models.load_checkpoint(tmp_path / "m.pt")
    assert meta["recipe"].startswith("cnnaural train ") and "--channels 4" in meta["recipe"]
    assert meta["metrics"]["baseline"] is None


# ------------------------------------------------------------------------------------------------
# corpus from the Debian packages
# ------------------------------------------------------------------------------------------------
def test_prepare_corpus_missing_package(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "WESNOTH_MUSIC", tmp_path / "no-such-dir")
    with pytest.raises(CnnauralError, match="install_data.sh"):
        data.prepare_corpus(tmp_path / "out", classes=("orchestral",), progress=False)
    with pytest.raises(CnnauralError, match="unknown corpus class"):
        data.prepare_corpus(tmp_path / "out", classes=("jazz",), progress=False)
    args = data.add_arguments(argparse.ArgumentParser()).parse_args([str(tmp_path / "o"), "--classes", "jazz"])
    with pytest.raises(CnnauralError):
        data.run(args)


@pytest.mark.audio
def test_prepare_corpus_from_debian_packages(tmp_path, capsys):
    if not (data.WESNOTH_MUSIC.is_dir() and data.WARZONE_MUSIC.is_dir()):
        pytest.skip("wesnoth-1.16-music / warzone2100-music not installed (scripts/install_data.sh)")
    counts = data.prepare_corpus(tmp_path, classes=("orchestral", "electronic"), progress=False)
    assert counts["orchestral"] >= 30 and counts["electronic"] >= 20
    assert all(f.is_symlink() for f in (tmp_path / "orchestral").iterdir())
    capsys.readouterr()
    assert data.prepare_corpus(tmp_path, classes=("orchestral", "electronic"), progress=False) == counts
    assert "(0 new)" in capsys.readouterr().out  # idempotent
    tracks = data.scan_tracks(tmp_path)
    assert data.class_names(tracks) == ["electronic", "orchestral"]
    x, sr = __import__("cnnaural_ext.audio", fromlist=["load"]).load(tracks[0][0], 11025, duration=1.0)
    assert sr == 11025 and x.shape == (11025,) and float(x.abs().max()) > 0


# ------------------------------------------------------------------------------------------------
# rendered scores
# ------------------------------------------------------------------------------------------------
def _need_music():
    for m in ("music21", "pretty_midi", "tinysoundfont"):
        pytest.importorskip(m)


@pytest.mark.audio
def test_render_short_score_onsets_and_energy():
    _need_music()
    from music21 import note, stream, tempo

    s = stream.Stream()
    s.append(tempo.MetronomeMark(number=120))  # a quarter note lasts 0.5 s
    for el in (note.Note("C4", quarterLength=1), note.Rest(quarterLength=1), note.Note("A4", quarterLength=1),
               note.Rest(quarterLength=1), note.Note("E5", quarterLength=2)):
        s.append(el)
    sr = 16000
    x, onsets = data.render_score(s, sample_rate=sr)
    assert x.dtype == torch.float32 and x.dim() == 1
    np.testing.assert_allclose(onsets, [0.0, 1.0, 2.0], atol=1e-3)
    assert 3.0 <= x.shape[0] / sr <= 4.5
    a = x.numpy().astype(np.float64)

    def rms(t0, t1):
        return np.sqrt(np.mean(a[int(t0 * sr):int(t1 * sr)] ** 2))

    for t in onsets:
        assert rms(t, t + 0.1) > 0.05
        if t > 0:  # a rest before each later note: the onset is a clear rise in energy
            assert rms(t, t + 0.1) > 2 * rms(t - 0.1, t)
        # the note really starts at the onset: nothing before, energy right after
        first = np.argmax(np.abs(a[int((t - 0.02) * sr) if t else 0:]) > 0.02) / sr + max(t - 0.02, 0)
        assert abs(first - t) < 0.02
    # pitch: the strongest partial of the A4 note is at 440 Hz or a harmonic of it
    seg = a[int(1.05 * sr):int(1.45 * sr)]
    spec = np.abs(np.fft.rfft(seg * np.hanning(seg.size)))
    f = np.fft.rfftfreq(seg.size, 1 / sr)[np.argmax(spec)]
    assert min(abs(f / 440.0 - k) for k in (1, 2, 3)) < 0.03


@pytest.mark.audio
def test_render_bwv846_cached(tmp_path):
    _need_music()
    x, onsets = data.render_bwv846(22050, cache_dir=tmp_path)
    assert len(onsets) == 529 and np.all(np.diff(onsets) > 0)
    assert 110 < x.shape[0] / 22050 < 130
    assert (tmp_path / "bwv846_22050.wav").is_file() and (tmp_path / "bwv846_22050.onsets.json").is_file()
    x2, on2 = data.render_bwv846(22050, cache_dir=tmp_path)
    np.testing.assert_array_equal(on2, onsets)
    assert torch.equal(x, x2)
