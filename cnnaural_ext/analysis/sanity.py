"""Sanity checks for auralisation (Adebayo et al. 2018, "Sanity Checks for Saliency Maps").

Does what we hear depend on what the network learned, or only on the input? The deconvnet's
maps and clips of the trained model are compared, on the same clips and for the same features,
with those of

- **model-parameter randomisation**: the same model with conv layers re-initialised by their own
  default initialisation (``module.reset_parameters()``), *cascading* from the top conv layer
  down to layer j, or *independently*, layer j alone (`randomise`). Layer j gets the same random
  weights in both (its RNG seed depends only on `random_seed` and j), so "cascade to the top
  layer" and "independent top layer" are the same model;
- **data randomisation**: the same architecture trained on shuffled labels
  (`train_shuffled_labels`, the project's own `training.train` with every training and
  validation track given another track's class).

A feature of layer L is deconvolved through layers L..1 only, so randomising a layer above L
provably changes nothing: those cells must score 1, and do (the tests check it).

Measures (`compare_maps`, `logspec_correlation`):

- **|Spearman|**: the absolute value of Spearman's rank correlation of the two deconvolved maps
  (network-input space, all F' x T values; tied values get their average rank), as Adebayo et
  al. report it. The maps do not depend on the mode: only the audio does.
- **SSIM** of the two maps, each first min-max scaled to [0, 1] (so the measure, like the rank
  correlation, ignores the maps' scale): the mean of Wang et al.'s (2004) SSIM map under an
  11 x 11 Gaussian window of sigma 1.5 (`ssim`; K1 = 0.01, K2 = 0.03, data range 1, valid
  positions only, as scikit-image's ``gaussian_weights=True``).
- **log-spectrogram correlation**: Pearson's r between the log magnitude spectrograms
  (20 log10 |STFT|, floored 80 dB below each clip's maximum, the model's own STFT) of the two
  clips, per mode (``mask`` | ``magnitude``), signed.

Two maps that are both constant score 1 when they are equal and 0 otherwise (a correlation is
undefined there); a record's ``silent`` says that the other model's map was all zero (its feature
does not fire on the clip), and the summary gives the share of such pairs. `weight_distances`
says how far two models' conv weights are apart, layer by layer.

A reference row, "another feature", gives the same measures between the maps
and clips of two different top features of the *trained* model on the same clip: how alike two
features that the model learned to tell apart sound.

`sanity_checks(...)` runs everything and returns a dict; with `out_dir` it keeps one part file
per clip (a rerun reuses them) and `write_sanity` writes sanity.json, sanity.md and sanity.png.
The measures are in `similarity`, the randomisations in `randomise`; this module runs the checks
and writes their tables and figure.
"""
from __future__ import annotations

import hashlib
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

from ..errors import CnnauralError
# the measures (`similarity`) and randomisations (`randomise`) live in their own modules; their
# public names are this one's too
from .randomise import (SHUFFLED_NAME, randomise, randomised_layers, shuffled_split,  # noqa: F401
                        train_shuffled_labels, weight_distances)
from .similarity import (LOGSPEC_FLOOR_DB, compare_maps, log_spectrogram, logspec_correlation, pearson,  # noqa: F401
                         rank, spearman, ssim)

SEEDS = ("map", "max")
MODES = ("mask", "magnitude")


