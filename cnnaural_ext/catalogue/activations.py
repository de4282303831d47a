"""The activation table: one row per (track, layer, feature) for every feature of every chosen
layer, from ONE forward pass over the whole track (not the auralised excerpt).

Columns: id, relative_path, layer, feature, mean, max (over the whole (h, w) map), max_time (the
time in seconds of the map column holding the max), active (fraction of positions > 0),
window_max (list: the max of each consecutive window of `window` seconds, default 4; the last
window may be shorter), duration (the track's seconds), run.

Times: the layer's map has w columns for the input's T STFT frames; column c starts at frame
c * T / w (the layer's time stride, T / w frames, is the product of the pool strides for the
paper's 'same' convolutions), i.e. at c * (T / w) * hop / sample_rate seconds.

Durability: rows are kept in memory and written as one Parquet part file per flush
(``OUT/activations/part-<run>-<nnnn>.parquet``, fsync'd, then renamed into place); only after
that are the ok ledger rows of those tracks appended, each naming its part. So an ok track's rows
are always on disk. A kill between the rename and the ledger append leaves rows no ok row names;
`read_activations` keeps only the rows of each track's latest ok row's part, so such orphans (and
rows of tracks later redone) never show up twice.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch

from ..errors import CnnauralError

DEFAULT_WINDOW = 4.0


def layer_rows(act: torch.Tensor, layer: int, n_frames: int, *, hop_length: int, sample_rate: int,
               window: float = DEFAULT_WINDOW) -> dict:
    """Columns for every feature of one layer's output `act` (C, h, w) of an input of n_frames.

    Returns:
        a dict of lists (one entry per feature): layer, feature, mean, max, max_time, active, window_max.
    """
    C, h, w = act.shape
    act = act.float()
    sec_per_col = (n_frames / w) * hop_length / sample_rate
    if act.stride(0) == 1 and C > 1:  # channels-last: reduce over the outer axis of (h, w, C)
        colmax = act.permute(1, 2, 0).amax(dim=0).t()  # (C, w)
    else:
        colmax = act.amax(dim=1)
    amax, col = colmax.max(dim=1)  # the max and the column holding it
    n_win = max(1, math.ceil(n_frames * hop_length / sample_rate / window - 1e-9))
    win_of_col = torch.clamp((torch.arange(w, device=act.device) * sec_per_col / window).floor().long(), max=n_win - 1)
    wmax = torch.full((C, n_win), float("nan"), device=act.device)
    wmax = wmax.scatter_reduce(1, win_of_col.expand(C, w), colmax, reduce="amax", include_self=False)
    active = torch.count_nonzero(act > 0, dim=(1, 2)).float() / (h * w)
    stats = torch.stack([act.mean(dim=(1, 2)), amax, col.float(), active], 1).cpu().tolist()
    return {"layer": [int(layer)] * C, "feature": list(range(C)),
            "mean": [s[0] for s in stats], "max": [s[1] for s in stats],
            "max_time": [int(s[2]) * sec_per_col for s in stats],
            "active": [s[3] for s in stats], "window_max": wmax.cpu().tolist()}


def track_rows(auraliser, wave: torch.Tensor, layers: list, window: float = DEFAULT_WINDOW) -> dict:
    """The activation columns of one whole track (n,) for `layers`: one STFT, one forward pass."""
    spec, dn = auraliser.spectrogram, auraliser.deconvnet
    _, S = spec(wave.to(auraliser.device, torch.float32))
    # no switches: the table needs none; channels-last maps make the whole-track pass about 1.6x
    # faster on CPU (the convolutions and the pools vectorise over channels)
    x = auraliser.model_input(S, wave)
    if x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        outputs = dn.layer_outputs(x, layers)
    return outputs_rows({layer: outputs[layer][0] for layer in layers}, S.shape[-1], spec, window)


def outputs_rows(outputs: dict, n_frames: int, spectrogram, window: float = DEFAULT_WINDOW) -> dict:
    """The activation columns of one track from its layers' outputs {layer: (C, h, w)} over all
    of its n_frames STFT frames (e.g. the `AuralisationResult.activation`s of an excerpt that is
    the whole track)."""
    cols: dict = {}
    for layer, act in outputs.items():
        part = layer_rows(act, layer, n_frames, hop_length=spectrogram.hop_length,
                          sample_rate=spectrogram.sample_rate, window=window)
        for k, v in part.items():
            cols.setdefault(k, []).extend(v)
    return cols


def min_frames(auraliser, layer: int, limit: int = 1 << 16) -> int:
    """The fewest STFT frames the model takes up to `layer` and still gives a map of width >= 1."""
    dn, n_bins = auraliser.deconvnet, auraliser.spectrogram.n_bins

    def fits(t):
        try:
            x = torch.zeros(1, 1, n_bins, t, device=auraliser.device)
            return dn.activations(x, layer).shape[-1] >= 1
        except (CnnauralError, RuntimeError):
            return False

    hi = 1
    while not fits(hi):
        hi *= 2
        if hi > limit:
            raise CnnauralError(f"the model does not take this Spectrogram's input ({n_bins} bins) up to layer {layer}")
    lo = hi // 2  # does not fit (or 0)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if fits(mid) else (mid, hi)
    return hi


class PartWriter:
    """Collects the rows of tracks and writes them as one part per flush: the activation rows to
    ``OUT/activations/<part>`` and the clip rows (`clips`) to ``OUT/clips/<part>``, same name."""

    def __init__(self, out, run: str):
        self.out = Path(out)
        self.run = run
        self.seq = 0
        self.cols: dict = {}
        self.clips: dict = {}
        self.n_tracks = 0

    def add(self, track, cols: dict, duration: float, clips: dict | None = None) -> None:
        n = len(cols["feature"])
        extra = {"id": [track.id] * n, "relative_path": [track.relative_path] * n, "duration": [duration] * n}
        for k, v in {**extra, **cols}.items():
            self.cols.setdefault(k, []).extend(v)
        for k, v in (clips or {}).items():
            self.clips.setdefault(k, []).extend(v)
        self.n_tracks += 1

    def flush(self) -> str | None:
        """Write the collected rows (durably: clips first, the activation part last) and return
        the part's file name; None if empty."""
        if not self.n_tracks:
            return None
        from .clips import clip_table
        from .tables import write_parquet

        name = f"part-{self.run}-{self.seq:04d}.parquet"
        write_parquet(self.out / "clips" / name, clip_table(self.clips, self.run), fsync=True)
        write_parquet(self.out / "activations" / name, activation_table(self.cols, self.run), fsync=True)
        self.seq += 1
        self.cols, self.clips, self.n_tracks = {}, {}, 0
        return name


