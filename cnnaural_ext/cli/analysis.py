"""`cnnaural onsets | selectivity`: the paper's listening claims as tables."""
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
