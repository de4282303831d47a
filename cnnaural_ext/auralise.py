"""Auraliser: from a waveform to the audio of chosen learned features.

One forward pass per track serves every seed; the K seeds share its switches and its complex
STFT X. The deconvolved maps D (network-input space) are brought to the linear STFT grid and
inverted with the batched `masked_istft`:

- mode "mask" (the original code): Y = X * D — the phase of X, flipped where D < 0.
- mode "magnitude" (the paper's wording): |Y| = inverse_scale(relu(D)), phase of X.
- phase "griffinlim": start from the chosen phase and refine it by Griffin-Lim on |Y|.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import ops
from .deconvnet import DeconvNet
from .errors import CnnauralError
from .spectrogram import Spectrogram

ASSETS = Path(__file__).resolve().parent / "assets"
PRETRAINED = ASSETS / "paper_cnn5_default.pt"

MODES = ("mask", "magnitude")
PHASES = ("original", "griffinlim")


@dataclass
class AuralisationResult:
    """What `Auraliser.auralise` returns.

    Attributes:
        audio (Tensor): (K, n) one clip per feature, float32 on the CPU.
        maps (Tensor): (K, F', T) deconvolved maps in network-input space.
        features (list[int]): the feature of each row.
        layer: the layer they come from.
        sample_rate (int)
        original (Tensor): (n,) the input waveform.
        stats (list[dict]): per feature, activation statistics of the seed: max, mean, and the
            fraction of positive positions of its activation map.
        mode, phase (str): how the audio was made.
    """
    audio: torch.Tensor
    maps: torch.Tensor
    features: list
    layer: object
    sample_rate: int
    original: torch.Tensor
    stats: list = field(default_factory=list)
    mode: str = "mask"
    phase: str = "original"


class Auraliser:
    """Listen to the learned features of `model`, whose input is `spectrogram`'s network input.

    Args:
        model: a CNN DeconvNet can read; its input is (1, 1, F', T).
        spectrogram: the Spectrogram the model was trained with.
        device: where to run (default: the model's device).
    """

    def __init__(self, model: torch.nn.Module, spectrogram: Spectrogram, device=None):
        self.model = model
        self.spectrogram = spectrogram
        if device is None:
            p = next(model.parameters(), None)
            device = p.device if p is not None else torch.device("cpu")
        self.device = torch.device(device)
        self.model.to(self.device)
        self.spectrogram.to(self.device)
        self.deconvnet = DeconvNet(model)
        self.meta: dict = {}

    @classmethod
    def from_checkpoint(cls, path, device=None) -> "Auraliser":
        """Build from a checkpoint written by `cnnaural train` (weights-only loading)."""
        from .models import load_checkpoint

        model, spec, meta = load_checkpoint(path)
        if device is not None:
            model.to(device)
        aur = cls(model, spec, device)
        aur.meta = meta
        return aur

    @classmethod
    def pretrained(cls, device=None) -> "Auraliser":
        """The shipped default model (paper_cnn5 trained on real music) and its Spectrogram."""
        if not PRETRAINED.is_file():
            raise CnnauralError(f"the shipped model is missing ({PRETRAINED}); reinstall cnnaural_ext or pass --model")
        return cls.from_checkpoint(PRETRAINED, device)

    @property
    def sample_rate(self) -> int:
        return self.spectrogram.sample_rate

    def auralise(self, waveform: torch.Tensor, layer=1, features="all", *, mode: str = "mask",
                 phase: str = "original", normalize: bool = True, seed: str = "map",
                 griffinlim_iters: int = 32, mel_inverse: str | None = None) -> AuralisationResult:
        """Auralise `features` of `layer` for one waveform.

        Args:
            waveform (Tensor): (n,) mono audio at `spectrogram.sample_rate`.
            layer: 1-based conv layer (or "output" for class targets).
            features: list of ints | "all" | "top:K".
            mode: "mask" (Y = X * D, the original code) | "magnitude" (|Y| from relu(D), phase of X).
            phase: "original" | "griffinlim".
            normalize: peak-normalise each clip.
            seed: "map" (the whole activation map of the feature) | "max" (its strongest position).
            griffinlim_iters: iterations for phase="griffinlim".
            mel_inverse: how mel maps return to the STFT grid (see Spectrogram.to_linear).

        Returns:
            AuralisationResult with audio (K, n).
        """
        if mode not in MODES:
            raise CnnauralError(f"mode must be one of {', '.join(MODES)} (got {mode!r})")
        if phase not in PHASES:
            raise CnnauralError(f"phase must be one of {', '.join(PHASES)} (got {phase!r})")
        waveform = torch.as_tensor(waveform)
        if waveform.dim() != 1:
            raise CnnauralError(f"waveform must be mono (n,), got shape {tuple(waveform.shape)}")
        spec = self.spectrogram
        x_wave = waveform.to(self.device, torch.float32)
        X, S = spec(x_wave)  # (F, T) complex, (F', T)
        with torch.no_grad():
            rec = self.deconvnet.record(S[None, None], layer)
            act = self.deconvnet.activation(rec, layer)[0]
            maps, feats = self.deconvnet.deconvolve(rec, layer, features, seed=seed, return_features=True)
        maps = maps[:, 0]  # (K, F', T)
        stats = _stats(act[list(feats)])
        gain = spec.to_linear(maps, kind=mode, mel_inverse=mel_inverse)
        n = x_wave.shape[0]
        istft_kw = dict(n_fft=spec.n_fft, hop_length=spec.hop_length, win_length=spec.win_length,
                        window=spec.window_like(gain), center=spec.center, length=n)
        audio = ops.masked_istft(X, gain.contiguous(), mode=mode, **istft_kw)
        if phase == "griffinlim":
            mag = (X.abs() * gain).abs() if mode == "mask" else gain
            audio = griffin_lim(mag, audio, spec, griffinlim_iters, istft_kw)
        if normalize:
            from .audio import peak_normalize

            audio = peak_normalize(audio)
        return AuralisationResult(audio=audio.float().cpu(), maps=maps.float().cpu(), features=feats, layer=layer,
                                  sample_rate=spec.sample_rate, original=waveform.float().cpu(), stats=stats,
                                  mode=mode, phase=phase)


def griffin_lim(mag: torch.Tensor, audio: torch.Tensor, spec: Spectrogram, n_iter: int, istft_kw: dict,
                momentum: float = 0.99) -> torch.Tensor:
    """Fast Griffin-Lim (Perraudin et al. 2013) on magnitudes (K, F, T), starting from `audio`'s phase."""
    prev = None
    for _ in range(max(0, int(n_iter))):
        rebuilt = spec.stft(audio)
        Z = rebuilt if prev is None else rebuilt - (momentum / (1 + momentum)) * prev
        prev = rebuilt
        audio = ops.masked_istft(Z, mag, mode="magnitude", **istft_kw)
    return audio


def _stats(a: torch.Tensor) -> list[dict]:
    """Per feature of a (K, h, w): max, mean and active fraction, read back in one transfer."""
    flat = a.reshape(a.shape[0], -1)
    table = torch.stack([flat.amax(1), flat.mean(1), (flat > 0).float().mean(1)], 1).tolist() if a.numel() else []
    return [{"max": m, "mean": u, "active": f} for m, u, f in table]
