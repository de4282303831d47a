"""Analysis results as tables: one table dict per result, shown as HTML in the gallery and as
markdown in the .md files, so both show the same rows.

A table is ``{"caption": str, "header": [str], "rows": [[cell]]}``.
"""
from __future__ import annotations


def markdown(table: dict) -> list[str]:
    """A table dict as markdown lines (caption as a paragraph above it)."""
    lines = [table["caption"], ""] if table.get("caption") else []
    lines.append("| " + " | ".join(map(str, table["header"])) + " |")
    lines.append("|" + "---|" * len(table["header"]))
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in table["rows"]]
    return lines


def onsets_table(res: dict) -> dict:
    """Every feature of `analysis.score_onset_features`'s result ranked as an onset detector."""
    rows = [[i, r["feature"], f"{r['f_measure']:.3f}", f"{r['precision']:.3f}", f"{r['recall']:.3f}",
             r["detected"], f"{r['mean_activation']:.4f}"] for i, r in enumerate(res["features"], 1)]
    return {"caption": f"Layer-{res['layer']} features ranked as onset detectors",
            "header": ["rank", "feature", "F-measure", "precision", "recall", "detected", "mean activation"],
            "rows": rows}


def onsets_summary(res: dict) -> list[str]:
    """The sentences that go with the onsets table: the reference and the baseline."""
    b = res["baseline"]
    return [f"{b['reference']} ground-truth onsets (MIDI note-on times), F-measure at "
            f"+-{res['tolerance'] * 1000:.0f} ms.",
            f"Baseline, the same detector on the original audio: F {b['f_measure']:.3f} "
            f"(P {b['precision']:.3f}, R {b['recall']:.3f})."]


def onsets_markdown(res: dict) -> str:
    """onsets.md: the title, the reference and baseline, and the ranked table."""
    head = f"# Layer-{res['layer']} features as onset detectors: BWV 846 Prelude, first {res['duration']:.0f} s"
    return "\n".join([head, "", *onsets_summary(res), "", *markdown(onsets_table(res))]) + "\n"


def selectivity_tables(res: dict) -> list[dict]:
    """`analysis.class_selectivity`'s result: the features each class switches off, and the mean
    activation of every feature per class."""
    classes, mean, off = res["classes"], res["mean"], res["switched_off"]
    summary = [[c, res["clips"][c], len(off[c]), ", ".join(map(str, off[c])) or "none"] for c in classes]
    rows = [[f] + [f"{mean[c][f]:.4f}" for c in range(len(classes))]
            + [", ".join(n for n in classes if f in off[n])] for f in range(len(mean[0]))]
    return [{"caption": "Features each class switches off",
             "header": ["class", "clips", "switched off", "features"], "rows": summary},
            {"caption": "Mean activation per class",
             "header": ["feature", *classes, "switched off by"], "rows": rows}]


def selectivity_sentence(res: dict, split: str) -> str:
    """What the selectivity tables show, in one sentence."""
    return (f"Mean activation of every layer-{res['layer']} feature per class over the "
            + ("tracks of the corpus" if split == "all" else f"{split} tracks the model records")
            + f". A class switches a feature off when its mean is below {res['off_ratio']:g} times "
            "the mean on the other classes.")


def selectivity_markdown(res: dict, split: str) -> str:
    """selectivity.md: the title, what it shows, and both tables."""
    lines = [f"# Mean activation per class, layer {res['layer']} ({split} tracks)", "",
             selectivity_sentence(res, split), ""]
    for t in selectivity_tables(res):
        lines += markdown(t) + [""]
    return "\n".join(lines)
