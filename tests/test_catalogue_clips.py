"""catalogue.clips: the clip table (each clip's file and inversion quality) against the clips on disk."""
import json

import pytest
import torch

from catalogue_helpers import make_tree
from cnnaural_ext import Auraliser
from cnnaural_ext.catalogue import format_status, read_clips, run_catalogue, status, track_id
from cnnaural_ext.errors import CnnauralError
from cnnaural_ext.quality import INCONSISTENT


@pytest.fixture(scope="module")
def aur(checkpoint):
    return Auraliser.from_checkpoint(checkpoint)


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory, aur):
    root = tmp_path_factory.mktemp("clips")
    src = make_tree(root / "src", {"a/intro.wav": 3.0, "b/intro.wav": 2.5, "b/c/tune.flac": 2.0})
    s = run_catalogue(src, root / "out", auraliser=aur, layers="1,5", features="top:2", duration=2.0, workers=0,
                      progress=False)
    assert s["ok"] == 3
    return root / "out"


def test_one_row_per_clip_matching_its_manifest(catalogue):
    rows = read_clips(catalogue).to_pylist()
    assert len(rows) == 3 * 2 * 2  # 3 tracks, layers 1 and 5, top 2 features each
    for rel in ("a/intro.wav", "b/intro.wav", "b/c/tune.flac"):
        folder = catalogue / "audio" / rel.rsplit(".", 1)[0]
        items = json.loads((folder / "manifest.json").read_text())["items"]
        mine = [r for r in rows if r["id"] == track_id(rel)]
        assert [(r["layer"], r["feature"]) for r in mine] == sorted((i["layer"], i["feature"]) for i in items)
        by_key = {(i["layer"], i["feature"]): i for i in items}
        for r in mine:
            item = by_key[(r["layer"], r["feature"])]
            assert r["relative_path"] == rel
            assert (catalogue / r["audio"]).is_file() and r["audio"] == f"audio/{rel.rsplit('.', 1)[0]}/{item['audio']}"
            assert r["image"] is None  # no figures asked
            assert r["spectral_convergence"] == pytest.approx(item["spectral_convergence"], rel=1e-6)
            assert r["clipped"] == pytest.approx(item["clipped"], abs=1e-7)
            assert r["inconsistent"] == (item["spectral_convergence"] > INCONSISTENT)
            assert r["max"] == pytest.approx(item["max"], rel=1e-6)
            assert r["offset"] == 0.0 and r["duration"] == pytest.approx(2.0)


def test_filters_and_columns(catalogue):
    full = read_clips(catalogue)
    five = read_clips(catalogue, layers=5, columns=["spectral_convergence"])
    assert five.column_names == ["id", "layer", "feature", "spectral_convergence"]
    assert five.num_rows == 6 and set(five["layer"].to_pylist()) == {5}
    flagged = read_clips(catalogue, inconsistent=True)
    fine = read_clips(catalogue, inconsistent=False)
    assert flagged.num_rows + fine.num_rows == full.num_rows
    assert all(v > INCONSISTENT for v in flagged["spectral_convergence"].to_pylist())
    with pytest.raises(CnnauralError, match="clip table has no column 'sc'"):
        read_clips(catalogue, columns=["sc"])


def test_status_counts_the_flagged_clips(catalogue):
    st = status(catalogue)
    flags = read_clips(catalogue)["inconsistent"].to_pylist()
    assert st["clips"]["total"] == 12 and st["clips"]["inconsistent"] == sum(flags)
    assert f"clips: 12, {sum(flags)} with an inconsistent inversion" in format_status(st)


def test_a_rerun_keeps_one_row_per_clip(tmp_path, aur):
    src = make_tree(tmp_path / "src", {"a/x.wav": 2.0, "b/y.wav": 2.0})
    kw = dict(auraliser=aur, layers=1, features="top:1", duration=2.0, workers=0, progress=False)
    run_catalogue(src, tmp_path / "out", **kw)
    (src / "c").mkdir()
    (src / "c/z.wav").write_bytes((src / "a/x.wav").read_bytes())
    run_catalogue(src, tmp_path / "out", **kw)
    rows = read_clips(tmp_path / "out").to_pylist()
    assert sorted(r["relative_path"] for r in rows) == ["a/x.wav", "b/y.wav", "c/z.wav"]
    assert len({r["run"] for r in rows}) == 2  # two runs, two parts, no duplicates
    assert torch.tensor([r["spectral_convergence"] for r in rows]).isfinite().all()
