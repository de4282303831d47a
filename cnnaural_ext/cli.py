"""The `cnnaural` command: info | auralise | report | onsets | selectivity | filters | dataset | train | crossval.

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
  cnnaural report song.ogg --figures --data data/corpus --out gallery/
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


def _add_corpus_split(p, what: str):
    """What `report --data` and `selectivity` share: which tracks of the corpus, and the clip cache."""
    p.add_argument("--split", choices=["test", "val", "train", "all"], default="test",
                   help=f"tracks of {what} to use: a split recorded in the checkpoint, or all (default test)")
    p.add_argument("--cache-dir", default=None, metavar="DIR",
                   help="clip cache folder (default: $CNNAURAL_CACHE or ~/.cache/cnnaural)")


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
                       "the feature's activation statistics. With --figures the gallery also shows the model's "
                       "first-layer filters, initial beside learned (Figure 2), and the layer-1 features scored "
                       "as onset detectors on J.S. Bach's BWV 846 Prelude: a table and Figure 3 for the best "
                       "one; with --data, the mean activation of every deepest-layer feature per class over "
                       "the model's test split (a heat map and a table). These go to OUT/_analysis/.")
    _add_tracks_out(p)
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
    _add_corpus_split(g, "--data")
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
    _add_corpus_split(p, "DATA_DIR")
    p.add_argument("--off-ratio", type=float, default=0.25, help="threshold for 'switched off' (default 0.25)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.set_defaults(func=cmd_selectivity)

    from . import data, train

    p = sub.add_parser("dataset", help="build a folder-per-class corpus of real music from the Debian packages")
    data.add_arguments(p)
    p.set_defaults(func=data.run)

    p = sub.add_parser("train", help="train a paper CNN on a folder-per-class corpus")
    train.add_arguments(p)
    p.set_defaults(func=train.run)

    p = sub.add_parser("crossval", help="k-fold cross-validation by track of a paper CNN against the linear "
                                        "log-mel baseline (every track tested once)")
    train.add_crossval_arguments(p)
    p.set_defaults(func=train.run_crossval)
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


def track_names(paths) -> list:
    """track_name of every path, made unique within one run: a repeated name (a.ogg in two
    folders, or names that differ only in characters track_name replaces) gets _2, _3, ..."""
    names, used = [], set()
    for path in paths:
        base = name = track_name(path)
        k = 1
        while name in used:
            k += 1
            name = f"{base}_{k}"
        used.add(name)
        names.append(name)
    return names


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
    """`auralise`, then index.html; with --figures / --filters-model / --data also the figure and
    analysis sections, their files in OUT/_analysis/."""
    from .gallery import write_gallery

    aur = load_auraliser(args)
    # every option is checked, and the analyses are computed, before the first file is written
    check_request(args, aur)
    filter_models = [(model_label(args.model), aur)] if args.figures else []
    if args.filters_model:
        from .auralise import Auraliser

        filter_models.append((model_label(args.filters_model),
                              Auraliser.from_checkpoint(args.filters_model, device=args.device)))
    for _, a in filter_models:
        first_conv(a)
    if args.figures and not args.onset_duration > 0:
        raise CnnauralError(f"--onset-duration must be positive (got {args.onset_duration:g})")
    tracks = select_tracks(aur, args.data, args.split) if args.data else None
    onsets = bwv846_onsets(aur, 1, args.onset_duration, 0.05) if args.figures else None
    selectivity = None
    if tracks is not None:
        selectivity = _class_selectivity(aur, tracks, aur.deconvnet.n_layers, args.cache_dir, 0.25)
    entries = auralise_tracks(args, aur)
    sections = []
    root = Path(args.out)
    if filter_models:
        sections.append(_filters_section(root, filter_models))
    if onsets is not None:
        sections.append(_onsets_section(root, aur, onsets, args))
    if selectivity is not None:
        sections.append(_selectivity_section(root, selectivity, args.split))
    index = write_gallery(args.out, entries, sections=sections,
                          subtitle=f"Auralised with {model_label(args.model)}: layers {args.layer}, "
                          f"features {args.features}, mode {args.mode}, phase {args.phase}.")
    print(f"gallery: {index.resolve()}")
    return 0


ANALYSIS = "_analysis"  # no track folder can have this name: track_name strips leading '_'


def model_label(path) -> str:
    from .auralise import PRETRAINED

    return f"the shipped model ({PRETRAINED.name})" if path is None else Path(path).name


def first_conv(aur):
    """The first Conv2d of an Auraliser's model; a clear error unless it reads a single channel."""
    conv = aur.deconvnet.steps[aur.deconvnet._conv_idx[0]].module
    if conv.weight.shape[1] != 1:
        raise CnnauralError("filters are drawn for single-channel (spectrogram) inputs only")
    return conv


