"""Scores of a classifier by clip and by track, and the exact McNemar test between two of them.

A track is classified by averaging the softmax of its clips (`track_predictions`), then argmax.
Confusion matrices have the true class on the rows, the predicted class on the columns.
"""
from __future__ import annotations

import numpy as np


def confusion_matrix(y_true, y_pred, n_classes: int):
    """(n_classes, n_classes) nested lists of ints: rows = true class, columns = predicted."""
    m = np.zeros((n_classes, n_classes), dtype=np.int64)
    for t, p in zip(y_true, y_pred):
        m[int(t), int(p)] += 1
    return m.tolist()


def per_class_scores(confusion, classes):
    """{class: {precision, recall, f1, support}} from a confusion matrix (rows = true)."""
    m = np.asarray(confusion, dtype=np.float64)
    out = {}
    for i, c in enumerate(classes):
        tp = m[i, i]
        pred = m[:, i].sum()
        true = m[i, :].sum()
        p = tp / pred if pred else 0.0
        r = tp / true if true else 0.0
        f = 2 * p * r / (p + r) if p + r else 0.0
        out[c] = dict(precision=float(p), recall=float(r), f1=float(f), support=int(true))
    return out


def balanced_accuracy(confusion) -> float:
    """The mean recall over the classes present (rows with a non-zero sum); 0 for an empty matrix."""
    m = np.asarray(confusion, dtype=np.float64)
    rows = m.sum(axis=1)
    rec = [m[i, i] / rows[i] for i in range(len(m)) if rows[i] > 0]
    return float(np.mean(rec)) if rec else 0.0


def track_predictions(probs, track_index, n_tracks):
    """Average the clip probabilities (N, C) of each track: -> (n_tracks, C)."""
    probs = np.asarray(probs, dtype=np.float64)
    track_index = np.asarray(track_index)
    out = np.zeros((n_tracks, probs.shape[1]))
    counts = np.bincount(track_index, minlength=n_tracks)
    np.add.at(out, track_index, probs)
    return out / np.maximum(counts, 1)[:, None]


def score_tracks(probs, track_index, tracks, labels, classes) -> dict:
    """Classify tracks from their clips' probabilities and score the result.

    Args:
        probs: (N, C) clip probabilities.
        track_index: (N,) the track of each clip, an index into `tracks`.
        tracks: the (path, class_name) of the tracks.
        labels: the true class index of each track.
        classes: the class names.

    Returns:
        dict(track_accuracy, track_balanced_accuracy, confusion (rows = true), per_class,
        track_predictions ([file name, true class, predicted class, probability] per track)).
    """
    tp = track_predictions(probs, track_index, len(tracks))
    pred = tp.argmax(1)
    conf = confusion_matrix(labels, pred, len(classes))
    return dict(track_accuracy=float(np.mean(pred == np.asarray(labels))),
                track_balanced_accuracy=balanced_accuracy(conf), confusion=conf,
                per_class=per_class_scores(conf, classes),
                track_predictions=[[str(path.name), c, classes[int(k)], float(tp[i].max())]
                                   for i, ((path, c), k) in enumerate(zip(tracks, pred))])


def mcnemar_p(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value for b and c discordant pairs: scipy's exact binomial test
    of min(b, c) successes in b + c trials at p = 1/2."""
    from scipy.stats import binomtest

    n = b + c
    return 1.0 if n == 0 else float(binomtest(min(b, c), n, 0.5).pvalue)
