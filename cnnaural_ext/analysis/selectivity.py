"""Which features a class switches off: the mean activation of every feature of a layer per class.

The paper heard a deepest-layer feature that hiphop "mostly deactivated"; here that is a table.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import CnnauralError

SPLITS = ("test", "val", "train", "all")


def select_tracks(auraliser, data_dir, split: str = "test") -> list:
    """The (path, class) tracks of a folder-per-class corpus: only those of the split the
    auraliser's checkpoint records, unless `split` is "all"."""
    from ..corpus import scan_tracks

    if split not in SPLITS:
        raise CnnauralError(f"split must be one of {', '.join(SPLITS)} (got {split!r})")
    root = Path(data_dir)
    tracks = scan_tracks(root)
    if split != "all":
        names = (auraliser.meta.get("split") or {}).get(split)
        if not names:
            raise CnnauralError(f"the model records no {split} split; pass --split all")
        wanted = set(names)
        tracks = [(p, c) for p, c in tracks if p.relative_to(root).as_posix() in wanted]
        if len(tracks) < len(wanted):
            raise CnnauralError(f"{len(wanted) - len(tracks)} track(s) of the {split} split are missing from "
                                f"{root}; rebuild it with `cnnaural dataset {root}` or pass --split all")
    return tracks


def class_selectivity(model, spectrogram, tracks, *, layer=None, cache_dir=None, batch_size: int = 16,
                      off_ratio: float = 0.25, progress: bool = False) -> dict:
    """Mean activation of every feature of `layer` per class, over the clips of `tracks`.

    The paper heard a deepest-layer feature that hiphop "mostly deactivated"; here that is a
    table: a feature is switched off by a class when its mean activation on that class is below
    `off_ratio` times its mean on the other classes.

    Args:
        model: a CNN DeconvNet can read; spectrogram: its input representation.
        tracks: [(path, class name)], e.g. from `corpus.scan_tracks`.
        layer: 1-based conv layer (default: the deepest).
        cache_dir: where `corpus.ClipCache` keeps the clips' network inputs.

    Returns:
        {"layer", "classes", "clips" (per class), "mean" (n_classes x C nested lists),
         "switched_off": {class: [features]}}
    """
    from ..corpus import ClipCache
    from ..deconvnet import DeconvNet

    dn = DeconvNet(model)
    layer = dn.n_layers if layer is None else layer
    n_feat = dn.n_features(layer)
    classes = sorted({c for _, c in tracks})
    if len(classes) < 2:
        raise CnnauralError(f"class selectivity needs tracks of at least two classes (got {classes})")
    cache = ClipCache(spectrogram, cache_dir, progress=progress)
    sums = torch.zeros(len(classes), n_feat, dtype=torch.float64)
    counts = torch.zeros(len(classes), dtype=torch.float64)
    for path, cls in tracks:
        clips = cache.get(path)
        if clips is None:
            continue
        c = classes.index(cls)
        for k in range(0, clips.shape[0], batch_size):
            x = torch.from_numpy(np.array(clips[k:k + batch_size], dtype=np.float32))[:, None]  # off the mmap
            act = dn.activations(x, layer)
            sums[c] += act.double().mean(dim=(2, 3)).sum(dim=0)
            counts[c] += x.shape[0]
    if (counts == 0).any():
        empty = [classes[i] for i in range(len(classes)) if counts[i] == 0]
        raise CnnauralError(f"no readable clips for class(es) {', '.join(empty)}")
    mean = sums / counts[:, None]
    off = {}
    for c, name in enumerate(classes):
        others = torch.cat([mean[:c], mean[c + 1:]]).mean(dim=0)
        off[name] = [int(f) for f in torch.nonzero((mean[c] < off_ratio * others) & (others > 0)).flatten()]
    return {"layer": layer, "classes": classes, "clips": {n: int(counts[i]) for i, n in enumerate(classes)},
            "mean": mean.tolist(), "off_ratio": off_ratio, "switched_off": off}
