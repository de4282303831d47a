"""The ledger of a catalogue (``OUT/ledger/<run>.jsonl``) and its locks (``OUT/locks/``).

One JSON line per track attempt, appended by one run only (its own file) and made durable
(flush + fsync) before the next track is reported. A line cut short by a kill is ignored when
read. A track's state is its latest row (by time, then file and line): ``ok``, ``error`` or
``skipped``. Rows: id, relative_path, status, error_type, message, seconds, config (the
fingerprint), run, part (the activation part file holding an ok track's rows), time.

Locks are ``fcntl.flock`` on ``OUT/locks/shard-<i>of<N>.lock`` for a run's whole life (two runs on
the same OUT and shard are refused; different shards run side by side), and briefly on
``OUT/locks/config.lock`` while config.json and the manifest are checked and written. The kernel
drops a flock when its process dies, so a killed run never leaves OUT locked.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from ..errors import CnnauralError

STATUSES = ("ok", "error", "skipped")


def new_run_id(shard: tuple) -> str:
    """A file-system-safe, unique name for one run of one shard: time, host, process and a random
    tag (two runs in one process within one second must not share their part and ledger files)."""
    import secrets

    host = "".join(c if c.isalnum() or c in "-_" else "_" for c in socket.gethostname())[:40] or "host"
    return f"{time.strftime('%Y%m%dT%H%M%S')}-{host}-{os.getpid()}-{secrets.token_hex(4)}-s{shard[0]}of{shard[1]}"


class Ledger:
    """The append-only ledger file of one run."""

    def __init__(self, out, run: str, config_fingerprint: str):
        self.path = Path(out) / "ledger" / f"{run}.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.run = run
        self.config = config_fingerprint
        self._f = open(self.path, "a", encoding="utf-8")

    def row(self, track, status: str, *, seconds: float = 0.0, error_type: str | None = None,
            message: str | None = None, part: str | None = None) -> dict:
        """The ledger row of one attempt (not yet written)."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}")
        return {"id": track.id, "relative_path": track.relative_path, "status": status, "error_type": error_type,
                "message": message, "seconds": round(float(seconds), 4), "config": self.config, "run": self.run,
                "part": part, "time": time.time()}

    def append(self, rows) -> None:
        """Append rows in one write, then flush and fsync: durable before this returns."""
        if isinstance(rows, dict):
            rows = [rows]
        if not rows:
            return
        self._f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()


def read_rows(out) -> list:
    """Every complete ledger row of OUT, ordered by (time, file, line)."""
    rows = []
    for path in sorted((Path(out) / "ledger").glob("*.jsonl")):
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f):
                if not line.endswith("\n"):
                    break  # cut short by a kill
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                if isinstance(row, dict) and "id" in row and row.get("status") in STATUSES:
                    rows.append((row.get("time", 0.0), path.name, n, row))
    rows.sort(key=lambda r: r[:3])
    return [r[3] for r in rows]


def latest_states(out, config_fingerprint: str | None = None) -> dict:
    """id -> the track's latest ledger row (only rows of `config_fingerprint` when given)."""
    state = {}
    for row in read_rows(out):
        if config_fingerprint is None or row.get("config") == config_fingerprint:
            state[row["id"]] = row
    return state


class Lock:
    """An exclusive, non-blocking flock on a file, with who holds it written inside."""

    def __init__(self, path, what: str):
        self.path = Path(path)
        self.what = what
        self._fd = None

    def acquire(self, blocking: bool = False) -> "Lock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            holder = os.pread(fd, 400, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise CnnauralError(f"{self.what} is in use by another catalogue run ({holder}); wait for it to "
                                "finish, or give this run another --shard") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}"
                  .encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self if self._fd is not None else self.acquire()

    def __exit__(self, *exc):
        self.release()


def shard_lock(out, shard: tuple) -> Lock:
    return Lock(Path(out) / "locks" / f"shard-{shard[0]}of{shard[1]}.lock", f"{out} shard {shard[0]}/{shard[1]}")


def config_lock(out) -> Lock:
    return Lock(Path(out) / "locks" / "config.lock", f"{out}")
