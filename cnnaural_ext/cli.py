"""The `cnnaural` command: info | auralise | report | onsets | selectivity | filters | dataset | train.

User errors (missing or unreadable audio, a layer or feature out of range, a model the
deconvnet cannot read, a corrupt checkpoint) print one line on stderr and exit with status 2.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from .errors import CnnauralError

EPILOG = """examples:
  cnnaural info
  cnnaural auralise song.ogg --layer 1 --features 7 --out out/
  cnnaural auralise song.ogg --layer 1,5 --features top:4 --offset 30 --duration 4 --out out/
  cnnaural report song.ogg other.flac --layer 1,5 --out gallery/
  cnnaural onsets --out out/onsets
  cnnaural selectivity data/corpus --out out/selectivity
  cnnaural filters --out filters.png
  cnnaural dataset data/corpus
  cnnaural train data/corpus --out model.pt
"""


def _add_model(p):
    p.add_argument("--model", metavar="CKPT", default=None,
                   help="checkpoint written by `cnnaural train` (default: the shipped paper_cnn5 model)")
    p.add_argument("--device", default="cpu", help="torch device to run on (default: cpu)")


def _add_input(p):
    p.add_argument("--offset", type=float, default=0.0, help="seconds to skip at the start of each track (default 0)")
    p.add_argument("--duration", type=float, default=4.0,
                   help="seconds to read from each track (default 4, the original code's clip; 0 = whole track)")


def _add_auralise(p):
    p.add_argument("--layer", default="1",
                   help="1-based conv layer(s), comma-separated, or 'all' (default 1)")
    p.add_argument("--features", default="all", help="'0,7' | 'all' | 'top:K' (default all)")
    p.add_argument("--mode", choices=["mask", "magnitude"], default="mask",
                   help="mask: Y = X * D, the original code (default); magnitude: |Y| from relu(D), phase of X")
    p.add_argument("--phase", choices=["original", "griffinlim"], default="original",
                   help="phase of the output (default: the original STFT's)")
    p.add_argument("--seed", choices=["map", "max"], default="map",
                   help="map: the feature's whole activation map (default); max: its strongest position")
    p.add_argument("--no-normalize", action="store_true", help="do not peak-normalise the clips")


def _add_tracks_out(p):
    """What `auralise` and `report` share: the tracks, the model, input and auralisation options, the output."""
    p.add_argument("tracks", nargs="+", metavar="TRACK", help="audio file(s): wav, flac, ogg, opus, mp3")
    _add_model(p)
    _add_input(p)
    _add_auralise(p)
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--subtype", choices=["FLOAT", "PCM_16"], default="PCM_16", help="WAV sample format (default PCM_16)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cnnaural", description="Listen to what a CNN trained on spectrograms has learned "
        "(deconvnet + inverse STFT with the original phase).", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("info", help="build, backend and model information")
    _add_model(p)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("auralise", help="write WAVs and PNGs of chosen features for audio tracks",
                       description="For each TRACK write OUT/<track>/original.wav, one "
                       "layer<L>_feature<k>.wav and .png per feature, a figure per layer and manifest.json.")
    _add_tracks_out(p)
    p.set_defaults(func=cmd_auralise)

    p = sub.add_parser("filters", help="draw first-layer filters, initial beside learned when the checkpoint has them")
    _add_model(p)
    p.add_argument("--out", required=True, metavar="PNG")
    p.set_defaults(func=cmd_filters)

    p = sub.add_parser("report", help="auralise tracks and write a static HTML listening gallery",
                       description="Like `auralise`, then OUT/index.html: per track, layer and feature the "
                       "deconvolved spectrogram, a player for the auralised clip and one for the original, and "
                       "the feature's activation statistics.")
    _add_tracks_out(p)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("onsets", help="score every feature of a layer as an onset detector on J.S. Bach's "
                       "BWV 846 Prelude (rendered, MIDI onsets as ground truth)",
                       description="Auralise every feature of --layer for the first --duration seconds of the "
                       "rendered BWV 846 Prelude, detect onsets in each clip (spectral flux, peak picking) and "
                       "score them against the MIDI note-on times (F-measure at +-tolerance); the same detector "
                       "on the original audio is the baseline. Writes onsets.json and onsets.md to --out.")
    _add_model(p)
    p.add_argument("--layer", default="1", help="1-based conv layer (default 1)")
    p.add_argument("--duration", type=float, default=30.0, help="seconds of the piece to use (default 30)")
    p.add_argument("--tolerance", type=float, default=0.05, help="onset matching window in seconds (default 0.05)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.set_defaults(func=cmd_onsets)

    p = sub.add_parser("selectivity", help="mean activation of every feature of a layer per class: which "
                       "features a class switches off",
                       description="For the tracks of DATA_DIR (one sub-folder per class; by default only the "
                       "model's test split when its checkpoint records one), the mean activation of every feature "
                       "of --layer per class, and the features each class switches off (mean below --off-ratio "
                       "times the mean on the other classes). Writes selectivity.json, .md and a heat map .png.")
    p.add_argument("data_dir", metavar="DATA_DIR", help="corpus: one sub-folder of audio files per class")
    _add_model(p)
    p.add_argument("--layer", default=None, help="1-based conv layer (default: the deepest)")
    p.add_argument("--split", choices=["test", "val", "train", "all"], default="test",
                   help="tracks to use: a split recorded in the checkpoint, or all of DATA_DIR (default test)")
    p.add_argument("--off-ratio", type=float, default=0.25, help="threshold for 'switched off' (default 0.25)")
    p.add_argument("--cache-dir", default=None, help="clip cache folder (default: $CNNAURAL_CACHE or ~/.cache/cnnaural)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.set_defaults(func=cmd_selectivity)

    from . import data, train

    p = sub.add_parser("dataset", help="build a folder-per-class corpus of real music from the Debian packages")
    data.add_arguments(p)
    p.set_defaults(func=data.run)

    p = sub.add_parser("train", help="train a paper CNN on a folder-per-class corpus")
    train.add_arguments(p)
    p.set_defaults(func=train.run)
    return parser


def load_auraliser(args):
    from .auralise import Auraliser

    if args.model:
        return Auraliser.from_checkpoint(args.model, device=args.device)
    return Auraliser.pretrained(device=args.device)


def parse_layers(spec: str, n_layers: int) -> list:
    if spec.strip().lower() == "all":
        return list(range(1, n_layers + 1))
    out = []
    for part in spec.split(","):
        part = part.strip()
        if part.lower() == "output":
            out.append("output")
            continue
        try:
            out.append(int(part))
        except ValueError:
            raise CnnauralError(f"--layer takes integers 1..{n_layers}, 'all' or 'output' (got {spec!r})") from None
    return out


def track_name(path) -> str:
    """A file-system-safe folder name for a track."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(path).stem).strip("._") or "track"
    return name[:100]


