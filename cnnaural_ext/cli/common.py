"""What several `cnnaural` commands share: option groups, renamed-option handling, the model.

Command modules parse arguments, call the library and print; nothing here computes.
"""
from __future__ import annotations

import argparse
import sys

from ..errors import CnnauralError


class Renamed(argparse.Action):
    """An old spelling of an option, kept for one release: stores into the new option's dest and
    says once on stderr which spelling to use instead.

        p.add_argument("--gain", action=Renamed, new="--compression", dest="compression", type=float)
    """

    def __init__(self, option_strings, dest, new: str, nargs=None, **kwargs):
        self.new = new
        kwargs.setdefault("help", argparse.SUPPRESS)
        super().__init__(option_strings, dest, nargs=nargs, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"cnnaural: warning: {option_string} is deprecated and will be removed in the next release; "
              f"use {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, values)


class RenamedFlag(Renamed):
    """`Renamed` for a flag without a value (store_true)."""

    def __init__(self, option_strings, dest, new: str, **kwargs):
        super().__init__(option_strings, dest, new, nargs=0, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        super().__call__(parser, namespace, True, option_string)


def add_model(p) -> None:
    """--model and --device."""
    p.add_argument("--model", metavar="CKPT", default=None,
                   help="checkpoint written by `cnnaural train` (default: the shipped paper_cnn5 model)")
    p.add_argument("--device", default="cpu", help="torch device to run on (default: cpu)")


def load_auraliser(args):
    """The Auraliser of --model (the shipped model without it) on --device."""
    from ..auralise import Auraliser

    if args.model:
        return Auraliser.from_checkpoint(args.model, device=args.device)
    return Auraliser.pretrained(device=args.device)


def parse_ints(text, name: str) -> tuple:
    """'512,256' -> (512, 256); a CnnauralError naming the option otherwise."""
    try:
        return tuple(int(v) for v in str(text).split(",") if v.strip())
    except ValueError:
        raise CnnauralError(f"{name} must be comma-separated integers (got {text!r})") from None


def model_label(path) -> str:
    """How a --model is named in titles and tables."""
    from pathlib import Path

    from ..auralise import PRETRAINED

    return f"the shipped model ({PRETRAINED.name})" if path is None else Path(path).name


def add_input(p, duration: float = 4.0) -> None:
    """--offset and --duration: the excerpt of each track that is read."""
    p.add_argument("--offset", type=float, default=0.0, help="seconds to skip at the start of each track (default 0)")
    p.add_argument("--duration", type=float, default=duration,
                   help=f"seconds to read from each track (default {duration:g}, the original code's clip; "
                   "0 = whole track)")


def add_request(p, features: str = "all") -> None:
    """What to auralise and how: --layers, --features, --mode, --phase, --seed, --no-normalize."""
    p.add_argument("--layers", default="1", help="1-based conv layer(s) or module names (e.g. layer3.1.conv2), "
                   "comma-separated, or 'all' (default 1)")
    p.add_argument("--layer", dest="layers", action=Renamed, new="--layers")
    p.add_argument("--features", default=features, help=f"'0,7' | 'all' | 'top:K' (default {features})")
    p.add_argument("--mode", choices=["mask", "magnitude"], default="mask",
                   help="mask: Y = X * D, the original code (default); magnitude: |Y| from relu(D), phase of X")
    p.add_argument("--phase", choices=["original", "griffinlim"], default="original",
                   help="phase of the output (default: the original STFT's)")
    p.add_argument("--seed", choices=["map", "max"], default="map",
                   help="map: the feature's whole activation map (default); max: its strongest position")
    p.add_argument("--no-normalize", action="store_true", help="do not peak-normalise the clips")


def add_output(p) -> None:
    """--out, --format and --subtype of auralised clips."""
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    add_audio_format(p)


def add_audio_format(p, default: str = "wav") -> None:
    """--format and --subtype of auralised clips."""
    p.add_argument("--format", choices=["wav", "flac"], default=default,
                   help=f"audio files to write (default {default})")
    p.add_argument("--subtype", choices=["PCM_16", "PCM_24", "FLOAT"], default="PCM_16",
                   help="sample format (default PCM_16; FLOAT is wav only)")


def add_corpus_split(p, what: str) -> None:
    """Which tracks of a folder-per-class corpus (a split recorded in the checkpoint), and the clip cache."""
    p.add_argument("--split", choices=["test", "val", "train", "all"], default="test",
                   help=f"tracks of {what} to use: a split recorded in the checkpoint, or all (default test)")
    p.add_argument("--cache-dir", default=None, metavar="DIR",
                   help="clip cache folder (default: $CNNAURAL_CACHE or ~/.cache/cnnaural)")


def request_from_args(args) -> dict:
    """The keyword arguments of `Auraliser.auralise_file` that the options above set."""
    return dict(layers=args.layers, features=args.features, offset=args.offset, duration=args.duration,
                mode=args.mode, phase=args.phase, seed=args.seed, normalize=not args.no_normalize,
                audio_format=args.format, subtype=args.subtype)