def activation_table(cols: dict, run: str):
    from .tables import import_pyarrow

    pa, _ = import_pyarrow()
    n = len(cols.get("id", []))
    return pa.table({
        "id": pa.array(cols.get("id", []), pa.string()),
        "relative_path": pa.array(cols.get("relative_path", []), pa.string()),
        "layer": pa.array(cols.get("layer", []), pa.int32()),
        "feature": pa.array(cols.get("feature", []), pa.int32()),
        "mean": pa.array(cols.get("mean", []), pa.float32()),
        "max": pa.array(cols.get("max", []), pa.float32()),
        "max_time": pa.array(cols.get("max_time", []), pa.float64()),
        "active": pa.array(cols.get("active", []), pa.float32()),
        "window_max": pa.array(cols.get("window_max", []), pa.list_(pa.float32())),
        "duration": pa.array(cols.get("duration", []), pa.float64()),
        "run": pa.array([run] * n, pa.string()),
    })


#: the columns of the activation table, in order
COLUMNS = ("id", "relative_path", "layer", "feature", "mean", "max", "max_time", "active", "window_max", "duration",
           "run")


def read_activations(out, *, layers=None, features=None, columns=None):
    """The activation table of OUT as one pyarrow Table: the rows of each track's latest ok
    ledger row's part only (no orphans, no duplicates), sorted by id, layer, feature.

    Args:
        layers, features: keep only these layers / features (ints or lists of ints); the filter
            is pushed into the Parquet reader, so a 100,000-track catalogue is read a layer at a time.
        columns: keep only these columns (`COLUMNS`; id, layer and feature are always kept).
            Leaving out window_max, the one list column, makes the read several times lighter.
    """
    from .tables import read_parts

    return read_parts(out, "activations", activation_table({}, ""), COLUMNS, layers=layers, features=features,
                      columns=columns)