# ------------------------------------------------------------------------------------------------
# Clips
# ------------------------------------------------------------------------------------------------
def split_clips(auraliser, data_dir, split: str = "test", n_clips: int = 8, clip_seconds: float | None = None) -> list:
    """`n_clips` clips of the tracks of a split (`select_tracks`): the tracks taken in turn, one
    class after another, each at the middle one of the clip positions its training used
    (`corpus.clip_offsets`), then the next positions when every track has given one.

    Returns:
        [{"name", "track", "class", "offset", "waveform" (n,) float32}]
    """
    import soundfile as sf

    from ..corpus import clip_offsets
    from ..io.audio import load
    from .selectivity import select_tracks

    if isinstance(n_clips, bool) or not isinstance(n_clips, int) or n_clips < 1:
        raise CnnauralError(f"the number of clips must be an integer >= 1 (got {n_clips!r})")
    clips_meta = auraliser.meta.get("clips") or {}
    seconds = float(clip_seconds or clips_meta.get("clip_seconds", 4.0))
    per_track = int(clips_meta.get("clips_per_track", 10))
    tracks = select_tracks(auraliser, data_dir, split)
    by_class = {}
    for p, c in tracks:
        by_class.setdefault(c, []).append(p)
    order = []
    for i in range(max(len(v) for v in by_class.values())):
        order += [(v[i], c) for c, v in sorted(by_class.items()) if i < len(v)]
    positions = {}
    for p, _ in order:
        try:
            info = sf.info(str(p))
            offs = clip_offsets(info.frames / info.samplerate, seconds, per_track)
        except Exception:
            offs = [0.0]
        mid = len(offs) // 2
        positions[p] = [offs[mid]] + [o for k, o in enumerate(offs) if k != mid]
    out, n = [], int(seconds * auraliser.sample_rate)
    root = Path(data_dir)
    for r in range(max(len(v) for v in positions.values())):
        for p, c in order:
            if len(out) >= n_clips:
                return out
            if r >= len(positions[p]):
                continue
            off = positions[p][r]
            x, _ = load(p, auraliser.sample_rate, offset=off, duration=seconds)
            x = x[:n]
            if x.shape[0] < n:
                x = torch.nn.functional.pad(x, (0, n - x.shape[0]))
            out.append(dict(name=f"{p.relative_to(root).as_posix()}@{off:.1f}s", track=str(p), **{"class": c},
                            offset=float(off), waveform=x))
    return out


# ------------------------------------------------------------------------------------------------
# The checks
# ------------------------------------------------------------------------------------------------
def _state_hash(model) -> str:
    h = hashlib.sha1()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _check_layers(auraliser, layers) -> list:
    from ..auralise import parse_layers

    n = auraliser.deconvnet.n_layers
    layers = parse_layers(list(range(1, n + 1)) if layers is None else layers, n)
    for L in layers:
        if not isinstance(L, int) or not 1 <= L <= n:
            raise CnnauralError(f"sanity checks take conv layer numbers 1..{n} (got {L!r})")
    return sorted(set(layers))


def _as_clips(clips) -> list:
    if isinstance(clips, torch.Tensor):
        clips = [clips] if clips.dim() == 1 else list(clips)
    if not clips:
        raise CnnauralError("no clips to check")
    out = []
    for i, c in enumerate(clips):
        if isinstance(c, dict):
            if "waveform" not in c:
                raise CnnauralError(f"clip {i} has no 'waveform'")
            d = dict(c)
        else:
            d = dict(name=f"clip{i}", waveform=c)
        w = torch.as_tensor(d["waveform"]).float()
        if w.dim() != 1 or w.numel() == 0:
            raise CnnauralError(f"clip {i} must be a mono waveform (n,), got shape {tuple(w.shape)}")
        d["waveform"] = w
        d.setdefault("name", f"clip{i}")
        out.append(d)
    return out


def _variants(n_layers: int, cascade: bool, independent: bool, shuffled: bool) -> list:
    """[(name, test, randomised layers)] in the order of the table; the cascade's first step (the
    top layer alone) is the same model as the independent top layer and is computed once."""
    out = []
    if cascade:
        for j in range(n_layers, 0, -1):
            out.append((f"cascade {n_layers}..{j}" if j < n_layers else f"cascade {n_layers}", "cascade",
                        list(range(n_layers, j - 1, -1))))
    if independent:
        for j in range(1, n_layers + 1):
            out.append((f"layer {j} alone", "independent", [j]))
    if shuffled:
        out.append(("shuffled labels", "data", []))
    return out


def _model_for(auraliser, test: str, layers: list, random_seed: int, shuffled_model):
    if test == "data":
        return shuffled_model
    return randomise(auraliser.model, min(layers), cascade=(test == "cascade"), random_seed=random_seed)


