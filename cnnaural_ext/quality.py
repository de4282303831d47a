"""Is the audio what the map says? How far inverting a masked STFT moved it.

A masked or magnitude-replaced STFT is usually not the STFT of any signal: the inverse STFT
returns the signal whose STFT is closest to it, and that STFT differs. The spectral convergence
between the magnitude the map asked for, M, and the magnitude of the audio that came out,
|STFT(audio)|, measures by how much:

    SC = || |STFT(audio)| - M ||_F / || M ||_F

0 means the audio is exactly what the map says (a consistent STFT); 0.5 means the part of what is
heard that the map does not say is half as large as what it does say. Clips above
`INCONSISTENT` (0.5) are flagged. The share of samples the inverse STFT put beyond full scale
(|x| > 1, before peak normalisation) is the other number kept per clip.
"""
from __future__ import annotations

import torch

from .errors import CnnauralError

#: spectral convergence above which a clip is flagged: what is heard is largely not the map
INCONSISTENT = 0.5


def intended_magnitude(stft: torch.Tensor, gain: torch.Tensor, mode: str) -> torch.Tensor:
    """The magnitude an auralisation asks for: |X * gain| ("mask") or gain itself ("magnitude")."""
    if mode == "mask":  # |X g| = |X| |g|: one complex magnitude of X, not one per row of gain
        return torch.mul(stft.abs(), gain).abs_()
    if mode == "magnitude":
        return gain.abs()
    raise CnnauralError(f"mode must be 'mask' or 'magnitude' (got {mode!r})")


def spectral_convergence(audio: torch.Tensor, intended: torch.Tensor, spectrogram) -> torch.Tensor:
    """SC per row: audio (K, n) against intended magnitudes (K, F, T) on `spectrogram`'s STFT grid.

    Rows whose intended magnitude is all zero score 0 when the audio is silent too, else inf.
    """
    if audio.dim() == 1:
        audio, intended = audio[None], intended[None]
    got = spectrogram.stft(audio.to(intended.device, torch.float32)).abs()
    if got.shape != intended.shape:
        raise CnnauralError(f"spectral_convergence: the audio's STFT is {tuple(got.shape)}, the intended magnitude "
                            f"{tuple(intended.shape)}")
    err = torch.linalg.vector_norm(got.sub_(intended).flatten(1), dim=1)  # got is this call's own
    ref = torch.linalg.vector_norm(intended.flatten(1), dim=1)
    return torch.where(ref > 0, err / ref.clamp_min(torch.finfo(ref.dtype).tiny),
                       torch.where(err > 0, torch.full_like(err, float("inf")), torch.zeros_like(err)))


def clipped_share(audio: torch.Tensor) -> torch.Tensor:
    """The share of each row's samples beyond full scale (|x| > 1), before any normalisation."""
    if audio.dim() == 1:
        audio = audio[None]
    return (audio.abs() > 1.0).float().mean(dim=-1)
