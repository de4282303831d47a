"""Sanity checks (analysis.sanity): the measures against scipy, the randomisations by their
parameters, the harness on randomisations that provably change nothing, the user's model left
as it was, the shuffled-label model, bad arguments."""
import copy

import numpy as np
import pytest
import torch

import cnnaural_ext as ca
from cnnaural_ext.analysis import sanity
from cnnaural_ext.errors import CnnauralError
from helpers import SR, small_model_and_spec, tone


# ------------------------------------------------------------------------------------------------
# measures
# ------------------------------------------------------------------------------------------------
def _smooth_map(seed=0, shape=(40, 32)):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 1, *shape, generator=g, dtype=torch.float64)
    k = torch.ones(1, 1, 5, 5, dtype=torch.float64) / 25
    return torch.nn.functional.conv2d(x, k, padding=2)[0, 0]


def test_identical_maps_score_one_and_negated_or_shuffled_maps_score_low():
    m = _smooth_map()
    same = sanity.compare_maps(m, m.clone())
    assert same["spearman"] == 1.0 and same["spearman_signed"] == 1.0
    assert same["ssim"] == pytest.approx(1.0, abs=1e-12)
    scaled = sanity.compare_maps(m, 3 * m + 1)  # both measures ignore scale and offset
    assert scaled["spearman"] == pytest.approx(1.0) and scaled["ssim"] == pytest.approx(1.0, abs=1e-9)
    neg = sanity.compare_maps(m, -m)
    assert neg["spearman_signed"] == pytest.approx(-1.0)
    assert neg["spearman"] == pytest.approx(1.0)  # the absolute value, as Adebayo et al. report it
    assert neg["ssim"] < -0.5
    g = torch.Generator().manual_seed(1)
    shuffled = m.reshape(-1)[torch.randperm(m.numel(), generator=g)].reshape(m.shape)
    sh = sanity.compare_maps(m, shuffled)
    assert sh["spearman"] < 0.1 and sh["ssim"] < 0.1
    # constant maps: equal -> 1, otherwise 0
    z = torch.zeros(20, 20)
    assert sanity.compare_maps(z, z) == {"spearman": 1.0, "spearman_signed": 1.0, "ssim": pytest.approx(1.0)}
    assert sanity.compare_maps(z, _smooth_map(shape=(20, 20)))["spearman"] == 0.0


def test_spearman_matches_scipy_with_ties():
    from scipy.stats import rankdata, spearmanr

    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 6, (30, 20), generator=g).double()  # many ties
    b = a + torch.randint(0, 4, (30, 20), generator=g).double()
    b[:5] = 0
    assert sanity.spearman(a, b) == pytest.approx(spearmanr(a.flatten(), b.flatten()).statistic, abs=1e-12)
    np.testing.assert_allclose(sanity.rank(a).numpy(), rankdata(a.flatten().numpy()))


def test_ssim_matches_a_scipy_computation():
    """Wang et al.'s SSIM with an 11x11 Gaussian window (sigma 1.5), valid positions, data range 1,
    as scikit-image's gaussian_weights=True computes it: here with scipy.ndimage, cropped."""
    from scipy.ndimage import gaussian_filter

    a, b = _smooth_map(0), _smooth_map(1) + 0.3 * _smooth_map(0)

    def ref(x, y):
        x = (x - x.min()) / (x.max() - x.min())
        y = (y - y.min()) / (y.max() - y.min())

        def f(z):
            return gaussian_filter(z, sigma=1.5, truncate=3.5)[5:-5, 5:-5]  # 11 taps, valid part

        mx, my = f(x), f(y)
        vx, vy, cxy = f(x * x) - mx * mx, f(y * y) - my * my, f(x * y) - mx * my
        c1, c2 = 0.01 ** 2, 0.03 ** 2
        return (((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))).mean()

    assert sanity.ssim(a, b) == pytest.approx(ref(a.numpy(), b.numpy()), abs=1e-10)
    batch = sanity.ssim(torch.stack([a, a]), torch.stack([b, a]))
    assert batch.shape == (2,) and batch[1] == pytest.approx(1.0)
    assert 0 < sanity.ssim(a[:6, :5], b[:6, :5]) <= 1  # a small map takes a smaller window
    with pytest.raises(CnnauralError, match="3 x 3"):
        sanity.ssim(a[:2], b[:2])
    with pytest.raises(CnnauralError, match="shapes"):
        sanity.compare_maps(a, b[:-1])


