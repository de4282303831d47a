"""The feature atlas of a catalogue: for every feature of the chosen layers, the catalogue's top
tracks and windows, auralised, and the plain data the atlas pages show (`report.atlas` renders
them; `cnnaural atlas` runs both).

Selection (`top_windows`): from the activation table's per-window maxima (``window_max``, one
value per `window` seconds of the whole track), each track's best window for a feature is its
largest (the first of equals); the feature's top tracks are the `top` tracks with the largest
best windows (ties: by track id), one window per track, tracks whose feature never fires (a
best window <= 0) left out.

Auralisation (`auralise_windows`): each top window with `Auraliser.auralise_file`, the layer
and that one feature, the catalogue's mode, phase, seed kind, normalisation and audio format,
figures on (the map image and the window's Figure 3), into
``OUT/atlas/audio/layer<L>/feature<kkk>/<track id>-w<window>/``: folders named by the track id,
not the rank, so a grown catalogue whose ranking changed reuses every window already done, and
no name from the files ends up in a path. The window is cut from the whole decoded track, as the
catalogue cut its excerpts (a last window shorter than `window` seconds is moved back to end at
the track's end). Resumable: a window whose manifest.json names the same track, excerpt and
request, and whose files are all in place, is not redone.

The model is the one OUT/config.json records (the shipped model or a checkpoint path), or
`model` when its weights are the same (the SHA-256 of the file, or of the weights, equals the
recorded one); anything else is refused. OUT does not record where SRC is: windows still to be
auralised need `src` (the catalogue's SRC; a list file's tracks are relative to its folder),
unless config.json carries a "src".
"""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from ..errors import CnnauralError
from .config import model_identity, read_config

ATLAS = "atlas"  # OUT/atlas/: the atlas's audio and pages


def layer_columns(table, layer: int) -> dict:
    """The rows of one layer as numpy columns: id, relative_path, feature, max, mean, duration, and
    per row its best window (`window`, the first largest of window_max) and that window's value
    (`best`, -inf when every window is NaN). Rows keep the table's order (by id, then feature)."""
    import pyarrow.compute as pc

    t = table.filter(pc.equal(table["layer"], int(layer)))
    wm = t["window_max"].combine_chunks()
    lengths = pc.list_value_length(wm).to_numpy(zero_copy_only=False).astype(np.int64)
    values = pc.list_flatten(wm).to_numpy(zero_copy_only=False).astype(np.float64)
    values = np.where(np.isnan(values), -np.inf, values)
    n = len(t)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    best, window = np.full(n, -np.inf), np.zeros(n, dtype=np.int64)
    has = lengths > 0
    if values.size:
        best[has] = np.maximum.reduceat(values, starts[has])
        parents = np.repeat(np.arange(n), lengths)
        hits = np.flatnonzero(values == best[parents])
        rows, first = np.unique(parents[hits], return_index=True)
        window[rows] = hits[first] - starts[rows]
    col = {k: t[k].to_numpy(zero_copy_only=False) for k in ("id", "relative_path", "feature", "max", "mean",
                                                           "duration")}
    return {**col, "best": best, "window": window}


def top_windows(cols: dict, top: int) -> dict:
    """feature -> its top (track, window) pairs, best first (see the module docstring): dicts of
    rank (1-based), id, relative_path, window (its index), value (its maximum), duration (the
    track's seconds)."""
    if top < 1:
        raise CnnauralError(f"--top must be >= 1 (got {top})")
    feats = cols["feature"]
    order = np.lexsort((-cols["best"], feats))  # stable: equal values keep the table's id order
    out = {}
    bounds = np.flatnonzero(np.diff(feats[order])) + 1
    for chunk in np.split(order, bounds) if len(order) else []:
        chosen = [i for i in chunk[:top] if cols["best"][i] > 0]
        out[int(feats[chunk[0]])] = [
            {"rank": r, "id": str(cols["id"][i]), "relative_path": str(cols["relative_path"][i]),
             "window": int(cols["window"][i]), "value": float(cols["best"][i]), "duration": float(cols["duration"][i])}
            for r, i in enumerate(chosen, 1)]
    return out


def class_of(relative_path: str) -> str | None:
    """A track's class folder: the first component of its relative path (None at the top level)."""
    parts = relative_path.split("/")
    return parts[0] if len(parts) > 1 else None


