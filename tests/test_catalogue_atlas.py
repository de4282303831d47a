"""catalogue.atlas: the top windows against a direct computation, class means, auralising the
windows resumably, and the errors (no catalogue, a layer it lacks, another model, no SRC)."""
import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from catalogue_helpers import GOOD, make_tree, tree_digest
from cnnaural_ext import Auraliser, cli
from cnnaural_ext.catalogue import build_atlas, read_activations, run_catalogue
from cnnaural_ext.catalogue.atlas import (ATLAS, choose_layers, class_means, class_of, layer_columns, top_windows,
                                          window_folder)
from cnnaural_ext.errors import CnnauralError
from cnnaural_ext.io.checkpoint import load_checkpoint, save_checkpoint

#: GOOD (class folders a, b, c) + a long track (several windows) + one at the top level (no class)
TRACKS = {**GOOD, "a/long.wav": 9.0, "top.wav": 2.0}
WINDOW = 2.0


@pytest.fixture(scope="module")
def aur(checkpoint):
    return Auraliser.from_checkpoint(checkpoint)


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory, aur):
    """(SRC, OUT) of a small catalogue of layers 1 and 5, 2-s activation windows."""
    root = tmp_path_factory.mktemp("atlas_catalogue")
    src = make_tree(root / "src", TRACKS)
    out = root / "out"
    run_catalogue(src, out, auraliser=aur, layers="1,5", features="top:1", duration=2.0, window=WINDOW, workers=0,
                  progress=False)
    return src, out


@pytest.fixture
def fresh(catalogue, tmp_path):
    """A copy of the catalogue without an atlas: (SRC, OUT)."""
    src, out = catalogue
    shutil.copytree(out, tmp_path / "out")
    return src, tmp_path / "out"


def direct_top(rows, layer, top):
    """The top windows computed the plain way, row by row: feature -> [(id, window, value)]."""
    per_feature = {}
    for r in rows:
        if r["layer"] != layer:
            continue
        wm = [-math.inf if v is None or math.isnan(v) else v for v in r["window_max"]]
        best = max(wm)
        per_feature.setdefault(r["feature"], []).append((-best, r["id"], wm.index(best)))
    return {f: [(tid, w, -neg) for neg, tid, w in sorted(c) if -neg > 0][:top] for f, c in per_feature.items()}


@pytest.mark.parametrize("layer", [1, 5])
def test_top_windows_match_a_direct_computation(catalogue, layer):
    table = read_activations(catalogue[1])
    tops = top_windows(layer_columns(table, layer), 3)
    expect = direct_top(table.to_pylist(), layer, 3)
    assert sorted(tops) == sorted(expect)
    for f, ws in tops.items():
        got = [(w["id"], w["window"], w["value"]) for w in ws]
        assert [g[:2] for g in got] == [e[:2] for e in expect[f]], f
        assert [g[2] for g in got] == pytest.approx([e[2] for e in expect[f]])
        assert [w["rank"] for w in ws] == list(range(1, len(ws) + 1))
        assert len({w["id"] for w in ws}) == len(ws)  # one window per track
    long_windows = {w["window"] for ws in tops.values() for w in ws if w["relative_path"] == "a/long.wav"}
    assert long_windows <= set(range(5))  # 9 s in 2-s windows
    with pytest.raises(CnnauralError, match="--top must be >= 1"):
        top_windows(layer_columns(table, layer), 0)


def test_class_means(catalogue):
    table = read_activations(catalogue[1])
    res = class_means(layer_columns(table, 5))
    rows = [r for r in table.to_pylist() if r["layer"] == 5]
    assert res["classes"] == ["a", "b", "c"]  # top.wav is in no class
    assert res["tracks"] == [sum(class_of(rel) == c for rel in TRACKS) for c in "abc"]
    for f, means in res["means"].items():
        for c, got in zip("abc", means):
            vals = [r["mean"] for r in rows if r["feature"] == f and class_of(r["relative_path"]) == c]
            assert got == pytest.approx(sum(vals) / len(vals), rel=1e-5)
    one_class = {"relative_path": table.filter(table["layer"].to_numpy() == 5)["relative_path"].to_numpy()}
    one_class["relative_path"] = one_class["relative_path"].astype(object)
    one_class["relative_path"][:] = "a/x.wav"
    assert class_means({**layer_columns(table, 5), **one_class}) is None  # one class folder: no table


