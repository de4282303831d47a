"""Onset scoring (analysis.onsets): the detector, the F-measure (mir_eval's) against a brute-force
matching, and the layer-1 ranking on real, rendered music."""
import json

import numpy as np
import pytest
import torch

import cnnaural_ext as ca
from cnnaural_ext import analysis, cli

SR = 11025


def plucks(times, seconds=6.0, sr=SR, seed=0):
    """Decaying harmonic tones starting at `times`: onsets with exact ground truth."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = np.zeros_like(t)
    for on in times:
        f0 = rng.uniform(150, 900)
        env = np.where(t >= on, np.exp(-(t - on) * 6.0), 0.0)
        x += env * sum(np.sin(2 * np.pi * f0 * h * (t - on)) / h for h in (1, 2, 3))
    return torch.from_numpy((0.3 * x / np.abs(x).max()).astype(np.float32))


def test_f_measure_matching_rules():
    ref = [1.0, 2.0, 3.0]
    assert analysis.f_measure(ref, ref)["f_measure"] == 1.0
    got = analysis.f_measure([1.04, 2.06, 3.0, 3.01], ref, tolerance=0.05)
    assert got["precision"] == 0.5 and got["recall"] == pytest.approx(2 / 3)  # 2.06 misses, 3.01 is a duplicate
    assert analysis.f_measure([], ref)["f_measure"] == 0.0
    assert analysis.f_measure([0.5], [])["f_measure"] == 0.0


def test_spectral_flux_detector_finds_plucks():
    times = np.round(np.sort(np.random.default_rng(1).uniform(0.2, 5.5, 14)), 3)
    times = times[np.concatenate([[True], np.diff(times) > 0.15])]
    env, rate = analysis.onset_strength(plucks(times), SR)
    found = analysis.pick_peaks(env, rate)
    assert analysis.f_measure(found, times)["f_measure"] >= 0.9


def test_silence_has_no_onsets():
    env, rate = analysis.onset_strength(torch.zeros(SR), SR)
    assert analysis.pick_peaks(env, rate).size == 0


def test_score_onset_features_ranks_every_feature():
    torch.manual_seed(0)
    spec = ca.Spectrogram(scale="log1p")
    model = ca.models.paper_cnn5(width=6, input_shape=(257, 173), dense=(8,)).eval()
    times = np.arange(0.3, 3.8, 0.4)
    res = analysis.score_onset_features(ca.Auraliser(model, spec), plucks(times, 4.0), times)
    f = [r["f_measure"] for r in res["features"]]
    assert sorted(r["feature"] for r in res["features"]) == list(range(6))
    assert f == sorted(f, reverse=True)
    assert res["baseline"]["f_measure"] >= 0.9
    with pytest.raises(ca.CnnauralError, match="no ground-truth onsets"):
        analysis.score_onset_features(ca.Auraliser(model, spec), plucks(times, 4.0), [10.0])


@pytest.mark.audio
def test_cli_onsets_on_bwv846_with_the_shipped_model(tmp_path, capsys):
    """The paper's claim, measured: some layer-1 features of the shipped model work as onset
    detectors on the rendered Prelude, nearly as well as the detector on the original audio."""
    pytest.importorskip("music21")
    assert cli.main(["onsets", "--duration", "12", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "onsets.json").read_text())
    assert res["baseline"]["f_measure"] >= 0.9
    assert res["features"][0]["f_measure"] >= 0.8
    assert len(res["features"]) == 48
    assert "| rank | feature |" in (tmp_path / "onsets.md").read_text()


def _max_matching(detected, reference, tolerance):
    """The size of a maximum matching of references to detections within +-tolerance (augmenting
    paths, plain Python): the definition mir_eval's onset F-measure uses."""
    match = {}

    def augment(r, seen):
        for d, t in enumerate(detected):
            if abs(t - reference[r]) <= tolerance and d not in seen:
                seen.add(d)
                if d not in match or augment(match[d], seen):
                    match[d] = r
                    return True
        return False

    return sum(augment(r, set()) for r in range(len(reference)))


@pytest.mark.parametrize("seed", range(5))
def test_f_measure_agrees_with_a_brute_force_matching(seed):
    """Crowded onsets, where a greedy matching would miss pairs: the numbers agree with a maximum
    matching computed from scratch."""
    rng = np.random.default_rng(seed)
    ref = np.sort(rng.uniform(0, 3, 25))
    det = np.sort(np.concatenate([rng.uniform(0, 3, 20), ref + rng.normal(0, 0.03, 25)]))
    hits = _max_matching(list(det), list(ref), 0.05)
    got = analysis.f_measure(det, ref, tolerance=0.05)
    assert got["precision"] == pytest.approx(hits / det.size) and got["recall"] == pytest.approx(hits / ref.size)
    assert got["detected"] == det.size and got["reference"] == ref.size