def cmd_info(args) -> int:
    import torch

    from . import __version__, ops
    from .auralise import PRETRAINED

    info = ops.build_info()
    print(f"cnnaural_ext {__version__}, torch {torch.__version__}")
    if info["native"]:
        print(f"native extension: built (CUDA: {info['cuda']}, OpenMP: {info['openmp']}, "
              f"threads: {info['aten_threads']})")
    else:
        print(f"native extension: not built ({info['reason']})")
    print(f"CNNAURAL_BACKEND: {ops.backend()}")
    for op in ("masked_istft", "unpool_conv_transpose2d"):
        devs = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        print(f"  {op}: " + ", ".join(f"{d} -> {ops.active_backend(op, d)}" for d in devs))
    aur = load_auraliser(args)
    src = args.model or f"shipped model ({PRETRAINED.name})"
    print(f"model: {src}: {aur.meta.get('arch', type(aur.model).__name__)}, classes {aur.meta.get('classes', '?')}")
    metrics = aur.meta.get("metrics") or {}
    if "test_track_accuracy" in metrics:
        print(f"  test accuracy by track: {metrics['test_track_accuracy']:.3f}")
    print(f"  spectrogram: {aur.spectrogram.extra_repr()}")
    for line in aur.deconvnet.describe():
        print(f"  {line}")
    return 0


def cmd_auralise(args) -> int:
    auralise_tracks(args)
    print(f"wrote {Path(args.out).resolve()}")
    return 0