def test_logspec_correlation():
    _, spec = small_model_and_spec()
    x = tone(1.0)
    assert sanity.logspec_correlation(x, x.clone(), spec) == pytest.approx(1.0)
    assert sanity.logspec_correlation(x, 0.1 * x, spec) == pytest.approx(1.0)  # the level does not count
    noise = torch.randn(x.shape[0], generator=torch.Generator().manual_seed(3))
    assert sanity.logspec_correlation(x, noise, spec) < 0.5
    assert sanity.logspec_correlation(torch.zeros_like(x), torch.zeros_like(x), spec) == 1.0


# ------------------------------------------------------------------------------------------------
# randomisation
# ------------------------------------------------------------------------------------------------
def _convs(model):
    return [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]


def _changed(a, b) -> list:
    """1-based conv layers whose weight or bias differ between two models."""
    return [i + 1 for i, (x, y) in enumerate(zip(_convs(a), _convs(b)))
            if not (torch.equal(x.weight, y.weight) and torch.equal(x.bias, y.bias))]


def _head_equal(a, b) -> bool:
    la = [m for m in a.modules() if isinstance(m, torch.nn.Linear)]
    lb = [m for m in b.modules() if isinstance(m, torch.nn.Linear)]
    return all(torch.equal(x.weight, y.weight) and torch.equal(x.bias, y.bias) for x, y in zip(la, lb))


@pytest.mark.parametrize("layer", [1, 3, 5])
def test_cascade_randomises_the_top_down_to_the_layer_and_independent_only_the_layer(layer):
    model, _ = small_model_and_spec()
    before = copy.deepcopy(model.state_dict())
    rng = torch.get_rng_state()
    cas = sanity.randomise(model, layer, cascade=True, random_seed=7)
    ind = sanity.randomise(model, layer, cascade=False, random_seed=7)
    assert torch.equal(torch.get_rng_state(), rng)  # the global RNG is left alone
    assert _changed(model, cas) == list(range(layer, 6))
    assert _changed(model, ind) == [layer]
    assert sanity.randomised_layers(5, layer, True) == list(range(5, layer - 1, -1))
    assert _head_equal(model, cas) and _head_equal(model, ind)
    # the layer gets the same weights alone and in the cascade, and the same on every call
    assert torch.equal(_convs(cas)[layer - 1].weight, _convs(ind)[layer - 1].weight)
    again = sanity.randomise(model, layer, cascade=True, random_seed=7)
    assert all(torch.equal(x.weight, y.weight) for x, y in zip(_convs(cas), _convs(again)))
    other = sanity.randomise(model, layer, cascade=True, random_seed=8)
    assert _changed(cas, other) == list(range(layer, 6))
    # the model's own default init: the re-initialised weights stay within kaiming-uniform's bound
    conv = _convs(ind)[layer - 1]
    assert conv.weight.abs().max() <= 1 / np.sqrt(conv.weight[0].numel()) + 1e-6
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # the original is untouched


def test_randomise_rejects_bad_layers():
    model, _ = small_model_and_spec()
    for bad in (0, 6, "2", 1.5, True):
        with pytest.raises(CnnauralError, match="conv layer number 1..5"):
            sanity.randomise(model, bad)
    with pytest.raises(CnnauralError, match="nn.Module"):
        sanity.randomise("model", 1)


# ------------------------------------------------------------------------------------------------
# the harness
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_run():
    torch.manual_seed(0)
    model, spec = small_model_and_spec(scale="log1p")
    model.train()  # a mode the checks must restore
    aur = ca.Auraliser(model, spec)
    state = copy.deepcopy(model.state_dict())
    modes = [m.training for m in model.modules()]
    clips = [{"name": "noisy", "waveform": tone(1.0) + 0.2 * torch.randn(SR)}]
    same = copy.deepcopy(model)  # "trained on shuffled labels" but with the very same weights
    res = sanity.sanity_checks(aur, clips, None, n_features=2, shuffled=same, random_seed=3, progress=False)
    return aur, res, state, modes


def _row(res, variant, layer, seed="map"):
    return next(r for r in res["summary"] if r["variant"] == variant and r["layer"] == layer and r["seed"] == seed)


def test_a_randomisation_that_changes_nothing_scores_one(small_run):
    _, res, _, _ = small_run
    assert [v["name"] for v in res["variants"]][:2] == ["cascade 5", "cascade 5..4"]
    for r in res["records"]:
        if r["test"] == "reference":
            continue
        randomised = next(v["randomised"] for v in res["variants"] if v["name"] == r["variant"])
        if r["test"] == "data" or min(randomised) > r["layer"]:  # same weights, or only layers above L
            assert r["spearman"] == 1.0 and r["ssim"] == pytest.approx(1.0, abs=1e-9), r
            assert all(v == pytest.approx(1.0, abs=1e-9) for v in r["logspec"].values()), r
    # and a randomisation of the layer itself changes what is heard
    for seed in ("map", "max"):
        for L in (1, 3, 5):
            row = _row(res, f"layer {L} alone", L, seed)
            assert row["spearman"] < 0.999 or row["ssim"] < 0.999
    assert _row(res, "cascade 5..1", 1)["n"] == 2  # 1 clip x 2 features
    assert _row(res, "another feature", 2)["n"] == 1  # one pair of features per clip
    assert set(_row(res, "cascade 5..2", 3)["logspec"]) == {"mask", "magnitude"}


