"""Catalogue throughput: tracks per hour and hours of audio per hour, four ways, on one catalogue.

(a) naive: the loop a user would write, `cnnaural auralise FILE` per file as a subprocess (a
    process start and a model load per track, decode and compute in series; it writes the
    excerpt's clips plus the figures the command always draws, and no activation table);
(b) loop: an in-process loop over the library pipeline: decode the whole track, its activation
    rows (`catalogue.activations.track_rows`), `Auraliser.auralise_file` on the excerpt, one
    Parquet file at the end (no ledger, no resume);
(c) local: `run_catalogue(engine="local")` (worker processes that each decode and compute, one
    per core; ledger, parts); its waited_pct is the share of the workers' time spent decoding, which
    a worker's compute waits on (the summary's timing; the driver writes the parts and ledger rows
    while the workers go on; auralise_file's own file writes count as compute);
(c4) local, batch_size=4: (c) with the excerpts of 4 tracks at a time through one batched
    forward pass (`--batch-size 4`);
(d) ray: `run_catalogue(engine="ray")` when Ray is installed, a local Ray started for the run
    (its start is in the time: a user pays it).

Every method auralises layers 1 and 5, the top 3 features each, 4 s per track, as FLAC, with the
shipped model (or --model). The catalogue is real audio from the Debian packages of
scripts/install_data.sh, linked into a temporary SRC with nested folders and repeated names:
music/wesnoth/*.ogg, music/warzone/<album>/*.opus, speech/klettres/<lang>/<alpha|syllab>/*.ogg,
speech/ktuberling/<lang>/*.ogg, files taken evenly over each package's sorted list. Sizes
(--size): quick, 10 files (1 wesnoth + 0 warzone + 4 klettres + 5 ktuberling); full (the
default), 43 (2 + 1 + 20 + 20), about 5 minutes on 2 cores, most of it in (a); large, 430
(20 + 10 + 200 + 200), about 15 minutes; whole, every file of the four packages (thousands; hours).
(a) starts a process per file, so its rate is linear in the files: it runs on at most
--naive-files of them (default 43, taken evenly) and its tracks/h is that sample's. --src takes an
existing tree instead.

    python benchmarks/bench_catalogue.py [--size quick|full|large|whole] [--naive-files N] [--src DIR]
                                         [--model CKPT] [--no-ray] [--out DIR]
"""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, write  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REQUEST = dict(layers="1,5", features="top:3", duration=4.0, audio_format="flac")
SOURCES = {  # name -> (glob, folder under SRC, path parts kept below the package root)
    "wesnoth": ("/usr/share/games/wesnoth/1.16/data/core/music/*.ogg", "music/wesnoth", 1),
    "warzone": ("/usr/share/games/warzone2100/music/**/*.opus", "music/warzone", 2),
    "klettres": ("/usr/share/klettres/*/[as][ly]*/*.ogg", "speech/klettres", 3),
    "ktuberling": ("/usr/share/ktuberling/sounds/*/*.ogg", "speech/ktuberling", 2),
}
SIZES = {"quick": (1, 0, 4, 5), "full": (2, 1, 20, 20), "large": (20, 10, 200, 200), "whole": (None,) * 4}


