"""The local engine's worker processes: each decodes and computes whole tracks, the driver records.

`pool_results(auraliser, todo, job, work, workers=N, ...)` starts N processes ("spawn": torch and
fork do not mix). Each builds the Auraliser once (`model_recipe`: from its checkpoint file, or
as the shipped model), checks that it has the run's config and weights, computes with its
share of this process's torch threads (at least 1), and then runs `work(auraliser, tracks, job)`
(`engine.process_files`: decode, activation rows, the excerpts auralised and written) on one batch
of tracks at a time. Up to 2 x N batches are in flight; results come back as they finish, and the
driver records them (`engine.Recorder`: the one writer of the parts and the ledger).

Why processes and not one compute loop with decode workers: the per-track work of a short clip
is many small ops whose cost is Python and dispatch, which a second torch thread does not halve;
two processes with one thread each keep both cores busy on a 2-core machine, and a process that
decodes while the other computes needs no hand-off.

Each worker also keeps the memory it frees (glibc's `mallopt`: no mmap for large blocks, no trim),
so the whole-track pass over a long track, whose maps are hundreds of megabytes, reuses its pages
instead of mapping and faulting them in anew for every map (on a 10-minute track: about half the
wall time of that pass, most of it in the kernel). A worker's memory stays at its largest track's
peak until the run ends; this process's allocator is left as it is.

A worker whose process dies (a crashing codec) breaks the pool: the batches that were in flight
are then redone one track at a time, each in a fresh one-worker pool, so the culprit becomes one
`DecoderCrash` error row and the others are unharmed. A worker exits when the driver dies (kill -9
included), so nothing writes into OUT after its run is gone.
"""
from __future__ import annotations

import collections
import os
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from ..errors import CnnauralError

CRASH = ("DecoderCrash", "the worker process died while reading or computing this track")
_STATE: dict = {}


def model_recipe(auraliser) -> dict:
    """How a worker rebuilds `auraliser`: from its checkpoint file, as the shipped model, or (a
    model that came from no file) from the pickled object itself."""
    source = str(auraliser.source)
    device = "cuda" if auraliser.device.type == "cuda" else "cpu"
    if source == "shipped":
        return {"kind": "shipped", "device": device}
    if Path(source).is_file():
        return {"kind": "checkpoint", "path": str(Path(source).resolve()), "source": source, "device": device}
    return {"kind": "object", "auraliser": auraliser}


def build_auraliser(recipe: dict):
    """The Auraliser a `model_recipe` describes (in a worker)."""
    from ..auralise import Auraliser

    if recipe["kind"] == "shipped":
        return Auraliser.pretrained(device=recipe["device"])
    if recipe["kind"] == "checkpoint":
        aur = Auraliser.from_checkpoint(recipe["path"], device=recipe["device"])
        aur.source = recipe["source"]  # as the driver names it: manifests record it
        return aur
    return recipe["auraliser"]


def check_model(aur, job, config: dict, weights: str | None = None) -> None:
    """Raise when a worker's model is not the driver's (another file at the checkpoint path, or
    weights changed in memory after loading: `weights_digest`, when given)."""
    from .config import catalogue_config, describe_difference

    mine = catalogue_config(aur, layers=job.layers, window=job.window, **job.req)
    if mine != config:
        raise CnnauralError("a worker built another model than the driver's "
                            f"({describe_difference(config, mine)}); pass the checkpoint as --model")
    if weights is not None and weights_digest(aur.model) != weights:
        raise CnnauralError(f"the model's weights differ from its checkpoint {aur.source}: save them to a "
                            "checkpoint and pass that, or compute in this process (workers=0)")


def weights_digest(model) -> str:
    """SHA-256 of a model's parameters and buffers."""
    import hashlib

    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def can_rebuild(auraliser) -> bool:
    """Whether worker processes can rebuild `auraliser` (a model from a checkpoint file or the
    shipped one; one made in memory cannot be sent to another process)."""
    return model_recipe(auraliser)["kind"] != "object"


def keep_freed_memory() -> bool:
    """glibc only: serve every block from the heap and never trim it (see the module docstring)."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_max = -1, -4
        return bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 2 ** 31 - 1))
    except (OSError, AttributeError):  # not glibc: the allocator is left as it is
        return False


def _exit_with(parent: int) -> None:
    while True:
        time.sleep(0.2)
        if os.getppid() != parent:
            os._exit(1)


def _init_worker(parent: int, recipe: dict, work, job, config: dict, threads: int, weights: str) -> None:
    """Set up one worker; a failure is kept and raised by every task (the run stops with it)."""
    threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()
    keep_freed_memory()
    try:
        import torch

        torch.set_num_threads(max(1, int(threads)))
        aur = build_auraliser(recipe)
        check_model(aur, job, config, weights)
        _STATE.update(aur=aur, work=work, job=job, error=None)
    except Exception as e:
        _STATE.update(error=e)


class WorkerSetupError(Exception):
    """A worker could not build the run's model: the run stops."""


def _run_batch(tracks: list) -> list:
    """[(result, seconds)] of one batch, in a worker; never raises for a track."""
    if _STATE.get("error") is not None:
        e = _STATE["error"]
        raise WorkerSetupError(str(e) or repr(e))
    try:
        return _STATE["work"](_STATE["aur"], tracks, _STATE["job"])
    except Exception as e:  # never let a track end the run: error rows instead
        error = {"status": "error", "error_type": type(e).__name__, "message": (str(e) or repr(e)).splitlines()[0]}
        return [(error, 0.0)] * len(tracks)


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def pool_results(auraliser, todo: list, job, work, *, workers: int, config: dict, batch_size: int = 1):
    """Run `work` on `batch_size` tracks of `todo` at a time in `workers` processes; yields
    (track, result, seconds) as batches finish (see the module docstring)."""
    import torch

    threads = max(1, torch.get_num_threads() // workers)
    args = (os.getpid(), model_recipe(auraliser), work, job, config, threads, weights_digest(auraliser.model))
    batches = collections.deque(todo[k:k + batch_size] for k in range(0, len(todo), batch_size))
    pool = _new_pool(workers, args)
    running: dict = {}
    try:
        while batches or running:
            while batches and len(running) < 2 * workers:
                batch = batches.popleft()
                running[pool.submit(_run_batch, batch)] = batch
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in done:
                batch = running.pop(fut)
                try:
                    results = fut.result()
                except BrokenProcessPool:
                    suspects = [t for b in [batch, *running.values()] for t in b]
                    running.clear()
                    pool.shutdown(wait=True, cancel_futures=True)
                    for t in suspects:
                        yield t, *_isolated(t, args)
                    pool = _new_pool(workers, args)
                    break
                except WorkerSetupError as e:
                    raise CnnauralError(str(e)) from None
                for t, (result, seconds) in zip(batch, results):
                    yield t, result, seconds
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _new_pool(n: int, args: tuple) -> ProcessPoolExecutor:
    import multiprocessing

    return ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker,
                               initargs=args)


def _isolated(track, args: tuple) -> tuple:
    """(result, seconds) of one track alone in a fresh one-worker pool: a crash blames it only."""
    pool = _new_pool(1, args)
    try:
        (result, seconds), = pool.submit(_run_batch, [track]).result()
    except BrokenProcessPool:
        result, seconds = {"status": "error", "error_type": CRASH[0], "message": CRASH[1]}, 0.0
    except WorkerSetupError as e:
        raise CnnauralError(str(e)) from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return result, seconds
