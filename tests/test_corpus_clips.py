"""`corpus.clips`: clip offsets, the on-disk clip cache and the clip dataset."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from cnnaural_ext.corpus import ClipCache, ClipDataset, class_names, clip_offsets, default_cache_dir, scan_tracks
from cnnaural_ext.corpus import clips as clips_module
from cnnaural_ext.io.audio import load
from cnnaural_ext.spectrogram import Spectrogram


def test_clip_offsets():
    assert clip_offsets(10.0, 1.0, 10) == pytest.approx(list(np.arange(10) * 1.0))
    offs = clip_offsets(100.0, 4.0, 10)
    assert len(offs) == 10 and offs[0] == 0 and offs[-1] == pytest.approx(96.0)
    assert len(clip_offsets(9.0, 4.0, 10)) == 2    # short: fewer, non-overlapping clips
    assert clip_offsets(2.5, 4.0, 10) == [0.0]      # shorter than one clip: one padded clip


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("CNNAURAL_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("CNNAURAL_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "cnnaural"


def test_clip_cache_is_reused(synthetic_corpus, tiny, tmp_path, monkeypatch):
    tracks = scan_tracks(synthetic_corpus)
    cache = ClipCache(tiny.spectrogram(), tmp_path, clip_seconds=1.0, clips_per_track=4, progress=False)
    arrays = cache.load(tracks)
    assert cache.computed == 12 and cache.reused == 0 and not cache.skipped
    for (p, _), a in zip(tracks, arrays):
        dur = sf.info(str(p)).duration
        assert a.shape == (min(4, int(dur)), 129, tiny.sr // 128 + 1) and a.dtype == np.float32
        assert isinstance(a, np.memmap)
    files = sorted(cache.directory.glob("*.npy"))
    assert len(files) == 12
    mtimes = {f: f.stat().st_mtime_ns for f in files}

    # the second load must not decode or transform anything
    def boom(*a, **k):
        raise AssertionError("STFT recomputed")

    monkeypatch.setattr(Spectrogram, "forward", boom)
    monkeypatch.setattr(clips_module.ClipCache, "_compute", boom)
    cache2 = ClipCache(tiny.spectrogram(), tmp_path, clip_seconds=1.0, clips_per_track=4, progress=False)
    arrays2 = cache2.load(tracks)
    assert cache2.computed == 0 and cache2.reused == 12
    assert all(np.array_equal(a, b) for a, b in zip(arrays, arrays2))
    assert {f: f.stat().st_mtime_ns for f in files} == mtimes
    monkeypatch.undo()

    # other clip settings or another Spectrogram: another key, another folder
    other = ClipCache(tiny.spectrogram(), tmp_path, clip_seconds=1.0, clips_per_track=3, progress=False)
    assert other.directory != cache.directory
    other_spec = ClipCache(tiny.spectrogram(scale="linear"), tmp_path, clip_seconds=1.0, clips_per_track=4,
                           progress=False)
    assert other_spec.directory != cache.directory


def test_clip_values_match_spectrogram(synthetic_corpus, tiny, tmp_path):
    """A cached clip is exactly the Spectrogram of that stretch of audio."""
    path = sorted((synthetic_corpus / "tones").glob("*.wav"))[0]
    cache = ClipCache(tiny.spectrogram(), tmp_path, clip_seconds=1.0, clips_per_track=4, progress=False)
    arr = cache.get(path)
    off = clip_offsets(sf.info(str(path)).duration, 1.0, 4)[1]
    x, _ = load(path, tiny.sr, offset=off, duration=1.0)
    _, s = tiny.spectrogram()(x[:tiny.sr])
    np.testing.assert_allclose(arr[1], s.numpy(), rtol=1e-4, atol=1e-4)


def test_short_track_is_padded_and_tiny_track_skipped(tiny, tmp_path, capsys):
    sf.write(tmp_path / "short.wav", np.full(int(0.6 * tiny.sr), 0.1, np.float32), tiny.sr)
    sf.write(tmp_path / "tiny.wav", np.full(int(0.05 * tiny.sr), 0.1, np.float32), tiny.sr)
    cache = ClipCache(tiny.spectrogram(), tmp_path / "c", clip_seconds=1.0, clips_per_track=4, progress=False)
    a = cache.get(tmp_path / "short.wav")
    assert a.shape[0] == 1
    assert np.all(a[0, :, -5:] == 0)  # zero padding at the end
    assert cache.get(tmp_path / "tiny.wav") is None
    assert "tiny.wav" in capsys.readouterr().err


def test_corrupt_file_is_reported_and_skipped(tiny, tmp_path, capsys):
    root = tiny.make_corpus(tmp_path / "corpus", n_tracks=3)
    (root / "noise" / "broken.wav").write_bytes(b"RIFF\x00\x00not really a wav file" * 10)
    tracks = scan_tracks(root)
    assert len(tracks) == 10
    cache = ClipCache(tiny.spectrogram(), tmp_path / "cache", clip_seconds=1.0, clips_per_track=2, progress=False)
    ds = ClipDataset(tracks, class_names(tracks), cache)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if "broken.wav" in ln]
    assert len(lines) == 1 and "skipping" in lines[0]
    assert len(ds.tracks) == 9 and len(cache.skipped) == 1
    x, y, t = ds[0]
    assert x.shape == (1, 129, tiny.sr // 128 + 1) and x.dtype == torch.float32
    assert ds.tracks[t][1] == ds.classes[y]
    assert len(ds) == sum(a.shape[0] for a in ds.arrays)
