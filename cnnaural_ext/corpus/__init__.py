"""Real audio for training and demos: rendered scores, a folder-per-class corpus, cached clips.

* `render`: `render_score` / `render_bwv846`, a music21 score -> MIDI -> audio (tinysoundfont with
  the General MIDI soundfont shipped in the pretty_midi wheel), with the MIDI note-on times as
  exact ground-truth onsets.
* `sources`: `prepare_corpus` builds ``OUT/<class>/<track>`` from the Debian packages listed in
  DATA.md (orchestral: wesnoth, electronic: warzone2100, speech: klettres, optional piano: music21).
* `splits`: `scan_tracks`, `split_by_track`, `fold_splits`: a corpus on disk -> tracks ->
  train/val/test by *track*.
* `clips`: `ClipCache`, `ClipDataset`: fixed clips of every track, turned into network inputs
  once and kept as one ``.npy`` per track on disk (memory-mapped), so epochs and reruns do no STFT.
"""
from .clips import ClipCache, ClipDataset, clip_offsets, default_cache_dir
from .render import render_bwv846, render_midi, render_score, score_to_midi, soundfont_path
from .sources import DEFAULT_CLASSES, DEFAULT_PIANO_SCORES, prepare_corpus
from .splits import AUDIO_EXTENSIONS, class_names, fold_splits, scan_tracks, split_by_track, track_group

__all__ = ["AUDIO_EXTENSIONS", "DEFAULT_CLASSES", "DEFAULT_PIANO_SCORES", "ClipCache", "ClipDataset",
           "class_names", "clip_offsets", "default_cache_dir", "fold_splits", "prepare_corpus",
           "render_bwv846", "render_midi", "render_score", "scan_tracks", "score_to_midi",
           "soundfont_path", "split_by_track", "track_group"]
