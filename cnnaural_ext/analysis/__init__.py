"""Measures of what the features do (onset detection: the paper's layer-1 claim; class selectivity) and
of how far to trust what is heard (faithfulness of the audio to the classifier, inversion quality)."""
from . import faithfulness  # the module: faithfulness.faithfulness(...), .split_clips(...)
from .inversion import inversion_quality
from .onsets import bwv846_onsets, f_measure, onset_strength, pick_peaks, score_onset_features
from .selectivity import class_selectivity, select_tracks

__all__ = ["bwv846_onsets", "class_selectivity", "f_measure", "faithfulness", "inversion_quality", "onset_strength",
           "pick_peaks", "score_onset_features", "select_tracks"]
