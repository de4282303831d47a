"""Atomic files: a failed write leaves nothing behind."""
import os

import pytest
import soundfile as sf
import torch

from cnnaural_ext.io.audio import save_audio
from cnnaural_ext.io.files import atomic_write
from helpers import SR


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(sf, "write", boom)
    with pytest.raises(OSError):
        save_audio(tmp_path / "x.wav", torch.zeros(100), SR)
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_leaves_nothing_behind(tmp_path):
    target = tmp_path / "out.wav"

    def failing(tmp):
        with open(tmp, "wb") as f:
            f.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, failing)
    assert os.listdir(tmp_path) == []
    # an existing file survives a failed rewrite untouched
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        atomic_write(target, failing)
    assert os.listdir(tmp_path) == ["out.wav"] and target.read_bytes() == b"old"
    # success replaces it, with no temporary left over
    atomic_write(target, lambda tmp: open(tmp, "wb").write(b"new"))
    assert os.listdir(tmp_path) == ["out.wav"] and target.read_bytes() == b"new"
