"""Fixed clips of every track, turned into network inputs once and kept on disk.

One ``.npy`` per track (memory-mapped when read back), so epochs and reruns do no STFT.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np
import torch

from ..errors import CnnauralError
from ..io.audio import load
from ..io.files import atomic_write, write_json
from ..io.console import progress_bar, report


def default_cache_dir() -> Path:
    """``$CNNAURAL_CACHE`` or ``$XDG_CACHE_HOME/cnnaural`` (default ``~/.cache/cnnaural``)."""
    if os.environ.get("CNNAURAL_CACHE"):
        return Path(os.environ["CNNAURAL_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "cnnaural"


def clip_offsets(duration: float, clip_seconds: float, clips_per_track: int):
    """Start times (s) of the clips of a track: `clips_per_track` evenly spaced over the track,
    fewer (non-overlapping, evenly spaced) when the track is shorter than that many clips, one
    clip at 0 when it is shorter than one clip (that clip is zero-padded)."""
    n = min(int(clips_per_track), max(1, int(math.floor(duration / clip_seconds + 1e-9))))
    last = max(0.0, duration - clip_seconds)
    if n == 1:
        return [0.0] if duration <= clip_seconds else [last / 2]
    return [last * i / (n - 1) for i in range(n)]


class ClipCache:
    """Fixed clips of every track as network inputs, computed once and kept on disk.

    For a track of duration d, `clip_offsets` picks up to `clips_per_track` clips of
    `clip_seconds` evenly spaced over it; each is loaded at the Spectrogram's sample rate
    (mono), cut/zero-padded to exactly ``int(clip_seconds * sample_rate)`` samples and turned
    into the network input (float32 (F', T)). A track shorter than one clip gives one clip,
    zero-padded at the end; a track shorter than `min_seconds` (default: a quarter of a clip)
    is skipped with a warning. The clips of a track are one ``.npy`` (n_clips, F', T) under
    ``cache_dir/<key>/`` where key hashes the Spectrogram config and the clip settings; the file
    name hashes the track's resolved path, size and mtime, so an edited file is recomputed.
    Arrays are opened with ``np.load(mmap_mode='r')``.

    A file that cannot be read is reported on stderr (one line), recorded in `skipped` and
    left out; it is never fatal.

    Args:
        spectrogram: the `Spectrogram` whose network input is cached.
        cache_dir: cache root (default `default_cache_dir()`).
        clip_seconds, clips_per_track: the clips cut from every track.
        min_seconds: shorter tracks are skipped (default ``clip_seconds / 4``).
        progress: a tqdm bar in `load`.

    Attributes:
        directory (Path): ``cache_dir/<key>``, where the arrays are.
        computed / reused (int): tracks whose clips were computed / read from the cache.
        skipped (list): (path, reason) of the tracks left out.
    """

    VERSION = "clipcache/1"

    def __init__(self, spectrogram, cache_dir=None, *, clip_seconds: float = 4.0,
                 clips_per_track: int = 10, min_seconds: float | None = None, progress: bool = True):
        if clip_seconds <= 0 or clips_per_track < 1:
            raise CnnauralError(f"clip_seconds must be > 0 and clips_per_track >= 1 "
                                f"(got {clip_seconds}, {clips_per_track})")
        self.spectrogram = spectrogram
        self.clip_seconds = float(clip_seconds)
        self.clips_per_track = int(clips_per_track)
        self.min_seconds = self.clip_seconds / 4 if min_seconds is None else float(min_seconds)
        self.n_samples = int(self.clip_seconds * spectrogram.sample_rate)
        self.progress = progress
        settings = dict(version=self.VERSION, spectrogram=spectrogram.config(),
                        clip_seconds=self.clip_seconds, clips_per_track=self.clips_per_track,
                        n_samples=self.n_samples)
        self.key = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
        self.directory = Path(cache_dir if cache_dir is not None else default_cache_dir()) / self.key
        self.computed = 0
        self.reused = 0
        self.skipped = []
        self._settings = settings

    @property
    def shape(self):
        """(F', T) of one clip."""
        return (self.spectrogram.n_bins, self.spectrogram.n_frames(self.n_samples))

    def path_for(self, track) -> Path:
        """The cache file of a track (its name hashes the resolved path, size and mtime)."""
        track = Path(track)
        real = track.resolve()
        st = real.stat()
        h = hashlib.sha1(f"{real}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()[:16]
        stem = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in track.stem)[:40]
        return self.directory / f"{stem}-{h}.npy"

    def _compute(self, track: Path) -> np.ndarray:
        import soundfile as sf

        try:
            info = sf.info(str(track))
            duration = info.frames / info.samplerate
        except Exception as e:
            raise CnnauralError(f"cannot read audio from {track}: {str(e).strip().splitlines()[0]}") from None
        if duration < self.min_seconds:
            raise CnnauralError(f"{track} is {duration:.2f} s long, shorter than {self.min_seconds:g} s")
        sr = self.spectrogram.sample_rate
        clips = []
        for off in clip_offsets(duration, self.clip_seconds, self.clips_per_track):
            x, _ = load(track, sr, offset=off, duration=self.clip_seconds)
            x = x[: self.n_samples]
            if x.shape[0] < self.n_samples:
                x = torch.nn.functional.pad(x, (0, self.n_samples - x.shape[0]))
            clips.append(x)
        with torch.no_grad():
            _, s = self.spectrogram(torch.stack(clips))
        return np.ascontiguousarray(s.numpy(), dtype=np.float32)

    def get(self, track):
        """The clips of one track, (n_clips, F', T) float32 memory-mapped; None if unreadable."""
        track = Path(track)
        try:
            dst = self.path_for(track)
        except OSError as e:
            return self._skip(track, f"cannot stat it ({e.strerror or e})")
        if dst.is_file():
            try:
                arr = np.load(dst, mmap_mode="r")
                if arr.ndim == 3 and arr.shape[1:] == self.shape and arr.dtype == np.float32:
                    self.reused += 1
                    return arr
            except Exception:
                pass  # damaged cache entry: recompute it
        try:
            arr = self._compute(track)
        except CnnauralError as e:
            return self._skip(track, str(e))
        self.directory.mkdir(parents=True, exist_ok=True)
        settings = self.directory / "settings.json"
        if not settings.is_file():
            write_json(settings, self._settings)

        def write(tmp):
            with open(tmp, "wb") as f:
                np.save(f, arr)

        atomic_write(dst, write)
        self.computed += 1
        return np.load(dst, mmap_mode="r")

    def _skip(self, track, reason):
        self.skipped.append((Path(track), reason))
        report(f"cnnaural: skipping {track}: {reason}")
        return None

    def load(self, tracks, desc: str = "clips"):
        """`get` for every track (paths or (path, class) pairs), with a tqdm bar.

        Returns:
            list of arrays (or None for a skipped track), aligned with `tracks`.
        """
        paths = [t[0] if isinstance(t, (tuple, list)) else t for t in tracks]
        return [self.get(p) for p in progress_bar(paths, self.progress, desc, unit="track")]


class ClipDataset(torch.utils.data.Dataset):
    """Every cached clip of a list of tracks: items (clip (1, F', T) float32, label, track index).

    Args:
        tracks: list of (path, class_name).
        classes: the class names; label = classes.index(class_name).
        cache: a `ClipCache`. Unreadable tracks are skipped (see `ClipCache`); `tracks` keeps
            the ones that made it, and the track index of an item refers to that list.
        desc: the label of the progress bar.

    Attributes:
        tracks (list): the (Path, class_name) that made it.
        arrays (list): their clips, (n_clips, F', T) each.
        labels (list): their class indices.
        classes (list): the class names.
    """

    def __init__(self, tracks, classes, cache: ClipCache, desc: str = "clips"):
        classes = list(classes)
        arrays = cache.load(tracks, desc=desc)
        self.tracks, self.arrays, self.labels = [], [], []
        for (path, c), arr in zip(tracks, arrays):
            if arr is None:
                continue
            if c not in classes:
                raise CnnauralError(f"track {path} has class {c!r}, not one of {classes}")
            self.tracks.append((Path(path), c))
            self.arrays.append(arr)
            self.labels.append(classes.index(c))
        self.classes = classes
        self.index = [(i, j) for i, a in enumerate(self.arrays) for j in range(a.shape[0])]

    def __len__(self):
        return len(self.index)

    def __getitem__(self, k):
        i, j = self.index[k]
        x = torch.from_numpy(np.array(self.arrays[i][j], dtype=np.float32))
        return x.unsqueeze(0), self.labels[i], i