def _fmt(v, spec=".3f"):
    return "" if v is None else format(v, spec)


def _filters_section(root, filter_models) -> dict:
    from . import viz

    out = root / ANALYSIS
    out.mkdir(parents=True, exist_ok=True)
    images, rows = [], []
    for i, (label, a) in enumerate(filter_models):
        conv = first_conv(a)
        initial = a.meta.get("initial_conv1")
        if initial is not None and tuple(initial.shape) != tuple(conv.weight.shape):
            initial = None
        name = "figure2_filters.png" if i == 0 else f"figure2_filters_{i}.png"
        kernel = "x".join(map(str, conv.weight.shape[2:]))
        viz.filters(out / name, conv.weight, initial,
                    title=f"{label}: first-layer filters {kernel}" + (", initial | learned" if initial is not None else ""))
        images.append({"path": f"{ANALYSIS}/{name}", "alt": f"first-layer filters of {label}"
                       + (", initial beside learned" if initial is not None else "")})
        m = a.meta.get("metrics") or {}
        b = m.get("baseline") or {}
        n_test = (m.get("n_tracks") or {}).get("test")
        rows.append([label, a.meta.get("arch", type(a.model).__name__), f"{conv.weight.shape[0]} x {kernel}",
                     ", ".join(map(str, a.meta.get("classes", []))), _fmt(m.get("test_track_accuracy")),
                     _fmt(b.get("test_track_accuracy")), "" if n_test is None else n_test])
    return {"id": "figure2", "title": "Figure 2: first-layer filters",
            "paragraphs": ["Each filter's weights at initialisation (left, when the checkpoint records them) "
                           "and after training (right), low frequencies at the bottom."],
            "images": images,
            "tables": [{"caption": "Models", "header": ["checkpoint", "architecture", "first-layer filters",
                                                        "classes", "test accuracy by track",
                                                        "linear baseline by track", "test tracks"],
                        "rows": rows}]}


def _onsets_section(root, aur, onsets, args) -> dict:
    from . import viz
    from .audio import atomic_write, save_wav

    out = root / ANALYSIS
    out.mkdir(parents=True, exist_ok=True)
    res, x, onsets = onsets
    layer, b = res["layer"], res["baseline"]
    atomic_write(out / "onsets.json", lambda tmp: Path(tmp).write_text(json.dumps(res, indent=1)))
    atomic_write(out / "onsets.md", lambda tmp: Path(tmp).write_text("\n".join(onsets_markdown(res)) + "\n"))
    # Figure 3: the best onset detector on the opening of the piece, ground-truth onsets drawn
    best = res["features"][0]["feature"]
    seconds = min(args.duration if args.duration and args.duration > 0 else 4.0, res["duration"])
    x = x[: int(seconds * aur.sample_rate)]
    clip = aur.auralise(x, layer=layer, features=[best], mode=args.mode, phase=args.phase, seed=args.seed)
    spec = aur.spectrogram
    viz.figure3(out / "figure3_bwv846.png", x, clip.audio[0], spec.stft(x.to(aur.device)),
                spec.stft(clip.audio[0].to(aur.device)), sample_rate=aur.sample_rate,
                hop_length=spec.hop_length, onsets=onsets[onsets < seconds],
                title=f"BWV 846 Prelude: layer {layer}, feature {best} (ground-truth onsets in cyan)")
    save_wav(out / "bwv846_original.wav", x, aur.sample_rate, subtype=args.subtype)
    save_wav(out / f"bwv846_layer{layer}_feature{best:03d}.wav", clip.audio[0], aur.sample_rate, subtype=args.subtype)
    rows = [[i, r["feature"], f"{r['f_measure']:.3f}", f"{r['precision']:.3f}", f"{r['recall']:.3f}",
             r["detected"], f"{r['mean_activation']:.4f}"] for i, r in enumerate(res["features"], 1)]
    return {"id": "onsets", "title": f"Figure 3 and onset detectors: BWV 846 Prelude, layer {layer}",
            "paragraphs": [f"Every layer-{layer} feature auralised for the first {res['duration']:.0f} s of the "
                           f"rendered Prelude; onsets found in each clip (spectral flux, peak picking) are scored "
                           f"against the {b['reference']} MIDI note-on times with the F-measure at "
                           f"+-{res['tolerance'] * 1000:.0f} ms.",
                           f"Baseline, the same detector on the original audio: F {b['f_measure']:.3f} "
                           f"(P {b['precision']:.3f}, R {b['recall']:.3f}).",
                           f"Figure 3: the best onset detector, feature {best}, on the first {seconds:g} s."],
            "images": [{"path": f"{ANALYSIS}/figure3_bwv846.png",
                        "alt": f"Figure 3: BWV 846 original and deconvolved waveforms and spectrograms, layer "
                               f"{layer}, feature {best}, ground-truth onsets drawn"}],
            "audio": [{"path": f"{ANALYSIS}/bwv846_original.wav", "label": "BWV 846, original"},
                      {"path": f"{ANALYSIS}/bwv846_layer{layer}_feature{best:03d}.wav",
                       "label": f"BWV 846, layer {layer}, feature {best}"}],
            "tables": [{"caption": f"Layer-{layer} features ranked as onset detectors",
                        "header": ["rank", "feature", "F-measure", "precision", "recall", "detected",
                                   "mean activation"], "rows": rows}]}


