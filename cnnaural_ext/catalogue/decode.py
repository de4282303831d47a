"""Decoding in worker processes, ahead of the compute loop.

`Decoder.decode_all(tracks)` yields (track, waveform or None, (error type, message) or None,
seconds) in the order of `tracks`, keeping up to 2 x workers tracks decoding ahead in a
`ProcessPoolExecutor` with the "spawn" start method (torch and fork do not mix). With workers=0
it decodes in the calling process. A file that kills its decoder process (a crashing codec)
breaks the pool: the tracks that were in flight are then decoded again one at a time, each in a
fresh process, so the culprit becomes one error and the others are unharmed.

Every track is decoded whole, mono, at the model's sample rate, by `io.audio.load`: the
activation table covers the whole track and the auralised excerpt is cut from the same samples.
"""
from __future__ import annotations

import collections
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import torch

CRASH = ("DecoderCrash", "the decoder process died while reading this file")


def decode(path: str, sample_rate: int):
    """Decode one file (run in a worker): (float32 numpy (n,), None, seconds) or (None, (type, message), seconds)."""
    from ..io.audio import load

    t0 = time.perf_counter()
    try:
        wave, _ = load(path, sample_rate)
        return wave.numpy(), None, time.perf_counter() - t0
    except Exception as e:  # every failure becomes a ledger row, never the end of the run
        return None, (type(e).__name__, str(e).splitlines()[0] if str(e) else repr(e)), time.perf_counter() - t0


def _init_worker():
    torch.set_num_threads(1)


def default_workers() -> int:
    import os

    return min(4, os.cpu_count() or 1)


class Decoder:
    """Decode tracks ahead of the consumer (see the module docstring)."""

    def __init__(self, sample_rate: int, workers: int | None = None):
        self.sample_rate = int(sample_rate)
        self.workers = default_workers() if workers is None else max(0, int(workers))
        self._pool = None

    def _new_pool(self, n: int):
        import multiprocessing

        return ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker)

    def decode_all(self, tracks):
        if self.workers == 0:
            for t in tracks:
                wave, err, sec = decode(t.path, self.sample_rate)
                yield t, _tensor(wave), err, sec
            return
        ahead = 2 * self.workers
        it = iter(tracks)
        queue = collections.deque()
        self._pool = self._new_pool(self.workers)
        try:
            while True:
                while len(queue) < ahead:
                    t = next(it, None)
                    if t is None:
                        break
                    queue.append((t, self._pool.submit(decode, t.path, self.sample_rate)))
                if not queue:
                    return
                t, fut = queue[0]
                try:
                    wave, err, sec = fut.result()
                except BrokenProcessPool:
                    suspects = [q[0] for q in queue]
                    queue.clear()
                    self._pool.shutdown(wait=False, cancel_futures=True)
                    yield from self._isolate(suspects)
                    self._pool = self._new_pool(self.workers)
                    continue
                queue.popleft()
                yield t, _tensor(wave), err, sec
        finally:
            self.close()

    def _isolate(self, tracks):
        """Decode each track alone in a fresh one-process pool: a crash blames that track only."""
        for t in tracks:
            pool = self._new_pool(1)
            try:
                wave, err, sec = pool.submit(decode, t.path, self.sample_rate).result()
            except BrokenProcessPool:
                wave, err, sec = None, CRASH, 0.0
            finally:
                pool.shutdown(wait=False, cancel_futures=True)
            yield t, _tensor(wave), err, sec

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


def _tensor(wave):
    return None if wave is None else torch.from_numpy(wave)