def _audio_in_mode(aur, res, mode: str) -> torch.Tensor:
    """The clips (K, n) that `aur.auralise(..., mode=mode)` makes (original phase, peak-normalised)
    from the maps and STFT of a result `res` of the same clip, layer, features and seed in another
    mode: the deconvolution, the costly part, is not run again. `_clip_records` checks on every
    clip that this equals `Auraliser.auralise` for the trained model."""
    from ..io.audio import peak_normalize
    from ..ops import masked_istft

    spec, X = aur.spectrogram, res.stft
    gain = spec.to_linear(res.maps.to(X.device), kind=mode).contiguous()
    audio = masked_istft(X, gain, mode=mode, n_fft=spec.n_fft, hop_length=spec.hop_length, win_length=spec.win_length,
                         window=spec.window_like(X), center=spec.center, length=res.original.shape[0])
    return peak_normalize(audio).float().cpu()


class _Side:
    """The maps and clips of one model for one (seed, layer), with what the measures reuse: each
    map's ranks and each clip's log spectrogram, computed once."""

    def __init__(self, maps, audio: dict, spectrogram):
        self.maps = maps.detach().to("cpu", torch.float64)
        self.ranks = [rank(m) for m in self.maps]
        self.logspec = {mode: log_spectrogram(a, spectrogram).reshape(a.shape[0], -1) for mode, a in audio.items()}


def _compare(a: _Side, i: int, b: _Side, j: int, ssim_value: float) -> dict:
    if torch.equal(a.maps[i], b.maps[j]):
        rho = 1.0
    else:
        rho = pearson(a.ranks[i], b.ranks[j])
    return dict(spearman=abs(rho), spearman_signed=rho, ssim=ssim_value,
                logspec={mode: pearson(a.logspec[mode][i], b.logspec[mode][j]) for mode in a.logspec},
                silent=not bool(b.maps[j].any()))


def _clip_records(aur, variants_models, wave, layers, n_features, seeds, modes, progress_bar=None) -> list:
    """Every comparison of one clip: rows of (variant, layer, seed, feature) measures."""
    from ..auralise import Auraliser

    spec = aur.spectrogram
    base = {}
    for seed in seeds:
        for mode in modes:
            base[seed, mode] = dict(zip(layers, aur.auralise_layers(wave, layers, f"top:{n_features}", seed=seed,
                                                                    mode=mode)))
    feats = {L: list(base[seeds[0], modes[0]][L].features) for L in layers}
    if any(list(base[k][L].features) != feats[L] for k in base for L in layers):
        raise CnnauralError("internal error: the top features differ between seed kinds or modes")
    for seed in seeds:
        for L in layers:
            for m in modes[1:]:
                derived, direct = _audio_in_mode(aur, base[seed, modes[0]][L], m), base[seed, m][L].audio
                if not torch.allclose(derived, direct, rtol=1e-4, atol=1e-5):
                    raise CnnauralError(f"internal error: the {m} clips derived from the maps differ from "
                                        f"Auraliser.auralise's (max difference {(derived - direct).abs().max():.3g})")
    trained = {(seed, L): _Side(base[seed, modes[0]][L].maps, {m: base[seed, m][L].audio for m in modes}, spec)
               for seed in seeds for L in layers}
    rows = []
    # reference: two different top features of the trained model
    for (seed, L), side in trained.items():
        pairs = [(i, j) for i in range(len(feats[L])) for j in range(i + 1, len(feats[L]))]
        if not pairs:
            continue
        ss = ssim(side.maps[[i for i, _ in pairs]], side.maps[[j for _, j in pairs]]).reshape(-1)
        for (i, j), v in zip(pairs, ss.tolist()):
            rows.append(dict(variant="another feature", test="reference", layer=L, seed=seed,
                             feature=[feats[L][i], feats[L][j]], **_compare(side, i, side, j, v)))
    if progress_bar is not None:
        progress_bar.update(1)
    for name, test, model in variants_models:
        other = Auraliser(model, spec, device=aur.device)
        for seed in seeds:
            first = {L: other.auralise(wave, L, feats[L], seed=seed, mode=modes[0]) for L in layers}
            for L in layers:
                audio = {m: first[L].audio if m == modes[0] else _audio_in_mode(other, first[L], m) for m in modes}
                side = _Side(first[L].maps, audio, spec)
                t = trained[seed, L]
                ss = ssim(t.maps, side.maps).reshape(-1).tolist()
                for k, f in enumerate(feats[L]):
                    rows.append(dict(variant=name, test=test, layer=L, seed=seed, feature=f,
                                     **_compare(t, k, side, k, ss[k])))
        if progress_bar is not None:
            progress_bar.update(1)
    return rows


