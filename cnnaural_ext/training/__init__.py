"""Train the paper's CNNs on a folder-per-class corpus and compare them with a linear baseline.

* `fit`: `train` (split by track, cached clips, early stopping, evaluation by track, checkpoint),
  `predict`, `evaluate`.
* `baseline`: `linear_baseline`, logistic regression on log-mel statistics (`logmel_stats`).
* `crossval`: `cross_validate`, k-fold cross-validation by track, and `summarise_folds`.
* `metrics`: confusion matrices, per-class scores, balanced accuracy, scores by track, McNemar.
* `summary`: the results as text and markdown.
"""
from .baseline import fit_logistic, linear_baseline, logmel_stats
from .crossval import cross_validate, summarise_folds
from .fit import OPTIMIZERS, SPLITS, evaluate, predict, train
from .metrics import (balanced_accuracy, confusion_matrix, mcnemar_p, per_class_scores, score_tracks,
                      track_predictions)
from .summary import format_confusion, format_crossval, format_summary

__all__ = ["OPTIMIZERS", "SPLITS", "balanced_accuracy", "confusion_matrix", "cross_validate", "evaluate",
           "fit_logistic", "format_confusion", "format_crossval", "format_summary", "linear_baseline",
           "logmel_stats", "mcnemar_p", "per_class_scores", "predict", "score_tracks", "summarise_folds",
           "track_predictions", "train"]
