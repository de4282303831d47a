"""What a catalogue reads: the source walk, stable track ids, shards and ``OUT/manifest.parquet``.

SRC is either

- a folder, walked recursively in sorted order: every file whose suffix is one the loader reads
  (`corpus.AUDIO_EXTENSIONS`), hidden files and folders (a leading ".") left out; a track's
  relative path is its path relative to SRC; or
- a text file of paths, one a line (blank lines and lines starting with "#" left out); relative
  lines are relative to the list file's folder, and so is a track's relative path. A path outside
  that folder keeps its whole absolute path under ``_root/`` (``/data/x.ogg`` -> ``_root/data/x.ogg``),
  so no relative path ever climbs out of ``OUT/audio/``.

A track's id is a hash of its relative path (POSIX form), so two ``intro.ogg`` in different
folders are two tracks, and the id survives moving SRC. Its output folder is
``OUT/audio/<relative path without extension>``; when two inputs share that stem (``a.ogg`` and
``a.wav`` side by side) each keeps its extension as ``a_ogg``, ``a_wav``. Its shard under
``--shard i/N`` is the id's hash modulo N.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..corpus import AUDIO_EXTENSIONS
from ..errors import CnnauralError


@dataclass(frozen=True)
class Track:
    """One input of a catalogue."""
    id: str
    path: str           # the file as it is opened
    relative_path: str  # POSIX, relative to SRC (see the module docstring)
    folder: str         # the output folder under OUT/audio/
    size: int
    mtime: float


def track_id(relative_path: str) -> str:
    """The stable id of a track: 16 hex digits of the SHA-1 of its relative path."""
    return hashlib.sha1(relative_path.encode("utf-8")).hexdigest()[:16]


def shard_of(tid: str, n_shards: int) -> int:
    """The shard (0..n_shards-1) a track id falls in."""
    return int(tid, 16) % int(n_shards)


def parse_shard(text, environ=None) -> tuple:
    """'i/N' -> (i, N). None: from SLURM_ARRAY_TASK_ID (minus SLURM_ARRAY_TASK_MIN) and
    SLURM_ARRAY_TASK_COUNT when both are set, else (0, 1)."""
    env = os.environ if environ is None else environ
    if text is None or text == "":
        if "SLURM_ARRAY_TASK_ID" in env and "SLURM_ARRAY_TASK_COUNT" in env:
            try:
                i = int(env["SLURM_ARRAY_TASK_ID"]) - int(env.get("SLURM_ARRAY_TASK_MIN", 0))
                return _check_shard(i, int(env["SLURM_ARRAY_TASK_COUNT"]), "the SLURM array variables")
            except ValueError:
                raise CnnauralError("SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT are not integers") from None
        return 0, 1
    if isinstance(text, (tuple, list)):
        return _check_shard(int(text[0]), int(text[1]), "shard")
    try:
        i, n = (int(v) for v in str(text).split("/"))
    except ValueError:
        raise CnnauralError(f"--shard must be i/N, e.g. 0/4 (got {text!r})") from None
    return _check_shard(i, n, "--shard")


def _check_shard(i: int, n: int, what: str) -> tuple:
    if n < 1 or not 0 <= i < n:
        raise CnnauralError(f"{what}: shard {i}/{n} is out of range (0 <= i < N)")
    return i, n


def walk_source(src) -> list:
    """The tracks of SRC (a folder or a list file), sorted by relative path.

    Raises:
        CnnauralError: SRC missing, a listed file missing, or no audio at all.
    """
    src = Path(src)
    if src.is_dir():
        pairs = _walk_folder(src)
    elif src.is_file():
        pairs = _read_list(src)
    else:
        raise CnnauralError(f"SRC not found: {src} (a folder of audio files or a text file of paths)")
    if not pairs:
        raise CnnauralError(f"no audio files in {src} (suffixes: {', '.join(AUDIO_EXTENSIONS)})")
    pairs.sort(key=lambda p: p[1])
    rels = [rel for _, rel in pairs]
    if len(set(rels)) != len(rels):
        dup = next(r for r in rels if rels.count(r) > 1)
        raise CnnauralError(f"{src} lists {dup} more than once")
    folders = _output_folders(rels)
    tracks = []
    for (path, rel), folder in zip(pairs, folders):
        st = os.stat(path)
        tracks.append(Track(track_id(rel), str(path), rel, folder, int(st.st_size), float(st.st_mtime)))
    return tracks


def _walk_folder(root: Path) -> list:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or Path(name).suffix.lower() not in AUDIO_EXTENSIONS:
                continue
            path = Path(dirpath) / name
            if path.is_file():
                out.append((path, path.relative_to(root).as_posix()))
    return out


def _read_list(list_file: Path) -> list:
    base = list_file.resolve().parent
    out = []
    for n, line in enumerate(list_file.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        path = Path(os.path.normpath(base / os.path.expanduser(line)))
        if not path.is_file():
            raise CnnauralError(f"{list_file}:{n}: file not found: {line}")
        try:
            rel = path.relative_to(base).as_posix()
        except ValueError:
            rel = "_root/" + path.as_posix().lstrip("/")
        out.append((path, rel))
    return out


def _output_folders(rels: list) -> list:
    stems = [str(PurePosixPath(r).with_suffix("")) for r in rels]
    count: dict = {}
    for s in stems:
        count[s] = count.get(s, 0) + 1
    return [s if count[s] == 1 else f"{s}_{PurePosixPath(r).suffix.lstrip('.').lower()}"
            for s, r in zip(stems, rels)]


MANIFEST_COLUMNS = ("id", "relative_path", "folder", "size", "mtime", "shard", "n_shards")


def manifest_table(tracks: list, n_shards: int):
    """The manifest as a pyarrow Table: one row per track, its shard under `n_shards`."""
    from .tables import import_pyarrow

    pa, _ = import_pyarrow()
    return pa.table({
        "id": pa.array([t.id for t in tracks], pa.string()),
        "relative_path": pa.array([t.relative_path for t in tracks], pa.string()),
        "folder": pa.array([t.folder for t in tracks], pa.string()),
        "size": pa.array([t.size for t in tracks], pa.int64()),
        "mtime": pa.array([t.mtime for t in tracks], pa.float64()),
        "shard": pa.array([shard_of(t.id, n_shards) for t in tracks], pa.int32()),
        "n_shards": pa.array([n_shards] * len(tracks), pa.int32()),
    })


def write_manifest(out, tracks: list, n_shards: int) -> Path:
    """``OUT/manifest.parquet``, written atomically."""
    from .tables import write_parquet

    return write_parquet(Path(out) / "manifest.parquet", manifest_table(tracks, n_shards))


def read_manifest(out) -> list:
    """The manifest rows of OUT as dicts ([] before the first run)."""
    from .tables import read_parquet

    path = Path(out) / "manifest.parquet"
    return read_parquet(path).to_pylist() if path.is_file() else []
