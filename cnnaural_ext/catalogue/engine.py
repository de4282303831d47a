"""`run_catalogue`, resumable and sharded: the local engine (decode in worker processes), and the
driver's side of every engine (`Recorder`) and the one per-track function (`process_tracks`).

One run: check the request; walk SRC; under the config lock check (or write) config.json and
write manifest.parquet; take the shard lock; plan (this shard's tracks minus those whose latest
row under this config is ok or skipped, and minus error rows unless `retry_failed`); then, in
manifest order, `batch_size` tracks at a time (1 by default), in worker processes that each decode
and compute their tracks (`workers.pool_results`; with workers 0 or on a GPU: the compute here,
decoding ahead in decoding processes, `decode.Decoder`), per track:

1. a decode failure, or non-finite samples -> an ``error`` row; a silent track (peak below
   `SILENCE`), one too short for the model up to the deepest chosen layer, or whose excerpt is
   -> a ``skipped`` row with the reason;
2. the activation rows of the whole track (`activations.track_rows`: one forward pass; for a track
   no longer than the excerpt, the excerpt's own forward pass in step 3 gives them);
3. the excerpt auralised (`Auraliser.auralise_layers`; the excerpts of one length in a batch
   together, `Auraliser.auralise_batch`) and written into ``OUT/audio/<folder>/``
   (`Auraliser.write_results`: every file atomically, manifest.json last);
4. the activation rows and the clip rows (`clips`: each clip's file and inversion quality) are
   kept until the next flush, which writes them as one Parquet part of each table (fsync'd) and
   then appends the tracks' ``ok`` rows (so an ok track has every file and row in place).

Steps 1-3 are `process_tracks`, which every engine runs (the Ray engine in its actors, through
`process_files`); step 4 is `Recorder`, in this process for every engine. Any other exception
while processing a track becomes that track's ``error`` row and the run goes on (a batch that
fails is redone track by track); `max_failures` errors stop it early. Temporary files a killed run
left in a track's folder are removed when the track is redone.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..auralise import excerpt
from ..errors import CnnauralError
from .activations import DEFAULT_WINDOW, PartWriter, min_frames, outputs_rows, track_rows
from .clips import clip_columns
from .config import catalogue_config, check_or_write_config
from .decode import Decoder, decode
from .ledger import Ledger, config_lock, latest_states, new_run_id, shard_lock
from .sources import parse_shard, shard_of, walk_source, write_manifest

#: peak magnitude under which a track counts as silent (-100 dBFS)
SILENCE = 1e-5
#: seconds between flushes of the activation rows, whatever `flush_every` says
FLUSH_SECONDS = 60.0
ENGINES = ("local", "ray")


class Skip(Exception):
    """A track that is fine but has nothing to auralise (silent, too short): a `skipped` row."""


def run_catalogue(src, out, *, auraliser=None, model=None, layers=1, features="top:3", offset: float = 0.0,
                  duration: float | None = 4.0, mode: str = "mask", phase: str = "original", seed: str = "map",
                  normalize: bool = True, audio_format: str = "flac", subtype: str = "PCM_16", figures: bool = False,
                  window: float = DEFAULT_WINDOW, workers: int | None = None, shard=None, retry_failed: bool = False,
                  max_failures: int | None = None, device="cpu", progress: bool = True, flush_every: int = 32,
                  engine: str = "local", ray_address: str | None = None, batch_size: int = 1) -> dict:
    """Auralise a catalogue and tabulate its activations into OUT, resumably (see the package docstring).

    Args:
        src: a folder (walked recursively) or a text file of paths.
        out: the catalogue folder (created).
        auraliser: an `Auraliser` to use; else `model` (a checkpoint path) or the shipped model, on `device`.
        layers, features: what to auralise per track (features per layer: "top:K" | "all" | [k, ...]);
            the activation table holds every feature of every chosen layer.
        offset, duration: the auralised excerpt in seconds (duration None or <= 0: to the end).
        mode, phase, seed, normalize, audio_format, subtype, figures: as `Auraliser.auralise_file`.
        window: seconds per window of the activation table's per-window maxima.
        workers: local engine on a CPU: worker processes, each decoding and computing its tracks
            with this process's torch threads shared out among them (default: one per core, at
            most 8; 0: decode and compute in this process); local engine on a GPU: decoding
            processes feeding the compute here (default min(4, cores)); Ray engine: actors (default:
            one per GPU with a CUDA auraliser, else one per core). The clips' last bits depend on
            the torch threads per worker: a resumed run writes the same bytes as an uninterrupted
            one with the same `workers` on the same machine.
        shard: "i/N" or (i, N); default from SLURM_ARRAY_TASK_ID/COUNT, else 0/1.
        retry_failed: also redo tracks whose latest row is an error.
        max_failures: stop after this many errors in this run.
        progress: show a progress bar on stderr.
        flush_every: tracks per activation part file (also flushed every FLUSH_SECONDS).
        engine: "local" (the per-track work in worker processes, `workers`) or "ray" (`ray_engine`:
            the same per-track work in Ray Data actors); either way this process writes the parts
            and the ledger.
        ray_address: the Ray cluster to join (engine "ray"); default: a local Ray started for the run.
        batch_size: tracks whose excerpts are auralised together (`process_tracks`: one batched
            STFT and forward pass, each track's seeds with its own switches). A throughput knob
            for GPUs, not part of the config: with 1 (the default) a resumed run writes the same
            bytes as an uninterrupted one; with more, clips and maps equal batch 1's up to float
            rounding (the batched convolutions sum in another order), so which tracks share a
            batch can change their last bits. On a CPU it does not pay (see the README).

    Returns:
        the summary dict: ok, error, skipped (this run), seconds, tracks (this shard), already_done,
        earlier_errors (not retried), pending (left after this run), stopped_early, shard, run, out,
        engine, timing (seconds: decode and compute, the local engine's worker processes decoding
        and doing the rest of the per-track work, summed over the workers; with workers 0 or on a
        GPU, decode_wait, the compute loop waiting on a decode, and compute, the per-track work in
        this process; write, writing parts and ledger rows).
    """
    from ..auralise import Auraliser

    if auraliser is None:
        auraliser = Auraliser.from_checkpoint(model, device=device) if model else Auraliser.pretrained(device=device)
    req = dict(features=features, offset=float(offset), duration=duration if duration and duration > 0 else None,
               mode=mode, phase=phase, seed=seed, normalize=normalize, audio_format=audio_format, subtype=subtype,
               figures=figures)
    layers = auraliser.check_file_request(layers=layers, **req)
    _check_options(layers, req, window, max_failures, flush_every, audio_format, subtype)
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise CnnauralError(f"--batch-size must be an integer >= 1 (got {batch_size!r})")
    if engine not in ENGINES:
        raise CnnauralError(f"engine must be one of {', '.join(ENGINES)} (got {engine!r})")
    if ray_address and engine != "ray":
        raise CnnauralError("--ray-address needs --engine ray")
    if engine == "ray":
        from .ray_engine import import_ray

        import_ray()  # missing Ray: one clear error before anything is written
    shard = parse_shard(shard)
    tracks = walk_source(src)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = catalogue_config(auraliser, layers=layers, window=window, **req)
    with config_lock(out).acquire(blocking=True):
        fp = check_or_write_config(out, config, str(auraliser.source), src=src)
        write_manifest(out, tracks, shard[1])
    lock = shard_lock(out, shard).acquire()
    try:
        return _run(auraliser, tracks, out, shard, fp, layers, req, window, workers=workers, retry_failed=retry_failed,
                    max_failures=max_failures, progress=progress, flush_every=flush_every, engine=engine,
                    ray_address=ray_address, config=config, batch_size=batch_size)
    finally:
        lock.release()


def _check_options(layers, req, window, max_failures, flush_every, audio_format, subtype):
    if "output" in layers:
        raise CnnauralError("catalogues auralise conv layers only (not 'output')")
    if req["offset"] < 0:
        raise CnnauralError(f"--offset must be >= 0 (got {req['offset']:g})")
    if not window > 0:
        raise CnnauralError(f"the activation window must be positive (got {window})")
    if max_failures is not None and max_failures < 1:
        raise CnnauralError(f"--max-failures must be >= 1 (got {max_failures})")
    if flush_every < 1:
        raise CnnauralError(f"--flush-every must be >= 1 (got {flush_every})")
    from ..io.audio import AUDIO_FORMATS

    if subtype not in AUDIO_FORMATS[f".{audio_format}"][1]:
        raise CnnauralError(f"{audio_format} files take the sample formats "
                            f"{', '.join(AUDIO_FORMATS[f'.{audio_format}'][1])} (got {subtype!r})")


def plan(out, tracks, shard, fp, retry_failed):
    """(this shard's tracks to do, already done (ok or skipped), earlier errors not retried, shard size)."""
    states = latest_states(out, fp)
    mine = [t for t in tracks if shard_of(t.id, shard[1]) == shard[0]]
    todo, done, errors = [], 0, 0
    for t in mine:
        st = states.get(t.id, {}).get("status")
        if st in ("ok", "skipped"):
            done += 1
        elif st == "error" and not retry_failed:
            errors += 1
        else:
            todo.append(t)
    return todo, done, errors, len(mine)


@dataclass(frozen=True)
class TrackJob:
    """What every track of one run is asked for (plain data: it travels to Ray actors)."""
    out: Path
    layers: list
    req: dict
    window: float
    need: int  # the fewest STFT frames the model takes up to the deepest layer


def _run(aur, tracks, out, shard, fp, layers, req, window, *, workers, retry_failed, max_failures, progress,
         flush_every, engine, ray_address, config, batch_size):
    from ..io.console import report

    t_start = time.perf_counter()
    run = new_run_id(shard)
    _clean_temporaries(out / "activations", f".part-*-s{shard[0]}of{shard[1]}-*")
    todo, done, old_errors, n_mine = plan(out, tracks, shard, fp, retry_failed)
    job = TrackJob(out, list(layers), dict(req), float(window), min_frames(aur, max(layers)))
    rec = Recorder(out, run, fp, len(todo), shard, progress=progress, flush_every=flush_every,
                   max_failures=max_failures)
    if engine == "ray" and todo:
        from .ray_engine import ray_results

        results = ray_results(aur, todo, job, process_files, workers=workers, address=ray_address, config=config,
                              batch_size=batch_size)
    else:
        results = local_results(aur, todo, job, workers, rec.timing, batch_size, config)
    try:
        for t, result, seconds in results:
            if rec.record(t, result, seconds):
                break
    finally:
        if hasattr(results, "close"):
            results.close()
        rec.close()
    seconds = time.perf_counter() - t_start
    summary = dict(rec.counts, seconds=round(seconds, 3), tracks=n_mine, already_done=done,
                   earlier_errors=old_errors, pending=len(todo) - sum(rec.counts.values()), stopped_early=rec.stopped,
                   shard=f"{shard[0]}/{shard[1]}", run=run, out=str(out), engine=engine,
                   timing={k: round(v, 3) for k, v in rec.timing.items()})
    report(summary_line(summary))
    return summary


def local_results(aur, todo, job: TrackJob, workers, timing: dict, batch_size: int, config: dict):
    """The local engine: (track, result, seconds) per track, `batch_size` tracks at a time through
    `process_tracks`. On a CPU with workers >= 1 (default `workers.default_workers`): in worker
    processes that each decode and compute (`workers.pool_results`), results as they finish;
    timing["decode"] and timing["compute"] get the workers' seconds. With workers 0, a CUDA
    auraliser, or a model from no file (which cannot be sent to a worker): the compute here,
    decoding ahead in `workers` decoding processes (`decode.Decoder`; 0: here too);
    timing["decode_wait"] (the loop waited on a decode) and timing["compute"]."""
    from .workers import can_rebuild, default_workers, pool_results

    if aur.device.type == "cpu" and (workers is None or workers > 0) and can_rebuild(aur):
        n = default_workers() if workers is None else int(workers)
        for t, result, seconds in pool_results(aur, todo, job, process_files, workers=n, config=config,
                                               batch_size=batch_size):
            timing["decode"] += result.get("decode", 0.0)
            timing["compute"] += seconds - result.get("decode", 0.0)
            yield t, result, seconds
        return
    yield from _decode_ahead_results(aur, todo, job, workers, timing, batch_size)


def _decode_ahead_results(aur, todo, job: TrackJob, workers, timing: dict, batch_size: int):
    decoded = Decoder(aur.sample_rate, workers).decode_all(todo)
    try:
        finished = False
        while not finished:
            batch = []
            t0 = time.perf_counter()
            while len(batch) < batch_size:
                item = next(decoded, None)
                if item is None:
                    finished = True
                    break
                batch.append(item)
            t1 = time.perf_counter()
            timing["decode_wait"] += t1 - t0
            if not batch:
                return
            results = process_tracks(aur, [(t, wave, err) for t, wave, err, _ in batch], job)
            t2 = time.perf_counter()
            timing["compute"] += t2 - t1
            for (t, _, _, dsec), result in zip(batch, results):
                yield t, result, dsec + (t2 - t1) / len(batch)
    finally:
        decoded.close()


class Recorder:
    """The driver's side of a run, for every engine: keeps the ok tracks' activation rows and
    writes them as one Parquet part per flush, THEN appends their ok ledger rows (so an ok row
    always names rows on disk); error and skipped rows are appended at once. Counts, the
    progress bar, --max-failures, and timing["write"] (seconds spent writing parts and rows)."""

    def __init__(self, out, run, fp, n_todo, shard, *, progress, flush_every, max_failures):
        from tqdm import tqdm

        self.ledger, self.parts = Ledger(out, run, fp), PartWriter(out, run)
        self.flush_every, self.max_failures = flush_every, max_failures
        self.counts = {"ok": 0, "error": 0, "skipped": 0}
        self.timing = {"decode": 0.0, "decode_wait": 0.0, "compute": 0.0, "write": 0.0}
        self.waiting, self.last_flush, self.stopped = [], time.monotonic(), False
        self.bar = tqdm(total=n_todo, desc=f"catalogue {shard[0]}/{shard[1]}", unit="track", leave=False,
                        disable=not progress)

    def record(self, t, result: dict, seconds: float) -> bool:
        """Take one track's result (see `process_tracks`); True when the run must stop."""
        t0 = time.perf_counter()
        status = result["status"]
        self.counts[status] += 1
        row = self.ledger.row(t, status, seconds=seconds, error_type=result.get("error_type"),
                              message=result.get("message"))
        if status == "ok":
            self.parts.add(t, result["cols"], result["duration"], result.get("clips"))
            self.waiting.append(row)
            if len(self.waiting) >= self.flush_every or time.monotonic() - self.last_flush > FLUSH_SECONDS:
                self.flush()
        else:
            self.ledger.append(row)
        self.timing["write"] += time.perf_counter() - t0
        self.bar.update(1)
        self.bar.set_postfix(failures=self.counts["error"], refresh=False)
        if self.max_failures is not None and self.counts["error"] >= self.max_failures:
            self.stopped = True
        return self.stopped

    def flush(self) -> None:
        part = self.parts.flush()
        self.ledger.append([{**row, "part": part} for row in self.waiting])
        self.waiting, self.last_flush = [], time.monotonic()

    def close(self) -> None:
        t0 = time.perf_counter()
        try:
            self.flush()
        finally:
            self.ledger.close()
            self.bar.close()
            self.timing["write"] += time.perf_counter() - t0


def summary_line(s: dict) -> str:
    """One line: ok / error / skipped / seconds, and what was done before or is left."""
    extra = [f"{s['already_done']} done before"] if s["already_done"] else []
    if s["earlier_errors"]:
        extra.append(f"{s['earlier_errors']} earlier errors not retried (--retry-failed)")
    if s["stopped_early"]:
        extra.append(f"stopped after {s['error']} failures, {s['pending']} left")
    tail = f" ({'; '.join(extra)})" if extra else ""
    return (f"catalogue {s['out']} shard {s['shard']}: {s['ok']} ok, {s['error']} error, {s['skipped']} skipped "
            f"in {s['seconds']:.1f} s{tail}")


def process_tracks(aur, items: list, job: TrackJob) -> list:
    """The work of decoded tracks [(track, wave, err)], the same in every engine: each track's
    checks and whole-track activation rows, then the excerpts of one length auralised together
    (`Auraliser.auralise_batch`: one batched forward pass; see `run_catalogue`'s batch_size), then
    each track's files. A batch that fails is redone track by track, so a failure is the failing
    track's error row only. Never raises for a bad track.

    Returns, in the order of `items`: {"status": ok | error | skipped, "error_type", "message",
    "cols" (the activation columns of an ok track), "duration" (seconds), "clips" (its clip-table
    columns, `clips.clip_columns`)}."""
    results: list = [None] * len(items)
    ready = []  # (position, track, excerpt, activation columns, seconds)
    for i, (t, wave, err) in enumerate(items):
        if err is not None:
            results[i] = {"status": "error", "error_type": err[0], "message": err[1]}
            continue
        try:
            ready.append((i, t, *_prepare_track(aur, t, wave, job)))
        except Exception as e:  # a Skip, or one bad track: its row; the run goes on
            results[i] = _failure(e)
    groups: dict = {}
    for entry in ready:
        groups.setdefault(int(entry[2].shape[0]), []).append(entry)
    for group in groups.values():
        whole = any(g[3] is None for g in group)  # some excerpt is its whole track
        try:
            clips = _auralise_excerpts(aur, [g[2] for g in group], job, keep_activations=whole)
        except Exception as e:  # one track alone: its error; several: each alone finds the one that fails
            clips = [e] if len(group) == 1 else [None] * len(group)
        for (i, t, wave, cols, seconds), res in zip(group, clips):
            try:
                if isinstance(res, Exception):
                    raise res
                if res is None:
                    res = _auralise_excerpts(aur, [wave], job, keep_activations=cols is None)[0]
                if cols is None:
                    cols = outputs_rows({r.layer: r.activation for r in res}, aur.spectrogram.n_frames(wave.shape[0]),
                                        aur.spectrogram, job.window)
                results[i] = {"status": "ok", "cols": cols, "duration": seconds,
                              "clips": _write_track(aur, t, wave, res, job)}
            except Exception as e:
                results[i] = _failure(e)
    return results


def _failure(e: Exception) -> dict:
    if isinstance(e, Skip):
        return {"status": "skipped", "message": str(e)}
    return {"status": "error", "error_type": type(e).__name__, "message": (str(e) or repr(e)).splitlines()[0]}


def process_files(aur, tracks: list, job: TrackJob) -> list:
    """Decode tracks in this process, then `process_tracks`: [(result, seconds)], the compute
    time shared out evenly among the tracks."""
    t0 = time.perf_counter()
    items, decode_seconds = [], []
    for t in tracks:
        d0 = time.perf_counter()
        wave, err, _ = decode(t.path, aur.sample_rate)
        items.append((t, None if wave is None else torch.from_numpy(wave), err))
        decode_seconds.append(time.perf_counter() - d0)
    results = process_tracks(aur, items, job)
    share = (time.perf_counter() - t0 - sum(decode_seconds)) / max(1, len(tracks))
    return [({**r, "decode": d}, d + share) for r, d in zip(results, decode_seconds)]


def _prepare_track(aur, t, wave, job: TrackJob):
    """Check one decoded track and tabulate it: (excerpt (n,), activation columns, track seconds);
    the columns are None when the excerpt is the whole track (a track no longer than --duration):
    then the auralisation's one forward pass gives them (`outputs_rows`), not a second pass.
    Raises Skip for a track with nothing to auralise, CnnauralError for a bad one."""
    spec, sr, req, need = aur.spectrogram, aur.sample_rate, job.req, job.need
    n = int(wave.shape[0])
    if not bool(torch.isfinite(wave).all()):
        raise CnnauralError("the audio holds non-finite samples (NaN or infinity)")
    if float(wave.abs().max()) < SILENCE:
        raise Skip("silent (peak below -100 dBFS)")
    if spec.n_frames(n) < need:
        raise Skip(f"too short: {n / sr:.3f} s; the model needs {need} frames "
                   f"(about {(need - 1) * spec.hop_length / sr:.2f} s) up to layer {max(job.layers)}")
    start = int(round(req["offset"] * sr))
    if start >= n:
        raise Skip(f"shorter ({n / sr:.2f} s) than the offset {req['offset']:g} s")
    part = excerpt(wave, req["offset"], req["duration"], sr)
    if spec.n_frames(part.shape[0]) < need:
        raise Skip(f"the excerpt at {req['offset']:g} s is too short ({part.shape[0] / sr:.3f} s) for the model")
    if part.shape[0] == n:  # the excerpt is the whole track: its auralisation's forward pass gives the rows
        return part, None, n / sr
    return part, track_rows(aur, wave, job.layers, job.window), n / sr


def _auralise_excerpts(aur, waves: list, job: TrackJob, keep_activations: bool = False) -> list:
    """[results per layer] per excerpt: one batch when there are several."""
    kw = {k: job.req[k] for k in ("mode", "phase", "normalize", "seed")}
    kw["keep_activations"] = keep_activations
    if len(waves) == 1:
        return [aur.auralise_layers(waves[0], job.layers, job.req["features"], **kw)]
    return aur.auralise_batch(waves, job.layers, job.req["features"], **kw)


def _write_track(aur, t, wave, results, job: TrackJob) -> dict:
    """Write one track's audio folder (see `Auraliser.write_results`); its clip-table columns."""
    req = job.req
    folder = job.out / "audio" / t.folder
    _clean_temporaries(folder, ".*.part.*")
    rows = aur.write_results(results, folder, wave, track=t.relative_path, label=t.relative_path,
                             offset=req["offset"], normalize=req["normalize"], audio_format=req["audio_format"],
                             subtype=req["subtype"], figures=req["figures"])
    return clip_columns(t, rows, f"audio/{t.folder}")


def _clean_temporaries(folder: Path, pattern: str) -> None:
    """Remove what a killed atomic_write left in `folder` (only ever this shard's own files)."""
    if folder.is_dir():
        for p in folder.glob(pattern):
            if p.is_file():
                p.unlink(missing_ok=True)
