"""Audio input and output: load anything libsndfile reads, resample, write WAV or FLAC atomically."""
from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from ..errors import CnnauralError
from .files import atomic_write


def load(path, sample_rate: int | None = None, *, offset: float = 0.0,
         duration: float | None = None, mono: bool = True):
    """Read an audio file (wav, flac, ogg, opus, mp3: whatever libsndfile reads).

    Args:
        path: the file.
        sample_rate: resample to this rate (None keeps the file's rate).
        offset: seconds to skip from the start.
        duration: seconds to read (None: to the end).
        mono: average the channels.

    Returns:
        (waveform, sample_rate): waveform is a float32 Tensor (n,) if mono else (channels, n).

    Raises:
        CnnauralError: missing or unreadable file, offset past the end, bad offset/duration.
    """
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise CnnauralError(f"audio file not found: {path}")
    if offset < 0 or (duration is not None and duration <= 0):
        raise CnnauralError(f"offset must be >= 0 and duration > 0 (got offset={offset}, duration={duration})")
    try:
        with sf.SoundFile(str(path)) as f:
            sr = f.samplerate
            start = int(round(offset * sr))
            if f.frames > 0 and start >= f.frames:
                raise CnnauralError(f"offset {offset:g} s is past the end of {path.name} "
                                    f"({f.frames / sr:.2f} s long)")
            if start:
                f.seek(start)
            frames = -1 if duration is None else int(round(duration * sr))
            data = f.read(frames, dtype="float32", always_2d=True)
    except CnnauralError:
        raise
    except Exception as e:  # libsndfile's own errors: unknown format, corrupt file, ...
        raise CnnauralError(f"cannot read audio from {path}: {e}") from None
    if data.shape[0] == 0:
        raise CnnauralError(f"{path} holds no audio samples")
    if mono:  # a sum of columns: numpy's mean over the short channel axis is ten times slower
        x = data[:, 0].copy()
        for c in range(1, data.shape[1]):
            x += data[:, c]
        if data.shape[1] > 1:
            x /= np.float32(data.shape[1])
    else:
        x = data.T  # (channels, n)
    if sample_rate is not None and sample_rate != sr:
        x = resample(x, sr, sample_rate)
        sr = sample_rate
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), sr


def resample(x, orig_sr: int, target_sr: int):
    """Band-limited polyphase resampling (scipy.signal.resample_poly) along the last axis.

    Accepts a numpy array or a Tensor and returns the same kind.
    """
    from scipy.signal import resample_poly

    if orig_sr <= 0 or target_sr <= 0:
        raise CnnauralError(f"sample rates must be positive (got {orig_sr} -> {target_sr})")
    if orig_sr == target_sr:
        return x
    is_tensor = isinstance(x, torch.Tensor)
    arr = x.detach().cpu().numpy() if is_tensor else np.asarray(x)
    ratio = Fraction(int(target_sr), int(orig_sr))
    y = resample_poly(arr, ratio.numerator, ratio.denominator, axis=-1).astype(np.float32, copy=False)
    n_out = int(math.ceil(arr.shape[-1] * target_sr / orig_sr))
    y = y[..., :n_out]
    return torch.from_numpy(np.ascontiguousarray(y)) if is_tensor else y


def peak_normalize(audio: torch.Tensor, peak: float = 0.99) -> torch.Tensor:
    """Scale each row of (..., n) so its largest magnitude is `peak`; silent rows stay silent."""
    m = audio.abs().amax(dim=-1, keepdim=True)
    return torch.where(m > 0, audio * (peak / m.clamp_min(torch.finfo(audio.dtype).tiny)), audio)


#: file suffix -> libsndfile container; the sample formats each one takes
AUDIO_FORMATS = {".wav": ("WAV", ("FLOAT", "PCM_16", "PCM_24")), ".flac": ("FLAC", ("PCM_16", "PCM_24"))}


def save_audio(path, audio, sample_rate: int, *, subtype: str = "FLOAT", normalize: bool = False) -> Path:
    """Write (n,) or (channels, n) audio, via a temporary file renamed into place.

    The container follows the suffix: ``.wav`` or ``.flac``.

    Args:
        subtype: the sample format: "FLOAT" (32-bit float, WAV only), "PCM_16" or "PCM_24".
        normalize: peak-normalise before writing.

    Raises:
        CnnauralError: an unknown suffix, or a sample format the container cannot hold.
    """
    import soundfile as sf

    path = Path(path)
    container, subtypes = AUDIO_FORMATS.get(path.suffix.lower(), (None, ()))
    if container is None:
        raise CnnauralError(f"cannot write audio to {path.name}: use a .wav or .flac file name")
    if subtype not in subtypes:
        raise CnnauralError(f"{container} files take the sample formats {', '.join(subtypes)} (got {subtype!r})")
    a = audio.detach().cpu() if isinstance(audio, torch.Tensor) else torch.as_tensor(audio)
    a = a.to(torch.float32)
    if normalize:
        a = peak_normalize(a)
    if subtype != "FLOAT":
        a = a.clamp(-1.0, 1.0)
    data = a.numpy().T if a.dim() == 2 else a.numpy()
    atomic_write(path, lambda tmp: sf.write(tmp, data, int(sample_rate), subtype=subtype, format=container))
    return path
