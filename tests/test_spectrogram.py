"""The STFT front end (cnnaural_ext.spectrogram): STFT, network-input scales, mel filterbank, maps back."""
import math

import numpy as np
import pytest
import torch

from cnnaural_ext.errors import CnnauralError
from cnnaural_ext.spectrogram import SCALES, Spectrogram, mel_filterbank


# =============================================================================================
# Spectrogram
# =============================================================================================
@pytest.mark.parametrize("n_fft,hop,win_length,center", [(512, 256, None, True), (512, 128, 400, True),
                                                         (64, 16, None, False), (17, 5, 13, True)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_stft_equals_torch_stft(n_fft, hop, win_length, center, dtype):
    spec = Spectrogram(sample_rate=11025, n_fft=n_fft, hop_length=hop, win_length=win_length, center=center)
    x = torch.randn(2, 3, 3000, dtype=dtype)
    X = spec.stft(x)
    wl = win_length or n_fft
    want = torch.stft(x.reshape(6, -1), n_fft, hop, wl, torch.hann_window(wl, periodic=True, dtype=dtype),
                      center=center, pad_mode="reflect", return_complex=True)
    assert X.shape == (2, 3, *want.shape[-2:])
    assert X.dtype == (torch.complex64 if dtype == torch.float32 else torch.complex128)
    torch.testing.assert_close(X, want.reshape(2, 3, *want.shape[-2:]), rtol=1e-5, atol=1e-5)
    # the reflect padding of center=True, written out: frame 0 is centred on sample 0
    if center:
        pad = torch.nn.functional.pad(x[0, 0][None, None], (n_fft // 2, n_fft // 2), mode="reflect")[0, 0]
        w = torch.zeros(n_fft, dtype=dtype)
        w[(n_fft - wl) // 2:(n_fft - wl) // 2 + wl] = torch.hann_window(wl, periodic=True, dtype=dtype)
        frame0 = torch.fft.rfft(pad[:n_fft] * w)
        torch.testing.assert_close(X[0, 0, :, 0], frame0, rtol=1e-5, atol=1e-5)


def test_stft_float64_is_float64_accurate():
    spec = Spectrogram(n_fft=512, hop_length=128)
    x = torch.randn(3000, dtype=torch.float64)
    want = torch.stft(x, 512, 128, window=torch.hann_window(512, periodic=True, dtype=torch.float64),
                      center=True, pad_mode="reflect", return_complex=True)
    torch.testing.assert_close(spec.stft(x), want)


def test_stft_of_integer_and_1d_waveforms():
    spec = Spectrogram(n_fft=64, hop_length=16)
    x = torch.randint(-100, 100, (500,))
    X = spec.stft(x)
    assert X.shape == (33, spec.n_frames(500)) and X.dtype == torch.complex64
    torch.testing.assert_close(X, spec.stft(x.float()))


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("n_mels", [None, 24])
def test_to_input_each_scale(scale, n_mels):
    spec = Spectrogram(sample_rate=8000, n_fft=128, hop_length=32, scale=scale, n_mels=n_mels, amin=1e-4, ref=2.0)
    X, S = spec(torch.randn(2000))
    mag = X.abs()
    if n_mels:
        mag = mel_filterbank(8000, 128, n_mels) @ mag
    want = {"linear": mag, "log1p": torch.log1p(mag),
            "db": 20 * torch.log10(torch.clamp(mag, min=1e-4) / 2.0)}[scale]
    assert S.shape == (spec.n_bins, X.shape[-1])
    torch.testing.assert_close(S, want)


@pytest.mark.parametrize("scale", SCALES)
def test_inverse_scale_round_trip(scale):
    spec = Spectrogram(scale=scale, amin=1e-5, ref=0.5)
    mag = torch.rand(50, 20, dtype=torch.float64) * 10 + 1e-4  # above the dB floor
    torch.testing.assert_close(spec.inverse_scale(spec.scale_magnitude(mag)), mag, rtol=1e-12, atol=1e-12)
    s = torch.randn(50, 20, dtype=torch.float64) * (20 if scale == "db" else 1)
    if scale != "db":
        s = s.abs()  # linear and log1p values of magnitudes are non-negative
    torch.testing.assert_close(spec.scale_magnitude(spec.inverse_scale(s)), s, rtol=1e-12, atol=1e-12)
    if scale == "db":  # below the floor everything maps to the floor
        floor = spec.scale_magnitude(torch.tensor([1e-9, 1e-7, 1e-5]))
        torch.testing.assert_close(floor, torch.full((3,), 20 * math.log10(1e-5 / 0.5)))


# -- mel filterbank ----------------------------------------------------------------------------
def np_hz_to_mel(f):
    """Slaney's Auditory Toolbox mel scale (librosa htk=False), from its formula."""
    f = np.asarray(f, dtype=np.float64)
    f_sp = 200.0 / 3  # 66.67 Hz per mel below 1 kHz
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp  # 15
    logstep = np.log(6.4) / 27.0  # 27 mels per factor 6.4 above 1 kHz
    with np.errstate(divide="ignore"):
        log_part = min_log_mel + np.log(np.maximum(f, 1e-300) / min_log_hz) / logstep
    return np.where(f >= min_log_hz, log_part, f / f_sp)


def np_mel_to_hz(m):
    m = np.asarray(m, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def np_slaney_mel(sr, n_fft, n_mels, fmin=0.0, fmax=None):
    """librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax, htk=False, norm="slaney"), re-derived:
    triangles between n_mels + 2 points equally spaced in mel, each scaled by 2 / (its width in Hz)
    so every filter has the same area."""
    fmax = sr / 2 if fmax is None else fmax
    fft_freqs = np.arange(n_fft // 2 + 1) * sr / n_fft  # the STFT's bin frequencies
    hz = np_mel_to_hz(np.linspace(np_hz_to_mel(fmin), np_hz_to_mel(fmax), n_mels + 2))
    w = np.zeros((n_mels, fft_freqs.size))
    for i in range(n_mels):
        lo, c, hi = hz[i], hz[i + 1], hz[i + 2]
        rising = (fft_freqs - lo) / (c - lo)
        falling = (hi - fft_freqs) / (hi - c)
        w[i] = np.maximum(0.0, np.minimum(rising, falling)) * 2.0 / (hi - lo)
    return w, hz


def test_mel_scale_formula_anchors():
    # 1 kHz is mel 15; the scale is linear below it and 27 mels per factor 6.4 above it
    assert np_hz_to_mel(1000.0) == pytest.approx(15.0)
    assert np_hz_to_mel(6400.0) == pytest.approx(42.0)
    from cnnaural_ext.spectrogram import hz_to_mel, mel_to_hz
    f = np.array([0.0, 50.0, 999.0, 1000.0, 1001.0, 4000.0, 11025.0])
    np.testing.assert_allclose(hz_to_mel(torch.from_numpy(f)).numpy(), np_hz_to_mel(f), rtol=1e-12)
    np.testing.assert_allclose(mel_to_hz(hz_to_mel(torch.from_numpy(f))).numpy(), f, rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("sr,n_fft,n_mels,fmin,fmax", [
    (11025, 512, 96, 0.0, None), (22050, 2048, 128, 0.0, None), (16000, 400, 40, 50.0, 7000.0),
    (8000, 256, 20, 300.0, 3400.0)])
def test_mel_filterbank_matches_slaney_formula(sr, n_fft, n_mels, fmin, fmax):
    fb = mel_filterbank(sr, n_fft, n_mels, fmin, fmax)
    want, _ = np_slaney_mel(sr, n_fft, n_mels, fmin, fmax)
    assert fb.shape == (n_mels, n_fft // 2 + 1) and fb.dtype == torch.float32
    np.testing.assert_allclose(fb.numpy(), want, rtol=1e-5, atol=1e-7 * want.max())


def test_mel_filterbank_odd_n_fft_bins():
    fb = mel_filterbank(8000, 255, 20)
    want, _ = np_slaney_mel(8000, 255, 20)
    np.testing.assert_allclose(fb.numpy(), want, rtol=1e-5, atol=1e-7 * want.max())


@pytest.mark.parametrize("sr,n_fft,n_mels", [(11025, 512, 64), (22050, 2048, 128), (8000, 256, 20)])
def test_mel_filterbank_properties(sr, n_fft, n_mels):
    fb = mel_filterbank(sr, n_fft, n_mels).double()
    _, hz = np_slaney_mel(sr, n_fft, n_mels)
    freqs = torch.arange(n_fft // 2 + 1, dtype=torch.float64) * sr / n_fft
    assert (fb >= 0).all()
    assert (fb.sum(1) > 0).all(), "every filter must see at least one bin"
    # each filter lives strictly between its neighbours' centres
    for i in range(n_mels):
        outside = (freqs <= hz[i]) | (freqs >= hz[i + 2])
        assert not fb[i, outside].any()
    # only neighbouring filters overlap
    overlap = (fb > 0).double() @ (fb > 0).double().T
    assert not torch.triu(overlap, diagonal=2).any()
    # without the Slaney normalisation the triangles are a partition of unity between the first
    # and the last centre
    tri = fb * torch.from_numpy((hz[2:] - hz[:-2]) / 2.0)[:, None]
    inner = (freqs >= hz[1]) & (freqs <= hz[n_mels])
    torch.testing.assert_close(tri.sum(0)[inner], torch.ones(int(inner.sum()), dtype=torch.float64),
                               rtol=0, atol=1e-5)


def test_mel_filterbank_range_errors():
    with pytest.raises(CnnauralError, match="f_min"):
        mel_filterbank(8000, 256, 20, f_min=5000.0, f_max=1000.0)
    with pytest.raises(CnnauralError, match="f_min"):
        mel_filterbank(8000, 256, 20, f_max=6000.0)
    with pytest.raises(CnnauralError, match="f_min"):
        mel_filterbank(8000, 256, 20, f_min=-1.0)


# -- maps back to the linear grid --------------------------------------------------------------
def mel_spec(n_mels=32, **kw):
    return Spectrogram(sample_rate=11025, n_fft=256, hop_length=128, n_mels=n_mels, **kw)


def test_mel_to_linear_transpose_is_the_adjoint():
    spec = mel_spec()
    fb = spec.mel_fb.double()
    x = torch.randn(2, spec.n_freqs, 7, dtype=torch.float64)
    y = torch.randn(2, spec.n_mels, 7, dtype=torch.float64)
    lhs = (fb @ x * y).sum()
    rhs = (x * spec.mel_to_linear(y, "transpose")).sum()
    assert float(lhs) == pytest.approx(float(rhs), rel=1e-12)
    assert spec.mel_to_linear(y, "transpose").shape == (2, spec.n_freqs, 7)


def test_mel_to_linear_pinv_is_least_squares():
    spec = mel_spec()
    fb = spec.mel_fb.double()
    x = torch.randn(spec.n_freqs, 9, dtype=torch.float64)
    m = fb @ x
    x_hat = spec.mel_to_linear(m, "pinv")
    torch.testing.assert_close(fb @ x_hat, m, rtol=1e-8, atol=1e-8)  # A A+ A = A
    # least squares: the residual of any m is orthogonal to the range of A
    m_any = torch.randn(spec.n_mels, 9, dtype=torch.float64)
    r = fb @ spec.mel_to_linear(m_any, "pinv") - m_any
    torch.testing.assert_close(fb.T @ r, torch.zeros(spec.n_freqs, 9, dtype=torch.float64), rtol=0, atol=1e-8)


def test_mel_to_linear_nnls():
    spec = mel_spec(n_mels=16)
    fb = spec.mel_fb.double()
    x = torch.rand(2, spec.n_freqs, 3, dtype=torch.float64)  # a non-negative spectrum
    m = fb @ x
    nn = spec.mel_to_linear(m, "nnls")
    pv = spec.mel_to_linear(m, "pinv")
    assert nn.shape == pv.shape == x.shape and nn.dtype == torch.float64
    assert (nn >= 0).all()
    # both reproduce the mel spectrum (x itself is a non-negative solution): same residual
    torch.testing.assert_close(fb @ nn, m, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(fb @ nn, fb @ pv, rtol=1e-6, atol=1e-8)


def test_mel_to_linear_without_mel_and_bad_method():
    spec = Spectrogram(n_fft=64, hop_length=16)
    d = torch.randn(33, 5)
    assert spec.mel_to_linear(d) is d
    with pytest.raises(CnnauralError, match="transpose, pinv or nnls"):
        mel_spec().mel_to_linear(torch.randn(32, 5), "inverse")


@pytest.mark.parametrize("scale", SCALES)
def test_to_linear_magnitude_inverts_to_input(scale):
    spec = Spectrogram(sample_rate=11025, n_fft=256, hop_length=64, scale=scale, amin=1e-8)
    X, S = spec(torch.randn(3000, dtype=torch.float64))
    mag = spec.to_linear(S, "magnitude")
    torch.testing.assert_close(mag, X.abs().clamp_min(1e-8) if scale == "db" else X.abs(), rtol=1e-10, atol=1e-10)
    # "mask" keeps the values as they are (a signed gain) without mel
    torch.testing.assert_close(spec.to_linear(S, "mask"), S)


def test_to_linear_magnitude_rectifies_linear_and_log1p():
    spec = Spectrogram(n_fft=64, hop_length=16, scale="log1p")
    d = torch.randn(33, 10, dtype=torch.float64)
    torch.testing.assert_close(spec.to_linear(d, "magnitude"), torch.expm1(torch.relu(d)))
    spec_db = Spectrogram(n_fft=64, hop_length=16, scale="db", ref=1.0)
    torch.testing.assert_close(spec_db.to_linear(d, "magnitude"), torch.pow(10.0, d / 20))  # signed dB: no ReLU


def test_to_linear_with_mel():
    spec = mel_spec(scale="linear")
    d = torch.randn(4, 32, 6, dtype=torch.float64)
    fb = spec.mel_fb.double()
    torch.testing.assert_close(spec.to_linear(d, "mask"), fb.T @ d)
    torch.testing.assert_close(spec.to_linear(d, "mask", mel_inverse="pinv"), torch.linalg.pinv(fb) @ d)
    mag = spec.to_linear(d, "magnitude")
    assert (mag >= 0).all() and mag.shape == (4, spec.n_freqs, 6)
    torch.testing.assert_close(mag, (torch.linalg.pinv(fb) @ torch.relu(d)).clamp_min(0))
    with pytest.raises(CnnauralError, match="kind"):
        spec.to_linear(d, "phase")


@pytest.mark.parametrize("kw", [dict(), dict(scale="db", n_mels=40, f_min=30.0, f_max=5000.0, amin=1e-6, ref=3.0),
                                dict(n_fft=1024, hop_length=300, win_length=800, center=False, scale="log1p")])
def test_config_round_trip(kw):
    spec = Spectrogram(**kw)
    again = Spectrogram(**spec.config())
    assert again.config() == spec.config()
    x = torch.randn(4000)
    for a, b in zip(spec(x), again(x)):
        torch.testing.assert_close(a, b)
    assert "n_fft" in repr(spec)


@pytest.mark.parametrize("n_fft", [128, 17])
def test_n_frames_matches_stft(n_fft):
    for center in (True, False):
        spec = Spectrogram(n_fft=n_fft, hop_length=5 if n_fft < 64 else 50, center=center)
        for n in (128, 129, 150, 177, 178, 1000):
            assert spec.stft(torch.randn(n)).shape[-1] == spec.n_frames(n), (center, n)


def test_spectrogram_errors():
    with pytest.raises(CnnauralError, match="scale"):
        Spectrogram(scale="mel")
    with pytest.raises(CnnauralError, match="Hann"):
        Spectrogram(window="hamming")
    with pytest.raises(CnnauralError, match="win_length"):
        Spectrogram(n_fft=256, win_length=512)
    with pytest.raises(CnnauralError, match="hop_length"):
        Spectrogram(n_fft=256, hop_length=0)
    spec = Spectrogram(n_fft=256, hop_length=64)
    with pytest.raises(CnnauralError, match="empty"):
        spec.stft(torch.zeros(0))
    with pytest.raises(CnnauralError, match="empty"):
        spec.stft(torch.tensor(1.0))
    with pytest.raises(CnnauralError, match="too short"):
        spec.stft(torch.randn(128))
    spec.stft(torch.randn(129))  # just long enough for the reflect padding
    with pytest.raises(CnnauralError, match="shorter than n_fft"):
        Spectrogram(n_fft=256, hop_length=64, center=False).stft(torch.randn(255))


# =============================================================================================
# audio
# =============================================================================================
