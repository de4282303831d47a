"""catalogue.activations: the table rows against a direct DeconvNet.activations computation."""
import math

import pyarrow as pa
import pyarrow.compute as pc
import pytest
import torch

from catalogue_helpers import make_tree
from cnnaural_ext import Auraliser
from cnnaural_ext.errors import CnnauralError
from cnnaural_ext.catalogue import read_activations, run_catalogue, track_id
from cnnaural_ext.catalogue.activations import layer_rows, min_frames
from cnnaural_ext.io import load


@pytest.fixture(scope="module")
def aur(checkpoint):
    return Auraliser.from_checkpoint(checkpoint)


def test_table_matches_direct_activations(tmp_path, aur):
    src = make_tree(tmp_path / "src", {"a/long.flac": 9.0, "b/intro.wav": 2.0})
    summary = run_catalogue(src, tmp_path / "out", auraliser=aur, layers="1,5", features="top:2", duration=2.0,
                            window=4.0, workers=0, progress=False)
    assert summary["ok"] == 2
    table = read_activations(tmp_path / "out").to_pylist()
    wave, sr = load(src / "a/long.flac", aur.sample_rate)  # the WHOLE track, not the 2-s excerpt
    _, S = aur.spectrogram(wave)
    T, hop = S.shape[-1], aur.spectrogram.hop_length
    for layer in (1, 5):
        # the table's pass runs channels-last; its maps equal the plain pass to rounding
        act = aur.deconvnet.activations(S[None, None].contiguous(memory_format=torch.channels_last), layer)[0]
        plain = aur.deconvnet.activations(S[None, None], layer)[0]
        torch.testing.assert_close(act, plain, rtol=1e-4, atol=1e-6)
        C, h, w = act.shape
        rows = [r for r in table if r["id"] == track_id("a/long.flac") and r["layer"] == layer]
        assert [r["feature"] for r in rows] == list(range(C))  # every feature, not just the auralised ones
        sec_per_col = (T / w) * hop / sr
        n_win = math.ceil(len(wave) / sr / 4.0)
        for k, r in enumerate(rows):
            a = act[k]
            assert r["mean"] == pytest.approx(float(a.mean()), rel=1e-5, abs=1e-7)
            assert r["max"] == pytest.approx(float(a.max()), rel=1e-6)
            assert r["active"] == pytest.approx(float((a > 0).float().mean()), abs=1e-6)
            col = int(a.reshape(-1).argmax()) % w
            assert r["max_time"] == pytest.approx(col * sec_per_col)
            assert r["duration"] == pytest.approx(len(wave) / sr)
            assert len(r["window_max"]) == n_win
            for j, m in enumerate(r["window_max"]):
                cols = [c for c in range(w) if min(int(c * sec_per_col / 4.0), n_win - 1) == j]
                assert m == pytest.approx(float(a[:, cols].max()), rel=1e-6)
            assert max(r["window_max"]) == pytest.approx(r["max"], rel=1e-6)
    # a track no longer than the excerpt: its rows come from the auralisation's own forward pass
    wave, _ = load(src / "b/intro.wav", aur.sample_rate)
    _, S = aur.spectrogram(wave)
    for layer in (1, 5):
        act = aur.deconvnet.activations(S[None, None], layer)[0]
        rows = [r for r in table if r["id"] == track_id("b/intro.wav") and r["layer"] == layer]
        assert [r["feature"] for r in rows] == list(range(act.shape[0]))
        for k, r in enumerate(rows):
            assert r["mean"] == pytest.approx(float(act[k].mean()), rel=1e-5, abs=1e-7)
            assert r["max"] == pytest.approx(float(act[k].max()), rel=1e-6)
            assert r["duration"] == pytest.approx(len(wave) / aur.sample_rate)


def test_layer_rows_times_and_empty_windows():
    act = torch.zeros(2, 3, 4)
    act[0, 1, 3] = 5.0  # column 3 of 4
    act[1, 0, 0] = -1.0
    cols = layer_rows(act, 2, 16, hop_length=100, sample_rate=1000, window=0.5)
    # 16 frames / 4 columns = 4 frames per column = 0.4 s per column; windows of 0.5 s: 1.6 s -> 4 windows
    assert cols["max_time"][0] == pytest.approx(1.2)
    assert cols["max"] == [5.0, 0.0]
    assert cols["active"][0] == pytest.approx(1 / 12)
    wm = cols["window_max"][0]
    assert len(wm) == 4 and wm[2] == 5.0 and wm[0] == 0.0 and math.isnan(wm[3])  # no column starts in 1.5-1.6 s


def test_min_frames_is_the_smallest_input(aur):
    need = min_frames(aur, 5)
    assert need == 32  # five 2x2 pools
    x = torch.zeros(1, 1, aur.spectrogram.n_bins, need)
    assert aur.deconvnet.activations(x, 5).shape[-1] == 1
    assert min_frames(aur, 1) == 2


def test_read_activations_filters_layers_features_columns(tmp_path, aur):
    src = make_tree(tmp_path / "src", {"a/one.wav": 3.0, "b/two.wav": 3.0})
    out = tmp_path / "out"
    assert run_catalogue(src, out, auraliser=aur, layers="1,5", features=[0], duration=2.0, workers=0,
                         progress=False)["ok"] == 2
    full = read_activations(out)
    part = read_activations(out, layers=[5], features=[0, 3], columns=["max"])
    assert part.column_names == ["id", "layer", "feature", "max"]  # the keys always come along
    want = full.filter(pc.and_(pc.equal(full["layer"], 5), pc.is_in(full["feature"], pa.array([0, 3], pa.int32()))))
    assert part.num_rows == 4 and part.to_pylist() == want.select(part.column_names).to_pylist()
    assert read_activations(out, layers=1).num_rows == full.num_rows - 2 * aur.deconvnet.n_features(5)
    with pytest.raises(CnnauralError, match="no column 'maximum'"):
        read_activations(out, columns=["maximum"])
    assert read_activations(tmp_path / "empty", columns=["max"]).column_names == ["id", "layer", "feature", "max"]
