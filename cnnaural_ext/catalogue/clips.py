"""The clip table: one row per clip a catalogue run wrote (track, layer, feature), with how far
its audio is from the map it was made from.

Columns: id, relative_path, layer, feature, audio (the clip's path relative to OUT), image (the
map's PNG relative to OUT, or null without figures), max, mean, active (of the auralised
excerpt's feature map), spectral_convergence (|STFT(clip)| against the magnitude the map asked
for: 0 when the clip is exactly what the map says; `quality.spectral_convergence`), clipped (the
share of samples beyond full scale before normalisation), inconsistent (spectral_convergence >
`quality.INCONSISTENT`), offset, duration (the excerpt's seconds), run.

It is written beside the activation table, one part per flush under the same name
(``OUT/clips/part-<run>-<nnnn>.parquet``), before the tracks' ok ledger rows; `read_clips`
keeps the rows of each track's latest ok row's part, as `read_activations` does, so a rerun
never shows a clip twice. A query such as "the clips of layer 5 whose inversion is
inconsistent" reads one filtered table instead of every track's manifest.json.
"""
from __future__ import annotations

#: the columns of the clip table, in order
COLUMNS = ("id", "relative_path", "layer", "feature", "audio", "image", "max", "mean", "active",
           "spectral_convergence", "clipped", "inconsistent", "offset", "duration", "run")


def clip_columns(track, rows: list, folder: str) -> dict:
    """The clip-table columns of one track from `Auraliser.auralise_file`'s manifest rows;
    `folder` is the track's folder relative to OUT (``audio/<relative path without extension>``)."""
    def rel(name):
        return None if name is None else f"{folder}/{name}"

    return {"id": [track.id] * len(rows), "relative_path": [track.relative_path] * len(rows),
            "layer": [int(r["layer"]) for r in rows], "feature": [int(r["feature"]) for r in rows],
            "audio": [rel(r["audio"]) for r in rows], "image": [rel(r.get("image")) for r in rows],
            **{k: [r.get(k) for r in rows] for k in ("max", "mean", "active", "spectral_convergence", "clipped")},
            "inconsistent": [None if r.get("inconsistent") is None else bool(r["inconsistent"]) for r in rows],
            "offset": [float(r["offset"]) for r in rows], "duration": [float(r["duration"]) for r in rows]}


def clip_table(cols: dict, run: str):
    """The clip columns of some tracks as a pyarrow Table (`COLUMNS`)."""
    from .tables import import_pyarrow

    pa, _ = import_pyarrow()
    n = len(cols.get("id", []))
    types = {"id": pa.string(), "relative_path": pa.string(), "layer": pa.int32(), "feature": pa.int32(),
             "audio": pa.string(), "image": pa.string(), "max": pa.float32(), "mean": pa.float32(),
             "active": pa.float32(), "spectral_convergence": pa.float32(), "clipped": pa.float32(),
             "inconsistent": pa.bool_(), "offset": pa.float64(), "duration": pa.float64()}
    data = {k: pa.array(cols.get(k, []), t) for k, t in types.items()}
    return pa.table({**data, "run": pa.array([run] * n, pa.string())})


def read_clips(out, *, layers=None, features=None, inconsistent: bool | None = None, columns=None):
    """The clip table of OUT as one pyarrow Table, sorted by id, layer, feature: the rows of each
    track's latest ok ledger row's part only (no orphans, no duplicates).

    Args:
        layers, features: keep only these layers / features (ints or lists of ints).
        inconsistent: True keeps only the clips flagged inconsistent, False only the others.
        columns: keep only these columns (`COLUMNS`; id, layer and feature are always kept).

    Catalogues written before the clip table existed have no clip parts: their tracks have no rows.
    """
    from .tables import read_parts

    filters = [] if inconsistent is None else [("inconsistent", "=", bool(inconsistent))]
    return read_parts(out, "clips", clip_table({}, ""), COLUMNS, layers=layers, features=features, columns=columns,
                      filters=filters)
