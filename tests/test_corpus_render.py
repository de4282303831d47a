"""`corpus.render`: scores rendered with music21 + pretty_midi + tinysoundfont (skipped without them)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnaural_ext.corpus import render_bwv846, render_score


def _need_music():
    for m in ("music21", "pretty_midi", "tinysoundfont"):
        pytest.importorskip(m)


@pytest.mark.audio
def test_render_short_score_onsets_and_energy():
    _need_music()
    from music21 import note, stream, tempo

    s = stream.Stream()
    s.append(tempo.MetronomeMark(number=120))  # a quarter note lasts 0.5 s
    for el in (note.Note("C4", quarterLength=1), note.Rest(quarterLength=1), note.Note("A4", quarterLength=1),
               note.Rest(quarterLength=1), note.Note("E5", quarterLength=2)):
        s.append(el)
    sr = 16000
    x, onsets = render_score(s, sample_rate=sr)
    assert x.dtype == torch.float32 and x.dim() == 1
    np.testing.assert_allclose(onsets, [0.0, 1.0, 2.0], atol=1e-3)
    assert 3.0 <= x.shape[0] / sr <= 4.5
    a = x.numpy().astype(np.float64)

    def rms(t0, t1):
        return np.sqrt(np.mean(a[int(t0 * sr):int(t1 * sr)] ** 2))

    for t in onsets:
        assert rms(t, t + 0.1) > 0.05
        if t > 0:  # a rest before each later note: the onset is a clear rise in energy
            assert rms(t, t + 0.1) > 2 * rms(t - 0.1, t)
        # the note really starts at the onset: nothing before, energy right after
        first = np.argmax(np.abs(a[int((t - 0.02) * sr) if t else 0:]) > 0.02) / sr + max(t - 0.02, 0)
        assert abs(first - t) < 0.02
    # pitch: the strongest partial of the A4 note is at 440 Hz or a harmonic of it
    seg = a[int(1.05 * sr):int(1.45 * sr)]
    spec = np.abs(np.fft.rfft(seg * np.hanning(seg.size)))
    f = np.fft.rfftfreq(seg.size, 1 / sr)[np.argmax(spec)]
    assert min(abs(f / 440.0 - k) for k in (1, 2, 3)) < 0.03


@pytest.mark.audio
def test_render_bwv846_cached(tmp_path):
    _need_music()
    x, onsets = render_bwv846(22050, cache_dir=tmp_path)
    assert len(onsets) == 529 and np.all(np.diff(onsets) > 0)
    assert 110 < x.shape[0] / 22050 < 130
    assert (tmp_path / "bwv846_22050.wav").is_file() and (tmp_path / "bwv846_22050.onsets.json").is_file()
    x2, on2 = render_bwv846(22050, cache_dir=tmp_path)
    np.testing.assert_array_equal(on2, onsets)
    assert torch.equal(x, x2)