def test_the_users_model_is_never_modified(small_run):
    aur, _, state, modes = small_run
    after = aur.model.state_dict()
    assert after.keys() == state.keys() and all(torch.equal(after[k], state[k]) for k in state)
    assert [m.training for m in aur.model.modules()] == modes


def test_tables_figure_and_json(small_run, tmp_path):
    import json

    _, res, _, _ = small_run
    paths = sanity.write_sanity(res, tmp_path / "out")
    data = json.loads(paths["json"].read_text())
    assert "example" not in data and data["settings"]["n_features"] == 2
    md = paths["md"].read_text()
    assert "| cascade 5..1 |" in md and "| shuffled labels |" in md and "| another feature |" in md
    assert "seed = \"max\"" in md and "absolute value" in md
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"
    assert not list((tmp_path / "out").glob(".*.part*"))


def test_parts_are_reused_on_a_rerun(tmp_path, monkeypatch):
    model, spec = small_model_and_spec(scale="log1p")
    aur = ca.Auraliser(model, spec)
    kw = dict(n_features=1, seeds=("map",), modes=("mask",), independent=False, out_dir=tmp_path, progress=False,
              example=False)
    clip = tone(1.0)
    first = sanity.sanity_checks(aur, [clip], [1, 2], **kw)
    assert len(list((tmp_path / "parts").glob("*.json"))) == 1

    def boom(*a, **k):
        raise AssertionError("recomputed a clip that was done")

    monkeypatch.setattr(sanity, "_clip_records", boom)
    again = sanity.sanity_checks(aur, [clip], [1, 2], **kw)
    assert again["summary"] == first["summary"]
    with pytest.raises(AssertionError):  # another random seed is another computation
        sanity.sanity_checks(aur, [clip], [1, 2], random_seed=1, **kw)


@pytest.mark.parametrize("kwargs, match", [
    (dict(layers="output"), "conv layer numbers"),
    (dict(layers=[0]), "conv layer numbers"),
    (dict(layers="9"), "conv layer numbers"),
    (dict(n_features=0), "n_features"),
    (dict(n_features=5), "more than layer 1"),
    (dict(seeds=("middle",)), "seed must be one of"),
    (dict(modes=("loud",)), "mode must be one of"),
    (dict(cascade=False, independent=False), "nothing to compare"),
    (dict(shuffled="model"), "nn.Module or an Auraliser"),
    (dict(clips=[]), "no clips"),
    (dict(clips=[torch.zeros(2, 100)]), "mono waveform"),
])
def test_bad_arguments_give_a_clear_error(kwargs, match):
    model, spec = small_model_and_spec()
    aur = ca.Auraliser(model, spec)
    args = dict(clips=[tone(1.0)], layers=[1])
    args.update(kwargs)
    clips, layers = args.pop("clips"), args.pop("layers")
    with pytest.raises(CnnauralError, match=match):
        sanity.sanity_checks(aur, clips, layers, progress=False, **args)


def test_a_shuffled_model_of_another_architecture_is_refused():
    model, spec = small_model_and_spec()
    other = ca.models.paper_cnn5(n_classes=3, width=[4, 4, 4, 4, 4], input_shape=(129, 126), dense=(16,))
    with pytest.raises(CnnauralError, match="architecture"):
        sanity.sanity_checks(ca.Auraliser(model, spec), [tone(1.0)], [1], shuffled=other, progress=False)
    with pytest.raises(CnnauralError, match="needs an Auraliser"):
        sanity.sanity_checks(model, [tone(1.0)], [1], progress=False)


# ------------------------------------------------------------------------------------------------
# data randomisation: the project's training on shuffled labels
# ------------------------------------------------------------------------------------------------
def test_shuffled_split_permutes_train_and_val_labels_only():
    split = {k: [(f"{k}{i}", c) for i, c in enumerate("aaabbbccc")] for k in ("train", "val", "test")}
    sh = sanity.shuffled_split(split, 0)
    assert sh["test"] == split["test"]
    for k in ("train", "val"):
        assert [p for p, _ in sh[k]] == [p for p, _ in split[k]]
        assert sorted(c for _, c in sh[k]) == sorted(c for _, c in split[k])
    assert [c for _, c in sh["train"]] != [c for _, c in split["train"]]
    assert sanity.shuffled_split(split, 0) == sh