def _selectivity_section(root, res, split) -> dict:
    from . import viz
    from .audio import atomic_write

    out = root / ANALYSIS
    out.mkdir(parents=True, exist_ok=True)
    layer, classes, mean, off = res["layer"], res["classes"], res["mean"], res["switched_off"]
    atomic_write(out / "selectivity.json", lambda tmp: Path(tmp).write_text(json.dumps(res, indent=1)))
    atomic_write(out / "selectivity.md",
                 lambda tmp: Path(tmp).write_text("\n".join(selectivity_markdown(res, split)) + "\n"))
    viz.heatmap(out / "selectivity.png", mean, classes, title=f"layer {layer}: mean activation per class")
    summary = [[c, res["clips"][c], len(off[c]), ", ".join(map(str, off[c])) or "none"] for c in classes]
    rows = [[f] + [f"{mean[c][f]:.4f}" for c in range(len(classes))]
            + [", ".join(n for n in classes if f in off[n])] for f in range(len(mean[0]))]
    return {"id": "selectivity", "title": f"Class selectivity: layer {layer}",
            "paragraphs": [f"Mean activation of every layer-{layer} feature per class over the "
                           + ("tracks of the corpus" if split == "all" else f"{split} tracks the model records")
                           + f". A class switches a feature off when its mean is below {res['off_ratio']:g} times "
                           "the mean on the other classes."],
            "images": [{"path": f"{ANALYSIS}/selectivity.png",
                        "alt": f"heat map: mean activation of layer {layer} features per class"}],
            "tables": [{"caption": "Features each class switches off",
                        "header": ["class", "clips", "switched off", "features"], "rows": summary},
                       {"caption": "Mean activation per class",
                        "header": ["feature", *classes, "switched off by"], "rows": rows}]}


def check_request(args, aur) -> list:
    """Check the tracks, layers and features of args before any work; returns the layers."""
    import torch

    from .deconvnet import parse_features

    layers = parse_layers(args.layer, aur.deconvnet.n_layers)
    for layer in layers:
        n = aur.deconvnet.channels(layer)
        parse_features(args.features, n, torch.zeros(n, 1), f"layer {layer}")
    for track in args.tracks:
        if not Path(track).is_file():
            raise CnnauralError(f"audio file not found: {track}")
    return layers


def auralise_tracks(args, aur=None) -> list:
    """Auralise every track of args into args.out/<track>/; returns [(folder, manifest)]."""
    from . import viz
    from .audio import atomic_write, load, save_wav

    aur = aur or load_auraliser(args)
    layers = check_request(args, aur)
    spec = aur.spectrogram
    out_root = Path(args.out)
    duration = args.duration if args.duration and args.duration > 0 else None
    entries = []
    for track, name in zip(args.tracks, track_names(args.tracks)):
        wave, sr = load(track, spec.sample_rate, offset=args.offset, duration=duration)
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


def bwv846_onsets(aur, layer, duration, tolerance):
    """`analysis.score_onset_features` on the first `duration` seconds of the rendered BWV 846
    Prelude.

    Returns:
        (result dict, waveform (n,) at the model's rate, MIDI onset times (s) of the whole piece)
    """
    from . import analysis, data
    from .audio import resample

    aur.deconvnet.channels(layer)
    wave, onsets = data.render_bwv846(sample_rate=22050, cache_dir=data.default_cache_dir())
    x = resample(wave, 22050, aur.sample_rate)[: int(duration * aur.sample_rate)]
    res = analysis.score_onset_features(aur, x, onsets, layer=layer, tolerance=tolerance)
    return res, x, onsets


def onsets_markdown(res) -> list:
    layer, b = res["layer"], res["baseline"]
    lines = [f"# Layer-{layer} features as onset detectors: BWV 846 Prelude, first {res['duration']:.0f} s",
             "", f"{b['reference']} ground-truth onsets (MIDI note-on times), F-measure at "
             f"+-{res['tolerance'] * 1000:.0f} ms.",
             f"Baseline, the same detector on the original audio: F {b['f_measure']:.3f} "
             f"(P {b['precision']:.3f}, R {b['recall']:.3f}).", "",
             "| rank | feature | F-measure | precision | recall | detected | mean activation |", "|---|---|---|---|---|---|---|"]
    for i, r in enumerate(res["features"], 1):
        lines.append(f"| {i} | {r['feature']} | {r['f_measure']:.3f} | {r['precision']:.3f} | {r['recall']:.3f} | "
                     f"{r['detected']} | {r['mean_activation']:.4f} |")
    return lines


