"""Onset scoring: the detector, the F-measure, and the layer-1 ranking on real, rendered music."""
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
    model = ca.models.paper_cnn5(channels=6, input_shape=(257, 173), dense=(8,)).eval()
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


@pytest.fixture
def two_class_corpus(tmp_path):
    import soundfile as sf

    rng = np.random.default_rng(0)
    t = np.arange(int(1.5 * SR)) / SR
    for k in range(2):
        (tmp_path / "corpus" / "tones").mkdir(parents=True, exist_ok=True)
        (tmp_path / "corpus" / "noise").mkdir(parents=True, exist_ok=True)
        sf.write(tmp_path / "corpus" / "tones" / f"t{k}.wav", 0.4 * np.sin(2 * np.pi * (300 + 200 * k) * t), SR)
        sf.write(tmp_path / "corpus" / "noise" / f"n{k}.wav", 0.2 * rng.standard_normal(t.size), SR)
    return tmp_path / "corpus"


def small_checkpoint(path, split=None):
    torch.manual_seed(0)
    spec = ca.Spectrogram(scale="log1p")
    kw = dict(n_classes=2, channels=[4, 4, 4, 4, 6], input_shape=[257, 44], dense=[8])
    model = ca.models.paper_cnn5(**kw).eval()
    extra = {"split": split} if split else {}
    ca.models.save_checkpoint(path, model, spec, arch="paper_cnn5", arch_kwargs=kw, classes=["noise", "tones"],
                              **extra)
    return model, spec


def test_class_selectivity_means_match_a_direct_computation(two_class_corpus, tmp_path):
    from cnnaural_ext.data import ClipCache, scan_tracks

    model, spec = small_checkpoint(tmp_path / "m.pt")
    tracks = scan_tracks(two_class_corpus)
    res = analysis.class_selectivity(model, spec, tracks, cache_dir=tmp_path / "cache", off_ratio=0.5)
    assert res["classes"] == ["noise", "tones"] and res["layer"] == 5
    cache = ClipCache(spec, tmp_path / "cache", progress=False)
    dn = ca.DeconvNet(model)
    for c, name in enumerate(res["classes"]):
        acts = [dn.activations(torch.from_numpy(np.array(clip))[None, None], 5)[0].mean(dim=(1, 2))
                for p, cl in tracks if cl == name for clip in cache.get(p)]
        torch.testing.assert_close(torch.tensor(res["mean"][c], dtype=torch.float64), torch.stack(acts).double().mean(0),
                                   rtol=1e-5, atol=1e-7)
        mean = torch.tensor(res["mean"])
        off = [f for f in range(6) if mean[c, f] < 0.5 * mean[1 - c, f] and mean[1 - c, f] > 0]
        assert res["switched_off"][name] == off


def test_cli_selectivity(two_class_corpus, tmp_path):
    small_checkpoint(tmp_path / "m.pt", split={"test": ["noise/n1.wav", "tones/t1.wav"]})
    out = tmp_path / "sel"
    assert cli.main(["selectivity", str(two_class_corpus), "--model", str(tmp_path / "m.pt"), "--cache-dir",
                     str(tmp_path / "cache"), "--out", str(out)]) == 0
    res = json.loads((out / "selectivity.json").read_text())
    assert res["clips"] == {"noise": 1, "tones": 1}
    assert (out / "selectivity.png").stat().st_size > 1000 and "| feature |" in (out / "selectivity.md").read_text()
    small_checkpoint(tmp_path / "nosplit.pt")
    assert cli.main(["selectivity", str(two_class_corpus), "--model", str(tmp_path / "nosplit.pt"),
                     "--out", str(out)]) == 2
    assert cli.main(["selectivity", str(two_class_corpus), "--model", str(tmp_path / "nosplit.pt"), "--split",
                     "all", "--cache-dir", str(tmp_path / "cache"), "--out", str(out)]) == 0
    assert json.loads((out / "selectivity.json").read_text())["clips"] == {"noise": 2, "tones": 2}
