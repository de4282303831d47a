"""Plain helpers of the catalogue tests: small source trees (nested, repeated names, bad files)."""
import hashlib
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from helpers import SR, tone

#: a nested tree with repeated file names; one file at 16 kHz (resampled to the model's 8 kHz)
GOOD = {"a/intro.wav": 2.5, "b/intro.wav": 3.0, "b/c/intro.wav": 2.0, "a/other.flac": 3.5, "c/x y.wav": 2.2,
        "c/deep/er/intro.flac": 2.8}


def make_tree(root, good=GOOD, seed: int = 0) -> Path:
    """Write `good` (relative path -> seconds) under root: tones with different noise per track."""
    root = Path(root)
    g = torch.Generator().manual_seed(seed)
    for k, (rel, seconds) in enumerate(sorted(good.items())):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        sr = 16000 if rel.endswith("other.flac") else SR
        x = tone(seconds, sr) * (0.5 + 0.4 * torch.rand(1, generator=g)) + 0.02 * torch.randn(int(seconds * sr),
                                                                                              generator=g)
        sf.write(path, x.clamp(-1, 1).numpy(), sr)
    return root


def add_bad_files(root) -> dict:
    """Corrupt, empty, truncated, non-audio -> errors; silent, too short -> skipped. Returns rel -> kind."""
    root = Path(root)
    (root / "bad").mkdir(parents=True, exist_ok=True)
    (root / "bad/corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk")
    (root / "bad/empty.ogg").write_bytes(b"")
    sf.write(root / "bad/full.flac", tone(3.0).numpy(), SR)
    data = (root / "bad/full.flac").read_bytes()
    (root / "bad/truncated.flac").write_bytes(data[: len(data) // 2])
    (root / "bad/full.flac").unlink()
    (root / "bad/notes.mp3").write_text("this is not audio at all\n" * 20)
    sf.write(root / "bad/silent.wav", np.zeros(2 * SR, dtype=np.float32), SR)
    sf.write(root / "bad/short.wav", tone(0.1).numpy(), SR)
    return {"bad/corrupt.wav": "error", "bad/empty.ogg": "error", "bad/truncated.flac": "error",
            "bad/notes.mp3": "error", "bad/silent.wav": "skipped", "bad/short.wav": "skipped"}


def tree_digest(root) -> dict:
    """relative path -> SHA-256 of every file under root."""
    root = Path(root)
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def activation_rows(out) -> list:
    """The committed activation rows of a catalogue without the run column, sorted."""
    from cnnaural_ext.catalogue import read_activations

    rows = read_activations(out).drop(["run"]).to_pylist()
    return sorted(rows, key=lambda r: (r["id"], r["layer"], r["feature"]))


def clip_rows(out) -> list:
    """The committed clip-table rows of a catalogue without the run column, sorted."""
    from cnnaural_ext.catalogue import read_clips

    rows = read_clips(out).drop(["run"]).to_pylist()
    return sorted(rows, key=lambda r: (r["id"], r["layer"], r["feature"]))


def assert_activation_rows_close(got: list, want: list) -> None:
    """The same activation rows up to float rounding (e.g. batched against one track at a time)."""
    import pytest

    assert [(r["id"], r["layer"], r["feature"], r["duration"]) for r in got] == [
        (r["id"], r["layer"], r["feature"], r["duration"]) for r in want]
    for x, y in zip(got, want):
        for k in ("mean", "max", "active"):
            assert x[k] == pytest.approx(y[k], rel=1e-4, abs=1e-6), k
        assert x["window_max"] == pytest.approx(y["window_max"], rel=1e-4, abs=1e-6)


def crashing_process_files(aur, tracks, job):
    """`engine.process_files`, but the worker process dies on a track named crash.* (a crashing
    codec): importable, so spawned workers can run it."""
    import os

    from cnnaural_ext.catalogue.engine import process_files

    if any(Path(t.relative_path).stem == "crash" for t in tracks):
        os._exit(3)
    return process_files(aur, tracks, job)
