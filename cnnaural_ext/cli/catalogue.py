"""`cnnaural catalogue`: auralise a whole catalogue resumably, or say where one stands;
`cnnaural atlas`: the feature atlas of a catalogue."""
from __future__ import annotations

from ..errors import CnnauralError
from .common import add_audio_format, add_model, add_request, load_auraliser


def register(sub) -> None:
    p = sub.add_parser(
        "catalogue", help="auralise a folder or list of tracks resumably into one catalogue (or --status OUT)",
        description="For every audio file under SRC (a folder, walked recursively, or a text file of paths) write "
        "OUT/audio/<relative path>/ (the excerpt's clips, as `auralise` writes them), one row per (track, layer, "
        "feature) for every feature of the chosen layers over the whole track in OUT/activations/*.parquet, "
        "one row per clip with its inversion quality in OUT/clips/*.parquet, OUT/manifest.parquet and a ledger of "
        "every attempt in OUT/ledger/. A rerun continues where the last one "
        "stopped; bad files become error rows and the run goes on. Exit status 1 when tracks failed, 2 for "
        "usage errors.")
    p.add_argument("src", nargs="?", metavar="SRC", help="folder of audio files, or a text file of paths")
    p.add_argument("--out", metavar="OUT", help="the catalogue folder")
    p.add_argument("--status", metavar="OUT", help="print where the catalogue OUT stands and exit")
    add_model(p)
    add_request(p, features="top:3")  # auralised per layer; the activation table holds every feature
    p.add_argument("--offset", type=float, default=0.0, help="start of the auralised excerpt, seconds (default 0)")
    p.add_argument("--duration", type=float, default=4.0,
                   help="seconds auralised per track (default 4; 0 = to the end); activations cover the whole track")
    add_audio_format(p, default="flac")
    p.add_argument("--figures", action="store_true", help="also write the deconvolved maps and a figure per layer")
    p.add_argument("--window", type=float, default=4.0,
                   help="seconds per window of the activation table's per-window maxima (default 4)")
    p.add_argument("--workers", type=int, default=None,
                   help="local engine: worker processes, each decoding and computing its tracks with the cores "
                   "shared out (default one per core, at most 8; 0: all in this process; with --device cuda: "
                   "decoding processes, default min(4, cores)); ray engine: actors (default one per core, or per "
                   "GPU with --device cuda); resume with the same N for byte-identical clips")
    p.add_argument("--batch-size", type=int, default=1, metavar="N",
                   help="tracks whose excerpts go through one batched forward pass (default 1); "
                   "for GPUs: on a CPU it does not pay, and above 1 clips equal batch 1's up to float rounding")
    p.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="local: the per-track work in worker processes (default); ray: the same per-track work "
                   "on Ray Data actors (pip install cnnaural_ext[ray])")
    p.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="with --engine ray: the Ray cluster to join (default: start a local Ray for the run)")
    p.add_argument("--shard", default=None, metavar="i/N",
                   help="do shard i of N (default: from SLURM_ARRAY_TASK_ID/COUNT when set, else 0/1)")
    p.add_argument("--retry-failed", action="store_true", help="redo tracks whose last attempt failed")
    p.add_argument("--max-failures", type=int, default=None, metavar="N", help="stop after N failures")
    p.add_argument("--flush-every", type=int, default=32, metavar="N",
                   help="tracks per activation part file; fewer redo less after a kill (default 32)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_catalogue)
    register_atlas(sub)


def register_atlas(sub) -> None:
    p = sub.add_parser(
        "atlas", help="the feature atlas of a catalogue: every feature's top tracks, auralised, in OUT/atlas/",
        description="Read the activation table of the catalogue OUT; for every feature of the chosen layers find "
        "the catalogue's top tracks (each by its strongest window), auralise those windows into OUT/atlas/audio/ "
        "(resumably: windows already done are kept) and write OUT/atlas/index.html and a page per layer: a "
        "histogram of the feature over the catalogue, its top tracks with the original window and the "
        "auralised feature, the deconvolved maps and, when SRC has class folders, the mean per class.")
    p.add_argument("out", metavar="OUT", help="a catalogue written by `cnnaural catalogue`")
    p.add_argument("--layers", default=None, help="layer(s) of the catalogue, e.g. 5 or 1,5, or 'all' "
                   "(default: the deepest it has)")
    p.add_argument("--top", type=int, default=8, help="top tracks per feature (default 8)")
    p.add_argument("--src", metavar="SRC", default=None,
                   help="the catalogue's SRC (folder or list file), where the windows are read from")
    p.add_argument("--model", metavar="CKPT", default=None,
                   help="the checkpoint to use (default: the model OUT/config.json records); its weights must be "
                   "the catalogue's")
    p.add_argument("--device", default="cpu", help="torch device to run on (default: cpu)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_atlas)


def cmd_catalogue(args) -> int:
    from ..catalogue import format_status, run_catalogue, status

    if args.status:
        if args.src or args.out:
            raise CnnauralError("--status OUT takes no SRC and no --out")
        print(format_status(status(args.status)))
        return 0
    if not args.src or not args.out:
        raise CnnauralError("catalogue needs SRC and --out OUT (or --status OUT)")
    summary = run_catalogue(
        args.src, args.out, auraliser=load_auraliser(args), layers=args.layers, features=args.features,
        offset=args.offset, duration=args.duration, mode=args.mode, phase=args.phase, seed=args.seed,
        normalize=not args.no_normalize, audio_format=args.format, subtype=args.subtype, figures=args.figures,
        window=args.window, workers=args.workers, shard=args.shard, retry_failed=args.retry_failed,
        max_failures=args.max_failures, progress=not args.no_progress, flush_every=args.flush_every,
        engine=args.engine, ray_address=args.ray_address, batch_size=args.batch_size)
    return 1 if summary["error"] else 0


def cmd_atlas(args) -> int:
    from pathlib import Path

    from ..catalogue.atlas import ATLAS, build_atlas
    from ..report.atlas import write_atlas

    data = build_atlas(args.out, layers=args.layers, top=args.top, model=args.model, device=args.device,
                       src=args.src, progress=not args.no_progress)
    index = write_atlas(Path(args.out) / ATLAS, data)
    tail = f"; {len(data['missing'])} tracks missing (--src?)" if data["missing"] else ""
    print(f"atlas {index}: {data['auralised']} windows auralised, {data['reused']} kept{tail}")
    return 1 if data["missing"] else 0
