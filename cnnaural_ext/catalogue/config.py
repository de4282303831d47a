"""The configuration of a catalogue, its fingerprint, and ``OUT/config.json``.

Everything that changes what a track's files or activation rows hold is fingerprinted: the model
(the SHA-256 of its checkpoint file, or of its class and weights when it came from no file), the
Spectrogram config, the layers, the features, the excerpt (offset, duration), mode, phase, seed
kind, normalisation, the audio format and sample format, figures, and the activation window.
Where the model file lies is recorded in config.json but not fingerprinted, so moving a
checkpoint does not orphan a catalogue. A rerun with another fingerprint on an existing OUT is
refused, naming what differs.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path


from ..errors import CnnauralError
from ..io.files import write_json

CATALOGUE_FORMAT = "cnnaural-catalogue/1"


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def model_identity(auraliser) -> dict:
    """{"source": where the model came from, "sha256": what it is}."""
    source = str(auraliser.source)
    path = Path(auraliser.source) if source != "shipped" else None
    if source == "shipped":
        from ..auralise import PRETRAINED

        path = PRETRAINED
    if path is not None and path.is_file():
        return {"source": source, "sha256": file_sha256(path)}
    h = hashlib.sha256(repr(auraliser.model).encode())
    for name, t in auraliser.model.state_dict().items():
        t = t.detach().cpu()
        h.update(name.encode())
        h.update((t.double() if t.is_floating_point() else t).contiguous().numpy().tobytes())
    return {"source": source, "sha256": h.hexdigest()}


def catalogue_config(auraliser, *, layers, features, offset, duration, mode, phase, seed, normalize, audio_format,
                     subtype, figures, window) -> dict:
    """The plain-data config of a catalogue run (what is fingerprinted, see the module docstring)."""
    ident = model_identity(auraliser)
    return {
        "format": CATALOGUE_FORMAT,
        "model": ident["sha256"],
        "spectrogram": auraliser.spectrogram.config(),
        "layers": list(layers),
        "features": features if isinstance(features, str) else [int(f) for f in features],
        "offset": float(offset),
        "duration": float(duration) if duration and duration > 0 else None,
        "mode": mode, "phase": phase, "seed": seed, "normalize": bool(normalize),
        "audio_format": audio_format, "subtype": subtype, "figures": bool(figures),
        "window": float(window),
    }


def fingerprint(config: dict) -> str:
    """16 hex digits of the SHA-256 of the config's canonical JSON."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_config(out) -> dict | None:
    """``OUT/config.json`` ({"fingerprint", "config", "model_source", "src"}), or None before the first run."""
    path = Path(out) / "config.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CnnauralError(f"{path} is unreadable ({e}); is {out} a catalogue?") from None


def check_or_write_config(out, config: dict, model_source: str, src=None) -> str:
    """Write config.json on the first run; on a later one refuse a different config. Returns the
    fingerprint. Call it under the catalogue's config lock.

    `src`, where the tracks were read (absolute), is recorded but not fingerprinted, like the
    model's path: the latest run's is kept (the atlas reads the tracks from there)."""
    fp = fingerprint(config)
    old = read_config(out)
    src = None if src is None else str(Path(src).resolve())
    if old is not None and old.get("fingerprint") != fp:
        what = describe_difference(old.get("config", {}), config)
        raise CnnauralError(f"{out} was written with another config ({what}); "
                            "rerun with the options recorded in its config.json, or use a new --out")
    if old is None or (src is not None and old.get("src") != src):
        write_json(Path(out) / "config.json",
                   {"fingerprint": fp, "config": config, "model_source": model_source, "src": src})
    return fp


def describe_difference(old: dict, new: dict) -> str:
    """'layers: [1] there, [1, 5] here; ...' for the keys that differ."""
    parts = []
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            if key == "model":
                parts.append("model: another checkpoint (SHA-256 differs)")
            elif key == "spectrogram":
                diff = [k for k in sorted(set(old.get(key) or {}) | set(new.get(key) or {}))
                        if (old.get(key) or {}).get(k) != (new.get(key) or {}).get(k)]
                parts.append(f"spectrogram: {', '.join(diff)} differ")
            else:
                parts.append(f"{key}: {old.get(key)!r} there, {new.get(key)!r} here")
    return "; ".join(parts) or "the fingerprint differs"