def cmd_report(args) -> int:
    from .gallery import write_gallery

    entries = auralise_tracks(args)
    model = args.model or "the shipped paper_cnn5 model"
    index = write_gallery(args.out, entries, subtitle=f"Auralised with {model}: layers {args.layer}, "
                          f"features {args.features}, mode {args.mode}, phase {args.phase}.")
    print(f"gallery: {index.resolve()}")
    return 0


def auralise_tracks(args) -> list:
    """Auralise every track of args into args.out/<track>/; returns [(folder, manifest)]."""
    import torch

    from .deconvnet import parse_features
    from . import viz
    from .audio import atomic_write, load, save_wav

    aur = load_auraliser(args)
    layers = parse_layers(args.layer, aur.deconvnet.n_layers)
    for layer in layers:  # validate every request before any work
        n = aur.deconvnet.channels(layer)
        parse_features(args.features, n, torch.zeros(n, 1), f"layer {layer}")
    spec = aur.spectrogram
    out_root = Path(args.out)
    duration = args.duration if args.duration and args.duration > 0 else None
    entries = []
    for track in args.tracks:
        wave, sr = load(track, spec.sample_rate, offset=args.offset, duration=duration)
        name = track_name(track)
        # everything is computed before the first file of a track is written
        results = [aur.auralise(wave, layer, args.features, mode=args.mode, phase=args.phase,
                                normalize=not args.no_normalize, seed=args.seed) for layer in layers]
        out = out_root / name
        out.mkdir(parents=True, exist_ok=True)
        save_wav(out / "original.wav", wave, sr, subtype=args.subtype, normalize=not args.no_normalize)
        manifest = {"track": str(track), "offset": args.offset, "duration": wave.shape[0] / sr,
                    "sample_rate": sr, "mode": args.mode, "phase": args.phase, "seed": args.seed,
                    "model": args.model or "shipped", "items": []}
        X = spec.stft(wave.to(aur.device))
        for layer, res in zip(layers, results):
            tag = f"layer{layer}"
            for row, k in enumerate(res.features):
                stem = f"{tag}_feature{k:03d}"
                save_wav(out / f"{stem}.wav", res.audio[row], sr, subtype=args.subtype)
                viz.save_map(out / f"{stem}.png", res.maps[row], sample_rate=sr, hop_length=spec.hop_length,
                             title=f"{name}: deconvolved, layer {layer}, feature {k}")
                manifest["items"].append({"layer": layer, "feature": k, "wav": f"{stem}.wav", "png": f"{stem}.png",
                                          **res.stats[row]})
            best = max(range(len(res.features)), key=lambda r: res.stats[r]["mean"])
            Y = spec.stft(res.audio[best].to(aur.device))
            viz.figure3(out / f"{tag}_figure.png", res.original, res.audio[best], X, Y, sample_rate=sr,
                        hop_length=spec.hop_length,
                        title=f"{name}: layer {layer}, feature {res.features[best]} (most active)")
            print(f"{name}: layer {layer}: {len(res.features)} feature(s) -> {out}")
        atomic_write(out / "manifest.json", lambda tmp: Path(tmp).write_text(json.dumps(manifest, indent=1)))
        entries.append((name, manifest))
    return entries


def cmd_onsets(args) -> int:
    from . import analysis, data
    from .audio import atomic_write, resample

    aur = load_auraliser(args)
    layer = parse_layers(args.layer, aur.deconvnet.n_layers)[0]
    aur.deconvnet.channels(layer)
    if not args.duration > 0 or not args.tolerance > 0:
        raise CnnauralError("--duration and --tolerance must be positive")
    wave, onsets = data.render_bwv846(sample_rate=22050, cache_dir=data.default_cache_dir())
    x = resample(wave, 22050, aur.sample_rate)[: int(args.duration * aur.sample_rate)]
    res = analysis.score_onset_features(aur, x, onsets, layer=layer, tolerance=args.tolerance)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "onsets.json", lambda tmp: Path(tmp).write_text(json.dumps(res, indent=1)))
    b = res["baseline"]
    lines = [f"# Layer-{layer} features as onset detectors: BWV 846 Prelude, first {res['duration']:.0f} s",
             "", f"{b['reference']} ground-truth onsets (MIDI note-on times), F-measure at +-{args.tolerance * 1000:.0f} ms.",
             f"Baseline, the same detector on the original audio: F {b['f_measure']:.3f} "
             f"(P {b['precision']:.3f}, R {b['recall']:.3f}).", "",
             "| rank | feature | F-measure | precision | recall | detected | mean activation |", "|---|---|---|---|---|---|---|"]
    for i, r in enumerate(res["features"], 1):
        lines.append(f"| {i} | {r['feature']} | {r['f_measure']:.3f} | {r['precision']:.3f} | {r['recall']:.3f} | "
                     f"{r['detected']} | {r['mean_activation']:.4f} |")
    atomic_write(out / "onsets.md", lambda tmp: Path(tmp).write_text("\n".join(lines) + "\n"))
    print(f"baseline (original audio): F {b['f_measure']:.3f}")
    for r in res["features"][:5]:
        print(f"feature {r['feature']:3d}: F {r['f_measure']:.3f} (P {r['precision']:.3f}, R {r['recall']:.3f})")
    print(f"wrote {(out / 'onsets.md').resolve()}")
    return 0