def cmd_onsets(args) -> int:
    from .audio import atomic_write

    aur = load_auraliser(args)
    layer = parse_layers(args.layer, aur.deconvnet.n_layers)[0]
    aur.deconvnet.channels(layer)
    if not args.duration > 0 or not args.tolerance > 0:
        raise CnnauralError("--duration and --tolerance must be positive")
    res, _, _ = bwv846_onsets(aur, layer, args.duration, args.tolerance)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "onsets.json", lambda tmp: Path(tmp).write_text(json.dumps(res, indent=1)))
    atomic_write(out / "onsets.md", lambda tmp: Path(tmp).write_text("\n".join(onsets_markdown(res)) + "\n"))
    b = res["baseline"]
    print(f"baseline (original audio): F {b['f_measure']:.3f}")
    for r in res["features"][:5]:
        print(f"feature {r['feature']:3d}: F {r['f_measure']:.3f} (P {r['precision']:.3f}, R {r['recall']:.3f})")
    print(f"wrote {(out / 'onsets.md').resolve()}")
    return 0


def select_tracks(aur, data_dir, split: str) -> list:
    """The (path, class) tracks of a folder-per-class corpus, only those of the model's recorded
    `split` unless it is "all"."""
    from .data import scan_tracks

    root = Path(data_dir)
    tracks = scan_tracks(root)
    if split != "all":
        names = (aur.meta.get("split") or {}).get(split)
        if not names:
            raise CnnauralError(f"the model records no {split} split; pass --split all")
        wanted = set(names)
        tracks = [(p, c) for p, c in tracks if p.relative_to(root).as_posix() in wanted]
        if len(tracks) < len(wanted):
            raise CnnauralError(f"{len(wanted) - len(tracks)} track(s) of the {split} split are missing from "
                                f"{root}; rebuild it with `cnnaural dataset {root}` or pass --split all")
    return tracks


def _class_selectivity(aur, tracks, layer, cache_dir, off_ratio) -> dict:
    from . import analysis

    aur.deconvnet.channels(layer)
    return analysis.class_selectivity(aur.model, aur.spectrogram, tracks, layer=layer, cache_dir=cache_dir,
                                      off_ratio=off_ratio)


def selectivity_markdown(res, split: str) -> list:
    classes, mean, layer = res["classes"], res["mean"], res["layer"]
    lines = [f"# Mean activation per class, layer {layer} ({split} tracks)", "",
             "Clips: " + ", ".join(f"{c} {res['clips'][c]}" for c in classes), "",
             "| feature | " + " | ".join(classes) + " |", "|---|" + "---|" * len(classes)]
    for f in range(len(mean[0])):
        lines.append(f"| {f} | " + " | ".join(f"{mean[c][f]:.4f}" for c in range(len(classes))) + " |")
    lines += ["", f"Switched off (mean below {res['off_ratio']:g} x the other classes' mean):", ""]
    lines += [f"- {c}: {', '.join(map(str, res['switched_off'][c])) or 'none'}" for c in classes]
    return lines


def cmd_selectivity(args) -> int:
    from . import viz
    from .audio import atomic_write

    aur = load_auraliser(args)
    layer = aur.deconvnet.n_layers if args.layer is None else parse_layers(args.layer, aur.deconvnet.n_layers)[0]
    aur.deconvnet.channels(layer)
    tracks = select_tracks(aur, args.data_dir, args.split)
    res = _class_selectivity(aur, tracks, layer, args.cache_dir, args.off_ratio)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "selectivity.json", lambda tmp: Path(tmp).write_text(json.dumps(res, indent=1)))
    classes = res["classes"]
    atomic_write(out / "selectivity.md",
                 lambda tmp: Path(tmp).write_text("\n".join(selectivity_markdown(res, args.split)) + "\n"))
    viz.heatmap(out / "selectivity.png", res["mean"], classes, title=f"layer {layer}: mean activation per class")
    for c in classes:
        print(f"{c}: switches off {len(res['switched_off'][c])} feature(s): {res['switched_off'][c]}")
    print(f"wrote {(out / 'selectivity.md').resolve()}")
    return 0


def cmd_filters(args) -> int:
    from . import viz

    aur = load_auraliser(args)
    conv = first_conv(aur)
    initial = aur.meta.get("initial_conv1")
    if initial is not None and tuple(initial.shape) != tuple(conv.weight.shape):
        initial = None
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
