"""`cnnaural onsets | selectivity | faithfulness`: the paper's listening claims, and how faithful the
audio is, as tables."""
from __future__ import annotations

from ..auralise import parse_layers
from .common import add_corpus_split, add_model, load_auraliser


def register(sub) -> None:
    p = sub.add_parser("onsets", help="score every feature of a layer as an onset detector on J.S. Bach's "
                       "BWV 846 Prelude (rendered, MIDI onsets as ground truth)",
                       description="Auralise every feature of --layer for the first --duration seconds of the "
                       "rendered BWV 846 Prelude, detect onsets in each clip (spectral flux, peak picking) and "
                       "score them against the MIDI note-on times (F-measure at +-tolerance, mir_eval); the same "
                       "detector on the original audio is the baseline. Writes onsets.json and onsets.md to --out.")
    add_model(p)
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
    add_model(p)
    p.add_argument("--layer", default=None, help="1-based conv layer (default: the deepest)")
    add_corpus_split(p, "DATA_DIR")
    p.add_argument("--off-ratio", type=float, default=0.25, help="threshold for 'switched off' (default 0.25)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.set_defaults(func=cmd_selectivity)

    p = sub.add_parser("faithfulness", help="is what you hear what the classifier used? class measures (AI, AD, "
                       "AG, FF, Fid-In, deletion/insertion) and unit measures (retention, selectivity)",
                       description="Feed auralised audio back through the classifier (its own front end) over "
                       "clips of DATA_DIR (by default the model's test split) and measure, for class targets and "
                       "for the top features of each --layers, the average increase/drop/gain of the predicted "
                       "class's probability, faithfulness on spectra, input fidelity and deletion/insertion "
                       "curves, with plain-gradient and random masks as baselines (class measures); and how much "
                       "of each feature's activation its clip re-creates and how much of the layer's activation "
                       "is that feature's (unit measures). Every clip's numbers are kept under --out, so a rerun "
                       "resumes. Writes faithfulness.json, .md and .png to --out.")
    p.add_argument("data_dir", metavar="DATA_DIR", help="corpus: one sub-folder of audio files per class")
    add_model(p)
    p.add_argument("--split", choices=["test", "val", "train", "all"], default="test",
                   help="tracks of DATA_DIR to use: a split recorded in the checkpoint, or all (default test)")
    p.add_argument("--layers", default="1,5", help="conv layers whose top features are measured (default 1,5)")
    p.add_argument("--top", type=int, default=3, help="features per layer, the most active on each clip (default 3)")
    p.add_argument("--clips-per-track", type=int, default=1, help="clips per track, evenly spaced (default 1)")
    p.add_argument("--max-clips", type=int, default=None, help="at most this many clips, taken evenly")
    p.add_argument("--steps", type=int, default=10, help="deletion/insertion steps (default 10)")
    p.add_argument("--seed", choices=("map", "max"), default="map", help="deconvnet seed kind (default map)")
    p.add_argument("--measures", default="classes,units",
                   help="what to measure, comma-separated: classes (AI, AD, AG, FF, Fid-In, deletion/insertion), "
                   "units (retention, selectivity), inversion (spectral convergence of the clips, per mode and "
                   "phase) (default classes,units)")
    p.add_argument("--units", action="store_const", const="units", dest="measures",
                   help="the unit measures only (--measures units)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.set_defaults(func=cmd_faithfulness)


def _one_layer(aur, spec) -> int:
    layer = parse_layers(spec, aur.deconvnet.n_layers)[0]
    aur.deconvnet.n_features(layer)
    return layer


def cmd_onsets(args) -> int:
    from ..analysis import bwv846_onsets
    from ..report import write_onsets

    aur = load_auraliser(args)
    res, _, _ = bwv846_onsets(aur, _one_layer(aur, args.layer), args.duration, args.tolerance)
    md = write_onsets(res, args.out)
    b = res["baseline"]
    print(f"baseline (original audio): F {b['f_measure']:.3f}")
    for r in res["features"][:5]:
        print(f"feature {r['feature']:3d}: F {r['f_measure']:.3f} (P {r['precision']:.3f}, R {r['recall']:.3f})")
    print(f"wrote {md.resolve()}")
    return 0


def cmd_selectivity(args) -> int:
    from ..analysis import class_selectivity, select_tracks
    from ..report import write_selectivity

    aur = load_auraliser(args)
    layer = aur.deconvnet.n_layers if args.layer is None else _one_layer(aur, args.layer)
    tracks = select_tracks(aur, args.data_dir, args.split)
    res = class_selectivity(aur.model, aur.spectrogram, tracks, layer=layer, cache_dir=args.cache_dir,
                            off_ratio=args.off_ratio)
    md = write_selectivity(res, args.out, args.split)
    for c in res["classes"]:
        print(f"{c}: switches off {len(res['switched_off'][c])} feature(s): {res['switched_off'][c]}")
    print(f"wrote {md.resolve()}")
    return 0


MEASURES = ("classes", "units", "inversion")


def cmd_faithfulness(args) -> int:
    from ..analysis.faithfulness import faithfulness, split_clips, write_faithfulness
    from ..analysis.inversion import inversion_quality
    from ..errors import CnnauralError

    measures = [m.strip() for m in args.measures.split(",") if m.strip()]
    if not measures or any(m not in MEASURES for m in measures):
        raise CnnauralError(f"--measures takes some of {', '.join(MEASURES)} (got {args.measures!r})")
    aur = load_auraliser(args)
    for name in ("top", "clips_per_track", "steps"):
        if getattr(args, name) < 1:
            raise CnnauralError(f"--{name.replace('_', '-')} must be >= 1 (got {getattr(args, name)})")
    if args.max_clips is not None and args.max_clips < 1:
        raise CnnauralError(f"--max-clips must be >= 1 (got {args.max_clips})")
    clips = split_clips(aur, args.data_dir, args.split, clips_per_track=args.clips_per_track,
                        max_clips=args.max_clips)
    res = {"model": str(aur.source), "clips": len(clips), "classes": [], "units": [], "curves": {}}
    if "classes" in measures or "units" in measures:
        res = faithfulness(aur, clips, layers=args.layers, top=args.top, steps=args.steps, seed=args.seed,
                           classes="classes" in measures, units="units" in measures, out_dir=args.out)
    if "inversion" in measures:
        res["inversion"] = inversion_quality(aur, clips, layers=args.layers, features=f"top:{args.top}",
                                             seed=args.seed)
    paths = write_faithfulness(res, args.out)
    for r in res["classes"]:
        print(f"{r['target']:8s} {r['explainer']:9s} AI {r['AI']:5.1f}  AD {r['AD']:5.1f}  AG {r['AG']:5.1f}  "
              f"FF {r['FF']:6.3f}  Fid-In {r['Fid-In']:.2f}")
    print(f"wrote {paths['markdown'].resolve()}")
    return 0