@pytest.fixture
def tiny_checkpoint(synthetic_corpus, tiny, tmp_path):
    """An untrained tiny checkpoint that records a split of the synthetic corpus and its recipe."""
    from cnnaural_ext.corpus import scan_tracks, split_by_track
    from cnnaural_ext.io.checkpoint import save_checkpoint
    from cnnaural_ext.training.fit import split_paths

    spec = tiny.spectrogram()
    kw = dict(n_classes=3, width=8, input_shape=[spec.n_bins, spec.n_frames(tiny.sr)], batchnorm=True, dense=[],
              dropout=0.0)
    torch.manual_seed(0)
    model = ca.models.paper_cnn5(**kw).eval()
    split = split_by_track(scan_tracks(synthetic_corpus), val=0.25, test=0.25, random_seed=0)
    path = tmp_path / "tiny.pt"
    save_checkpoint(path, model, spec, arch="paper_cnn5", arch_kwargs=kw, classes=["clicks", "noise", "tones"],
                    split=split_paths(split, synthetic_corpus), clips=dict(clip_seconds=1.0, clips_per_track=4),
                    recipe="cnnaural train x --batch-size 4 --lr 0.003 --optimizer adam --random-seed 0")
    return path


def test_train_shuffled_labels_uses_the_recipe_and_is_cached(tiny_checkpoint, synthetic_corpus, tmp_path, monkeypatch):
    from cnnaural_ext import training

    aur = ca.Auraliser.from_checkpoint(tiny_checkpoint)
    calls = []
    real = training.train

    def spy(*a, **k):
        calls.append(k)
        return real(*a, **k)

    monkeypatch.setattr(training, "train", spy)
    model, metrics = sanity.train_shuffled_labels(aur, synthetic_corpus, tmp_path / "out", epochs=1,
                                                  cache_dir=tmp_path / "cache", threads=1, progress=False)
    k = calls[0]
    assert (k["epochs"], k["patience"], k["batch_size"], k["lr"], k["optimizer"]) == (1, 1, 4, 0.003, "adam")
    assert k["baseline"] is False and k["width"] == 8 and k["batchnorm"] is True and k["dropout"] == 0.0
    assert k["clip_seconds"] == 1.0 and k["clips_per_track"] == 4
    names = {p.relative_to(synthetic_corpus).as_posix(): c for p, c in k["split"]["train"]}
    assert sorted(names) == sorted(aur.meta["split"]["train"])
    assert sorted(names.values()) == sorted(n.split("/")[0] for n in aur.meta["split"]["train"])
    assert metrics["epochs_run"] == 1 and (tmp_path / "out" / sanity.SHUFFLED_NAME).is_file()
    assert model.state_dict().keys() == aur.model.state_dict().keys()
    again, _ = sanity.train_shuffled_labels(aur, synthetic_corpus, tmp_path / "out", epochs=1,
                                            cache_dir=tmp_path / "cache", threads=1, progress=False)
    assert len(calls) == 1  # reused
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


def test_train_shuffled_labels_needs_a_recorded_split(tmp_path, checkpoint, synthetic_corpus):
    aur = ca.Auraliser.from_checkpoint(checkpoint)
    with pytest.raises(CnnauralError, match="records none"):
        sanity.train_shuffled_labels(aur, synthetic_corpus, tmp_path, epochs=1, progress=False)
    with pytest.raises(CnnauralError, match="epochs"):
        sanity.train_shuffled_labels(aur, synthetic_corpus, tmp_path, epochs=0, progress=False)


def test_split_clips_takes_the_classes_in_turn(tiny_checkpoint, synthetic_corpus):
    aur = ca.Auraliser.from_checkpoint(tiny_checkpoint)
    clips = sanity.split_clips(aur, synthetic_corpus, "test", 4)
    test = set(aur.meta["split"]["test"])
    assert len(clips) == min(4, 2 * len(test)) and all(c["waveform"].shape == (tiny_sr(aur),) for c in clips)
    assert all(c["name"].split("@")[0] in test for c in clips)
    classes = [c["class"] for c in clips[:3]]
    assert len(set(classes)) == len(classes)
    with pytest.raises(CnnauralError, match="integer >= 1"):
        sanity.split_clips(aur, synthetic_corpus, "test", 0)


def tiny_sr(aur):
    return int(aur.meta["clips"]["clip_seconds"] * aur.sample_rate)


def test_weight_distances():
    model, _ = small_model_and_spec()
    assert sanity.weight_distances(model, model) == {j: 0.0 for j in range(1, 6)}
    d = sanity.weight_distances(model, sanity.randomise(model, 4, cascade=False))
    assert [j for j, v in d.items() if v > 0] == [4]
