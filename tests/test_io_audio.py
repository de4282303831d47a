"""Audio in and out: load (offset, duration, mono mix-down, resampling), save as WAV or FLAC, peak normalisation."""
import math

import numpy as np
import pytest
import soundfile as sf
import torch

from cnnaural_ext.errors import CnnauralError
from cnnaural_ext.io import audio


SR = 11025


def sine(freq, sr, seconds, channels=None, amp=0.5):
    t = np.arange(int(round(sr * seconds))) / sr
    x = amp * np.sin(2 * np.pi * freq * t)
    if channels:
        x = np.stack([x * (c + 1) / channels for c in range(channels)])
    return x.astype(np.float32)


def peak_hz(x, sr):
    x = np.asarray(x, dtype=np.float64)
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return np.argmax(spec) * sr / x.size


def test_save_audio_load_round_trip_float(tmp_path):
    x = torch.rand(2, 3000) * 2 - 1
    x[0, 0] = 1.5  # FLOAT keeps values beyond full scale
    p = audio.save_audio(tmp_path / "sub" / "a.wav", x, SR)
    assert p.is_file() and sf.info(str(p)).subtype == "FLOAT"
    y, sr = audio.load(p, mono=False)
    assert sr == SR and y.dtype == torch.float32 and y.shape == x.shape
    assert torch.equal(y, x)
    y1, _ = audio.load(p)  # mono: mean of the channels
    torch.testing.assert_close(y1, x.mean(0))
    m = audio.save_audio(tmp_path / "m.wav", x[1], SR)
    assert torch.equal(audio.load(m)[0], x[1])


def test_save_audio_load_round_trip_pcm16(tmp_path):
    x = torch.rand(5000) * 2 - 1
    x[:4] = torch.tensor([1.0, -1.0, 1.7, -3.0])  # beyond full scale: clipped, not wrapped
    p = audio.save_audio(tmp_path / "a.wav", x, SR, subtype="PCM_16")
    assert sf.info(str(p)).subtype == "PCM_16"
    y, _ = audio.load(p)
    assert (y - x.clamp(-1, 1)).abs().max() <= 1 / 32768 + 1e-7


def test_save_audio_normalize(tmp_path):
    x = torch.tensor([[0.1, -0.2, 0.05], [0.0, 0.0, 0.0]])
    y, _ = audio.load(audio.save_audio(tmp_path / "n.wav", x, SR, normalize=True), mono=False)
    torch.testing.assert_close(y[0], x[0] * 0.99 / 0.2)
    assert not y[1].any()  # a silent row stays silent


def test_load_offset_duration(tmp_path):
    x = torch.rand(SR * 2) * 2 - 1
    p = audio.save_audio(tmp_path / "a.wav", x, SR)
    y, _ = audio.load(p, offset=0.5, duration=0.25)
    assert torch.equal(y, x[round(0.5 * SR):round(0.5 * SR) + round(0.25 * SR)])
    y, _ = audio.load(p, offset=1.5)
    assert torch.equal(y, x[round(1.5 * SR):])
    y, _ = audio.load(p, duration=10.0)  # past the end: what there is
    assert torch.equal(y, x)


def test_load_mono_mixdown(tmp_path):
    st = sine(440, SR, 0.5, channels=2)
    p = tmp_path / "st.wav"
    sf.write(str(p), st.T, SR, subtype="FLOAT")
    y, _ = audio.load(p)
    assert y.shape == (st.shape[1],)
    np.testing.assert_allclose(y.numpy(), st.mean(0), rtol=0, atol=1e-7)
    y2, _ = audio.load(p, mono=False)
    assert y2.shape == st.shape


@pytest.mark.parametrize("orig_sr", [44100, 48000, 22050])
def test_resample_keeps_frequency_and_length(tmp_path, orig_sr):
    x = sine(440, orig_sr, 1.3)
    y = audio.resample(x, orig_sr, SR)
    assert y.shape == (math.ceil(x.size * SR / orig_sr),)
    assert abs(peak_hz(y, SR) - 440) <= SR / y.size
    assert np.abs(y).max() == pytest.approx(0.5, rel=0.02)
    # tensors in, tensors out; load resamples on the way in
    yt = audio.resample(torch.from_numpy(x), orig_sr, SR)
    assert isinstance(yt, torch.Tensor) and torch.equal(yt, torch.from_numpy(y))
    p = tmp_path / "a.wav"
    sf.write(str(p), x, orig_sr, subtype="FLOAT")
    z, sr = audio.load(p, sample_rate=SR)
    assert sr == SR and torch.equal(z, torch.from_numpy(y))
    assert audio.resample(x, SR, SR) is x
    with pytest.raises(CnnauralError, match="positive"):
        audio.resample(x, 0, SR)


def test_load_ogg(tmp_path):
    x = sine(440, 22050, 1.0, channels=2)
    p = tmp_path / "a.ogg"
    sf.write(str(p), x.T, 22050, format="OGG", subtype="VORBIS")
    y, sr = audio.load(p, sample_rate=SR)
    assert sr == SR and y.dim() == 1
    assert abs(y.numel() - SR) <= 2
    assert abs(peak_hz(y.numpy(), SR) - 440) <= 2
    np.testing.assert_allclose(np.abs(y.numpy()).max(), np.abs(x.mean(0)).max(), rtol=0.1)


def test_load_errors(tmp_path):
    with pytest.raises(CnnauralError, match="not found"):
        audio.load(tmp_path / "missing.wav")
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio\n" * 10)
    with pytest.raises(CnnauralError, match="cannot read audio"):
        audio.load(text)
    p = audio.save_audio(tmp_path / "a.wav", torch.zeros(SR), SR)
    with pytest.raises(CnnauralError, match="past the end"):
        audio.load(p, offset=1.5)
    with pytest.raises(CnnauralError, match="past the end"):
        audio.load(p, offset=1.0)
    with pytest.raises(CnnauralError, match="offset"):
        audio.load(p, offset=-1.0)
    with pytest.raises(CnnauralError, match="duration"):
        audio.load(p, duration=0.0)
    with pytest.raises(CnnauralError, match="not found"):
        audio.load(tmp_path)  # a directory


def test_peak_normalize():
    a = torch.tensor([[0.5, -2.0], [0.0, 0.0]])
    out = audio.peak_normalize(a, peak=1.0)
    torch.testing.assert_close(out, torch.tensor([[0.25, -1.0], [0.0, 0.0]]))


def test_save_audio_flac_round_trip_and_format_errors(tmp_path):
    x = sine(440, SR, 0.5)
    p = audio.save_audio(tmp_path / "a.flac", x, SR, subtype="PCM_16")
    assert sf.info(str(p)).format == "FLAC"
    y, sr = audio.load(p)
    assert sr == SR and y.shape == x.shape and float(np.abs(y.numpy() - x).max()) < 1e-3
    with pytest.raises(CnnauralError, match="FLAC files take"):
        audio.save_audio(tmp_path / "b.flac", x, SR, subtype="FLOAT")
    with pytest.raises(CnnauralError, match=r"\.wav or \.flac"):
        audio.save_audio(tmp_path / "c.mp3", x, SR)
    assert sorted(q.name for q in tmp_path.iterdir()) == ["a.flac"]
