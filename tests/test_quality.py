"""quality: spectral convergence (0 for a consistent STFT, its definition otherwise) and the
clipped share."""
import pytest
import torch

from cnnaural_ext import Spectrogram
from cnnaural_ext.errors import CnnauralError
from cnnaural_ext.quality import clipped_share, intended_magnitude, spectral_convergence
from helpers import SR, tone


def test_a_consistent_stft_scores_zero():
    spec = Spectrogram(sample_rate=SR, n_fft=256, hop_length=64)
    x = torch.stack([tone(1.0), 0.1 * torch.randn(SR, generator=torch.Generator().manual_seed(0))])
    X = spec.stft(x)
    sc = spectral_convergence(x, X.abs(), spec)
    assert sc.tolist() == pytest.approx([0.0, 0.0], abs=1e-5)
    # a gain of 2 everywhere is consistent too (the STFT is linear)
    assert float(spectral_convergence(2 * x[0], intended_magnitude(X[0], torch.full(X[0].shape, 2.0), "mask"),
                                      spec)) == pytest.approx(0.0, abs=1e-5)


def test_spectral_convergence_is_its_definition():
    spec = Spectrogram(sample_rate=SR, n_fft=256, hop_length=64)
    x = tone(1.0)
    X = spec.stft(x)
    gain = torch.zeros(X.shape)
    gain[20:40, ::2] = 1.0  # every other frame: no signal has this STFT
    want = intended_magnitude(X, gain, "mask")
    audio = torch.istft(X * gain, 256, 64, window=spec.window_like(x), length=x.shape[0])
    got = spec.stft(audio).abs()
    expected = float(torch.linalg.vector_norm(got - want) / torch.linalg.vector_norm(want))
    assert float(spectral_convergence(audio, want, spec)) == pytest.approx(expected, rel=1e-5)
    assert expected > 0.1
    assert intended_magnitude(X, gain, "magnitude").equal(gain)
    silent = torch.zeros(1, x.shape[0])
    assert spectral_convergence(silent, torch.zeros(1, *X.shape), spec).tolist() == [0.0]
    assert spectral_convergence(x[None], torch.zeros(1, *X.shape), spec).tolist() == [float("inf")]
    with pytest.raises(CnnauralError, match="mode"):
        intended_magnitude(X, gain, "phase")
    with pytest.raises(CnnauralError, match="intended magnitude"):
        spectral_convergence(x[None], want[None, :, :10], spec)


def test_clipped_share():
    a = torch.tensor([[0.5, 1.5, -2.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    assert clipped_share(a).tolist() == [0.5, 0.0]
