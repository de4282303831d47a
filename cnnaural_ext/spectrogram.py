"""STFT front end: the complex STFT, the network-input representation and the maps back.

The network input is scale(|X|) or scale(mel(|X|)) with scale one of
linear | log1p | db. Deconvolved maps live in that network-input space; the maps back
(`inverse_scale`, `mel_to_linear`, `to_linear`) bring them to the linear STFT grid where
the original complex STFT X lives, ready for `masked_istft`.
"""
from __future__ import annotations

import math

import torch

from .errors import CnnauralError

SCALES = ("linear", "log1p", "db")


def hz_to_mel(f):
    """Slaney's mel scale (librosa's default, htk=False): linear below 1 kHz, log above."""
    f = torch.as_tensor(f, dtype=torch.float64)
    f_sp = 200.0 / 3
    min_log_hz, logstep = 1000.0, math.log(6.4) / 27.0
    mel = f / f_sp
    return torch.where(f >= min_log_hz, min_log_hz / f_sp + torch.log(f.clamp_min(1e-10) / min_log_hz) / logstep, mel)


def mel_to_hz(m):
    m = torch.as_tensor(m, dtype=torch.float64)
    f_sp = 200.0 / 3
    min_log_hz, logstep = 1000.0, math.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    return torch.where(m >= min_log_mel, min_log_hz * torch.exp(logstep * (m - min_log_mel)), f_sp * m)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float = 0.0,
                   f_max: float | None = None) -> torch.Tensor:
    """Slaney-normalised triangular mel filterbank, (n_mels, n_fft // 2 + 1) float32.

    Same construction as librosa.filters.mel(htk=False, norm="slaney").
    """
    f_max = sample_rate / 2 if f_max is None else f_max
    if not 0 <= f_min < f_max <= sample_rate / 2:
        raise CnnauralError(f"mel range must satisfy 0 <= f_min < f_max <= sample_rate/2 (got {f_min}, {f_max})")
    fft_freqs = torch.arange(n_fft // 2 + 1, dtype=torch.float64) * sample_rate / n_fft
    mel_pts = torch.linspace(float(hz_to_mel(f_min)), float(hz_to_mel(f_max)), n_mels + 2, dtype=torch.float64)
    hz_pts = mel_to_hz(mel_pts)
    fdiff = hz_pts[1:] - hz_pts[:-1]
    ramps = hz_pts[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = torch.clamp(torch.minimum(lower, upper), min=0)
    enorm = 2.0 / (hz_pts[2:n_mels + 2] - hz_pts[:n_mels])
    return (weights * enorm[:, None]).to(torch.float32)


class Spectrogram(torch.nn.Module):
    """Complex STFT and network-input representation of a waveform.

    Args:
        sample_rate: the rate audio is loaded at (the original code: 11025 Hz).
        n_fft, hop_length, win_length: STFT sizes, torch.stft's names (win_length None = n_fft).
        window: "hann" (periodic, torch.stft's and librosa's convention).
        center: pad so frame t is centred at t * hop_length (reflect padding).
        scale: network input scale of the magnitude: "linear" (the original code), "log1p"
            (log(1 + compression |X|)) or "db" (20 log10(max(|X|, amin) / ref)).
        n_mels: if given, the magnitude goes through a mel filterbank first.
        f_min, f_max: mel band edges in Hz.
        amin, ref: floor and reference for "db".
        compression: the factor inside "log1p". With compression 1, magnitudes below about 0.1 (most of the
            time-frequency plane of music at full scale) stay nearly linear; 1000
            compresses about 80 dB above 1e-4 into 0..10.

    Shapes: waveform (..., n) -> stft (..., F, T) complex with F = n_fft // 2 + 1,
    network input (..., F', T) with F' = n_mels or F.
    """

    def __init__(self, sample_rate: int = 11025, n_fft: int = 512, hop_length: int = 256,
                 win_length: int | None = None, window: str = "hann", center: bool = True,
                 scale: str = "linear", n_mels: int | None = None, f_min: float = 0.0,
                 f_max: float | None = None, amin: float = 1e-5, ref: float = 1.0, compression: float = 1.0):
        super().__init__()
        if scale not in SCALES:
            raise CnnauralError(f"scale must be one of {', '.join(SCALES)} (got {scale!r})")
        if window != "hann":
            raise CnnauralError(f"only the periodic Hann window is supported (got {window!r})")
        win_length = n_fft if win_length is None else win_length
        if not (0 < win_length <= n_fft) or hop_length <= 0:
            raise CnnauralError(f"need 0 < win_length <= n_fft and hop_length > 0 "
                                f"(got n_fft={n_fft}, win_length={win_length}, hop_length={hop_length})")
        self.sample_rate, self.n_fft, self.hop_length = int(sample_rate), int(n_fft), int(hop_length)
        self.win_length, self.window_name, self.center = int(win_length), window, bool(center)
        self.scale, self.n_mels, self.f_min, self.f_max = scale, n_mels, float(f_min), f_max
        if not (math.isfinite(float(compression)) and float(compression) > 0):
            raise CnnauralError(f"compression must be a finite number > 0 (got {compression!r})")
        if scale != "log1p" and float(compression) != 1.0:
            raise CnnauralError(f"compression only applies to scale='log1p' (got compression={compression} "
                                f"with scale={scale!r})")
        self.amin, self.ref, self.compression = float(amin), float(ref), float(compression)
        # kept in float64 and cast to the signal's dtype, so a float64 STFT is float64-accurate
        self.register_buffer("window64", torch.hann_window(self.win_length, periodic=True, dtype=torch.float64),
                             persistent=False)
        # the same window in float32, kept (not cast per call) so the native inverse STFT finds its
        # cached envelope by the tensor's identity
        self.register_buffer("window32", self.window64.float(), persistent=False)
        fb = mel_filterbank(self.sample_rate, self.n_fft, n_mels, f_min, f_max) if n_mels else torch.empty(0)
        self.register_buffer("mel_fb", fb, persistent=False)

    # -- configuration -------------------------------------------------------------------------
    def config(self) -> dict:
        """Plain-data description, stored in checkpoints; `Spectrogram(**config)` rebuilds it."""
        return dict(sample_rate=self.sample_rate, n_fft=self.n_fft, hop_length=self.hop_length,
                    win_length=self.win_length, window=self.window_name, center=self.center,
                    scale=self.scale, n_mels=self.n_mels, f_min=self.f_min, f_max=self.f_max,
                    amin=self.amin, ref=self.ref, compression=self.compression)

    @property
    def window(self) -> torch.Tensor:
        """The periodic Hann window (win_length,), float32."""
        return self.window32

    def window_like(self, x: torch.Tensor) -> torch.Tensor:
        """The window in x's real dtype, on x's device: a kept buffer for float32/float64 (moved
        with the module), a cast otherwise."""
        dtype = x.real.dtype if x.is_complex() else x.dtype
        w = {torch.float32: self.window32, torch.float64: self.window64}.get(dtype)
        if w is None or w.device != x.device or w.dtype != dtype:  # e.g. after Module.double()
            w = self.window64.to(device=x.device, dtype=dtype)
        return w

    @property
    def n_freqs(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def n_bins(self) -> int:
        """Height F' of the network input."""
        return self.n_mels or self.n_freqs

    def n_frames(self, n_samples: int) -> int:
        if self.center:  # torch.stft pads n_fft // 2 on each side
            return (n_samples + 2 * (self.n_fft // 2) - self.n_fft) // self.hop_length + 1
        return max(0, (n_samples - self.n_fft) // self.hop_length + 1)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.config().items())

    # -- forward ---------------------------------------------------------------------------------
    def stft(self, waveform: torch.Tensor) -> torch.Tensor:
        """Complex STFT, (..., n) -> (..., F, T)."""
        if waveform.dim() == 0 or waveform.shape[-1] == 0:
            raise CnnauralError("cannot take the STFT of an empty waveform")
        if self.center and waveform.shape[-1] <= self.n_fft // 2:
            raise CnnauralError(f"waveform of {waveform.shape[-1]} samples is too short for "
                                f"n_fft={self.n_fft} with center=True (needs > {self.n_fft // 2})")
        if not self.center and waveform.shape[-1] < self.n_fft:
            raise CnnauralError(f"waveform of {waveform.shape[-1]} samples is shorter than n_fft={self.n_fft}")
        batch = waveform.shape[:-1]
        x = waveform.reshape(-1, waveform.shape[-1])
        if not x.is_floating_point():
            x = x.float()
        X = torch.stft(x, self.n_fft, self.hop_length, self.win_length,
                       self.window_like(x), center=self.center,
                       pad_mode="reflect", return_complex=True)
        return X.reshape(*batch, *X.shape[-2:])

    def scale_magnitude(self, mag: torch.Tensor) -> torch.Tensor:
        """Apply the network-input scale to a non-negative magnitude (linear or mel grid)."""
        if self.scale == "linear":
            return mag
        if self.scale == "log1p":
            return torch.log1p(mag * self.compression if self.compression != 1.0 else mag)
        return 20.0 * torch.log10(mag.clamp_min(self.amin) / self.ref)

    def inverse_scale(self, s: torch.Tensor) -> torch.Tensor:
        """Inverse of `scale_magnitude` (exact above the dB floor)."""
        if self.scale == "linear":
            return s
        if self.scale == "log1p":
            return torch.expm1(s) / self.compression if self.compression != 1.0 else torch.expm1(s)
        return self.ref * torch.pow(10.0, s / 20.0)

    def to_input(self, stft: torch.Tensor) -> torch.Tensor:
        """Network input from a complex STFT: (..., F, T) -> (..., F', T) real."""
        mag = stft.abs()
        if self.n_mels:
            mag = torch.matmul(self.mel_fb.to(mag), mag)
        return self.scale_magnitude(mag)

    def forward(self, waveform: torch.Tensor):
        """Returns (stft (..., F, T) complex, network input (..., F', T))."""
        X = self.stft(waveform)
        return X, self.to_input(X)

    # -- maps back to the linear STFT grid ---------------------------------------------------------
    def mel_to_linear(self, m: torch.Tensor, method: str = "pinv") -> torch.Tensor:
        """Map (..., n_mels, T) back to (..., F, T).

        method: "transpose" (mel_fb^T m, the adjoint: what backprop through the filterbank does),
        "pinv" (least-squares pseudo-inverse) or "nnls" (non-negative least squares per frame;
        slow, for magnitudes).
        """
        if not self.n_mels:
            return m
        fb = self.mel_fb.to(m)
        if method == "transpose":
            return torch.matmul(fb.transpose(0, 1), m)
        if method == "pinv":
            return torch.matmul(torch.linalg.pinv(fb.double()).to(m), m)
        if method == "nnls":
            return _nnls_columns(fb, m)
        raise CnnauralError(f"mel inverse must be transpose, pinv or nnls (got {method!r})")

    def to_linear(self, d: torch.Tensor, kind: str = "mask", mel_inverse: str | None = None) -> torch.Tensor:
        """Bring deconvolved maps from network-input space to the linear STFT grid.

        Args:
            d (Tensor): (..., F', T) deconvolved maps.
            kind: "mask" keeps the values as a (signed) gain on the original STFT, so only the mel
                projection is undone (default "transpose"); "magnitude" rectifies (linear, log1p),
                undoes the scale and then the mel projection (default "pinv", clamped at zero),
                giving |Y|.
            mel_inverse: override the mel method ("transpose" | "pinv" | "nnls").

        Returns:
            (..., F, T) real.
        """
        if kind == "mask":
            return self.mel_to_linear(d, mel_inverse or "transpose")
        if kind == "magnitude":
            # dB values are log-magnitudes of any sign; linear and log1p values must be >= 0
            mag = self.inverse_scale(d if self.scale == "db" else torch.relu(d))
            out = self.mel_to_linear(mag, mel_inverse or "pinv")
            return out.clamp_min(0) if self.n_mels else out
        raise CnnauralError(f"kind must be 'mask' or 'magnitude' (got {kind!r})")


def _nnls_columns(fb: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Non-negative least squares min ||fb x - m_t||, x >= 0, for every column m_t."""
    from scipy.optimize import nnls

    A = fb.double().cpu().numpy()
    flat = m.detach().double().cpu().reshape(-1, m.shape[-2], m.shape[-1]).numpy()
    out = torch.zeros(flat.shape[0], fb.shape[1], m.shape[-1], dtype=torch.float64)
    for b in range(flat.shape[0]):
        for t in range(flat.shape[2]):
            out[b, :, t] = torch.from_numpy(nnls(A, flat[b, :, t])[0])
    return out.reshape(*m.shape[:-2], fb.shape[1], m.shape[-1]).to(m)
