"""analysis.faithfulness: the measures' arithmetic, the harness on a small model (a clip equal to
the input retains 100%, deleting nothing is the original), resuming, the CLI, and one row of the
README's table recomputed on the real corpus."""
import json
import math
import re
from pathlib import Path

import pytest
import torch

from cnnaural_ext import Auraliser
from cnnaural_ext.analysis import faithfulness as fa
from cnnaural_ext.cli import main
from cnnaural_ext.errors import CnnauralError
from helpers import SR, tone

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def aur(checkpoint):
    return Auraliser.from_checkpoint(checkpoint)


def clips(n=2, seconds=2.0):
    g = torch.Generator().manual_seed(1)
    return [fa.Clip(tone(seconds) * (0.5 + k) + 0.02 * torch.randn(int(seconds * SR), generator=g), f"c{k}.wav")
            for k in range(n)]


def test_class_scores_by_hand():
    p0 = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    p_in = torch.tensor([[0.1, 0.75, 0.15], [0.6, 0.25, 0.15]], dtype=torch.float64)
    p_out = torch.tensor([[0.4, 0.4, 0.2], [0.3, 0.6, 0.1]], dtype=torch.float64)
    s = fa.class_scores(p0, p_in, p_out, 1)
    assert s["AI"].tolist() == [100.0, 0.0]
    assert s["AD"].tolist() == pytest.approx([0.0, 100 * 0.25 / 0.5])
    assert s["AG"].tolist() == pytest.approx([100 * 0.25 / 0.5, 0.0])
    assert s["FF"].tolist() == pytest.approx([0.1, -0.1])
    assert s["Fid-In"].tolist() == [1.0, 0.0]


def test_probabilities_are_one_softmax(aur):
    listener = fa.Listener(aur)
    wave = clips(1)[0].wave[None]
    p = listener.probabilities(wave)
    logits = aur.deconvnet.activations(listener.inputs(wave), "output").double()
    torch.testing.assert_close(p, torch.softmax(logits, -1))  # not softmax(softmax(...))
    assert float(p.sum()) == pytest.approx(1.0)


def test_masks_helpers():
    m = torch.tensor([[[0.1, 0.9], [0.5, 0.3], [0.7, 0.2]]])  # (1, F'=3, T=2)
    tq = fa.top_fraction_masks(m, [0.0, 0.5, 1.0])
    assert tq.shape == (1, 3, 3, 2)
    assert tq[0, 0].sum() == 0 and tq[0, 2].sum() == 6
    assert tq[0, 1].tolist() == [[0, 1], [1, 0], [1, 0]]  # the 3 largest of 6: 0.9, 0.7, 0.5
    g = torch.Generator().manual_seed(0)
    big = torch.rand(2, 40, 30)
    sh = fa.shuffle_within_frames(big, g)
    torch.testing.assert_close(sh.sort(dim=1).values, big.sort(dim=1).values)  # same values (energy) per frame
    assert not torch.equal(sh, big)
    n = fa.normalise(torch.tensor([[[-1.0, 2.0], [4.0, 0.0]], [[-1.0, -2.0], [0.0, 0.0]]]))
    assert n[0].tolist() == [[0.0, 0.5], [1.0, 0.0]] and n[1].abs().sum() == 0
    assert fa.auc([1, 1, 1], [0, 0.5, 1]) == pytest.approx(1.0)
    assert fa.auc([0, 0.5, 1], [0, 0.5, 1]) == pytest.approx(0.5)


def test_a_clip_equal_to_the_input_retains_everything(aur):
    listener = fa.Listener(aur)
    wave = clips(1)[0].wave
    X, S = listener.spec(wave)
    again = listener.resynthesise(X, torch.ones(2, *S.shape), wave.shape[0])
    torch.testing.assert_close(again[0], wave, atol=1e-5, rtol=0)
    a = listener.feature_means(again, 2)
    a0 = listener.feature_means(wave[None], 2)[0]
    for k in range(a0.shape[0]):
        s = fa.unit_scores(a[0], a0, k)
        if s["retention"] is not None:
            assert s["retention"] == pytest.approx(1.0, abs=1e-4)
        assert s["selectivity"] == pytest.approx(float(a0[k].clamp_min(0) / a0.clamp_min(0).sum()), abs=1e-4)


def test_harness_rows_curves_and_the_model_untouched(aur, tmp_path):
    model = aur.model
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = fa.faithfulness(aur, clips(2), layers="1,2", top=2, steps=4, out_dir=tmp_path, progress=False)
    assert {(r["target"], r["explainer"]) for r in res["classes"]} == {
        ("output", "deconvnet"), ("output", "gradient"), ("output", "random"),
        ("layer 1", "deconvnet"), ("layer 1", "random"), ("layer 2", "deconvnet"), ("layer 2", "random")}
    for r in res["classes"]:
        assert 0 <= r["AI"] <= 100 and 0 <= r["AD"] <= 100 and 0 <= r["AG"] <= 100 and 0 <= r["Fid-In"] <= 1
        assert r["n"] == (2 if r["target"] == "output" else 4)
    clip_files = list((tmp_path / "clips").glob("*/*.json"))
    assert len(clip_files) == 2
    one = json.loads(clip_files[0].read_text())
    p_c = one["p0"][one["target"]]
    for row in one["rows"]:  # deleting nothing / inserting everything is the original clip
        assert row["deletion"][0] == pytest.approx(p_c, abs=1e-3)
        assert row["insertion"][-1] == pytest.approx(p_c, abs=1e-3)
        assert len(row["deletion"]) == 5
    assert {u["measure"] for u in res["units"]} == {"deconvnet", "random", "original"}
    assert all(u["retention"]["median"] == pytest.approx(1.0) for u in res["units"] if u["measure"] == "original")
    # the user's model: weights, buffers, train mode and gradients as they were
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_resumes_from_the_clips_it_kept(aur, tmp_path, monkeypatch):
    first = fa.faithfulness(aur, clips(2), layers=[1], top=1, steps=2, out_dir=tmp_path, progress=False)

    def boom(*a, **k):
        raise AssertionError("a kept clip was measured again")

    monkeypatch.setattr(fa, "measure_clip", boom)
    assert fa.faithfulness(aur, clips(2), layers=[1], top=1, steps=2, out_dir=tmp_path, progress=False) == first
    with pytest.raises(AssertionError):  # other settings: other numbers, measured anew
        fa.faithfulness(aur, clips(2), layers=[1], top=1, steps=3, out_dir=tmp_path, progress=False)


