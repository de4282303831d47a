"""DeconvNet against an independent oracle: torch.autograd on the same model with only the
rectifier's backward replaced by relu(grad_output) (Zeiler & Fergus's deconvnet rule)."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cnnaural_ext as ca
from cnnaural_ext.chain import RECTIFIERS


class _DeconvRelu(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, act):
        return act(x)

    @staticmethod
    def backward(ctx, g):
        return torch.relu(g), None


class _PassBack(torch.autograd.Function):
    """Forward through the module, identity going back (local response normalisation)."""

    @staticmethod
    def forward(ctx, x, mod):
        return mod(x)

    @staticmethod
    def backward(ctx, g):
        return g, None


class _WrapPassBack(nn.Module):
    def __init__(self, mod):
        super().__init__()
        self.mod = mod

    def forward(self, x):
        return _PassBack.apply(x, self.mod)


class _Wrap(nn.Module):
    def __init__(self, act):
        super().__init__()
        self.act = act

    def forward(self, x):
        return _DeconvRelu.apply(x, self.act)


def _oracle_model(model):
    m = copy.deepcopy(model).eval()
    for name, child in list(m.named_modules()):
        for cname, c in list(child.named_children()):
            if isinstance(c, RECTIFIERS):
                setattr(child, cname, _Wrap(c))
            elif isinstance(c, nn.LocalResponseNorm):
                setattr(child, cname, _WrapPassBack(c))
    return m


def _truncate_sequential(model, n_steps):
    """The first n_steps leaf modules of a nested Sequential."""
    leaves = []

    def walk(m):
        for c in m.children():
            if isinstance(c, nn.Sequential):
                walk(c)
            else:
                leaves.append(c)
    walk(model)
    return nn.Sequential(*leaves[:n_steps])


def oracle(model, x, layer, features, seed="map"):
    dn = ca.DeconvNet(model)
    end = dn._end_step(layer)
    trunc = _truncate_sequential(_oracle_model(model), end + 1).double()
    out = []
    with torch.no_grad():
        act = trunc(x.double())
    for k in features:
        xi = x.double().clone().requires_grad_(True)
        y = trunc(xi)
        g = torch.zeros_like(y)
        if layer == "output":
            g[0, k] = 1
        elif seed == "map":
            g[0, k] = act[0, k]
        else:
            flat = act[0, k].reshape(-1)
            p = flat.argmax()
            g[0, k].view(-1)[p] = flat[p]
        y.backward(g)
        out.append(xi.grad[0])
    return torch.stack(out)


def _random_bn(bn):
    with torch.no_grad():
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.2, 0.2)
    return bn


def model_zoo():
    torch.manual_seed(1)
    zoo = {
        "paper_cnn5_small": ca.models.paper_cnn5(n_classes=3, width=[4, 5, 6, 5, 4], input_shape=(64, 48),
                                                  dense=(16,)),
        "paper_cnn4_12x12": ca.models.paper_cnn4_12x12(n_classes=4, width=4, input_shape=(64, 48), dense=(8,)),
        "batchnorm": ca.models.paper_cnn5(n_classes=2, width=3, input_shape=(64, 48), batchnorm=True, dense=()),
        "mixed": nn.Sequential(
            nn.Conv2d(1, 4, 5, stride=2, padding=2), nn.LeakyReLU(0.1), nn.MaxPool2d(3, stride=2),  # overlapping
            nn.Sequential(nn.Conv2d(4, 6, 3, padding=2, dilation=2), _random_bn(nn.BatchNorm2d(6)), nn.ELU(),
                          nn.MaxPool2d(2, ceil_mode=True), nn.Dropout(0.3)),
            nn.Conv2d(6, 5, (3, 2), stride=(2, 1)), nn.ReLU(), nn.LocalResponseNorm(2),
            nn.MaxPool2d((2, 3), stride=(1, 2), padding=(1, 1)),
            nn.Conv2d(5, 3, 1), nn.ReLU(),  # no pool after the last conv
            nn.Flatten(), nn.Linear(36, 7), nn.ReLU(), nn.Linear(7, 3)),
    }
    for m in zoo.values():
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                _random_bn(mod)
        m.eval()
    return zoo


ZOO = model_zoo()


@pytest.mark.parametrize("name", list(ZOO))
@pytest.mark.parametrize("seed", ["map", "max"])
def test_deconvolution_equals_modified_backprop(name, seed):
    model = ZOO[name]
    x = torch.rand(1, 1, 64, 48)
    dn = ca.DeconvNet(model)
    for layer in range(1, dn.n_layers + 1):
        C = dn.n_features(layer)
        feats = sorted({0, C - 1, C // 2})
        model_d = copy.deepcopy(model).double()
        got = ca.DeconvNet(model_d).deconvolve(x.double(), layer, feats, seed=seed)
        want = oracle(model, x, layer, feats, seed)
        assert got.shape == want.shape == (len(feats), 1, 64, 48)
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("name", ["paper_cnn5_small", "mixed"])
def test_class_targets_through_linear_head(name):
    model = copy.deepcopy(ZOO[name]).double()
    x = torch.rand(1, 1, 64, 48, dtype=torch.float64)
    dn = ca.DeconvNet(model)
    n_cls = dn.n_features("output")
    got = dn.deconvolve(x, "output", "all")
    want = oracle(model, x, "output", list(range(n_cls)))
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10)


class TracedNet(nn.Module):
    """Not a Sequential: read through torch.fx."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 4, 3, padding=1)
        self.p1 = nn.MaxPool2d(2)
        self.c2 = nn.Conv2d(4, 5, 3, padding="same")
        self.bn = nn.BatchNorm2d(5)
        self.p2 = nn.MaxPool2d(2)
        self.fc = nn.Linear(5 * 16 * 12, 2)

    def forward(self, x):
        x = self.p1(F.relu(self.c1(x)))
        x = self.p2(torch.relu(self.bn(self.c2(x))))
        return self.fc(torch.flatten(x, 1))


