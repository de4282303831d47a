"""The `cnnaural` command: info | auralise | report | filters | onsets | selectivity | catalogue | atlas |
dataset | train | crossval.

One module per command group parses its arguments, calls the library and prints. User errors
(missing or unreadable audio, a layer or feature out of range, a model the deconvnet cannot
read, a corrupt checkpoint) print one line on stderr and exit with status 2.
"""
from __future__ import annotations

import argparse
import sys

from ..errors import CnnauralError
from . import analysis, auralise, catalogue, corpus, training, trust

EPILOG = """examples:
  cnnaural info
  cnnaural auralise song.ogg --layers 1 --features 7 --out out/
  cnnaural auralise song.ogg --layers 1,5 --features top:4 --offset 30 --duration 4 --out out/
  cnnaural report song.ogg other.flac --layers 1,5 --out gallery/
  cnnaural report song.ogg --figures --data data/corpus --out gallery/
  cnnaural onsets --out out/onsets
  cnnaural selectivity data/corpus --out out/selectivity
  cnnaural sanity --data data/corpus --clips 8 --epochs 3 --out out/sanity
  cnnaural catalogue music/ --out cat/ --layers 1,5 --features top:3
  cnnaural catalogue --status cat/
  cnnaural atlas cat/ --layers 5 --top 8
  cnnaural filters --out filters.png
  cnnaural dataset data/corpus
  cnnaural train data/corpus --out model.pt
"""

#: the command groups, in the order `cnnaural --help` lists their commands
COMMAND_GROUPS = (auralise, analysis, trust, corpus, training, catalogue)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cnnaural", description="Listen to what a CNN trained on spectrograms has learned "
        "(deconvnet + inverse STFT with the original phase).", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for group in COMMAND_GROUPS:
        group.register(sub)
    return parser


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
