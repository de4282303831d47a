"""The Ray engine: the local engine's per-track work in Ray Data actors (``--engine ray``).

`run_catalogue(..., engine="ray")` plans the run as the local engine does, then hands the pending
tracks to `ray_results`:

    ray.data.from_items(pending tracks)            one block per batch_size tracks (so results
                                                   stream back)
      .map_batches(TrackWorker, batch_size=B)      an actor pool; each actor builds the Auraliser
                                                   once in __init__ (from the checkpoint path, or
                                                   the shipped model) and runs the engine's
                                                   per-track work on each batch (decode, activation
                                                   rows, the excerpts auralised, OUT/audio/...)
      .iter_batches()                              back in the driver: (track, result, seconds)

and the driver records every result exactly as the local engine does (`engine.Recorder`: the
activation parts, then the ok ledger rows), so a track is ok only once its files and rows are on
disk, and a run of either engine resumes one of the other. The actors write the audio folders
themselves: on a cluster, OUT must be a file system every node sees at the same path, and the
package must be installed on every node.

Per-file failures never leave an actor: the per-track work turns them into error rows, and
anything else an actor raises for a track becomes that track's error row here too (Ray Data's
`max_errored_blocks` would drop whole blocks silently). Each actor checks that the model it built
has the run's config fingerprint before it takes a track.

Resources: without `address` a local Ray is started for the run (and shut down after it) with
more logical CPUs than cores (2 per core, at least 4): actors take 1 CPU each, one per core by
default (`workers` sets how many), and that headroom keeps Ray Data's own tasks from starving (on
2 cores, actors taking every logical CPU hang the job). With a CUDA auraliser each actor takes 1
GPU (one actor per GPU by default). A Ray already initialised in this process is used as it is
and left running. Each actor computes with this process's torch threads shared out among the
actors (at least 1), and keeps the memory it frees, as the local engine's workers do.

Same bytes: the convolutions' float sums depend on the number of torch threads, so the Ray engine
writes byte-identical files and rows to the local engine's when its actors compute with the same
number of threads as the local engine's workers (the same ``workers`` on one machine, which shares
the threads out alike); otherwise clips and statistics may differ in the last bits.

Ray is an optional extra (``pip install cnnaural_ext[ray]``), imported only here.
"""
from __future__ import annotations

import os
import pickle

import numpy as np

from ..errors import CnnauralError
from .sources import Track
from .workers import build_auraliser, check_model, keep_freed_memory, model_recipe

RAY_MISSING = "the Ray engine needs Ray: pip install cnnaural_ext[ray] (or pip install 'ray[data]')"
TRACK_FIELDS = ("id", "path", "relative_path", "folder", "size", "mtime")


def import_ray():
    """`ray` with Ray Data, or a CnnauralError saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise CnnauralError(RAY_MISSING) from None
    return ray


class TrackWorker:
    """The Ray Data actor: one Auraliser, the engine's function `work(auraliser, tracks, job) ->
    [(result, seconds)]` per batch of tracks (`engine.process_files`)."""

    def __init__(self, recipe: dict, work, job, config: dict, threads: int):
        import torch

        torch.set_num_threads(max(1, int(threads)))
        keep_freed_memory()  # as the local engine's workers do (`workers` module)
        self.aur = build_auraliser(recipe)
        check_model(self.aur, job, config)
        self.work, self.job = work, job

    def __call__(self, batch: dict) -> dict:
        tracks = [track_from_batch(batch, i) for i in range(len(batch["id"]))]
        try:
            done = self.work(self.aur, tracks, self.job)
        except Exception as e:  # never let a track fail the block: error rows instead
            error = {"status": "error", "error_type": type(e).__name__, "message": (str(e) or repr(e)).splitlines()[0]}
            done = [(error, 0.0)] * len(tracks)
        blobs = [pickle.dumps(r, protocol=pickle.HIGHEST_PROTOCOL) for r in done]
        return {"id": np.array([t.id for t in tracks], dtype=object), "result": np.array(blobs, dtype=object)}


def track_item(t: Track) -> dict:
    return {k: getattr(t, k) for k in TRACK_FIELDS}


def track_from_batch(batch: dict, i: int) -> Track:
    return Track(id=str(batch["id"][i]), path=str(batch["path"][i]), relative_path=str(batch["relative_path"][i]),
                 folder=str(batch["folder"][i]), size=int(batch["size"][i]), mtime=float(batch["mtime"][i]))


def start_ray(ray, address: str | None) -> bool:
    """Join `address`, or start a local Ray unless one runs in this process; True when this call
    started (or joined) it, so the run shuts it down after."""
    import logging

    if ray.is_initialized():
        if address:
            raise CnnauralError("Ray is already initialised in this process; leave out --ray-address")
        return False
    # Ray's own notes (token authentication, Ray Data's execution notes) say nothing a catalogue
    # user can act on: only its errors are shown
    kw = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    try:
        if address:
            ray.init(address=address, **kw)
        else:
            ray.init(num_cpus=max(4, 2 * (os.cpu_count() or 1)), **kw)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise CnnauralError(f"could not start {where}: {str(e).splitlines()[0] if str(e) else repr(e)}") from None
    return True


def actor_resources(ray, recipe: dict, workers: int | None) -> tuple:
    """(actors, num_cpus, num_gpus per actor, torch threads per actor: this process's torch threads
    shared out among the actors, at least 1)."""
    import torch

    res = ray.cluster_resources()
    cuda = recipe.get("device") == "cuda" or (recipe["kind"] == "object" and recipe["auraliser"].device.type == "cuda")
    if cuda:
        gpus = int(res.get("GPU", 0))
        if gpus < 1:
            raise CnnauralError("--device cuda: the Ray cluster has no GPU")
        n = workers or gpus
        return n, 1, 1, max(1, torch.get_num_threads() // n)
    n = workers or max(1, min(os.cpu_count() or 1, int(res.get("CPU", 1)) - 1))
    return n, 1, 0, max(1, torch.get_num_threads() // n)


def ray_results(auraliser, todo: list, job, work, *, workers: int | None, address: str | None, config: dict,
                batch_size: int = 1):
    """Run `work(auraliser, tracks, job) -> [(result, seconds)]` on `batch_size` tracks of `todo` at
    a time on Ray Data actors; yields (track, result, seconds) as results arrive (in any order)."""
    import logging

    ray = import_ray()
    recipe = model_recipe(auraliser)
    started = start_ray(ray, address)
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        n, cpus, gpus, threads = actor_resources(ray, recipe, workers)
        blocks = -(-len(todo) // batch_size)  # a block per batch, so results stream back
        ds = ray.data.from_items([track_item(t) for t in todo], override_num_blocks=blocks)
        ds = ds.map_batches(TrackWorker, batch_size=batch_size, batch_format="numpy",
                            compute=ray.data.ActorPoolStrategy(size=n),
                            num_cpus=cpus, num_gpus=gpus, fn_constructor_kwargs=dict(recipe=recipe, work=work, job=job,
                                                                      config=config, threads=threads))
        by_id, seen = {t.id: t for t in todo}, set()
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=0):
            for tid, blob in zip(batch["id"], batch["result"]):
                tid = str(tid)
                if tid in seen:  # a block Ray ran twice
                    continue
                seen.add(tid)
                result, seconds = pickle.loads(blob)
                yield by_id[tid], result, seconds
    finally:
        if started:
            ray.shutdown()
