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


def test_every_clip_carries_its_inversion_measures(checkpoint, tmp_path):
    """Auraliser results, manifest rows and gallery cards carry the spectral convergence of each
    clip, equal to recomputing it from the unnormalised clip and its map."""
    from cnnaural_ext import Auraliser
    from cnnaural_ext.quality import INCONSISTENT
    from cnnaural_ext.report import write_report

    aur = Auraliser.from_checkpoint(checkpoint)
    wave = tone(2.0)
    for mode in ("mask", "magnitude"):
        res = aur.auralise(wave, 1, "top:2", mode=mode, normalize=False)
        spec = aur.spectrogram
        want = intended_magnitude(res.stft, spec.to_linear(res.maps.to(res.stft.device), kind=mode), mode)
        sc = spectral_convergence(res.audio, want, spec)
        assert [r["spectral_convergence"] for r in res.inversion] == pytest.approx(sc.tolist(), rel=1e-4, abs=1e-6)
        assert all(r["inconsistent"] == (r["spectral_convergence"] > INCONSISTENT) for r in res.inversion)
    rows = aur.auralise_file(wave, tmp_path / "t", layers=1, features="top:2", duration=None, figures=False)
    assert all(0 <= r["spectral_convergence"] < float("inf") and "clipped" in r for r in rows)
    import soundfile as sf

    sf.write(tmp_path / "song.wav", wave.numpy(), SR)
    write_report(aur, [tmp_path / "song.wav"], tmp_path / "gallery", layers=1, features="top:2", figures=False)
    assert "inversion: spectral convergence" in (tmp_path / "gallery" / "index.html").read_text()
