"""The gallery's figure and analysis sections, and the files behind them (in OUT/_analysis/):
Figure 2 (first-layer filters), the onset-detector table with Figure 3, class selectivity.

`write_onsets` and `write_selectivity` are also what `cnnaural onsets` and `cnnaural
selectivity` write on their own.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import CnnauralError
from ..io.files import write_json, write_text
from .tables import (onsets_markdown, onsets_summary, onsets_table, selectivity_markdown, selectivity_sentence,
                     selectivity_tables)

ANALYSIS = "_analysis"  # no track folder can have this name: auralise.track_name strips leading '_'


def first_conv(auraliser):
    """The first Conv2d of an Auraliser's model; a clear error unless it reads a single channel."""
    conv = auraliser.deconvnet.conv(1)
    if conv.weight.shape[1] != 1:
        raise CnnauralError("filters are drawn for single-channel (spectrogram) inputs only")
    return conv


def write_filters(path, auraliser, title: str | None = None) -> tuple:
    """Figure 2: the first-layer filters of `auraliser`'s model, initial beside learned when its
    checkpoint records them. Returns (conv, initial weights or None)."""
    from ..io import figures

    conv = first_conv(auraliser)
    initial = auraliser.meta.get("initial_conv1")
    if initial is not None and tuple(initial.shape) != tuple(conv.weight.shape):
        initial = None
    figures.filters(path, conv.weight, initial,
                    title=title or f"first-layer filters {tuple(conv.weight.shape[2:])}")
    return conv, initial


def write_onsets(res: dict, out_dir) -> Path:
    """onsets.json and onsets.md; returns the .md path."""
    out = Path(out_dir)
    write_json(out / "onsets.json", res)
    return write_text(out / "onsets.md", onsets_markdown(res))


def write_selectivity(res: dict, out_dir, split: str) -> Path:
    """selectivity.json, .md and the heat map .png; returns the .md path."""
    from ..io import figures

    out = Path(out_dir)
    write_json(out / "selectivity.json", res)
    figures.heatmap(out / "selectivity.png", res["mean"], res["classes"],
                    title=f"layer {res['layer']}: mean activation per class")
    return write_text(out / "selectivity.md", selectivity_markdown(res, split))


def _fmt(v, spec=".3f"):
    return "" if v is None else format(v, spec)


def filters_section(root, labelled) -> dict:
    """Figure 2 for every (label, Auraliser) of `labelled`, and a table of the models."""
    images, rows = [], []
    for i, (label, a) in enumerate(labelled):
        name = "figure2_filters.png" if i == 0 else f"figure2_filters_{i}.png"
        conv = first_conv(a)
        kernel = "x".join(map(str, conv.weight.shape[2:]))
        initial = a.meta.get("initial_conv1")
        paired = initial is not None and tuple(initial.shape) == tuple(conv.weight.shape)
        write_filters(Path(root) / ANALYSIS / name, a,
                      title=f"{label}: first-layer filters {kernel}" + (", initial | learned" if paired else ""))
        images.append({"path": f"{ANALYSIS}/{name}", "alt": f"first-layer filters of {label}"
                       + (", initial beside learned" if paired else "")})
        m = a.meta.get("metrics") or {}
        b = m.get("baseline") or {}
        n_test = (m.get("n_tracks") or {}).get("test")
        rows.append([label, a.meta.get("arch", type(a.model).__name__), f"{conv.weight.shape[0]} x {kernel}",
                     ", ".join(map(str, a.meta.get("classes", []))), _fmt(m.get("test_track_accuracy")),
                     _fmt(b.get("test_track_accuracy")), "" if n_test is None else n_test])
    return {"id": "figure2", "title": "Figure 2: first-layer filters",
            "paragraphs": ["Each filter's weights at initialisation (left, when the checkpoint records them) "
                           "and after training (right), low frequencies at the bottom."],
            "images": images,
            "tables": [{"caption": "Models", "header": ["checkpoint", "architecture", "first-layer filters",
                                                        "classes", "test accuracy by track",
                                                        "linear baseline by track", "test tracks"],
                        "rows": rows}]}


def onsets_section(root, auraliser, onsets, *, seconds: float = 4.0, subtype: str = "PCM_16", **request) -> dict:
    """The onset-detector table, and Figure 3 with its audio: the best detector on the first
    `seconds` of the piece, ground-truth onsets drawn.

    Args:
        onsets: what `analysis.bwv846_onsets` returns.
        request: mode, phase, seed of the Figure-3 clip.
    """
    from ..io import figures
    from ..io.audio import save_audio

    out = Path(root) / ANALYSIS
    res, x, times = onsets
    layer = res["layer"]
    write_onsets(res, out)
    best = res["features"][0]["feature"]
    seconds = min(seconds, res["duration"])
    sr, spec = auraliser.sample_rate, auraliser.spectrogram
    x = x[: int(seconds * sr)]
    clip = auraliser.auralise(x, layer=layer, features=[best], **request)
    figures.figure3(out / "figure3_bwv846.png", x, clip.audio[0], clip.stft, spec.stft(clip.audio[0].to(auraliser.device)),
                    sample_rate=sr, hop_length=spec.hop_length, onsets=times[times < seconds],
                    title=f"BWV 846 Prelude: layer {layer}, feature {best} (ground-truth onsets in cyan)")
    clip_name = f"bwv846_layer{layer}_feature{best:03d}.wav"
    save_audio(out / "bwv846_original.wav", x, sr, subtype=subtype)
    save_audio(out / clip_name, clip.audio[0], sr, subtype=subtype)
    return {"id": "onsets", "title": f"Figure 3 and onset detectors: BWV 846 Prelude, layer {layer}",
            "paragraphs": [f"Every layer-{layer} feature auralised for the first {res['duration']:.0f} s of the "
                           "rendered Prelude; onsets found in each clip (spectral flux, peak picking) are scored "
                           "against the ground truth.", *onsets_summary(res),
                           f"Figure 3: the best onset detector, feature {best}, on the first {seconds:g} s."],
            "images": [{"path": f"{ANALYSIS}/figure3_bwv846.png",
                        "alt": f"Figure 3: BWV 846 original and deconvolved waveforms and spectrograms, layer "
                               f"{layer}, feature {best}, ground-truth onsets drawn"}],
            "audio": [{"path": f"{ANALYSIS}/bwv846_original.wav", "label": "BWV 846, original"},
                      {"path": f"{ANALYSIS}/{clip_name}", "label": f"BWV 846, layer {layer}, feature {best}"}],
            "tables": [onsets_table(res)]}


def selectivity_section(root, res: dict, split: str) -> dict:
    """The class-selectivity heat map and tables."""
    write_selectivity(res, Path(root) / ANALYSIS, split)
    layer = res["layer"]
    return {"id": "selectivity", "title": f"Class selectivity: layer {layer}",
            "paragraphs": [selectivity_sentence(res, split)],
            "images": [{"path": f"{ANALYSIS}/selectivity.png",
                        "alt": f"heat map: mean activation of layer {layer} features per class"}],
            "tables": selectivity_tables(res)}
