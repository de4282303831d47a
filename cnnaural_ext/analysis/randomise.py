"""The randomisations of the sanity checks (`sanity`): model parameters re-initialised, cascading
from the top conv layer or one layer alone (`randomise`), and the same recipe trained on shuffled
labels (`train_shuffled_labels`)."""
from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import numpy as np
import torch

from ..errors import CnnauralError

SHUFFLED_NAME = "shuffled_labels.pt"

def _conv_layers(model):
    from ..deconvnet import DeconvNet

    return DeconvNet(model)


def _check_layer(layer, n: int) -> int:
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or not 1 <= int(layer) <= n:
        raise CnnauralError(f"the layer to randomise must be a conv layer number 1..{n} (got {layer!r})")
    return int(layer)


def weight_distances(a: torch.nn.Module, b: torch.nn.Module) -> dict:
    """{conv layer: ||W_b - W_a|| / ||W_a||}, the relative distance between the conv weights of
    two models of one architecture (how far `b` is from `a`, layer by layer)."""
    ca_, cb = _conv_layers(a), _conv_layers(b)
    if ca_.n_layers != cb.n_layers:
        raise CnnauralError("weight_distances needs two models with the same conv layers")
    out = {}
    for j in range(1, ca_.n_layers + 1):
        wa, wb = ca_.conv(j).weight.detach().double().cpu(), cb.conv(j).weight.detach().double().cpu()
        if wa.shape != wb.shape:
            raise CnnauralError(f"conv layer {j} has weights {tuple(wa.shape)} and {tuple(wb.shape)}")
        out[j] = float((wb - wa).norm() / wa.norm().clamp_min(1e-30))
    return out


def randomised_layers(n_layers: int, layer: int, cascade: bool = True) -> list:
    """The conv layers a randomisation re-initialises: from the top (n_layers) down to `layer`
    when cascading, `layer` alone otherwise."""
    layer = _check_layer(layer, n_layers)
    return list(range(n_layers, layer - 1, -1)) if cascade else [layer]


def _layer_seed(random_seed: int, layer: int) -> int:
    return (int(random_seed) * 1_000_003 + int(layer) * 7919) % (2 ** 63)


def randomise(model: torch.nn.Module, layer: int, *, cascade: bool = True, random_seed: int = 0) -> torch.nn.Module:
    """A copy of `model` with conv layers re-initialised (`model` itself is not touched).

    Cascading re-initialises every conv layer from the top down to `layer`; otherwise only
    `layer`. Each re-initialised conv gets its module's own default initialisation
    (``reset_parameters()``: weight and bias), drawn on the CPU from a generator seeded by
    `random_seed` and the layer number, so the result is the same on every run and device, and
    a layer gets the same weights in a cascade and alone. Layers are `DeconvNet`'s 1-based conv
    layers. The global RNG state is left as it was.

    Raises:
        CnnauralError: `layer` is not a conv layer number of the model, or its conv cannot be
            re-initialised.
    """
    if not isinstance(model, torch.nn.Module):
        raise CnnauralError(f"randomise needs an nn.Module (got {type(model).__name__})")
    dn = _conv_layers(model)
    layers = randomised_layers(dn.n_layers, layer, cascade)
    new = copy.deepcopy(model)
    dn_new = _conv_layers(new)
    for j in layers:
        conv = dn_new.conv(j)
        if not hasattr(conv, "reset_parameters"):
            raise CnnauralError(f"conv layer {j} ({type(conv).__name__}) has no reset_parameters()")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_layer_seed(random_seed, j))
            fresh = copy.deepcopy(conv).to("cpu")
            fresh.reset_parameters()
        with torch.no_grad():
            own = dict(conv.named_parameters(recurse=False))
            for name, p in fresh.named_parameters(recurse=False):
                own[name].copy_(p)
    return new


# ------------------------------------------------------------------------------------------------
# Data randomisation: the same recipe on shuffled labels
# ------------------------------------------------------------------------------------------------
def _recipe_options(recipe: str | None) -> dict:
    """The training options a checkpoint's recipe (a `cnnaural train` command line) records."""
    import shlex

    if not recipe or not isinstance(recipe, str):
        return {}
    try:
        tokens = shlex.split(recipe)
    except ValueError:
        return {}
    opts = {}
    for i, tok in enumerate(tokens[:-1]):
        if tok.startswith("--") and not tokens[i + 1].startswith("--"):
            opts[tok[2:].replace("-", "_")] = tokens[i + 1]
    out = {}
    conv = dict(epochs=int, batch_size=int, lr=float, optimizer=str, weight_decay=float)
    for k, f in conv.items():
        if k in opts:
            try:
                out[k] = f(opts[k])
            except ValueError:
                pass
    seed = opts.get("random_seed", opts.get("seed"))
    if seed is not None and seed.lstrip("-").isdigit():
        out["random_seed"] = int(seed)
    return out


