"""Where a catalogue stands: `status(OUT)` and its text form for `cnnaural catalogue --status`."""
from __future__ import annotations

from pathlib import Path

from ..errors import CnnauralError
from .config import read_config
from .ledger import latest_states
from .sources import read_manifest

STATES = ("ok", "error", "skipped", "pending")


def status(out, max_errors: int = 20) -> dict:
    """Counts of a catalogue's tracks by state, overall and per shard, with its config.

    Returns:
        {"out", "tracks", "counts" {ok, error, skipped, pending}, "shards" {"i/N": counts} (the
        shards of the latest run's N), "fingerprint", "config", "model_source", "errors" (the
        latest error rows, at most `max_errors`: relative_path, error_type, message), "clips"
        {"total", "inconsistent" (clips whose spectral convergence is above `quality.INCONSISTENT`),
        "threshold"}}.
    """
    from ..quality import INCONSISTENT

    cfg = read_config(out)
    if cfg is None:
        raise CnnauralError(f"{out} is not a catalogue (no config.json); "
                            f"write one with `cnnaural catalogue SRC --out {out}`")
    manifest = read_manifest(out)
    states = latest_states(out, cfg.get("fingerprint"))
    counts = dict.fromkeys(STATES, 0)
    shards: dict = {}
    errors = []
    for row in manifest:
        st = states.get(row["id"])
        s = st["status"] if st else "pending"
        counts[s] += 1
        key = f"{row['shard']}/{row['n_shards']}"
        shards.setdefault(key, dict.fromkeys(STATES, 0))[s] += 1
        if s == "error" and len(errors) < max_errors:
            errors.append({k: st.get(k) for k in ("relative_path", "error_type", "message")})
    shards = dict(sorted(shards.items(), key=lambda kv: int(kv[0].split("/")[0])))
    return {"out": str(Path(out)), "tracks": len(manifest), "counts": counts, "shards": shards,
            "fingerprint": cfg.get("fingerprint"), "config": cfg.get("config", {}),
            "model_source": cfg.get("model_source"), "errors": errors,
            "clips": clip_counts(out) | {"threshold": INCONSISTENT}}


def clip_counts(out) -> dict:
    """{"total", "inconsistent"}: the catalogue's clips (`clips.read_clips`) and those flagged."""
    from .clips import read_clips

    flags = read_clips(out, columns=["inconsistent"])["inconsistent"].to_pylist()
    return {"total": len(flags), "inconsistent": sum(1 for f in flags if f)}


def format_status(st: dict) -> str:
    """The text `cnnaural catalogue --status` prints."""
    c, cfg = st["counts"], st["config"]
    lines = [f"catalogue {st['out']}: {st['tracks']} tracks: " + ", ".join(f"{c[s]} {s}" for s in STATES),
             f"  config {st['fingerprint']}: model {st['model_source']}, layers {cfg.get('layers')}, "
             f"features {cfg.get('features')}, offset {cfg.get('offset')}, duration {cfg.get('duration')}, "
             f"mode {cfg.get('mode')}, format {cfg.get('audio_format')}"]
    if len(st["shards"]) > 1:
        for key, sc in st["shards"].items():
            lines.append(f"  shard {key}: " + ", ".join(f"{sc[s]} {s}" for s in STATES))
    cl = st.get("clips")
    if cl and cl["total"]:
        lines.append(f"  clips: {cl['total']}, {cl['inconsistent']} with an inconsistent inversion "
                     f"(spectral convergence above {cl['threshold']:g}: what is heard is largely not the map); "
                     "read_clips(OUT) lists them")
    for e in st["errors"]:
        lines.append(f"  error: {e['relative_path']}: {e['error_type']}: {e['message']}")
    if c["error"] > len(st["errors"]):
        lines.append(f"  ... and {c['error'] - len(st['errors'])} more errors")
    return "\n".join(lines)