def class_means(cols: dict) -> dict | None:
    """The mean over each class folder's tracks of every feature's mean activation, when the
    tracks lie in at least two class folders (else None): {classes, tracks (per class), means
    {feature: [per class]}}. Tracks at the top level belong to no class."""
    classes = np.array([class_of(str(r)) or "" for r in cols["relative_path"]], dtype=object)
    names = sorted({c for c in classes if c})
    if len(names) < 2:
        return None
    index = {c: i for i, c in enumerate(names)}
    cls = np.array([index.get(c, -1) for c in classes])
    feats = np.unique(cols["feature"])
    keep = cls >= 0
    fpos = np.searchsorted(feats, cols["feature"][keep])
    key = cls[keep] * len(feats) + fpos
    size = len(names) * len(feats)
    sums = np.bincount(key, weights=cols["mean"][keep].astype(np.float64), minlength=size)
    counts = np.bincount(key, minlength=size)
    means = (sums / np.maximum(counts, 1)).reshape(len(names), len(feats))
    tracks = counts.reshape(len(names), len(feats)).max(axis=1)
    return {"classes": names, "tracks": [int(t) for t in tracks],
            "means": {int(f): [float(means[c, j]) for c in range(len(names))] for j, f in enumerate(feats)}}


def weights_fingerprint(model) -> str:
    """The SHA-256 of a model's class and weights (what config.json records for a model that came
    from no file)."""
    return model_identity(SimpleNamespace(source="", model=model))["sha256"]


def check_model(auraliser, recorded: dict, out) -> None:
    """Refuse a model whose weights or Spectrogram differ from what OUT/config.json records."""
    want = recorded["config"]["model"]
    if want not in (model_identity(auraliser)["sha256"], weights_fingerprint(auraliser.model)):
        raise CnnauralError(f"the model {auraliser.source} is not the one {out} was written with (its weights' "
                            f"SHA-256 differs from config.json's); pass --model with the catalogue's checkpoint")
    if auraliser.spectrogram.config() != recorded["config"]["spectrogram"]:
        raise CnnauralError(f"the model {auraliser.source} reads another Spectrogram than the one {out} was "
                            "written with")


def load_model(out, recorded: dict, model=None, device="cpu"):
    """The Auraliser of the model OUT was written with (see the module docstring)."""
    from ..auralise import Auraliser

    source = recorded.get("model_source")
    if model is not None:
        aur = Auraliser.from_checkpoint(model, device=device)
    elif source == "shipped":
        aur = Auraliser.pretrained(device=device)
    elif source and Path(source).is_file():
        aur = Auraliser.from_checkpoint(source, device=device)
    else:
        raise CnnauralError(f"{out} was written with the model {source!r}, which is not a checkpoint file here; "
                            "pass --model CKPT (a checkpoint with the same weights)")
    check_model(aur, recorded, out)
    return aur


def source_path(src, relative_path: str) -> Path:
    """Where a track of the catalogue of SRC lies (the inverse of `sources.walk_source`'s relative
    paths: relative to a folder SRC, or to a list file's folder; ``_root/...`` is absolute)."""
    src = Path(src)
    base = src if src.is_dir() else src.resolve().parent
    if relative_path.startswith("_root/"):
        return Path("/" + relative_path[len("_root/"):])
    return base / relative_path


def window_folder(layer: int, feature: int, w: dict) -> str:
    """The folder of one auralised window, '/'-separated, relative to OUT/atlas."""
    return f"audio/layer{layer}/feature{feature:03d}/{w['id']}-w{w['window']}"


def excerpt(w: dict, window: float, sample_rate: int) -> tuple:
    """(start in seconds, samples) of a top window: `window` seconds from the window's start,
    moved back so that it ends no later than the track."""
    n = int(round(w["duration"] * sample_rate))
    start = min(w["window"] * window, max(0.0, w["duration"] - window))
    first = int(round(start * sample_rate))
    return start, min(n, first + int(round(window * sample_rate))) - first