def test_bad_arguments(aur):
    with pytest.raises(CnnauralError, match="steps"):
        fa.faithfulness(aur, clips(1), steps=0, progress=False)
    with pytest.raises(CnnauralError, match="explainers"):
        fa.faithfulness(aur, clips(1), explainers=["saliency"], progress=False)
    with pytest.raises(CnnauralError, match="nothing to measure"):
        fa.faithfulness(aur, clips(1), classes=False, units=False, progress=False)
    with pytest.raises(CnnauralError, match="out of range|layer"):
        fa.faithfulness(aur, clips(1), layers=[9], progress=False)


def test_cli_writes_tables_and_refuses_bad_options(checkpoint, corpus, tmp_path, capsys):
    out = tmp_path / "ff"
    argv = ["faithfulness", str(corpus), "--model", str(checkpoint), "--split", "all", "--layers", "1",
            "--top", "1", "--steps", "2", "--max-clips", "2", "--out", str(out)]
    assert main(argv) == 0
    assert {"faithfulness.json", "faithfulness.md", "faithfulness.png"} <= {p.name for p in out.iterdir()}
    md = (out / "faithfulness.md").read_text()
    assert "| output | deconvnet |" in md and "| 1 | original |" in md
    assert main(argv + ["--units"]) == 0 and "AI" not in (out / "faithfulness.md").read_text().split("\n")[2]
    assert main(argv + ["--measures", "inversion"]) == 0
    md = (out / "faithfulness.md").read_text()
    assert "| 1 | mask | original |" in md and "| 1 | magnitude | griffinlim |" in md
    for bad, message in ((["--top", "0"], "--top must be >= 1"), (["--measures", "speed"], "--measures takes")):
        capsys.readouterr()
        assert main(argv[:-2] + bad + ["--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0]


def test_inversion_quality_rows(aur):
    from cnnaural_ext.analysis.inversion import inversion_quality

    res = inversion_quality(aur, clips(1, seconds=1.0), layers=[1, 2], features="top:2", progress=False)
    assert {(r["layer"], r["mode"], r["phase"]) for r in res["rows"]} == {
        (layer, m, p) for layer in (1, 2) for m in ("mask", "magnitude") for p in ("original", "griffinlim")}
    for r in res["rows"]:
        assert r["n"] == 2 and 0 <= r["q1"] <= r["median"] <= r["q3"] and 0 <= r["flagged"] <= 1
    with pytest.raises(CnnauralError, match="modes"):
        inversion_quality(aur, clips(1), modes=["loud"], progress=False)


def _readme_row(target: str, explainer: str) -> dict:
    text = (ROOT / "README.md").read_text()
    m = re.search(rf"^\| {re.escape(target)} \| {explainer} \| ([^\n]*)\|$", text, re.M)
    assert m, f"the README has no faithfulness row for {target} / {explainer}"
    cells = [float(c) for c in m.group(1).split("|")]
    return dict(zip(("AI", "AD", "AG", "FF", "Fid-In", "deletion_auc", "insertion_auc"), cells))


@pytest.mark.audio
def test_readme_row_recomputed_on_the_real_corpus(tmp_path):
    """The README's 'output | deconvnet' row of the shipped model, recomputed from scratch (the
    same clips and settings as the README's command, the deconvnet masks only)."""
    if not Path("/usr/share/games/wesnoth/1.16/data/core/music").is_dir():
        pytest.skip("the Debian music packages are not installed (scripts/install_data.sh)")
    from cnnaural_ext import corpus

    data = ROOT / "data" / "corpus"
    if not data.is_dir():
        corpus.prepare_corpus(data)
    aur = Auraliser.pretrained()
    clips_ = fa.split_clips(aur, data, "test", clips_per_track=README_CLIPS_PER_TRACK)
    res = fa.faithfulness(aur, clips_, layers=[], steps=10, units=False, explainers=["deconvnet"], progress=False)
    row = next(r for r in res["classes"] if r["target"] == "output" and r["explainer"] == "deconvnet")
    want = _readme_row("output", "deconvnet")
    for k, digits in (("AI", 1), ("AD", 1), ("AG", 1), ("FF", 3), ("Fid-In", 2), ("deletion_auc", 3),
                      ("insertion_auc", 3)):
        assert math.isclose(row[k], want[k], abs_tol=1.01 * 10 ** -digits), (k, row[k], want[k])


README_CLIPS_PER_TRACK = 2
