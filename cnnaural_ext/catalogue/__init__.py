"""Catalogues: auralise thousands of tracks resumably, sharded, and tabulate every feature.

`run_catalogue(SRC, OUT, ...)` (`cnnaural catalogue` is a thin shell over it) writes, every file
atomically, with the local engine (default) or on Ray Data (``engine="ray"``, `ray_engine`; the
same per-track work, the same files and rows):

- ``OUT/config.json``: the config and its fingerprint (`config`); another config on the same OUT
  is refused;
- ``OUT/manifest.parquet``: one row per input (`sources`): id (a hash of the path relative to
  SRC), relative_path, folder, size, mtime, shard, n_shards;
- ``OUT/audio/<relative path without extension>/``: what `Auraliser.auralise_file` writes for
  the excerpt (original.flac, layer<L>_feature<kkk>.flac, manifest.json; PNGs with figures);
- ``OUT/activations/part-<run>-<nnnn>.parquet``: per (track, layer, feature), every feature of
  every chosen layer over the whole track (`activations`); read them with `read_activations`;
- ``OUT/clips/part-<run>-<nnnn>.parquet``: per clip written (track, layer, feature), its file and
  how far its audio is from its map (spectral convergence, clipped share, the inconsistent flag;
  `clips`); read them with `read_clips`;
- ``OUT/ledger/<run>.jsonl``: one row per track attempt (`ledger`); a track's latest row is its
  state, ok only once its files and activation rows are on disk.

`build_atlas(OUT)` (module `atlas`) selects every feature's top tracks and windows from the
activation table and auralises them into ``OUT/atlas/``; `report.atlas.write_atlas` draws its pages.

A rerun skips what is done, `retry_failed` redoes errors, `shard=(i, N)` takes a disjoint slice,
a lock per shard refuses a concurrent run on the same shard. `status(OUT)` says where it stands.

Needs pyarrow (``pip install cnnaural_ext[catalogue]``), imported only when used; the Ray engine
needs Ray (``pip install cnnaural_ext[ray]``), likewise.
"""
from .activations import DEFAULT_WINDOW, read_activations
from .atlas import build_atlas
from .clips import read_clips
from .config import fingerprint
from .engine import ENGINES, run_catalogue, summary_line
from .ledger import latest_states, read_rows
from .sources import parse_shard, read_manifest, shard_of, track_id, walk_source
from .summary import format_status, status

__all__ = ["DEFAULT_WINDOW", "ENGINES", "build_atlas", "fingerprint", "format_status", "latest_states", "parse_shard",
           "read_activations", "read_clips", "read_manifest", "read_rows", "run_catalogue", "shard_of", "status",
           "summary_line", "track_id",
           "walk_source"]