def _silent(r: dict) -> bool:
    """Whether the compared map was all zero (the feature silent in the other model). Records
    written before the field existed: a zero map against a non-zero one is the only way to get
    a rank correlation and every log-spectrogram correlation of exactly 0."""
    if "silent" in r:
        return bool(r["silent"])
    return r["spearman_signed"] == 0.0 and all(v == 0.0 for v in r["logspec"].values())


def _summarise(records: list, variant_order: list, layers: list, seeds, modes) -> list:
    out = []
    names = ["another feature"] + variant_order
    for name in names:
        for seed in seeds:
            for L in layers:
                rs = [r for r in records if r["variant"] == name and r["seed"] == seed and r["layer"] == L]
                if not rs:
                    continue

                def stat(vals):
                    v = np.asarray(vals, dtype=np.float64)
                    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0

                sp, sp_sd = stat([r["spearman"] for r in rs])
                ss, ss_sd = stat([r["ssim"] for r in rs])
                row = dict(variant=name, test=rs[0]["test"], layer=L, seed=seed, n=len(rs), spearman=sp,
                           spearman_sd=sp_sd, ssim=ss, ssim_sd=ss_sd,
                           silent=float(np.mean([_silent(r) for r in rs])),
                           logspec={m: stat([r["logspec"][m] for r in rs])[0] for m in modes},
                           logspec_sd={m: stat([r["logspec"][m] for r in rs])[1] for m in modes})
                out.append(row)
    return out