def cmd_selectivity(args) -> int:
    from . import analysis, viz
    from .audio import atomic_write
    from .data import scan_tracks

    aur = load_auraliser(args)
    layer = aur.deconvnet.n_layers if args.layer is None else parse_layers(args.layer, aur.deconvnet.n_layers)[0]
    aur.deconvnet.channels(layer)
    root = Path(args.data_dir)
    tracks = scan_tracks(root)
    if args.split != "all":
        split = (aur.meta.get("split") or {}).get(args.split)
        if not split:
            raise CnnauralError(f"the model records no {args.split} split; pass --split all")
        wanted = set(split)
        tracks = [(p, c) for p, c in tracks if p.relative_to(root).as_posix() in wanted]
        if len(tracks) < len(wanted):
            raise CnnauralError(f"{len(wanted) - len(tracks)} track(s) of the {args.split} split are missing from "
                                f"{root}; rebuild it with `cnnaural dataset {root}` or pass --split all")
    res = analysis.class_selectivity(aur.model, aur.spectrogram, tracks, layer=layer, cache_dir=args.cache_dir,
                                     off_ratio=args.off_ratio)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "selectivity.json", lambda tmp: Path(tmp).write_text(json.dumps(res, indent=1)))
    classes, mean = res["classes"], res["mean"]
    lines = [f"# Mean activation per class, layer {layer} ({args.split} tracks)", "",
             "Clips: " + ", ".join(f"{c} {res['clips'][c]}" for c in classes), "",
             "| feature | " + " | ".join(classes) + " |", "|---|" + "---|" * len(classes)]
    for f in range(len(mean[0])):
        lines.append(f"| {f} | " + " | ".join(f"{mean[c][f]:.4f}" for c in range(len(classes))) + " |")
    lines += ["", f"Switched off (mean below {args.off_ratio:g} x the other classes' mean):", ""]
    lines += [f"- {c}: {', '.join(map(str, res['switched_off'][c])) or 'none'}" for c in classes]
    atomic_write(out / "selectivity.md", lambda tmp: Path(tmp).write_text("\n".join(lines) + "\n"))
    viz.heatmap(out / "selectivity.png", mean, classes, title=f"layer {layer}: mean activation per class")
    for c in classes:
        print(f"{c}: switches off {len(res['switched_off'][c])} feature(s): {res['switched_off'][c]}")
    print(f"wrote {(out / 'selectivity.md').resolve()}")
    return 0


def cmd_filters(args) -> int:
    from . import viz

    aur = load_auraliser(args)
    conv = aur.deconvnet.steps[aur.deconvnet._conv_idx[0]].module
    initial = aur.meta.get("initial_conv1")
    if initial is not None and tuple(initial.shape) != tuple(conv.weight.shape):
        initial = None
    if conv.weight.shape[1] != 1:
        raise CnnauralError("filters are drawn for single-channel (spectrogram) inputs only")
    viz.filters(args.out, conv.weight, initial, title=f"first-layer filters {tuple(conv.weight.shape[2:])}")
    print(f"wrote {Path(args.out).resolve()}")
    return 0


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CnnauralError as e:
        print(f"cnnaural: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cnnaural: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