def test_fx_traced_model_matches_equivalent_sequential():
    net = TracedNet().eval()
    _random_bn(net.bn)
    seq = nn.Sequential(net.c1, nn.ReLU(), net.p1, net.c2, net.bn, nn.ReLU(), net.p2, nn.Flatten(), net.fc).eval()
    x = torch.rand(1, 1, 64, 48)
    for layer in (1, 2):
        a = ca.DeconvNet(net).deconvolve(x, layer, "all")
        b = oracle(seq, x, layer, list(range(seq[0 if layer == 1 else 3].out_channels))).float()
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_switches_recorded_once_and_shared():
    model = ZOO["paper_cnn5_small"]
    dn = ca.DeconvNet(model)
    x = torch.rand(1, 1, 64, 48)
    rec = dn.record(x, layer=3)
    assert all(idx.shape[0] == 1 for idx in rec.indices.values())
    a = dn.deconvolve(rec, 3, [0, 1])
    b = dn.deconvolve(x, 3, [0, 1])
    torch.testing.assert_close(a, b)


def test_chunked_seeds_match_one_batch():
    model = ZOO["paper_cnn5_small"]
    x = torch.rand(1, 1, 64, 48)
    full = ca.DeconvNet(model).deconvolve(x, 2, "all")
    tiny = ca.DeconvNet(model, max_batch_bytes=1).deconvolve(x, 2, "all")
    torch.testing.assert_close(full, tiny)