def sanity_checks(auraliser, clips, layers=None, *, n_features: int = 3, seeds=SEEDS, modes=MODES,
                  cascade: bool = True, independent: bool = True, shuffled=None, random_seed: int = 0,
                  out_dir=None, progress: bool = True, example: bool = True) -> dict:
    """Adebayo et al.'s sanity checks for auralisation: trained against randomised models.

    For every clip and every layer L of `layers`, the `n_features` most active features of the
    trained model (``features="top:K"`` on that clip) are auralised by the trained model and, with
    the same feature numbers, by every randomised model: the cascade (top conv layer down to j,
    for every j), every conv layer alone, and `shuffled` (the data randomisation model), for each
    seed kind and mode. Each pair is scored by `compare_maps` (|Spearman| and SSIM of the maps)
    and `logspec_correlation` (per mode). The model is never modified: randomised models are
    copies (`randomise`).

    Args:
        auraliser: an `Auraliser` of the trained model (a Conv2d / Conv1d chain or graph).
        clips: waveforms (n,) at the auraliser's rate, or dicts with "waveform" and "name" (e.g.
            from `split_clips`).
        layers: conv layer numbers (list or "1,3,5" | "all"; default all).
        n_features: K, the features compared per clip and layer.
        seeds: deconvnet seed kinds ("map", "max"); modes: "mask", "magnitude".
        cascade, independent: run those randomisations.
        shuffled: the model trained on shuffled labels (an nn.Module of the same architecture, or
            an Auraliser), or None to skip the data randomisation test.
        random_seed: seeds the re-initialisation.
        out_dir: keep one part file per clip under ``out_dir/parts/``; a rerun with the same
            models and settings reuses them (resume). Nothing else is written here.
        progress: a progress bar on stderr.
        example: also return, for the first clip, the maps of its top feature per layer (seed
            "map") for the trained model, the cascade and the shuffled-label model (for the figure).

    Returns:
        {"settings", "clips" (names), "variants" ([{name, test, randomised}]), "summary" (per
         variant, seed and layer: n, spearman (mean |rho|), spearman_sd, ssim, ssim_sd,
         logspec {mode: mean r}, logspec_sd), "records" (every comparison), and "example"
         ({variant: {layer: map (F', T) tensor}}, not JSON) when `example`}.
    """
    from ..auralise import Auraliser

    if not isinstance(auraliser, Auraliser):
        raise CnnauralError(f"sanity_checks needs an Auraliser (got {type(auraliser).__name__})")
    seeds, modes = tuple(seeds), tuple(modes)
    if not seeds or not modes:
        raise CnnauralError("choose at least one seed kind and one mode")
    for value, choices, what in [(v, SEEDS, "seed") for v in seeds] + [(v, MODES, "mode") for v in modes]:
        if value not in choices:
            raise CnnauralError(f"{what} must be one of {', '.join(choices)} (got {value!r})")
    if isinstance(n_features, bool) or not isinstance(n_features, int) or n_features < 1:
        raise CnnauralError(f"n_features must be an integer >= 1 (got {n_features!r})")
    layers = _check_layers(auraliser, layers)
    dn = auraliser.deconvnet
    n_layers = dn.n_layers
    for L in layers:
        if n_features > dn.n_features(L):
            raise CnnauralError(f"n_features {n_features} is more than layer {L}'s {dn.n_features(L)} features")
    if isinstance(shuffled, Auraliser):
        shuffled = shuffled.model
    if shuffled is not None:
        if not isinstance(shuffled, torch.nn.Module):
            raise CnnauralError(f"shuffled must be an nn.Module or an Auraliser (got {type(shuffled).__name__})")
        a, b = auraliser.model.state_dict(), shuffled.state_dict()
        if a.keys() != b.keys() or any(a[k].shape != b[k].shape for k in a):
            raise CnnauralError("the shuffled-label model must have the trained model's architecture")
        shuffled = shuffled.to(auraliser.device).eval()
    if not (cascade or independent or shuffled is not None):
        raise CnnauralError("nothing to compare: enable cascade, independent or pass a shuffled-label model")
    clips = _as_clips(clips)
    user_state = {k: v.detach().clone() for k, v in auraliser.model.state_dict().items()}
    user_mode = [m.training for m in auraliser.model.modules()]

    variants = _variants(n_layers, cascade, independent, shuffled is not None)
    models, seen = [], {}
    for name, test, rl in variants:
        key = tuple(rl) if test != "data" else "data"
        if key in seen:  # cascade n == layer n alone: one model
            models.append((name, test, seen[key]))
            continue
        m = _model_for(auraliser, test, rl, random_seed, shuffled).eval()
        seen[key] = m
        models.append((name, test, m))

    settings = dict(model=getattr(auraliser, "source", type(auraliser.model).__name__),
                    model_hash=_state_hash(auraliser.model),
                    shuffled_hash=None if shuffled is None else _state_hash(shuffled),
                    layers=layers, n_features=n_features, seeds=list(seeds), modes=list(modes),
                    cascade=bool(cascade), independent=bool(independent), random_seed=int(random_seed),
                    n_layers=n_layers, spectrogram=auraliser.spectrogram.config(),
                    logspec_floor_db=LOGSPEC_FLOOR_DB, ssim=dict(window=11, sigma=1.5, k1=0.01, k2=0.03))
    parts = Path(out_dir) / "parts" if out_dir is not None else None
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(clips) * (len(models) + 1), desc="sanity checks", unit="model", file=sys.stderr)
    records = []
    try:
        for clip in clips:
            key = hashlib.sha1((json.dumps(settings, sort_keys=True, default=str) + clip["name"]).encode()
                               + clip["waveform"].numpy().tobytes()).hexdigest()[:16]
            part = parts / f"{key}.json" if parts is not None else None
            rows = None
            if part is not None and part.is_file():
                try:
                    rows = json.loads(part.read_text())["records"]
                except (OSError, ValueError, KeyError):
                    rows = None
            if rows is None:
                rows = _clip_records(auraliser, models, clip["waveform"], layers, n_features, seeds, modes, bar)
                if part is not None:
                    from ..io.files import write_json

                    write_json(part, dict(clip=clip["name"], records=rows), indent=None)
            elif bar is not None:
                bar.update(len(models) + 1)
            for r in rows:
                r["clip"] = clip["name"]
            records += rows
        result = dict(settings=settings,
                      clips=[{k: v for k, v in c.items() if k != "waveform"} for c in clips],
                      variants=[dict(name=n, test=t, randomised=rl) for n, t, rl in variants],
                      summary=_summarise(records, [v[0] for v in variants], layers, seeds, modes),
                      records=records)
        if example:
            result["example"] = _example_maps(auraliser, models, clips[0], layers)
    finally:
        if bar is not None:
            bar.close()
    after = auraliser.model.state_dict()
    if after.keys() != user_state.keys() or any(not torch.equal(after[k], user_state[k]) for k in after) \
            or [m.training for m in auraliser.model.modules()] != user_mode:
        raise CnnauralError("internal error: the sanity checks changed the model")
    return result


