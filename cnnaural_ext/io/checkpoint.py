"""Checkpoints that carry their model's architecture, its Spectrogram and plain metadata.

`load_checkpoint` rebuilds everything from the file alone, weights-only (nothing in the file is
executed). Files written before a rename (the model's ``channels`` argument, now ``width``; the
Spectrogram's ``gain``, now ``compression``) load unchanged.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import CnnauralError
from ..models import ARCHITECTURES
from ..spectrogram import Spectrogram
from .files import atomic_write

CHECKPOINT_FORMAT = "cnnaural-checkpoint/1"
#: keys renamed since checkpoints were first written: old -> new
_RENAMED_ARCH_KWARGS = {"channels": "width"}
_RENAMED_SPECTROGRAM = {"gain": "compression"}


def save_checkpoint(path, model: nn.Module, spectrogram: Spectrogram, *, arch: str, arch_kwargs: dict,
                    classes, **extra) -> Path:
    """Write a checkpoint that `load_checkpoint` can rebuild with no code from the file.

    Holds the architecture name and arguments, the state dict, the Spectrogram config, the class
    names and any extra plain data (metrics, the recipe, initial first-layer weights, ...).
    """
    if arch not in ARCHITECTURES:
        raise CnnauralError(f"unknown architecture {arch!r} (known: {', '.join(ARCHITECTURES)})")
    payload = dict(format=CHECKPOINT_FORMAT, arch=arch, arch_kwargs=_plain(arch_kwargs),
                   state_dict={k: v.detach().cpu() for k, v in model.state_dict().items()},
                   spectrogram=spectrogram.config(), classes=list(classes), **extra)
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def _plain(v):
    if isinstance(v, (tuple, list)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


def _renamed(d: dict, renames: dict) -> dict:
    return {renames.get(k, k): v for k, v in d.items()}


def load_checkpoint(path, map_location="cpu"):
    """Rebuild (model, spectrogram, meta) from a checkpoint, the model in eval mode.

    Raises:
        CnnauralError: missing, corrupt or foreign file.
    """
    path = Path(path)
    if not path.is_file():
        raise CnnauralError(f"checkpoint not found: {path}")
    try:
        ck = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise CnnauralError(f"cannot read checkpoint {path}: {str(e).splitlines()[0]}") from None
    if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT:
        raise CnnauralError(f"{path} is not a cnnaural checkpoint (write one with `cnnaural train`)")
    try:
        ck["arch_kwargs"] = _renamed(ck["arch_kwargs"], _RENAMED_ARCH_KWARGS)
        ck["spectrogram"] = _renamed(ck["spectrogram"], _RENAMED_SPECTROGRAM)
        model = ARCHITECTURES[ck["arch"]](**ck["arch_kwargs"])
        model.load_state_dict(ck["state_dict"])
        spec = Spectrogram(**ck["spectrogram"])
    except Exception as e:
        raise CnnauralError(f"checkpoint {path} does not match its architecture: {str(e).splitlines()[0]}") from None
    model.eval()
    meta = {k: v for k, v in ck.items() if k != "state_dict"}
    return model, spec, meta
