"""How much of what is heard is what the map says, per layer, mode and phase (see `quality`).

For every clip, layer and (mode, phase), the chosen features are auralised; the spectral
convergence against the magnitude its map asks for and the share of samples beyond full scale
that `Auraliser.auralise_layers` measures for every clip (before peak normalisation) are
summarised per (layer, mode, phase): median and
quartiles of the spectral convergence, the share of clips above `quality.INCONSISTENT`, the mean
clipped share.
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import CnnauralError
from ..quality import INCONSISTENT

MODES = ("mask", "magnitude")
PHASES = ("original", "griffinlim")


def clip_quality(auraliser, wave: torch.Tensor, layers, *, features="top:3", mode: str = "mask",
                 phase: str = "original", seed: str = "map") -> list[dict]:
    """Per layer and feature of one clip: {"layer", "feature", "spectral_convergence", "clipped"}
    (what `Auraliser.auralise_layers` measures for every clip it makes, in `result.inversion`)."""
    return [{"layer": res.layer, "feature": int(f), "spectral_convergence": inv["spectral_convergence"],
             "clipped": inv["clipped"]}
            for res in auraliser.auralise_layers(wave, layers, features, mode=mode, phase=phase, seed=seed)
            for f, inv in zip(res.features, res.inversion)]


def inversion_quality(auraliser, clips, *, layers=(1,), features="top:3", modes=MODES, phases=PHASES,
                      seed: str = "map", progress: bool = True) -> dict:
    """`clip_quality` over clips (waveforms or `faithfulness.Clip`s) for every mode and phase.

    Returns:
        {"rows": [{layer, mode, phase, n, median, q1, q3, flagged (share above INCONSISTENT),
        clipped (mean share)}], "threshold": INCONSISTENT}.
    """
    from ..io.console import progress_bar

    bad = [m for m in modes if m not in MODES] + [p for p in phases if p not in PHASES]
    if bad or not modes or not phases:
        raise CnnauralError(f"modes must be some of {', '.join(MODES)} and phases some of {', '.join(PHASES)}")
    layers = auraliser.check_request(layers, features, seed=seed)
    waves = [getattr(c, "wave", c) for c in clips]
    if not waves:
        raise CnnauralError("no clips to measure")
    values: dict = {}
    for wave in progress_bar(waves, progress, desc="inversion", unit="clip"):
        for mode in modes:
            for phase in phases:
                for r in clip_quality(auraliser, wave, layers, features=features, mode=mode, phase=phase, seed=seed):
                    values.setdefault((r["layer"], mode, phase), []).append((r["spectral_convergence"], r["clipped"]))
    rows = []
    for (layer, mode, phase), v in sorted(values.items(), key=lambda kv: (str(kv[0][0]), kv[0][1], kv[0][2])):
        sc = np.array([a for a, _ in v])
        rows.append({"layer": layer, "mode": mode, "phase": phase, "n": len(v), "median": float(np.median(sc)),
                     "q1": float(np.quantile(sc, 0.25)), "q3": float(np.quantile(sc, 0.75)),
                     "flagged": float(np.mean(sc > INCONSISTENT)), "clipped": float(np.mean([b for _, b in v]))})
    return {"rows": rows, "threshold": INCONSISTENT}


def markdown(result: dict) -> str:
    lines = [f"Spectral convergence of the auralised clips (clips above {result['threshold']} are flagged).", "",
             "| layer | mode | phase | clips | SC median (IQR) | flagged | clipped samples |", "|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['layer']} | {r['mode']} | {r['phase']} | {r['n']} | {r['median']:.3f} "
                     f"({r['q1']:.3f}-{r['q3']:.3f}) | {100 * r['flagged']:.0f}% | {100 * r['clipped']:.2f}% |")
    return "\n".join(lines) + "\n"