def _example_maps(auraliser, models, clip, layers) -> dict:
    """{variant: {layer: map (F', T)}} of the first clip's top feature per layer, seed "map"."""
    from ..auralise import Auraliser

    wave = clip["waveform"]
    res = auraliser.auralise_layers(wave, layers, "top:1", seed="map")
    feats = {L: r.features for L, r in zip(layers, res)}
    out = {"trained": {L: r.maps[0] for L, r in zip(layers, res)}}
    for name, test, model in models:
        if test == "independent":
            continue
        other = Auraliser(model, auraliser.spectrogram, device=auraliser.device)
        out[name] = {L: other.auralise(wave, L, feats[L], seed="map").maps[0] for L in layers}
    out["_features"] = feats
    return out


# ------------------------------------------------------------------------------------------------
# Tables and figure
# ------------------------------------------------------------------------------------------------
def _fmt(v) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f}"


def sanity_table(result: dict, seed: str = "map") -> str:
    """Markdown: one row per randomisation, one column per layer, each cell
    "|rho| / SSIM / r mask / r magnitude" (means over clips and features) for one seed kind."""
    layers = result["settings"]["layers"]
    modes = result["settings"]["modes"]
    rows = [r for r in result["summary"] if r["seed"] == seed]
    order = []
    for r in rows:
        if r["variant"] not in order:
            order.append(r["variant"])
    head = "| randomisation | " + " | ".join(f"layer {L}" for L in layers) + " |"
    lines = [head, "|---|" + "---|" * len(layers)]
    for name in order:
        cells = []
        for L in layers:
            r = next((x for x in rows if x["variant"] == name and x["layer"] == L), None)
            if r is None:
                cells.append("")
                continue
            cells.append(" / ".join([_fmt(r["spearman"]), _fmt(r["ssim"])] + [_fmt(r["logspec"][m]) for m in modes]))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def silent_table(result: dict, seed: str = "map") -> str:
    """Markdown: per randomisation and layer, the share of compared maps that are all zero."""
    layers = result["settings"]["layers"]
    rows = [r for r in result["summary"] if r["seed"] == seed and r["test"] != "reference"]
    order = []
    for r in rows:
        if r["variant"] not in order:
            order.append(r["variant"])
    lines = ["| randomisation | " + " | ".join(f"layer {L}" for L in layers) + " |", "|---|" + "---|" * len(layers)]
    for name in order:
        cells = [_fmt(next((x.get("silent") for x in rows if x["variant"] == name and x["layer"] == L), None))
                 for L in layers]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def sanity_markdown(result: dict, title: str = "Sanity checks") -> str:
    s = result["settings"]
    parts = [f"# {title}", "",
             f"Model: {s['model']}; {len(result['clips'])} clip(s); the {s['n_features']} most active features "
             f"of the trained model per clip and layer; random seed {s['random_seed']}.", "",
             "Each cell: |Spearman rho| of the deconvolved maps (absolute value, as Adebayo et al. report it) / "
             "SSIM of the maps (each min-max scaled; 11x11 Gaussian window, sigma 1.5) / Pearson r of the log "
             "spectrograms of the clips in mode " + " / ".join(s["modes"]) + "; means over clips and features. "
             "'cascade 5..j': conv layers 5 down to j re-initialised; 'layer j alone': only j; 'shuffled labels': "
             "the architecture trained on shuffled labels; 'another feature': two different top features of the "
             "trained model (reference). A layer-L feature is deconvolved through layers L..1 only, so "
             "randomising layers above L changes nothing: those cells are 1 by construction.", ""]
    for seed in s["seeds"]:
        parts += [f"## seed = \"{seed}\"", "", sanity_table(result, seed), ""]
        parts += [f"Share of the compared maps that are all zero (the feature is silent in the other model; "
                  f"such a pair scores 0), seed \"{seed}\":", "", silent_table(result, seed), ""]
    if result.get("shuffled"):
        sh = result["shuffled"]
        parts += ["## The shuffled-label model", "", "```", json.dumps(sh, indent=1, default=str), "```", ""]
    return "\n".join(parts)