def build_source(root: Path, counts) -> Path:
    """A SRC tree of symbolic links to `counts` files of each package (evenly over its sorted list)."""
    src = root / "src"
    for (name, (pattern, folder, keep)), n in zip(SOURCES.items(), counts):
        files = sorted(glob.glob(pattern, recursive=True))
        if n and not files:
            raise SystemExit(f"bench_catalogue: no {name} files ({pattern}); run scripts/install_data.sh")
        n = len(files) if n is None else min(n, len(files))
        for k in range(n):
            f = Path(files[k * len(files) // n])
            link = src / folder / Path(*f.parts[-keep:])
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(f)
    return src


def audio_seconds(paths) -> float:
    import soundfile as sf

    total = 0.0
    for p in paths:
        try:
            total += sf.info(str(p)).duration
        except Exception:  # a bad file holds no audio
            pass
    return total


def run_naive(tracks, out: Path, model) -> dict:
    extra = ["--model", str(model)] if model else []
    failed = 0
    for i, t in enumerate(tracks):
        cmd = [sys.executable, "-m", "cnnaural_ext", "auralise", t.path, "--out", str(out / str(i)),
               "--layers", REQUEST["layers"], "--features", REQUEST["features"], "--duration",
               str(REQUEST["duration"]), "--format", REQUEST["audio_format"], *extra]
        failed += subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode != 0
    return {"ok": len(tracks) - failed}


def run_loop(tracks, out: Path, aur) -> dict:
    from cnnaural_ext.catalogue.activations import activation_table, track_rows
    from cnnaural_ext.catalogue.tables import write_parquet
    from cnnaural_ext.io.audio import load

    layers = aur.check_request(REQUEST["layers"], REQUEST["features"])
    cols: dict = {}
    ok = 0
    for t in tracks:
        try:
            wave, _ = load(t.path, aur.sample_rate)
            rows = track_rows(aur, wave, layers)
            aur.auralise_file(wave, out / t.folder, layers=layers, features=REQUEST["features"],
                              duration=REQUEST["duration"], audio_format=REQUEST["audio_format"], figures=False,
                              name=t.relative_path)
        except Exception:  # the loop a user writes skips what fails
            continue
        n = len(rows["feature"])
        extra = {"id": [t.id] * n, "relative_path": [t.relative_path] * n,
                 "duration": [wave.shape[0] / aur.sample_rate] * n}
        for k, v in {**extra, **rows}.items():
            cols.setdefault(k, []).extend(v)
        ok += 1
    write_parquet(out / "activations.parquet", activation_table(cols, "loop"))
    return {"ok": ok}


def run_engine(src, out: Path, aur, engine: str, batch_size: int = 1) -> dict:
    from cnnaural_ext.catalogue import run_catalogue

    s = run_catalogue(src, out, auraliser=aur, engine=engine, progress=False, batch_size=batch_size, **REQUEST)
    t = s["timing"]
    if engine != "local":
        waited = None
    elif t["decode"]:  # worker processes: each waits on its own decodes
        waited = 100 * t["decode"] / max(1e-9, t["decode"] + t["compute"])
    else:  # the compute in this process: it waits on decodes and on writing parts and ledger rows
        waited = 100 * (t["decode_wait"] + t["write"]) / s["seconds"]
    return {"ok": s["ok"], "waited_pct": waited}


def measure(name, fn, n_tracks, seconds_audio) -> dict:
    t0 = time.perf_counter()
    res = fn()
    wall = time.perf_counter() - t0
    row = {"method": name, "tracks": n_tracks, "ok": res["ok"], "audio_min": seconds_audio / 60, "wall_s": wall,
           "tracks_per_h": n_tracks / wall * 3600, "audio_h_per_h": seconds_audio / wall}
    if res.get("waited_pct") is not None:
        row["waited_pct"] = res["waited_pct"]
    print(row, flush=True)
    return row


def main(argv=None):
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=list(SIZES), default="full", help="files per package (see above)")
    ap.add_argument("--quick", action="store_const", const="quick", dest="size", help="--size quick")
    ap.add_argument("--naive-files", type=int, default=43, help="files the naive loop (a) runs on (default 43)")
    ap.add_argument("--out", default=None, help="folder for JSON + markdown")
    ap.add_argument("--src", default=None, help="an existing tree to use instead of the Debian packages")
    ap.add_argument("--model", default=None, help="checkpoint (default: the shipped model)")
    ap.add_argument("--no-ray", action="store_true", help="leave out the Ray engine")
    args = ap.parse_args(argv)

    from cnnaural_ext import Auraliser
    from cnnaural_ext.catalogue import walk_source

    import importlib.util

    has_ray = not args.no_ray and importlib.util.find_spec("ray") is not None
    aur = Auraliser.from_checkpoint(args.model) if args.model else Auraliser.pretrained()
    work = Path(tempfile.mkdtemp(prefix="bench_catalogue_"))
    try:
        src = Path(args.src) if args.src else build_source(work, SIZES[args.size])
        tracks = walk_source(src)
        seconds = audio_seconds(t.path for t in tracks)
        n = len(tracks)
        if args.naive_files < 1:
            raise SystemExit("bench_catalogue: --naive-files must be >= 1")
        sample = [tracks[k * n // min(n, args.naive_files)] for k in range(min(n, args.naive_files))]
        naive = "(a) naive: cnnaural auralise per file" + (f" ({len(sample)} of the files)" if len(sample) < n else "")
        rows = [measure(naive, lambda: run_naive(sample, work / "a", args.model), len(sample),
                        audio_seconds(t.path for t in sample)),
                measure("(b) loop: library pipeline in-process", lambda: run_loop(tracks, work / "b", aur), n, seconds),
                measure("(c) local engine", lambda: run_engine(src, work / "c", aur, "local"), n, seconds),
                measure("(c4) local engine, --batch-size 4", lambda: run_engine(src, work / "c4", aur, "local", 4), n,
                        seconds)]
        if has_ray:
            rows.append(measure("(d) ray engine", lambda: run_engine(src, work / "d", aur, "ray"), n, seconds))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for r in rows:
        r["x_naive"] = r["tracks_per_h"] / rows[0]["tracks_per_h"]
        r["x_loop"] = r["tracks_per_h"] / rows[1]["tracks_per_h"]
    meta = machine()
    meta.update(model=args.model or "shipped", files=n, audio_min=round(seconds / 60, 1), ray=has_ray,
                request="layers 1,5, top:3, 4 s, flac")
    columns = ["method", "tracks", "ok", "audio_min", "wall_s", "tracks_per_h", "audio_h_per_h", "x_naive", "x_loop",
               "waited_pct"]
    write(args.out, "catalogue", rows, columns, meta)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("MPLBACKEND", "Agg")
    sys.exit(main())
