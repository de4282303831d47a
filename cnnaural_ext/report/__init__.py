"""The listening gallery and the paper's figures and analysis tables around it.

`write_report` is what `cnnaural report` runs: analyses first (nothing is written until every
input is checked and every analysis computed), then the tracks through
`Auraliser.auralise_file`, then the sections and index.html.
"""
from __future__ import annotations

from pathlib import Path

from .gallery import write_gallery
from .sections import (ANALYSIS, filters_section, first_conv, onsets_section, selectivity_section, write_filters,
                       write_onsets, write_selectivity)

__all__ = ["ANALYSIS", "filters_section", "first_conv", "onsets_section", "selectivity_section", "write_filters",
           "write_gallery", "write_onsets", "write_report", "write_selectivity"]


def write_report(auraliser, tracks, out, *, filters=(), onsets_seconds: float | None = None,
                 data=None, split: str = "test", cache_dir=None, subtitle: str = "", on_track=None,
                 **request) -> Path:
    """Auralise `tracks` into out/<track>/ and write out/index.html with the asked-for sections.

    Args:
        auraliser: the model to listen to.
        tracks: audio file paths.
        filters: [(label, Auraliser)] whose first-layer filters make the Figure 2 section.
        onsets_seconds: if given, score every layer-1 feature as an onset detector on the first
            that many seconds of BWV 846, with Figure 3 of the best one (its clip as long as the
            request's duration, 4 s by default).
        data, split, cache_dir: a folder-per-class corpus: add the class selectivity of the
            deepest layer over the tracks of `split` (see `analysis.select_tracks`).
        subtitle: the line under the title.
        on_track: called as on_track(folder, rows) after each track.
        request: keyword arguments of `Auraliser.auralise_file` (layers, features, offset, ...).

    Returns:
        the path of index.html.
    """
    from ..analysis import bwv846_onsets, class_selectivity, select_tracks
    from ..auralise import auralise_files

    auraliser.check_file_request(**request)
    for _, a in filters:
        first_conv(a)
    corpus_tracks = select_tracks(auraliser, data, split) if data is not None else None
    onsets = bwv846_onsets(auraliser, 1, onsets_seconds, 0.05) if onsets_seconds is not None else None
    selectivity = None
    if corpus_tracks is not None:
        selectivity = class_selectivity(auraliser.model, auraliser.spectrogram, corpus_tracks,
                                        layer=auraliser.deconvnet.n_layers, cache_dir=cache_dir, off_ratio=0.25)
    entries = auralise_files(auraliser, tracks, out, on_track=on_track, **request)
    sections = []
    if filters:
        sections.append(filters_section(out, filters))
    if onsets is not None:
        duration = request.get("duration", 4.0)
        sections.append(onsets_section(out, auraliser, onsets, seconds=duration if duration and duration > 0 else 4.0,
                                       subtype=request.get("subtype", "PCM_16"),
                                       **{k: request[k] for k in ("mode", "phase", "seed") if k in request}))
    if selectivity is not None:
        sections.append(selectivity_section(out, selectivity, split))
    return write_gallery(out, entries, sections=sections, subtitle=subtitle)