def plot_sanity(result: dict, path, seed: str = "map") -> Path:
    """The figure: mean |Spearman| and SSIM per layer along the cascade (and the other tests), and,
    when `result` has "example", the maps of one clip's top feature per layer for the trained
    model, steps of the cascade and the shuffled-label model (dB below each map's maximum)."""
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    from ..io.files import atomic_write

    s = result["settings"]
    layers = s["layers"]
    rows = [r for r in result["summary"] if r["seed"] == seed]
    names = []
    for r in rows:
        if r["variant"] not in names and r["variant"] != "another feature" and r["test"] != "independent":
            names.append(r["variant"])
    names = [n for n in names if n != "shuffled labels"] + [n for n in names if n == "shuffled labels"]
    x_labels = ["trained"] + names
    ex = result.get("example")
    ex_names = [n for n in (["trained"] + names) if ex and n in ex]
    n_map_rows = len(ex_names) if ex else 0
    width = 2.3 * max(len(layers), 4)
    fig = plt.figure(figsize=(width, 3.3 + 0.95 * n_map_rows), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[3.3, 0.95 * n_map_rows]) if n_map_rows else (fig, None)
    curve_axes = top.subplots(1, 2)
    for k, (measure, label) in enumerate((("spearman", "|Spearman ρ| of the maps"), ("ssim", "SSIM of the maps"))):
        ax = curve_axes[k]
        cas = [n for n in names if n != "shuffled labels"]
        for L in layers:
            ys = [1.0] + [next((r[measure] for r in rows if r["variant"] == n and r["layer"] == L), np.nan)
                          for n in cas]
            line, = ax.plot(range(len(ys)), ys, marker="o", label=f"layer {L}")
            if "shuffled labels" in names:
                y = next((r[measure] for r in rows if r["variant"] == "shuffled labels" and r["layer"] == L), np.nan)
                ax.plot([len(x_labels) - 1], [y], marker="s", ls="none", color=line.get_color())
        ref = [r for r in rows if r["variant"] == "another feature"]
        if ref:
            ax.axhline(float(np.mean([r[measure] for r in ref])), color="grey", ls=":", lw=1,
                       label="another feature (mean)")
        ax.set_xticks(range(len(x_labels)), x_labels, rotation=35, ha="right", fontsize=7)
        ax.set_ylim(-0.05, 1.05)
        ax.set_title(f"{label}, seed \"{seed}\"", fontsize=9)
        ax.grid(alpha=0.3)
        if k == 0:
            ax.legend(fontsize=7)
    if ex:
        map_axes = np.asarray(bottom.subplots(n_map_rows, len(layers), squeeze=False))
        for i, n in enumerate(ex_names):
            for j, L in enumerate(layers):
                ax = map_axes[i, j]
                m = torch.as_tensor(ex[n][L]).abs().double().numpy()
                ref = m.max() if m.max() > 0 else 1.0
                db = np.maximum(20 * np.log10(np.maximum(m, 1e-12) / ref), -60)
                ax.imshow(db, origin="lower", aspect="auto", cmap="magma", vmin=-60, vmax=0, interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                if i == 0:
                    ax.set_title(f"layer {L}, feature {ex['_features'][L][0]}", fontsize=8)
                if j == 0:
                    ax.set_ylabel(n, fontsize=7)
        bottom.supxlabel(f"deconvolved maps of clip {result['clips'][0]['name']} (the trained model's top feature "
                         "per layer, seed \"map\"), dB below each map's maximum (-60..0)", fontsize=7)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=90, format="png"))
    plt.close(fig)
    return Path(path)


def write_sanity(result: dict, out_dir) -> dict:
    """sanity.json (without the example maps), sanity.md and sanity.png in `out_dir`, atomically.

    Returns:
        {"json", "md", "png"}: the paths.
    """
    from ..io.files import write_json, write_text

    out = Path(out_dir)
    plain = {k: v for k, v in result.items() if k != "example"}
    paths = dict(json=write_json(out / "sanity.json", plain),
                 md=write_text(out / "sanity.md", sanity_markdown(result)),
                 png=plot_sanity(result, out / "sanity.png"))
    return paths
