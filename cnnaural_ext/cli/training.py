"""`cnnaural train` and `cnnaural crossval`: train a paper CNN, or cross-validate it by track.

Old option spellings (--channels, --gain, --seed) still work for one release (`Renamed`).
"""
from __future__ import annotations

import shlex

from ..models import ARCHITECTURES
from ..training import OPTIMIZERS, cross_validate, format_crossval, format_summary, train
from .common import Renamed, parse_ints


def register(subparsers) -> None:
    """Add the `train` and `crossval` commands to the `cnnaural` subparsers."""
    p = subparsers.add_parser("train", help="train a paper CNN on a folder-per-class corpus")
    add_arguments(p)
    p.set_defaults(func=run)

    p = subparsers.add_parser("crossval", help="k-fold cross-validation by track of a paper CNN against the linear "
                                               "log-mel baseline (every track tested once)")
    add_crossval_arguments(p)
    p.set_defaults(func=run_crossval)


def add_arguments(parser):
    """Arguments of `cnnaural train`."""
    parser.add_argument("data_dir", metavar="DATA_DIR", help="corpus: one sub-folder of audio files per class")
    parser.add_argument("--out", required=True, metavar="CKPT", help="checkpoint file to write")
    parser.add_argument("--no-baseline", action="store_true", help="skip the linear log-mel baseline")
    return _add_options(parser)


def add_crossval_arguments(parser):
    """Arguments of `cnnaural crossval`: those of `cnnaural train`, plus --folds; --out is a folder."""
    parser.add_argument("data_dir", metavar="DATA_DIR", help="corpus: one sub-folder of audio files per class")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="folder for fold<i>.pt, crossval.md and crossval.json (existing folds are reused)")
    parser.add_argument("--folds", type=int, default=5, help="number of folds by track (default 5)")
    parser.add_argument("--val", type=float, default=0.15,
                        help="fraction of each class's pieces drawn for validation in every fold (default 0.15)")
    return _add_options(parser)


def _add_options(parser):
    """The model, input and optimisation options `train` and `crossval` share."""
    parser.add_argument("--arch", default="paper_cnn5", choices=sorted(ARCHITECTURES))
    parser.add_argument("--width", type=int, default=48, help="conv channels per block (default 48)")
    parser.add_argument("--channels", action=Renamed, new="--width", dest="width", type=int)
    parser.add_argument("--dense", default="512,256", help="hidden Linear widths, comma-separated (default 512,256)")
    parser.add_argument("--batchnorm", action="store_true", help="BatchNorm2d after every conv")
    parser.add_argument("--scale", default="log1p", choices=["linear", "log1p", "db"], help="network input scale")
    parser.add_argument("--compression", type=float, default=1.0,
                        help="with --scale log1p: the input is log(1 + COMPRESSION |X|) (default 1)")
    parser.add_argument("--gain", action=Renamed, new="--compression", dest="compression", type=float)
    parser.add_argument("--n-mels", type=int, default=None, help="mel bands of the input (default: linear STFT bins)")
    parser.add_argument("--sample-rate", type=int, default=11025)
    parser.add_argument("--n-fft", type=int, default=512)
    parser.add_argument("--hop-length", type=int, default=256)
    parser.add_argument("--clip-seconds", type=float, default=4.0)
    parser.add_argument("--clips-per-track", type=int, default=10,
                        help="clips of --clip-seconds per track, evenly spaced (default 10, as the paper); "
                             "validation and test are scored on these")
    parser.add_argument("--train-clips", type=int, default=None,
                        help="clips per training track (default: --clips-per-track); the baseline is fitted on the same")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--optimizer", default="rmsprop", choices=OPTIMIZERS)
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--patience", type=int, default=5, help="epochs without a better validation loss before stopping")
    parser.add_argument("--random-seed", type=int, default=0,
                        help="seeds the split, the initialisation, the shuffling and dropout (default 0)")
    parser.add_argument("--seed", action=Renamed, new="--random-seed", dest="random_seed", type=int)
    parser.add_argument("--max-minutes", type=float, default=None, help="time budget of the training loop")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--cache-dir", default=None, help="clip cache root (default ~/.cache/cnnaural)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars or per-epoch lines")
    return parser


def recipe_from_args(args, command: str = "train") -> str:
    """The full `cnnaural train` (or `crossval`) command line for these arguments (every option explicit)."""
    parts = ["cnnaural", command, str(args.data_dir), "--out", str(args.out)]
    if command == "crossval":
        parts += ["--folds", str(args.folds), "--val", f"{args.val:g}"]
    parts += ["--arch", args.arch, "--width", str(args.width), "--dense", str(args.dense), "--scale", args.scale]
    if args.batchnorm:
        parts.append("--batchnorm")
    if args.compression != 1.0:
        parts += ["--compression", f"{args.compression:g}"]
    if args.n_mels:
        parts += ["--n-mels", str(args.n_mels)]
    for opt in ("sample_rate", "n_fft", "hop_length", "clip_seconds", "clips_per_track", "train_clips", "epochs",
                "batch_size", "lr", "optimizer", "weight_decay", "patience", "random_seed", "max_minutes",
                "threads", "cache_dir"):
        v = getattr(args, opt)
        if v is not None:
            parts += ["--" + opt.replace("_", "-"), str(v)]
    if getattr(args, "no_baseline", False):  # `train` only: crossval always fits the baseline
        parts.append("--no-baseline")
    return shlex.join(parts)


def _options(args) -> dict:
    """The `train` keyword arguments shared by `cnnaural train` and `cnnaural crossval`."""
    return dict(arch=args.arch, width=args.width, batchnorm=args.batchnorm,
                dense=parse_ints(args.dense, "--dense"), scale=args.scale, compression=args.compression,
                n_mels=args.n_mels, sample_rate=args.sample_rate, n_fft=args.n_fft, hop_length=args.hop_length,
                clip_seconds=args.clip_seconds, clips_per_track=args.clips_per_track, train_clips=args.train_clips,
                epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer,
                weight_decay=args.weight_decay, patience=args.patience, random_seed=args.random_seed,
                cache_dir=args.cache_dir, max_minutes=args.max_minutes, threads=args.threads,
                progress=not args.no_progress)


def run(args) -> int:
    """`cnnaural train`: returns the exit code."""
    metrics = train(args.data_dir, args.out, baseline=not args.no_baseline, recipe=recipe_from_args(args),
                    **_options(args))
    if args.no_progress:  # with progress on, train() has printed it already
        print(format_summary(metrics))
    return 0


def run_crossval(args) -> int:
    """`cnnaural crossval`: returns the exit code."""
    summary = cross_validate(args.data_dir, args.out, folds=args.folds, val=args.val,
                             recipe=recipe_from_args(args, "crossval"), **_options(args))
    if args.no_progress:
        print(format_crossval(summary))
    return 0