def shuffled_split(split: dict, random_seed: int = 0) -> dict:
    """{"train", "val", "test": [(path, class)]} with the classes of the train and the val tracks
    each permuted at random (a track keeps one label for all its clips; every split keeps its
    class counts); the test tracks keep their true classes."""
    rng = np.random.default_rng(random_seed)
    out = {}
    for k in ("train", "val", "test"):
        tracks = list(split[k])
        if k != "test":
            labels = [c for _, c in tracks]
            perm = rng.permutation(len(labels))
            tracks = [(p, labels[i]) for (p, _), i in zip(tracks, perm)]
        out[k] = tracks
    return out


def _recorded_split(auraliser, data_dir) -> dict:
    from ..corpus import scan_tracks

    names = auraliser.meta.get("split") or {}
    if not all(names.get(k) for k in ("train", "val", "test")):
        raise CnnauralError("the data randomisation test retrains on the model's own split, and this model "
                            "records none (a checkpoint written by `cnnaural train` does)")
    root = Path(data_dir)
    by_name = {p.relative_to(root).as_posix(): (p, c) for p, c in scan_tracks(root)}
    split = {}
    for k in ("train", "val", "test"):
        missing = [n for n in names[k] if n not in by_name]
        if missing:
            raise CnnauralError(f"{len(missing)} track(s) of the model's {k} split are missing from {root} "
                                f"(first: {missing[0]}); rebuild it with `cnnaural dataset {root}`")
        split[k] = [by_name[n] for n in names[k]]
    return split


def train_shuffled_labels(auraliser, data_dir, out_dir, *, epochs: int = 3, random_seed: int | None = None,
                          cache_dir=None, threads: int | None = None, progress: bool = True):
    """The data randomisation model: the auraliser's architecture trained by `training.train` on
    its own recorded split with shuffled labels (`shuffled_split`), for `epochs` epochs.

    Everything else is the checkpoint's recipe (architecture, Spectrogram, clips, batch size,
    optimiser, learning rate, random seed: the same initial weights as the model when it records
    its seed). Early stopping is off (patience = epochs); the weights of the epoch with the lowest
    (shuffled) validation loss are kept, as `train` does. The checkpoint is written to
    ``out_dir/shuffled_labels.pt`` and reused by a later call with the same settings.

    Returns:
        (model in eval mode, its checkpoint metrics dict)
    """
    from ..io.checkpoint import load_checkpoint
    from ..training import train

    meta = auraliser.meta
    if epochs < 1:
        raise CnnauralError(f"epochs must be >= 1 (got {epochs})")
    if not meta.get("arch") or not meta.get("arch_kwargs"):
        raise CnnauralError("the data randomisation test needs a model loaded from a `cnnaural train` checkpoint")
    split = _recorded_split(auraliser, data_dir)
    kw = _recipe_options(meta.get("recipe"))
    kw.pop("epochs", None)
    if random_seed is not None:
        kw["random_seed"] = int(random_seed)
    seed = kw.get("random_seed", 0)
    a, s = meta["arch_kwargs"], meta.get("spectrogram") or auraliser.spectrogram.config()
    clips = meta.get("clips") or {}
    options = dict(arch=meta["arch"], width=a.get("width", 48), batchnorm=bool(a.get("batchnorm", False)),
                   dense=tuple(a.get("dense", (512, 256))), scale=s.get("scale", "log1p"),
                   compression=float(s.get("compression", 1.0)), n_mels=s.get("n_mels"),
                   sample_rate=int(s["sample_rate"]), n_fft=int(s["n_fft"]), hop_length=int(s["hop_length"]),
                   clip_seconds=float(clips.get("clip_seconds", 4.0)),
                   clips_per_track=int(clips.get("clips_per_track", 10)),
                   train_clips=clips.get("train_clips"), epochs=int(epochs), patience=int(epochs), **kw)
    if "dropout" in a:
        options["dropout"] = a["dropout"]
    options.setdefault("random_seed", seed)
    fingerprint = json.dumps(dict(options=options, split={k: [str(p) for p, _ in v] for k, v in split.items()},
                                  shuffle_seed=seed), sort_keys=True, default=str)
    recipe = "sanity checks, data randomisation (shuffled labels): " + fingerprint
    out = Path(out_dir) / SHUFFLED_NAME
    if out.is_file():
        try:
            model, _, m2 = load_checkpoint(out)
            if m2.get("recipe") == recipe:
                if progress:
                    print(f"reusing the shuffled-label model {out}", file=sys.stderr)
                return model.eval(), m2.get("metrics") or {}
        except CnnauralError:
            pass
        if progress:
            print(f"{out} was trained with other settings: retraining", file=sys.stderr)
    if progress:
        print(f"training the shuffled-label model ({epochs} epoch(s)) -> {out}", file=sys.stderr)
    metrics = train(data_dir, out, split=shuffled_split(split, seed), baseline=False, cache_dir=cache_dir,
                    threads=threads, progress=progress, recipe=recipe, **options)
    model, _, _ = load_checkpoint(out)
    return model.eval(), metrics
