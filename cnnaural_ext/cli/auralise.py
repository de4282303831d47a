"""`cnnaural info | auralise | report | filters`: the model, its features as audio, the gallery."""
from __future__ import annotations

from pathlib import Path

from ..errors import CnnauralError
from .common import (add_corpus_split, add_input, add_model, add_output, add_request, load_auraliser, model_label,
                     request_from_args)


def register(sub) -> None:
    p = sub.add_parser("info", help="build, backend and model information")
    add_model(p)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("auralise", help="write audio and PNGs of chosen features for audio tracks",
                       description="For each TRACK write OUT/<track>/original.wav, one "
                       "layer<L>_feature<k>.wav and .png per feature, a figure per layer and manifest.json "
                       "(.flac instead of .wav with --format flac).")
    _add_tracks(p)
    p.set_defaults(func=cmd_auralise)

    p = sub.add_parser("filters", help="draw first-layer filters, initial beside learned when the checkpoint has them")
    add_model(p)
    p.add_argument("--out", required=True, metavar="PNG")
    p.set_defaults(func=cmd_filters)

    p = sub.add_parser("report", help="auralise tracks and write a static HTML listening gallery",
                       description="Like `auralise`, then OUT/index.html: per track, layer and feature the "
                       "deconvolved spectrogram, a player for the auralised clip and one for the original, and "
                       "the feature's activation statistics. With --figures the gallery also shows the model's "
                       "first-layer filters, initial beside learned (Figure 2), and the layer-1 features scored "
                       "as onset detectors on J.S. Bach's BWV 846 Prelude: a table and Figure 3 for the best "
                       "one; with --data, the mean activation of every deepest-layer feature per class over "
                       "the model's test split (a heat map and a table). These go to OUT/_analysis/.")
    _add_tracks(p)
    g = p.add_argument_group("figures and analysis tables")
    g.add_argument("--figures", action="store_true",
                   help="add Figure 2 (first-layer filters of --model) and the BWV 846 onset-detector table "
                   "with Figure 3 of its best layer-1 feature (the first --duration seconds, onsets drawn)")
    g.add_argument("--filters-model", metavar="CKPT", default=None,
                   help="also draw Figure 2 for this checkpoint (the paper draws it from its 12x12 model)")
    g.add_argument("--onset-duration", type=float, default=30.0, metavar="S",
                   help="seconds of BWV 846 scored as onset detectors (default 30)")
    g.add_argument("--data", metavar="DIR", default=None,
                   help="corpus, one sub-folder per class: add the class-selectivity heat map and table")
    add_corpus_split(g, "--data")
    p.set_defaults(func=cmd_report)


def _add_tracks(p) -> None:
    p.add_argument("tracks", nargs="+", metavar="TRACK", help="audio file(s): wav, flac, ogg, opus, mp3")
    add_model(p)
    add_input(p)
    add_request(p)
    add_output(p)


def _print_track(out_root):
    def show(name, rows):
        for layer in dict.fromkeys(r["layer"] for r in rows):
            n = sum(r["layer"] == layer for r in rows)
            print(f"{name}: layer {layer}: {n} feature(s) -> {Path(out_root) / name}")
    return show


def cmd_info(args) -> int:
    import torch

    from .. import __version__, ops

    info = ops.build_info()
    print(f"cnnaural_ext {__version__}, torch {torch.__version__}")
    if info["native"]:
        print(f"native extension: built (CUDA: {info['cuda']}, OpenMP: {info['openmp']}, "
              f"threads: {info['aten_threads']}, CPU loops: {info.get('cpu_isa', '?')})")
    else:
        print(f"native extension: not built ({info['reason']})")
    print(f"CNNAURAL_BACKEND: {ops.backend()}")
    for op in ("masked_istft", "unpool_conv_transpose2d"):
        devs = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        print(f"  {op}: " + ", ".join(f"{d} -> {ops.active_backend(op, d)}" for d in devs))
    aur = load_auraliser(args)
    print(f"model: {model_label(args.model)}: {aur.meta.get('arch', type(aur.model).__name__)}, "
          f"classes {aur.meta.get('classes', '?')}")
    metrics = aur.meta.get("metrics") or {}
    if "test_track_accuracy" in metrics:
        print(f"  test accuracy by track: {metrics['test_track_accuracy']:.3f}")
    print(f"  spectrogram: {aur.spectrogram.extra_repr()}")
    for line in aur.deconvnet.describe():
        print(f"  {line}")
    return 0


def cmd_auralise(args) -> int:
    from ..auralise import auralise_files

    auralise_files(load_auraliser(args), args.tracks, args.out, on_track=_print_track(args.out),
                   **request_from_args(args))
    print(f"wrote {Path(args.out).resolve()}")
    return 0


def cmd_report(args) -> int:
    from ..auralise import Auraliser
    from ..report import write_report

    if args.figures and not args.onset_duration > 0:
        raise CnnauralError(f"--onset-duration must be positive (got {args.onset_duration:g})")
    aur = load_auraliser(args)
    filters = [(model_label(args.model), aur)] if args.figures else []
    if args.filters_model:
        filters.append((model_label(args.filters_model), Auraliser.from_checkpoint(args.filters_model,
                                                                                   device=args.device)))
    index = write_report(aur, args.tracks, args.out, filters=filters,
                         onsets_seconds=args.onset_duration if args.figures else None, data=args.data,
                         split=args.split, cache_dir=args.cache_dir, on_track=_print_track(args.out),
                         subtitle=f"Auralised with {model_label(args.model)}: layers {args.layers}, "
                         f"features {args.features}, mode {args.mode}, phase {args.phase}.",
                         **request_from_args(args))
    print(f"gallery: {index.resolve()}")
    return 0


def cmd_filters(args) -> int:
    from ..report import write_filters

    write_filters(args.out, load_auraliser(args))
    print(f"wrote {Path(args.out).resolve()}")
    return 0