def finished_manifest(folder: Path, layer: int, feature: int, w: dict, req: dict, window: float, sr: int):
    """The manifest of `folder` when it holds this window auralised with this request and every
    file in place; else None."""
    try:
        m = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    start, n = excerpt(w, window, sr)
    items = m.get("items") or []
    ok = (m.get("track") == w["relative_path"] and abs(float(m.get("offset", -1)) - start) < 1e-6
          and abs(float(m.get("duration", -1)) - n / sr) < 0.5 / sr and m.get("sample_rate") == sr
          and all(m.get(k) == req[k] for k in ("mode", "phase", "seed"))
          and len(items) == 1 and items[0].get("layer") == layer and items[0].get("feature") == feature)
    names = [m.get("original"), items[0].get("audio"), items[0].get("image")] if ok else []
    ok = ok and all(isinstance(p, str) and (folder / p).is_file() for p in names)
    return m if ok and names[0].endswith(f".{req['audio_format']}") else None


def request_of(config: dict) -> dict:
    """The keyword arguments of `Auraliser.auralise_file` that a catalogue's config sets."""
    return {k: config[k] for k in ("mode", "phase", "seed", "normalize", "audio_format", "subtype")}


def auralise_windows(auraliser, out, jobs: list, req: dict, window: float, *, src=None, progress: bool = True) -> dict:
    """Auralise the windows of `jobs` [(layer, feature, window dict)] that are not done yet (see the
    module docstring); each track is decoded once for all its windows.

    Returns:
        {"auralised", "reused" (counts), "missing" [relative paths whose source file is not there,
        or is not the file the catalogue read (another size), or does not decode]}.
    """
    from tqdm import tqdm

    from ..io.audio import load
    from .sources import read_manifest

    root, sr = Path(out) / ATLAS, auraliser.sample_rate
    pending: dict = {}
    for layer, feature, w in jobs:
        if finished_manifest(root / window_folder(layer, feature, w), layer, feature, w, req, window, sr) is None:
            pending.setdefault(w["id"], []).append((layer, feature, w))
    done = {"auralised": 0, "reused": len(jobs) - sum(map(len, pending.values())), "missing": []}
    if not pending:
        return done
    src = src if src is not None else (read_config(out) or {}).get("src")
    if src is None:
        raise CnnauralError(f"{sum(map(len, pending.values()))} windows are still to be auralised and {out} does not "
                            "record where its tracks are: pass --src SRC (the catalogue's SRC)")
    sizes = {r["id"]: r["size"] for r in read_manifest(out)}
    bar = tqdm(total=sum(map(len, pending.values())), desc="atlas", unit="window", leave=False, disable=not progress)
    try:
        for tid, todo in pending.items():
            rel = todo[0][2]["relative_path"]
            path = source_path(src, rel)
            try:
                if not path.is_file() or path.stat().st_size != sizes.get(tid):
                    raise CnnauralError("missing or changed")
                wave, _ = load(path, sr)
            except Exception:  # the page shows the window as not auralised; the atlas goes on
                done["missing"].append(rel)
                bar.update(len(todo))
                continue
            for layer, feature, w in todo:
                start, _ = excerpt(w, window, sr)
                auraliser.auralise_file(wave, root / window_folder(layer, feature, w), layers=[layer],
                                        features=[feature], offset=start, duration=window, figures=True,
                                        name=rel, **req)
                done["auralised"] += 1
                bar.update(1)
    finally:
        bar.close()
    return done


def choose_layers(layers, available: list, out) -> list:
    """The atlas's layers: None -> the deepest the catalogue has; "5" | "1,5" | [5] | "all"."""
    if layers is None:
        return [max(available)]
    if isinstance(layers, str) and layers.strip().lower() == "all":
        return list(available)
    parts = [p for p in str(layers).split(",") if p.strip()] if isinstance(layers, (str, int)) else list(layers)
    try:
        chosen = [int(p) for p in parts]
    except (TypeError, ValueError):
        raise CnnauralError(f"--layers takes layer numbers, e.g. 5 or 1,5, or 'all' (got {layers!r})") from None
    for layer in chosen:
        if layer not in available:
            raise CnnauralError(f"layer {layer} is not in the catalogue {out} (its layers: "
                                f"{', '.join(map(str, available))})")
    if not chosen:
        raise CnnauralError("no layers selected")
    return chosen


