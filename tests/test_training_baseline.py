"""`training.baseline`: log-mel statistics and the logistic-regression baseline, and the log1p
compression of the network input that the baseline undoes."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnaural_ext.corpus import class_names, scan_tracks, split_by_track
from cnnaural_ext.errors import CnnauralError
from cnnaural_ext.io.checkpoint import load_checkpoint
from cnnaural_ext.spectrogram import Spectrogram
from cnnaural_ext.training import linear_baseline, logmel_stats, train


def test_linear_baseline_from_a_mel_cache(synthetic_corpus, tiny, tmp_path):
    """The baseline also works without a reusable CNN cache (its own log-mel ClipCache)."""
    tracks = scan_tracks(synthetic_corpus)
    split = split_by_track(tracks, random_seed=0)
    b = linear_baseline(split["train"] + split["val"], split["test"], class_names(tracks),
                        sample_rate=tiny.sr, n_fft=256, hop_length=128, clip_seconds=1.0,
                        clips_per_track=4, cache_dir=tmp_path, progress=False)
    assert b["test_track_accuracy"] >= 2 / 3 and b["n_features"] == 80


def test_logmel_stats_derivation_matches_a_mel_spectrogram(tiny):
    x = torch.randn(2, 4000) * 0.3
    lin = tiny.spectrogram()
    mel = tiny.spectrogram(n_mels=40)
    a = logmel_stats(lin(x)[1].numpy(), lin)
    b = logmel_stats(mel(x)[1].numpy(), mel)
    assert a.shape == (2, 80)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_logmel_stats_rejects_other_inputs(tiny):
    db = tiny.spectrogram(scale="db")
    with pytest.raises(CnnauralError, match="logmel_stats needs"):
        logmel_stats(np.zeros((1, db.n_bins, 5), np.float32), db)


# ------------------------------------------------------------------------------------------------
# log1p compression
# ------------------------------------------------------------------------------------------------
def test_log1p_compression_scale_and_inverse(tiny):
    spec = Spectrogram(sample_rate=tiny.sr, n_fft=256, hop_length=128, scale="log1p", compression=1000.0)
    X, S = spec(torch.randn(4000) * 0.1)
    torch.testing.assert_close(S, torch.log1p(1000.0 * X.abs()))
    mag = torch.rand(30, 7, dtype=torch.float64) * 5
    torch.testing.assert_close(spec.inverse_scale(spec.scale_magnitude(mag)), mag, rtol=1e-12, atol=1e-12)
    assert Spectrogram(**spec.config()).compression == 1000.0
    assert Spectrogram().compression == 1.0  # the default (and checkpoints without one) keep log(1 + |X|)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(CnnauralError, match="compression must be a finite number > 0"):
            Spectrogram(scale="log1p", compression=bad)
    with pytest.raises(CnnauralError, match="compression only applies to scale='log1p'"):
        Spectrogram(scale="db", compression=10.0)


def test_train_with_compression_records_it_and_baseline_sees_the_same_magnitudes(synthetic_corpus, tiny, tmp_path):
    """The compression reaches the checkpoint's Spectrogram; the log-mel baseline undoes it exactly."""
    kw = dict(tiny.train, epochs=1, patience=2)
    m1 = train(synthetic_corpus, tmp_path / "g1.pt", cache_dir=tmp_path / "cache", **kw)
    m2 = train(synthetic_corpus, tmp_path / "g.pt", cache_dir=tmp_path / "cache", compression=100.0, **kw)
    _, spec, _ = load_checkpoint(tmp_path / "g.pt")
    assert spec.scale == "log1p" and spec.compression == 100.0
    b1, b2 = m1["baseline"]["test_track_predictions"], m2["baseline"]["test_track_predictions"]
    assert [r[:3] for r in b2] == [r[:3] for r in b1]
    np.testing.assert_allclose([r[3] for r in b2], [r[3] for r in b1], rtol=1e-4)