def test_atlas_auralises_the_top_windows_once(fresh, aur):
    src, out = fresh
    data = build_atlas(out, layers="1", top=1, auraliser=aur, src=src, progress=False)
    windows = [(f["feature"], w) for f in data["layers"][0]["features"] for w in f["top"]]
    assert data["auralised"] == len(windows) > 0 and data["reused"] == 0 and data["missing"] == []
    assert data["classes"] == ["a", "b", "c"] and data["tracks"] == len(TRACKS)
    for feature, w in windows:
        folder = out / ATLAS / w["folder"]
        assert w["folder"] == window_folder(1, feature, w)
        m = json.loads((folder / "manifest.json").read_text())
        assert m["track"] == w["relative_path"] and m["offset"] == pytest.approx(w["start"])
        assert [(it["layer"], it["feature"]) for it in m["items"]] == [(1, feature)]
        assert w["spectral_convergence"] == m["items"][0]["spectral_convergence"] is not None
        assert w["inconsistent"] == m["items"][0]["inconsistent"]
        for name in (w["original"], w["audio"], w["image"], w["figure"]):
            assert (folder / name).is_file()
        assert w["end"] - w["start"] == pytest.approx(min(WINDOW, TRACKS[w["relative_path"]]), abs=1e-3)
        assert w["start"] <= w["window"] * WINDOW
    before = tree_digest(out / ATLAS)
    again = build_atlas(out, layers="1", top=1, auraliser=aur, progress=False)  # no SRC needed: nothing to do
    assert (again["auralised"], again["reused"]) == (0, len(windows))
    assert tree_digest(out / ATLAS) == before
    feature, w = windows[0]
    (out / ATLAS / w["folder"] / w["audio"]).unlink()  # a lost clip: that window only is redone
    third = build_atlas(out, layers="1", top=1, auraliser=aur, src=src, progress=False)
    assert (third["auralised"], third["reused"]) == (1, len(windows) - 1)
    assert tree_digest(out / ATLAS).keys() == before.keys()


def test_cli_atlas_writes_the_pages(fresh, checkpoint, capsys):
    src, out = fresh
    assert cli.main(["atlas", str(out), "--layers", "1", "--top", "1", "--src", str(src), "--no-progress"]) == 0
    assert "windows auralised" in capsys.readouterr().out
    assert (out / ATLAS / "index.html").is_file() and (out / ATLAS / "layer1.html").is_file()
    # the model recorded in config.json is found on its own; --model with the same weights is accepted
    assert cli.main(["atlas", str(out), "--layers", "1", "--top", "1", "--model", str(checkpoint),
                     "--no-progress"]) == 0
    assert "0 windows auralised" in capsys.readouterr().out


def test_missing_sources_are_reported_not_fatal(fresh, aur, tmp_path):
    src, out = fresh
    data = build_atlas(out, layers="1", top=1, auraliser=aur, src=tmp_path / "elsewhere", progress=False)
    assert data["auralised"] == 0 and data["missing"]
    assert all(w["audio"] is None for f in data["layers"][0]["features"] for w in f["top"])


def test_errors(fresh, aur, tmp_path):
    src, out = fresh
    with pytest.raises(CnnauralError, match="not a catalogue"):
        build_atlas(tmp_path / "nothing", auraliser=aur)
    with pytest.raises(CnnauralError, match=r"layer 3 is not in the catalogue .* \(its layers: 1, 5\)"):
        build_atlas(out, layers="3", auraliser=aur)
    assert choose_layers(None, [1, 5], out) == [5] and choose_layers("all", [1, 5], out) == [1, 5]
    recorded = json.loads((out / "config.json").read_text())
    assert recorded["src"] == str(Path(src).resolve())  # the atlas finds the tracks on its own
    (out / "config.json").write_text(json.dumps({k: v for k, v in recorded.items() if k != "src"}))
    with pytest.raises(CnnauralError, match="pass --src SRC"):  # a catalogue that does not say where SRC is
        build_atlas(out, layers="1", top=1, auraliser=aur, progress=False)
    (out / "config.json").write_text(json.dumps(recorded))
    model, spec, meta = load_checkpoint(aur.source)
    with torch.no_grad():
        next(model.parameters()).add_(0.01)
    other = tmp_path / "other.pt"
    save_checkpoint(other, model, spec, arch=meta["arch"], arch_kwargs=meta["arch_kwargs"], classes=meta["classes"])
    with pytest.raises(CnnauralError, match="is not the one .* was written with"):
        build_atlas(out, layers="1", model=other)
    assert cli.main(["atlas", str(out), "--model", str(other)]) == 2
    assert not (out / ATLAS).exists()
