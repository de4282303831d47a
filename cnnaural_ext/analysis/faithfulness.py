"""Is what you hear what the classifier used? Faithfulness of auralised audio, measured.

Every measure feeds audio back through the classifier the way it hears any audio: the model's own
front end (the Auraliser's Spectrogram), then the model. For a clip x with STFT X and an
explanation mask M in network-input space (values in [0, 1]; mel masks are brought to the STFT
grid as the "mask" mode brings maps), the explanation's audio is x_in = ISTFT(X * M) with the
phase of X, and what is left when the explanation is taken away is x_out = ISTFT(X * (1 - M)).

Masks:
- "deconvnet": the auralisation's deconvolved map D, as M = relu(D) / max relu(D): for class
  targets (layer "output", the class the model predicts for the clip) and for the top features of
  each chosen layer (ranked by mean activation on the clip). x_in is then the auralised clip
  (mask mode, original phase) at the level where its loudest bin keeps the original's level.
- "gradient" (baseline): plain gradient saliency, |d logit_c / d input| normalised to [0, 1].
- "random" (baseline): the deconvnet mask with its values shuffled within every frame (the same
  mask energy per frame), from a fixed random seed.

Class measures (p = softmax of the model's logits, computed once; c = the class predicted for x;
all averaged over the clips; the percentages as in the listenable-explanation literature):
- AI, average increase = 100 * mean[p_c(x_in) > p_c(x)];
- AD, average drop = 100 * mean[max(0, p_c(x) - p_c(x_in)) / p_c(x)] (lower is better);
- AG, average gain = 100 * mean[max(0, p_c(x_in) - p_c(x)) / (1 - p_c(x))];
- FF, faithfulness on spectra = mean[p_c(x) - p_c(x_out)] (higher: removing the explanation hurts);
- Fid-In, input fidelity = mean[argmax p(x_in) == c];
- deletion / insertion: the bins of M ranked from the most salient, the top fraction q of them
  removed from X (deletion: X * (1 - top_q)) or kept alone (insertion: X * top_q), q = 0, 1/S,
  ..., 1; p_c of each, and the area under each curve (trapezoid over q): a faithful mask makes
  deletion fall fast (low area) and insertion rise fast (high area).

Unit measures (does the clip carry the feature?): for feature k of layer L with mask M_k, the
layer's mean activation per feature on the original clip a(x) and on x_in, a(x_in):
- retention = a_k(x_in) / a_k(x): how much of feature k's activation the clip re-creates (1 for a
  mask of ones);
- selectivity = a_k(x_in) / sum_j a_j(x_in): how much of the layer's activation is feature k's;
against the same on the original audio (retention 1 by definition, selectivity a_k(x) / sum_j
a_j(x)) and on x_in of the random mask.

`faithfulness(...)` runs both over clips, resumably (one JSON per clip under
``out_dir/clips/<settings hash>/``), and `write_faithfulness` writes JSON, markdown and a figure.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import CnnauralError

EXPLAINERS = ("deconvnet", "gradient", "random")
CLASS_METRICS = ("AI", "AD", "AG", "FF", "Fid-In", "deletion", "insertion")
#: published figures of L-MAC and L2I on their own task (ESC-50 sound events, CNN14; Paissan et al. 2024)
LMAC_PUBLISHED = {"L-MAC": {"AI": 61.6, "AD": 3.8, "AG": 33.5, "FF": 0.40, "Fid-In": 0.82},
                  "L2I": {"FF": 0.26, "Fid-In": 0.01}}


@dataclass
class Clip:
    """One clip to measure: a waveform (n,) at the Auraliser's rate and where it came from."""
    wave: torch.Tensor
    track: str = ""
    offset: float = 0.0
    label: str | None = None

    @property
    def key(self) -> str:
        h = hashlib.sha1(f"{self.track}\0{self.offset:.6f}\0{self.wave.shape[-1]}".encode()).hexdigest()[:12]
        return f"{Path(self.track).stem[:40] or 'clip'}-{h}"


def clip_seconds_of(auraliser) -> float:
    """The clip length the classifier was trained on: what its checkpoint records (the clips, or
    the input shape of a fixed-size head), else 4 s (the paper's)."""
    meta = auraliser.meta or {}
    if (meta.get("clips") or {}).get("clip_seconds"):
        return float(meta["clips"]["clip_seconds"])
    shape = (meta.get("arch_kwargs") or {}).get("input_shape")
    spec = auraliser.spectrogram
    if shape and spec.center:
        return (int(shape[-1]) - 1) * spec.hop_length / spec.sample_rate
    return 4.0


