"""Training and cross-validation results as text: confusion matrices, summaries, markdown."""
from __future__ import annotations


def format_confusion(confusion, classes) -> str:
    """A confusion matrix (rows = true class) as a fixed-width text table with class headers."""
    w = max(8, *(len(c) for c in classes)) + 1
    lines = ["true \\ pred".ljust(w) + "".join(c[:w - 1].rjust(w) for c in classes)]
    for c, row in zip(classes, confusion):
        lines.append(c.ljust(w) + "".join(str(v).rjust(w) for v in row))
    return "\n".join(lines)


def format_summary(metrics) -> str:
    """The metrics of one `train` run as text: epochs, accuracies, per-class scores, confusions."""
    classes = metrics["classes"]
    ca = metrics["clip_accuracy"]
    lines = [f"best epoch {metrics['best_epoch']} of {metrics['epochs_run']} (stopped: {metrics['stopped']}, "
             f"{metrics['train_seconds'] / 60:.1f} min)",
             f"clip accuracy  train {ca['train']:.3f}  val {ca['val']:.3f}  test {ca['test']:.3f}",
             f"test accuracy by track: CNN {metrics['test_track_accuracy']:.3f} "
             f"(balanced {metrics['test_track_balanced_accuracy']:.3f}, {metrics['n_tracks']['test']} tracks)"]
    if metrics.get("baseline"):
        b = metrics["baseline"]
        lines.append(f"                        linear log-mel baseline {b['test_track_accuracy']:.3f} "
                     f"(balanced {b['test_track_balanced_accuracy']:.3f})")
    lines.append("per class (test, by track): " + "; ".join(
        f"{c} P {s['precision']:.2f} R {s['recall']:.2f} F1 {s['f1']:.2f}" for c, s in metrics["per_class"].items()))
    lines.append("confusion matrix (test tracks, CNN):")
    lines.append(format_confusion(metrics["confusion"], classes))
    if metrics.get("baseline"):
        lines.append("confusion matrix (test tracks, linear baseline):")
        lines.append(format_confusion(metrics["baseline"]["confusion"], classes))
    return "\n".join(lines)


def format_crossval(summary) -> str:
    """The cross-validation summary (`crossval.summarise_folds` plus folds and recipe) as markdown."""
    c, b, classes = summary["cnn"], summary["baseline"], summary["classes"]
    n = summary["n_tracks"]
    lines = [f"# Cross-validation by track: {summary.get('folds', len(summary['per_fold']))} folds, {n} tracks",
             "", f"Recipe: `{summary['recipe']}`" if summary.get("recipe") else "", "",
             "| classifier | accuracy by track (all tracks) | balanced | mean over folds | by clip (all clips) |",
             "|---|---|---|---|---|",
             f"| CNN | {c['track_accuracy']:.3f} ({c['correct']}/{n}) | {c['balanced_accuracy']:.3f} | "
             f"{c['fold_mean']:.3f} ± {c['fold_std']:.3f} | {c['clip_accuracy']:.3f} |",
             f"| linear log-mel baseline | {b['track_accuracy']:.3f} ({b['correct']}/{n}) | "
             f"{b['balanced_accuracy']:.3f} | {b['fold_mean']:.3f} ± {b['fold_std']:.3f} | {b['clip_accuracy']:.3f} |", "",
             f"Tracks only the CNN gets right: {len(summary['only_cnn_right'])}; only the baseline: "
             f"{len(summary['only_baseline_right'])} (exact McNemar p = {summary['mcnemar_p']:.3g}).", "",
             "| fold | test tracks | CNN by track | baseline by track | CNN by clip | baseline by clip | best epoch |",
             "|---|---|---|---|---|---|---|"]
    for f in summary["per_fold"]:
        lines.append(f"| {f['fold']} | {f['n_test_tracks']} | {f['cnn']:.3f} | {f['baseline']:.3f} | "
                     f"{f['cnn_clip']:.3f} | {f['baseline_clip']:.3f} | {f['best_epoch']} of {f['epochs_run']} |")
    for title, key in (("only the CNN right", "only_cnn_right"), ("only the baseline right", "only_baseline_right")):
        if summary[key]:
            lines += ["", f"{title} (track, true class, the other's answer):"]
            lines += [f"- `{t}` ({true}; {other})" for t, true, other in summary[key]]
    for name, key in (("CNN", "cnn"), ("linear baseline", "baseline")):
        lines += ["", f"Confusion, {name} (all tracks, rows = true):", "```",
                  format_confusion(summary[key]["confusion"], classes), "```"]
    return "\n".join(lines)
