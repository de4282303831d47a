"""`cnnaural sanity`: can you trust what you hear? Adebayo et al.'s sanity checks for auralisation."""
from __future__ import annotations

from ..errors import CnnauralError
from .common import add_corpus_split, add_model, load_auraliser, model_label


def register(sub) -> None:
    p = sub.add_parser("sanity", help="sanity checks (Adebayo et al. 2018): the maps and clips of the trained model "
                       "against randomised models and a model trained on shuffled labels",
                       description="Auralise the most active features of --layers on --clips clips of the model's "
                       "--split with the trained model and with (1) its conv layers re-initialised, cascading from the "
                       "top layer down and one layer at a time, and (2) the same architecture trained for --epochs "
                       "epochs on shuffled labels of DATA's tracks (cached in --out and reused by a rerun; --epochs 0 "
                       "skips it). Scores |Spearman rho| and SSIM of the deconvolved maps and the correlation of the "
                       "log spectrograms of the clips, per layer, seed kind and mode. Writes sanity.json, sanity.md "
                       "and sanity.png to --out; a rerun reuses the clips already done.")
    add_model(p)
    p.add_argument("--data", default="data/corpus", metavar="DATA_DIR",
                   help="corpus, one sub-folder per class (default data/corpus; `cnnaural dataset` builds it)")
    add_corpus_split(p, "DATA_DIR")
    p.add_argument("--layers", default="all", help="1-based conv layers, comma-separated, or 'all' (default all)")
    p.add_argument("--clips", type=int, default=8, metavar="N", help="clips of the split to compare (default 8)")
    p.add_argument("--features", type=int, default=3, metavar="K",
                   help="the K most active features per clip and layer (default 3)")
    p.add_argument("--epochs", type=int, default=3, metavar="E",
                   help="epochs of the shuffled-label training (default 3; 0: no data randomisation test)")
    p.add_argument("--random-seed", type=int, default=0, help="seeds the re-initialisation (default 0)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.set_defaults(func=cmd_sanity)


def shuffled_conv1(model):
    from ..deconvnet import DeconvNet

    return DeconvNet(model).conv(1)


def cmd_sanity(args) -> int:
    import contextlib

    import torch

    from ..analysis.sanity import sanity_checks, split_clips, train_shuffled_labels, weight_distances, write_sanity
    from ..auralise import parse_layers

    if args.clips < 1:
        raise CnnauralError(f"--clips must be >= 1 (got {args.clips})")
    if args.epochs < 0:
        raise CnnauralError(f"--epochs must be >= 0 (got {args.epochs})")
    if args.features < 1:
        raise CnnauralError(f"--features must be >= 1 (got {args.features})")
    if args.threads is not None and args.threads < 1:
        raise CnnauralError(f"--threads must be >= 1 (got {args.threads})")
    progress = not args.no_progress
    old_threads = torch.get_num_threads()
    with contextlib.ExitStack() as stack:
        if args.threads:
            torch.set_num_threads(args.threads)
            stack.callback(torch.set_num_threads, old_threads)
        aur = load_auraliser(args)
        layers = parse_layers(args.layers, aur.deconvnet.n_layers)
        clips = split_clips(aur, args.data, args.split, args.clips)
        shuffled, shuffled_info = None, None
        if args.epochs:
            shuffled, metrics = train_shuffled_labels(aur, args.data, args.out, epochs=args.epochs,
                                                      cache_dir=args.cache_dir, threads=args.threads,
                                                      progress=progress)
            shuffled_info = dict(epochs=args.epochs, clip_accuracy=metrics.get("clip_accuracy"),
                                 test_track_accuracy=metrics.get("test_track_accuracy"),
                                 best_epoch=metrics.get("best_epoch"),
                                 weight_distance_from_trained=weight_distances(aur.model, shuffled))
            init = aur.meta.get("initial_conv1")
            if isinstance(init, torch.Tensor):  # how far each first layer moved from the shared initial weights
                w0 = init.double()
                shuffled_info["conv1_distance_from_initial"] = {
                    name: float((m.weight.detach().double().cpu() - w0).norm() / w0.norm())
                    for name, m in (("trained", aur.deconvnet.conv(1)), ("shuffled labels", shuffled_conv1(shuffled)))
                    if m.weight.shape == w0.shape}
        res = sanity_checks(aur, clips, layers, n_features=args.features, shuffled=shuffled,
                            random_seed=args.random_seed, out_dir=args.out, progress=progress)
    res["settings"]["model"] = model_label(args.model)
    res["settings"]["data"] = str(args.data)
    res["settings"]["split"] = args.split
    if shuffled_info:
        res["shuffled"] = shuffled_info
    paths = write_sanity(res, args.out)
    for row in res["summary"]:
        if row["seed"] == "map" and row["variant"] in ("cascade %d..1" % aur.deconvnet.n_layers, "shuffled labels"):
            print(f"{row['variant']}, layer {row['layer']}: |rho| {row['spearman']:.2f}, SSIM {row['ssim']:.2f}, "
                  + ", ".join(f"r({m}) {v:.2f}" for m, v in row["logspec"].items()))
    print(f"wrote {paths['md'].resolve()}")
    return 0
