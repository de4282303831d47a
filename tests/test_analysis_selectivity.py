"""Class selectivity (analysis.selectivity): the means against a direct computation; the command."""
import json

import numpy as np
import pytest
import torch

import cnnaural_ext as ca
from cnnaural_ext import analysis, cli
from cnnaural_ext.io.checkpoint import save_checkpoint

SR = 11025


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
    kw = dict(n_classes=2, width=[4, 4, 4, 4, 6], input_shape=[257, 44], dense=[8])
    model = ca.models.paper_cnn5(**kw).eval()
    extra = {"split": split} if split else {}
    save_checkpoint(path, model, spec, arch="paper_cnn5", arch_kwargs=kw, classes=["noise", "tones"], **extra)
    return model, spec


def test_class_selectivity_means_match_a_direct_computation(two_class_corpus, tmp_path):
    from cnnaural_ext.corpus import ClipCache, scan_tracks

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
