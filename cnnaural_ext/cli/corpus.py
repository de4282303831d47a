"""`cnnaural dataset OUT_DIR [--piano]`: build a folder-per-class corpus from the Debian packages."""
from __future__ import annotations

from ..corpus import DEFAULT_CLASSES, prepare_corpus


def register(subparsers) -> None:
    """Add the `dataset` command to the `cnnaural` subparsers."""
    p = subparsers.add_parser("dataset", help="build a folder-per-class corpus of real music from the Debian packages")
    add_arguments(p)
    p.set_defaults(func=run)


def add_arguments(parser):
    """Arguments of `cnnaural dataset`."""
    parser.add_argument("out_dir", metavar="OUT_DIR", help="folder to build the corpus in (one sub-folder per class)")
    parser.add_argument("--piano", action="store_true",
                        help="add a 'piano' class rendered from music21 corpus scores (needs music21, pretty_midi, tinysoundfont)")
    parser.add_argument("--classes", default=",".join(DEFAULT_CLASSES),
                        help="comma-separated classes among orchestral,electronic,speech,piano "
                             f"(default: {','.join(DEFAULT_CLASSES)})")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def run(args) -> int:
    """`cnnaural dataset`: build the corpus; returns the exit code."""
    classes = [c.strip() for c in str(args.classes).split(",") if c.strip()]
    if getattr(args, "piano", False) and "piano" not in classes:
        classes.append("piano")
    counts = prepare_corpus(args.out_dir, classes, progress=not getattr(args, "no_progress", False))
    print(f"corpus ready in {args.out_dir}: " + ", ".join(f"{c} {n}" for c, n in counts.items()))
    return 0