def split_clips(auraliser, data_dir, split: str = "test", *, clip_seconds: float | None = None,
                clips_per_track: int = 1, max_clips: int | None = None) -> list[Clip]:
    """Clips of a folder-per-class corpus: `clips_per_track` evenly spaced clips of every track of
    the split the model's checkpoint records ("all": every track), each `clip_seconds` long
    (default `clip_seconds_of`: the length the classifier was trained on; zero-padded at the end
    when the track is shorter); at most `max_clips`, taken evenly."""
    import soundfile as sf

    from ..corpus.clips import clip_offsets
    from ..io.audio import load
    from .selectivity import select_tracks

    tracks = select_tracks(auraliser, data_dir, split)
    clip_seconds = clip_seconds_of(auraliser) if clip_seconds is None else float(clip_seconds)
    if clip_seconds <= 0 or clips_per_track < 1:
        raise CnnauralError(f"clip_seconds must be > 0 and clips_per_track >= 1 (got {clip_seconds}, {clips_per_track})")
    sr, n = auraliser.sample_rate, int(round(clip_seconds * auraliser.sample_rate))
    plan = []
    for path, cls in tracks:
        try:
            duration = sf.info(str(path)).duration
        except Exception:  # an unreadable file has no clips; load() below would say why
            continue
        plan += [(path, cls, o) for o in clip_offsets(duration, clip_seconds, clips_per_track)]
    if max_clips is not None and len(plan) > max_clips:
        plan = [plan[i * len(plan) // max_clips] for i in range(max_clips)]
    clips = []
    for path, cls, o in plan:
        wave, _ = load(path, sr, offset=o, duration=clip_seconds)
        wave = F.pad(wave, (0, max(0, n - wave.shape[0])))[:n]
        clips.append(Clip(wave, str(Path(path).relative_to(Path(data_dir))), float(o), cls))
    if not clips:
        raise CnnauralError(f"no readable clips in the {split} split of {data_dir}")
    return clips


@contextlib.contextmanager
def _eval(model):
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield model
    finally:
        for m, t in modes.items():
            m.train(t)


class Listener:
    """The classifier as it hears audio: the Auraliser's front end, then its model (eval mode,
    never changed). Shared by the class and the unit measures.

    Args:
        auraliser: an `Auraliser` whose model ends in class scores (layer "output").
        batch_size: clips per forward pass.
    """

    def __init__(self, auraliser, batch_size: int = 32):
        self.aur = auraliser
        self.spec, self.dn = auraliser.spectrogram, auraliser.deconvnet
        self.batch_size = int(batch_size)
        try:
            self.n_classes = self.dn.n_features("output")
        except CnnauralError as e:
            raise CnnauralError(f"faithfulness needs a classifier (a model ending in class scores): {e}") from None

    def inputs(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, n) audio -> what the model takes: (B, 1, F', T) (channels-last: the convolutions and
        pools vectorise over channels, about 1.6x faster on CPU), (B, F', T) for a Conv1d over
        frames, or the audio itself for a model with its front end inside."""
        audio = audio.to(self.aur.device, torch.float32)
        if self.dn.takes_waveform:
            return audio
        S = self.spec(audio)[1]
        x = self.aur.model_input(S[0])
        if x.dim() == 3:
            return S
        return S[:, None].contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def probabilities(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, n) audio -> (B, n_classes): softmax of the logits, once."""
        out = [torch.softmax(self.dn.activations(self.inputs(audio[k:k + self.batch_size]), "output").double(), -1)
               for k in range(0, audio.shape[0], self.batch_size)]
        return torch.cat(out).cpu()

    @torch.inference_mode()
    def feature_means(self, audio: torch.Tensor, layer) -> torch.Tensor:
        """(B, n) audio -> (B, C): the mean activation of every feature of `layer`."""
        out = [self.dn.activations(self.inputs(audio[k:k + self.batch_size]), layer).double().mean(dim=(2, 3))
               for k in range(0, audio.shape[0], self.batch_size)]
        return torch.cat(out).cpu()

    def resynthesise(self, X: torch.Tensor, masks: torch.Tensor, length: int) -> torch.Tensor:
        """ISTFT(X * mask) for masks (K, F', T) in network-input space: (K, n), phase of X."""
        from .. import ops

        spec = self.spec
        gain = spec.to_linear(masks.to(X.device, torch.float32), kind="mask").contiguous()
        return ops.masked_istft(X, gain, n_fft=spec.n_fft, hop_length=spec.hop_length, win_length=spec.win_length,
                                window=spec.window_like(X), center=spec.center, length=length, mode="mask").cpu()

    def gradient(self, S: torch.Tensor, target: int) -> torch.Tensor:
        """|d logit_target / d S| for one spectrogram S (F', T); the model's parameters get no .grad.
        (A model with its front end inside is differentiated through it, from S.)"""
        s = S.detach().clone().requires_grad_(True)
        with torch.enable_grad(), _eval(self.aur.model):
            if self.dn.takes_waveform:
                raise CnnauralError("gradient saliency on the spectrogram needs a model that takes the spectrogram; "
                                    "pass explainers without 'gradient'")
            logits = self.aur.model(self.aur.model_input(s))
            (g,) = torch.autograd.grad(logits.reshape(-1)[target], s)
        return g.abs().detach()


def normalise(m: torch.Tensor) -> torch.Tensor:
    """relu(m) / max relu(m) per leading index (all-zero maps stay zero): masks in [0, 1]."""
    m = torch.relu(m.float())
    peak = m.flatten(-2).amax(-1)[..., None, None]
    return torch.where(peak > 0, m / peak.clamp_min(torch.finfo(m.dtype).tiny), torch.zeros_like(m))


def shuffle_within_frames(m: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The values of each frame (column) of every (..., F', T) mask permuted at random."""
    flat = m.reshape(-1, m.shape[-2], m.shape[-1])
    keys = torch.rand(flat.shape, generator=generator)
    order = keys.argsort(dim=1)
    return flat.gather(1, order).reshape(m.shape)


def top_fraction_masks(m: torch.Tensor, fractions) -> torch.Tensor:
    """(K, F', T) masks -> (K, Q, F', T) binary masks of their top fraction q of bins (ranked by
    value, ties by position), one per q."""
    K = m.shape[0]
    flat = m.reshape(K, -1)
    n = flat.shape[1]
    order = torch.argsort(flat, dim=1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(n).expand(K, n))
    counts = torch.tensor([int(round(q * n)) for q in fractions])
    return (rank[:, None, :] < counts[None, :, None]).float().reshape(K, len(fractions), *m.shape[1:])


def class_scores(p0: torch.Tensor, p_in: torch.Tensor, p_out: torch.Tensor, target: int) -> dict:
    """The per-clip terms of AI, AD, AG, FF and Fid-In for masks (K rows of p_in, p_out) of one
    clip whose original probabilities are p0 (n_classes,)."""
    c0 = float(p0[target])
    cin, cout = p_in[:, target].double(), p_out[:, target].double()
    return {"AI": (cin > c0).double() * 100,
            "AD": torch.clamp(c0 - cin, min=0) / max(c0, 1e-12) * 100,
            "AG": torch.clamp(cin - c0, min=0) / max(1 - c0, 1e-12) * 100,
            "FF": c0 - cout,
            "Fid-In": (p_in.argmax(dim=1) == target).double()}


def auc(values, fractions) -> float:
    """Area under a curve sampled at `fractions` (trapezoid)."""
    v, q = np.asarray(values, dtype=np.float64), np.asarray(fractions, dtype=np.float64)
    return float(np.sum((v[1:] + v[:-1]) * np.diff(q)) / 2)


def measure_clip(listener: Listener, clip: Clip, layers, *, top: int = 3, steps: int = 10, seed: str = "map",
                 random_seed: int = 0, classes: bool = True, units: bool = True, explainers=EXPLAINERS) -> dict:
    """Every measure for one clip: {"target", "p0", "rows": [class rows], "units": [unit rows]}.

    A class row: {"target": "output" | layer, "feature", "explainer", "AI", "AD", "AG", "FF",
    "Fid-In", "deletion" [p_c per q], "insertion" [p_c per q]}. A unit row: {"layer",
    "feature", "measure": deconvnet | random | original, "retention", "selectivity"}.
    """
    aur, dn = listener.aur, listener.dn
    wave = clip.wave.to(torch.float32)
    n = wave.shape[-1]
    X, S = listener.spec(wave.to(aur.device))
    p0 = listener.probabilities(wave[None])[0]
    target = int(p0.argmax())
    gen = torch.Generator().manual_seed(int(random_seed) + int(hashlib.sha1(clip.key.encode()).hexdigest()[:8], 16))
    fractions = [i / steps for i in range(steps + 1)]
    layers = list(layers)
    deepest = "output" if classes else max(layers)
    with torch.no_grad():
        rec = dn.record(aur.model_input(S, wave.to(aur.device)), deepest)
    jobs = []  # (target, feature, explainer, masks (K, F', T))
    if classes:
        d_out = normalise(dn.deconvolve(rec, "output", [target], seed=seed).reshape(1, *S.shape).cpu())
        jobs += [("output", [target], "deconvnet", d_out)]
        if "gradient" in explainers:
            jobs.append(("output", [target], "gradient", normalise(listener.gradient(S, target)[None].cpu())))
        jobs.append(("output", [target], "random", shuffle_within_frames(d_out, gen)))
    for layer in layers:
        maps, feats = dn.deconvolve(rec, layer, f"top:{min(top, dn.n_features(layer))}", seed=seed,
                                    return_features=True)
        m = normalise(maps.reshape(maps.shape[0], *S.shape).cpu())
        jobs += [(layer, feats, "deconvnet", m), (layer, feats, "random", shuffle_within_frames(m, gen))]
    # every mask is drawn whatever is asked for, so a clip's numbers never depend on `explainers`
    rows, unit_rows, original_means = [], [], {}
    for tgt, feats, explainer, m in jobs:
        K = m.shape[0]
        with_classes = classes and explainer in explainers
        with_units = units and tgt != "output"
        if not (with_classes or with_units):
            continue
        if with_classes:
            top_q = top_fraction_masks(m, fractions)  # (K, Q, F', T)
            gains = torch.cat([m, 1 - m, (1 - top_q).flatten(0, 1), top_q.flatten(0, 1)])
        else:
            gains = m
        audio = listener.resynthesise(X, gains, n)
        if with_classes:
            p = listener.probabilities(audio)
            Q = len(fractions)
            p_in, p_out = p[:K], p[K:2 * K]
            dele = p[2 * K:2 * K + K * Q, target].reshape(K, Q)
            ins = p[2 * K + K * Q:, target].reshape(K, Q)
            terms = class_scores(p0, p_in, p_out, target)
            for i in range(K):
                rows.append({"target": tgt, "feature": int(feats[i]), "explainer": explainer,
                             **{k: float(v[i]) for k, v in terms.items()},
                             "deletion": dele[i].tolist(), "insertion": ins[i].tolist()})
        if with_units:
            a_in = listener.feature_means(audio[:K], tgt)
            if tgt not in original_means:  # the original clip's, once per layer
                original_means[tgt] = listener.feature_means(wave[None], tgt)[0]
            a0 = original_means[tgt]
            for i, f in enumerate(feats):
                unit_rows.append({"layer": tgt, "feature": int(f), "measure": explainer,
                                  **unit_scores(a_in[i], a0, int(f))})
                if explainer == "deconvnet":
                    unit_rows.append({"layer": tgt, "feature": int(f), "measure": "original",
                                      **unit_scores(a0, a0, int(f))})
    return {"clip": clip.key, "track": clip.track, "offset": clip.offset, "label": clip.label, "target": target,
            "p0": p0.tolist(), "fractions": fractions, "rows": rows, "units": unit_rows}


def unit_scores(a: torch.Tensor, a0: torch.Tensor, k: int) -> dict:
    """retention a_k / a0_k and selectivity a_k / sum_j a_j (None where undefined: a silent feature)."""
    total = float(a.clamp_min(0).sum())
    return {"retention": float(a[k] / a0[k]) if float(a0[k]) > 0 else None,
            "selectivity": float(a[k].clamp_min(0)) / total if total > 0 else None}


def settings_key(auraliser, **settings) -> str:
    """A hash of what decides a clip's numbers: the model's weights, its front end and the settings."""
    h = hashlib.sha1()
    for name, t in sorted(auraliser.model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    h.update(json.dumps({"spectrogram": auraliser.spectrogram.config(), **settings}, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def faithfulness(auraliser, clips, *, layers=(1,), top: int = 3, steps: int = 10, seed: str = "map",
                 random_seed: int = 0, classes: bool = True, units: bool = True, explainers=EXPLAINERS,
                 out_dir=None, progress: bool = True) -> dict:
    """Class and unit faithfulness of `auraliser`'s auralisations over `clips` (see the module
    docstring for every definition).

    Args:
        auraliser: an `Auraliser` whose model ends in class scores.
        clips: a list of `Clip` (e.g. `split_clips`), or of waveforms (n,).
        layers: conv layers whose top features are measured (list or "1,5" / "all"; empty: the
            class targets only).
        top: features per layer (the most active on each clip).
        steps: the deletion/insertion curves take q = 0, 1/steps, ..., 1.
        seed: the deconvnet's seed kind ("map" | "max").
        random_seed: for the random-mask baseline.
        classes, units: which measures to compute.
        explainers: which masks' class measures to compute (`EXPLAINERS`; the unit measures always
            take the deconvnet and random masks).
        out_dir: when given, every clip's numbers are kept under ``out_dir/clips/<settings hash>/``
            and a rerun reuses them (the run resumes where it stopped).
        progress: a progress bar on stderr.

    Returns:
        {"model", "clips", "classes" (class rows aggregated: target, explainer, n, AI, AD, AG,
        FF, Fid-In, deletion_auc, insertion_auc), "curves" ({"<target>/<explainer>": {deletion,
        insertion}} mean over clips), "units" (per layer and measure: n, retention and
        selectivity median / mean / quartiles), "fractions", "settings"}.
    """
    from ..auralise import parse_layers
    from ..io.console import progress_bar
    from ..io.files import write_json

    if not classes and not units:
        raise CnnauralError("nothing to measure: ask for the class measures, the unit measures or both")
    if steps < 1:
        raise CnnauralError(f"steps must be >= 1 (got {steps})")
    if top < 1:
        raise CnnauralError(f"top must be >= 1 (got {top})")
    if seed not in ("map", "max"):
        raise CnnauralError(f"seed must be 'map' or 'max' (got {seed!r})")
    listener = Listener(auraliser)
    layers = ([] if layers is None or (not isinstance(layers, (str, int)) and not list(layers))
              else [layer for layer in parse_layers(layers, listener.dn.n_layers) if layer != "output"])
    if units and not layers:
        raise CnnauralError("the unit measures need at least one conv layer (--layers)")
    clips = [c if isinstance(c, Clip) else Clip(torch.as_tensor(c, dtype=torch.float32), f"clip{i}")
             for i, c in enumerate(clips)]
    if not clips:
        raise CnnauralError("no clips to measure")
    asked = [explainers] if isinstance(explainers, str) else list(explainers)
    if not asked or any(e not in EXPLAINERS for e in asked):
        raise CnnauralError(f"explainers must be some of {', '.join(EXPLAINERS)} (got {asked})")
    explainers = tuple(e for e in EXPLAINERS if e in asked)
    settings = dict(layers=layers, top=int(top), steps=int(steps), seed=seed, random_seed=int(random_seed),
                    classes=bool(classes), units=bool(units), explainers=list(explainers))
    cache = None
    if out_dir is not None:
        cache = Path(out_dir) / "clips" / settings_key(auraliser, **settings)
    per_clip = []
    for clip in progress_bar(clips, progress, desc="faithfulness", unit="clip"):
        path = cache / f"{clip.key}.json" if cache is not None else None
        if path is not None and path.is_file():
            per_clip.append(json.loads(path.read_text()))
            continue
        result = measure_clip(listener, clip, layers, top=top, steps=steps, seed=seed, random_seed=random_seed,
                              classes=classes, units=units, explainers=explainers)
        if path is not None:
            write_json(path, result)
        per_clip.append(result)
    return summarise(per_clip, auraliser, settings)


def _target_name(t) -> str:
    return "output" if t == "output" else f"layer {t}"


def summarise(per_clip: list, auraliser, settings: dict) -> dict:
    """Aggregate the per-clip numbers of `measure_clip` (see `faithfulness`)."""
    fractions = per_clip[0]["fractions"]
    groups: dict = {}
    for r in (row for c in per_clip for row in c["rows"]):
        groups.setdefault((_target_name(r["target"]), r["explainer"]), []).append(r)
    class_rows, curves = [], {}
    for (target, explainer), rs in groups.items():
        dele = np.mean([r["deletion"] for r in rs], axis=0)
        ins = np.mean([r["insertion"] for r in rs], axis=0)
        class_rows.append({"target": target, "explainer": explainer, "n": len(rs),
                           **{k: float(np.mean([r[k] for r in rs])) for k in ("AI", "AD", "AG", "FF", "Fid-In")},
                           "deletion_auc": auc(dele, fractions), "insertion_auc": auc(ins, fractions)})
        curves[f"{target}/{explainer}"] = {"deletion": dele.tolist(), "insertion": ins.tolist()}
    unit_groups: dict = {}
    for u in (u for c in per_clip for u in c["units"]):
        unit_groups.setdefault((int(u["layer"]), u["measure"]), []).append(u)
    unit_rows = []
    for (layer, measure), us in sorted(unit_groups.items(), key=lambda kv: (kv[0][0], _MEASURE_ORDER[kv[0][1]])):
        row = {"layer": layer, "measure": measure, "n": len(us)}
        for name in ("retention", "selectivity"):
            v = np.array([u[name] for u in us if u[name] is not None], dtype=np.float64)
            row[name] = ({"median": float(np.median(v)), "mean": float(v.mean()), "q1": float(np.quantile(v, 0.25)),
                          "q3": float(np.quantile(v, 0.75))} if v.size else None)
        unit_rows.append(row)
    order = {e: i for i, e in enumerate(EXPLAINERS)}
    class_rows.sort(key=lambda r: (r["target"] != "output", r["target"], order[r["explainer"]]))
    return {"model": str(auraliser.source), "clips": len(per_clip), "settings": settings, "fractions": fractions,
            "accuracy": _accuracy(per_clip, auraliser), "classes": class_rows, "curves": curves, "units": unit_rows}


_MEASURE_ORDER = {"deconvnet": 0, "random": 1, "original": 2}


def _accuracy(per_clip, auraliser):
    names = (auraliser.meta or {}).get("classes")
    if not names or any(c.get("label") is None for c in per_clip):
        return None
    return float(np.mean([names[c["target"]] == c["label"] for c in per_clip if c["target"] < len(names)]))


def markdown(result: dict) -> str:
    """The class table and the unit table as markdown."""
    settings = result.get("settings")
    lines = [f"Faithfulness of `{result['model']}` over {result['clips']} clips"
             + (f" (seed {settings['seed']}, top {settings['top']} features per layer)." if settings else "."), ""]
    if result["classes"]:
        lines += ["| target | mask | AI (%) | AD (%) | AG (%) | FF | Fid-In | deletion AUC | insertion AUC |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in result["classes"]:
            lines.append(f"| {r['target']} | {r['explainer']} | {r['AI']:.1f} | {r['AD']:.1f} | {r['AG']:.1f} | "
                         f"{r['FF']:.3f} | {r['Fid-In']:.2f} | {r['deletion_auc']:.3f} | {r['insertion_auc']:.3f} |")
        lines.append("")
    if result["units"]:
        lines += ["| layer | clip | retention median (IQR) | selectivity median (IQR) |", "|---|---|---|---|"]
        for u in result["units"]:
            cells = [f"{u[k]['median']:.3f} ({u[k]['q1']:.3f}-{u[k]['q3']:.3f})" if u[k] else "-"
                     for k in ("retention", "selectivity")]
            lines.append(f"| {u['layer']} | {u['measure']} | {cells[0]} | {cells[1]} |")
        lines.append("")
    if result.get("inversion"):
        from .inversion import markdown as inversion_markdown

        lines.append(inversion_markdown(result["inversion"]))
    return "\n".join(lines)


def write_faithfulness(result: dict, out_dir) -> dict:
    """Write ``faithfulness.json``, ``faithfulness.md`` and ``faithfulness.png`` (the mean deletion
    and insertion curves) into out_dir; returns their paths."""
    from ..io.files import atomic_write, write_json, write_text

    out = Path(out_dir)
    paths = {"json": write_json(out / "faithfulness.json", result), "markdown": write_text(out / "faithfulness.md",
                                                                                           markdown(result))}
    if result["curves"]:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
        for key, c in result["curves"].items():
            style = {"deconvnet": "-", "gradient": "--", "random": ":"}[key.split("/")[1]]
            for ax, which in zip(axes, ("deletion", "insertion")):
                ax.plot(result["fractions"], c[which], style, label=key)
        for ax, which in zip(axes, ("deletion (lower is better)", "insertion (higher is better)")):
            ax.set_title(which)
            ax.set_xlabel("fraction of the mask's bins")
        axes[0].set_ylabel("p(predicted class)")
        axes[1].legend(fontsize=7)
        fig.tight_layout()
        paths["figure"] = atomic_write(out / "faithfulness.png", lambda tmp: fig.savefig(tmp, format="png", dpi=110))
        plt.close(fig)
    return paths


__all__ = ["Clip", "EXPLAINERS", "LMAC_PUBLISHED", "Listener", "auc", "class_scores", "faithfulness", "markdown",
           "measure_clip", "normalise", "shuffle_within_frames", "split_clips", "summarise", "top_fraction_masks",
           "unit_scores", "write_faithfulness"]
