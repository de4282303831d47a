"""`training.metrics`: confusion matrices, per-class scores, scores by track, the exact McNemar test."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cnnaural_ext.training import (balanced_accuracy, confusion_matrix, mcnemar_p, per_class_scores, score_tracks,
                                   track_predictions)


def test_confusion_and_per_class_scores():
    conf = confusion_matrix([0, 0, 1, 1, 2], [0, 1, 1, 1, 0], 3)
    assert conf == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    s = per_class_scores(conf, ["a", "b", "c"])
    assert s["a"] == dict(precision=0.5, recall=0.5, f1=0.5, support=2)
    assert s["b"]["precision"] == pytest.approx(2 / 3) and s["b"]["recall"] == 1.0
    assert s["c"] == dict(precision=0.0, recall=0.0, f1=0.0, support=1)
    assert balanced_accuracy(conf) == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    assert balanced_accuracy([[0, 0], [0, 3]]) == 1.0  # classes without tracks do not count
    assert balanced_accuracy([[0, 0], [0, 0]]) == 0.0


def test_track_predictions_average_the_clips():
    probs = [[0.9, 0.1], [0.5, 0.5], [0.2, 0.8], [0.4, 0.6]]
    tp = track_predictions(probs, [0, 0, 1, 1], 3)
    np.testing.assert_allclose(tp, [[0.7, 0.3], [0.3, 0.7], [0.0, 0.0]])  # a track without clips: zeros


def test_score_tracks():
    tracks = [(Path("/c/a/x.wav"), "a"), (Path("/c/b/y.wav"), "b")]
    s = score_tracks([[0.9, 0.1], [0.6, 0.4], [0.7, 0.3]], [0, 1, 1], tracks, [0, 1], ["a", "b"])
    assert s["track_accuracy"] == 0.5 and s["confusion"] == [[1, 0], [1, 0]]
    assert s["track_balanced_accuracy"] == 0.5 and set(s["per_class"]) == {"a", "b"}
    assert s["track_predictions"] == [["x.wav", "a", "a", pytest.approx(0.9)], ["y.wav", "b", "a", pytest.approx(0.65)]]


def test_mcnemar_exact_p():
    assert mcnemar_p(0, 0) == 1.0
    assert mcnemar_p(0, 5) == pytest.approx(2 / 32)
    assert mcnemar_p(5, 0) == pytest.approx(2 / 32)
    assert mcnemar_p(3, 3) == 1.0
    # b=1, c=7: 2 * P(X <= 1), X ~ Bin(8, 1/2) = 2 * 9/256
    assert mcnemar_p(1, 7) == pytest.approx(18 / 256)


@pytest.mark.parametrize("b, c", [(0, 1), (2, 9), (4, 5), (10, 3), (17, 30)])
def test_mcnemar_p_is_the_doubled_binomial_tail(b, c):
    """scipy's binomtest against the definition: twice the smaller tail of Binomial(b + c, 1/2)."""
    import math

    n, k = b + c, min(b, c)
    want = min(1.0, 2 * sum(math.comb(n, j) for j in range(k + 1)) / 2 ** n)
    assert mcnemar_p(b, c) == pytest.approx(want, rel=1e-12)