@pytest.mark.parametrize("k", [1, 7, 24, 25, 64, 65, 100, 333])
@pytest.mark.parametrize("limit", [1, 3, 8, 25, 30, 64, 1000])
def test_balanced_chunks_stay_under_the_limit_and_are_no_more_than_needed(k, limit):
    from cnnaural_ext.deconvnet import balanced_chunk

    size = balanced_chunk(k, limit)
    assert 1 <= size <= max(limit, 1)
    chunks = -(-k // limit)
    assert -(-k // size) == chunks  # as few chunks as the limit allows
    if chunks > 1:  # near equal, rounded up to whole vectors of 8 where the limit allows
        even = -(-k // chunks)
        whole = -(-even // 8) * 8
        assert size == (whole if whole <= limit else even)


def test_balanced_chunks_of_64_seeds_under_25_are_whole_vectors():
    from cnnaural_ext.deconvnet import balanced_chunk

    assert balanced_chunk(64, 25) == 24 and balanced_chunk(64, 64) == 64 and balanced_chunk(10, 3) == 3


@pytest.mark.skipif(not ca.ops.native_available(), reason="native extension not built")
def test_chunks_count_only_what_the_native_fused_op_materialises(monkeypatch):
    """Native: a fused block never holds its unpooled maps, so only conv inputs (the op's outputs)
    size the chunks; reference: the unpooled maps (conv outputs at full resolution) do."""
    model = ZOO["paper_cnn5_small"]
    x = torch.rand(1, 1, 64, 48)
    dn = ca.DeconvNet(model, max_batch_bytes=1 << 20)
    rec = dn.record(x, 3)
    end = dn._end_step(3)
    seeds = torch.zeros(4, 1, 2, 2)
    convs = [i for i, st in enumerate(dn.steps[:end + 1]) if st.kind == "conv"]
    largest_conv_input = max(int(torch.tensor(rec.in_shapes[i][1:]).prod()) for i in convs)
    largest = max(int(torch.tensor(s[1:]).prod()) for s in rec.in_shapes[:end + 1])
    assert largest > largest_conv_input
    native = dn._chunk_size(rec, end, seeds)
    assert native == (1 << 20) // (largest_conv_input * 4 * 2)
    monkeypatch.setenv("CNNAURAL_BACKEND", "reference")
    assert dn._chunk_size(rec, end, seeds) == (1 << 20) // (largest * 4 * 2) < native


def test_model_untouched_and_train_mode_kept():
    model = copy.deepcopy(ZOO["batchnorm"]).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ca.DeconvNet(model).deconvolve(torch.rand(1, 1, 64, 48), 2, [0])
    assert model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_features_specs():
    model = ZOO["paper_cnn5_small"]
    dn = ca.DeconvNet(model)
    x = torch.rand(1, 1, 64, 48)
    rec = dn.record(x, 1)
    act = dn.activation(rec, 1)[0]
    _, feats, _ = dn.seeds(rec, 1, "top:2")
    means = act.mean(dim=(1, 2))
    assert feats == torch.argsort(means, descending=True)[:2].tolist()
    assert dn.seeds(rec, 1, "all")[1] == [0, 1, 2, 3]
    assert dn.seeds(rec, 1, "1,3")[1] == [1, 3]
    assert dn.seeds(rec, 1, 2)[1] == [2]


@pytest.mark.parametrize("bad, msg", [
    (dict(layer=0), "layer 0 is out of range"),
    (dict(layer=6), "layer 6 is out of range"),
    (dict(layer="x"), "no module named 'x'"),
    (dict(layer=1.5), "layer must be an integer"),
    (dict(layer="features.block9"), "no module named 'features.block9'"),
    (dict(layer=1, features=[4]), "feature 4 is out of range"),
    (dict(layer=1, features="top:9"), "K must be in 1..4"),
    (dict(layer=1, features="a,b"), "features must be a list"),
    (dict(layer=1, seed="peak"), "seed must be"),
])
def test_bad_requests_give_clear_errors(bad, msg):
    dn = ca.DeconvNet(ZOO["paper_cnn5_small"])
    kw = dict(features=[0]) | bad
    with pytest.raises(ca.CnnauralError, match=msg):
        dn.deconvolve(torch.rand(1, 1, 64, 48), **kw)


def test_layer_outputs_equal_the_recorded_activations():
    model = ca.models.paper_cnn5(n_classes=3, width=[4, 5, 6, 5, 4], input_shape=(64, 48), dense=(8,)).eval()
    dn = ca.DeconvNet(model)
    x = torch.randn(1, 1, 64, 48)
    rec = dn.record(x, 5)
    got = dn.layer_outputs(x, [5, 2])
    assert list(got) == [5, 2]
    for layer in (2, 5):
        torch.testing.assert_close(got[layer], dn.activation(rec, layer))


@pytest.mark.parametrize("name", ["paper_cnn5_small", "batchnorm", "mixed", "paper_cnn4_12x12"])
def test_time_tiled_recording_equals_one_pass(name, monkeypatch):
    """A long input's conv -> [bn] -> rectifier -> max-pool blocks run in time tiles: the switches,
    outputs and deconvolutions are those of one pass."""
    import cnnaural_ext.deconvnet as dmod

    model = ZOO[name]
    x = torch.rand(1, 1, 64, 48)
    dn = ca.DeconvNet(model)
    whole = dn.record(x, "output")
    monkeypatch.setattr(dmod, "TILE_BYTES", 1)  # one pooled column per tile
    tiled = dn.record(x, "output")
    assert whole.in_shapes == tiled.in_shapes and whole.indices.keys() == tiled.indices.keys()
    for i in whole.indices:
        assert torch.equal(whole.indices[i], tiled.indices[i]), i
    assert whole.outputs.keys() == tiled.outputs.keys()
    for i in whole.outputs:
        torch.testing.assert_close(whole.outputs[i], tiled.outputs[i], rtol=1e-5, atol=1e-6)
    for layer in range(1, dn.n_layers + 1):
        torch.testing.assert_close(dn.deconvolve(tiled, layer, "top:2"), dn.deconvolve(whole, layer, "top:2"),
                                   rtol=1e-5, atol=1e-6)


def test_recording_keeps_what_is_asked():
    dn = ca.DeconvNet(ZOO["paper_cnn5_small"])
    x = torch.rand(1, 1, 64, 48)
    rec = dn.record(x, [2, 4], keep="asked")
    assert sorted(rec.outputs) == sorted(dn._end_step(v) for v in (2, 4))
    torch.testing.assert_close(dn.activation(rec, 2), dn.activation(dn.record(x, 4), 2))
    with pytest.raises(ca.CnnauralError, match="does not hold layer 3"):
        dn.activation(rec, 3)


def test_memory_budget_defaults_from_the_device_and_can_be_set():
    from cnnaural_ext.deconvnet import memory_budget

    assert 64 * 2**20 <= memory_budget("cpu") <= 2**30
    dn = ca.DeconvNet(ZOO["paper_cnn5_small"])
    assert dn.max_batch_bytes is None and dn.budget("cpu") == memory_budget("cpu")
    assert ca.DeconvNet(ZOO["paper_cnn5_small"], max_batch_bytes=1 << 20).budget("cpu") == 1 << 20
    for bad in (0, -5, "lots", True):
        with pytest.raises(ca.CnnauralError, match="max_batch_bytes must be"):
            ca.DeconvNet(ZOO["paper_cnn5_small"], max_batch_bytes=bad)


@pytest.mark.parametrize("name", ["paper_cnn5_small", "batchnorm", "mixed", "paper_cnn4_12x12"])
@pytest.mark.parametrize("tiled", [False, True])
def test_batched_recording_deconvolves_each_input_as_alone(name, tiled, monkeypatch):
    """B inputs recorded in one pass, each with its own switches: deconvolve_batch gives every input
    its own top features and the maps deconvolve gives it alone, time-tiled or not."""
    import cnnaural_ext.deconvnet as dmod

    if tiled:
        monkeypatch.setattr(dmod, "TILE_BYTES", 1)
    dn = ca.DeconvNet(ZOO[name], max_batch_bytes=4096)  # several chunks per input
    torch.manual_seed(3)
    x = torch.rand(3, 1, 64, 48)
    x[1] *= 2.0  # different activations, different top features
    rec = dn.record(x, [2, dn.n_layers])
    assert rec.batch == 3 and all(v.shape[0] == 3 for v in rec.indices.values())
    for layer in (2, dn.n_layers):
        got = dn.deconvolve_batch(rec, layer, "top:2")
        assert len(got) == 3
        for b, (maps, feats) in enumerate(got):
            want, want_feats = dn.deconvolve(x[b:b + 1], layer, "top:2", return_features=True)
            assert feats == want_feats
            torch.testing.assert_close(maps, want, rtol=1e-4, atol=1e-5)


def test_batched_recording_rows_and_errors():
    dn = ca.DeconvNet(ZOO["paper_cnn5_small"])
    x = torch.rand(2, 1, 64, 48)
    rec = dn.record(x, 3)
    one = rec.rows(slice(1, 2))
    assert one.batch == 1 and one.in_shapes[0][0] == 1
    assert all(torch.equal(one.indices[i], rec.indices[i][1:]) for i in rec.indices)
    torch.testing.assert_close(dn.deconvolve(one, 3, [0, 1]), dn.deconvolve(x[1:], 3, [0, 1]))
    with pytest.raises(ca.CnnauralError, match="holds 2 inputs: deconvolve_batch"):
        dn.deconvolve(rec, 3, [0])
    with pytest.raises(ca.CnnauralError, match="conv layers"):
        dn.deconvolve_batch(dn.record(x, "output"), "output", [0])