def build_atlas(out, *, layers=None, top: int = 8, auraliser=None, model=None, device="cpu", src=None,
                progress: bool = True) -> dict:
    """Select every feature's top windows, auralise those not done yet, and return what the atlas
    pages show (plain data; `report.atlas.write_atlas` renders it).

    Args:
        out: the catalogue (OUT of `run_catalogue`).
        layers: None (the deepest the catalogue has) | 5 | "1,5" | "all" (the catalogue's layers).
        top: top tracks per feature.
        auraliser, model, device: the model (see `load_model`; an `auraliser` is checked the same way).
        src: the catalogue's SRC, needed only while windows are left to auralise.

    Returns:
        {out, model, window, top, tracks, classes (class folders, [] when fewer than two),
        class_tracks, layers [{layer, features [{feature, values (per-track maxima, numpy),
        top [window dicts], class_means ([per class] or None)}]}], auralised, reused, missing}.
        A window dict: rank, id, relative_path, class, window, value, duration, start, end, and
        folder (relative to OUT/atlas), original, audio, image, figure (file names in folder; None
        when it could not be auralised), spectral_convergence, clipped and inconsistent (the clip's
        inversion quality, `quality`; None, None, False when it could not be auralised).
    """
    from .activations import read_activations

    out = Path(out)
    recorded = read_config(out)
    if recorded is None:
        raise CnnauralError(f"{out} is not a catalogue (no config.json); write one with "
                            f"`cnnaural catalogue SRC --out {out}`")
    cfg = recorded["config"]
    chosen = choose_layers(layers, cfg["layers"], out)
    if top < 1:
        raise CnnauralError(f"--top must be >= 1 (got {top})")
    if auraliser is None:
        auraliser = load_model(out, recorded, model, device)
    else:
        check_model(auraliser, recorded, out)
    # only the chosen layers and the columns the atlas shows: a 100,000-track table stays light
    table = read_activations(out, layers=chosen, columns=("relative_path", "max", "mean", "window_max", "duration"))
    import pyarrow.compute as pc

    if table.num_rows == 0:
        raise CnnauralError(f"{out} has no activation rows yet (no track is ok); run `cnnaural catalogue` on it first")
    views, jobs, means_of = [], [], {}
    for layer in chosen:
        cols = layer_columns(table, layer)
        means_of[layer] = class_means(cols)
        views.append(_layer_view(layer, cols, top_windows(cols, top), means_of[layer]))
        jobs += [(layer, f["feature"], w) for f in views[-1]["features"] for w in f["top"]]
    req, window = request_of(cfg), float(cfg["window"])
    done = auralise_windows(auraliser, out, jobs, req, window, src=src, progress=progress)
    for layer, feature, w in jobs:
        _attach_files(out / ATLAS, layer, feature, w, req, window, auraliser.sample_rate)
    first = next((m for m in means_of.values() if m), None)
    return {"out": str(out), "model": recorded.get("model_source"), "window": window, "top": int(top),
            "tracks": int(pc.count_distinct(table["id"]).as_py()),
            "classes": first["classes"] if first else [], "class_tracks": first["tracks"] if first else [],
            "layers": views, **done}


def _layer_view(layer: int, cols: dict, tops: dict, means: dict | None) -> dict:
    order = np.argsort(cols["feature"], kind="stable")
    feats = cols["feature"][order]
    bounds = np.flatnonzero(np.diff(feats)) + 1
    features = []
    for chunk in np.split(order, bounds) if len(order) else []:
        f = int(cols["feature"][chunk[0]])
        features.append({"feature": f, "values": cols["max"][chunk].astype(np.float64), "top": tops.get(f, []),
                         "class_means": means["means"][f] if means else None})
    return {"layer": layer, "features": features}


def _attach_files(root: Path, layer: int, feature: int, w: dict, req: dict, window: float, sr: int) -> None:
    start, n = excerpt(w, window, sr)
    folder = window_folder(layer, feature, w)
    m = finished_manifest(root / folder, layer, feature, w, req, window, sr)
    item = (m or {}).get("items", [{}])[0]
    figure = f"layer{layer}_figure.png"
    w.update({"class": class_of(w["relative_path"]), "start": start, "end": start + n / sr, "folder": folder,
              "original": m and m["original"], "audio": item.get("audio"), "image": item.get("image"),
              "figure": figure if m and (root / folder / figure).is_file() else None,
              "spectral_convergence": item.get("spectral_convergence"), "clipped": item.get("clipped"),
              "inconsistent": bool(item.get("inconsistent"))})
