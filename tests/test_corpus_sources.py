"""`corpus.sources`: the corpus built from the Debian packages (the real-audio test skips without them)."""
from __future__ import annotations

import pytest

from cnnaural_ext.corpus import class_names, prepare_corpus, scan_tracks
from cnnaural_ext.corpus import sources
from cnnaural_ext.errors import CnnauralError
from cnnaural_ext.io.audio import load


def test_prepare_corpus_missing_package(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "WESNOTH_MUSIC", tmp_path / "no-such-dir")
    with pytest.raises(CnnauralError, match="install_data.sh"):
        prepare_corpus(tmp_path / "out", classes=("orchestral",), progress=False)
    with pytest.raises(CnnauralError, match="unknown corpus class"):
        prepare_corpus(tmp_path / "out", classes=("jazz",), progress=False)


@pytest.mark.audio
def test_prepare_corpus_from_debian_packages(tmp_path, capsys):
    if not (sources.WESNOTH_MUSIC.is_dir() and sources.WARZONE_MUSIC.is_dir()):
        pytest.skip("wesnoth-1.16-music / warzone2100-music not installed (scripts/install_data.sh)")
    counts = prepare_corpus(tmp_path, classes=("orchestral", "electronic"), progress=False)
    assert counts["orchestral"] >= 30 and counts["electronic"] >= 20
    assert all(f.is_symlink() for f in (tmp_path / "orchestral").iterdir())
    capsys.readouterr()
    assert prepare_corpus(tmp_path, classes=("orchestral", "electronic"), progress=False) == counts
    assert "(0 new)" in capsys.readouterr().out  # idempotent
    tracks = scan_tracks(tmp_path)
    assert class_names(tracks) == ["electronic", "orchestral"]
    x, sr = load(tracks[0][0], 11025, duration=1.0)
    assert sr == 11025 and x.shape == (11025,) and float(x.abs().max()) > 0
