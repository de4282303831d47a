"""The general path (graph.GraphDeconvNet) against an independent oracle: a copy of the model whose
rectifier modules are replaced by an autograd Function with relu(grad_output) backward, run through
plain torch.autograd. One small random model per family the issue names: residual additions and
concatenations, average / adaptive pooling heads, Conv1d over frames, grouped and depthwise
convolutions, a waveform front end inside the model; then the four models another attribution
library's tests use, module-name layers, and the errors for what stays unsupported."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cnnaural_ext as ca

RECTIFIERS = (nn.ReLU, nn.LeakyReLU, nn.ELU)


# -- the oracle --------------------------------------------------------------------------------------
class _DeconvRelu(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, act):
        return act(x)

    @staticmethod
    def backward(ctx, g):
        return torch.relu(g), None


class _Wrap(nn.Module):
    def __init__(self, act):
        super().__init__()
        self.act = copy.deepcopy(act)
        if hasattr(self.act, "inplace"):
            self.act.inplace = False

    def forward(self, x):
        return _DeconvRelu.apply(x, self.act)


def oracle_model(model):
    m = copy.deepcopy(model).eval().double()
    for parent in list(m.modules()):
        for cname, c in list(parent.named_children()):
            if isinstance(c, RECTIFIERS):
                setattr(parent, cname, _Wrap(c))
    return m


class _Done(Exception):
    pass


def oracle(model, x, module_name, features, seed="map", at=None):
    """Deconvolution of `features` of module `module_name`'s output by plain autograd on the oracle
    model; `at` names a module whose output is the input space (a front end), else the input x."""
    m = oracle_model(model)
    target = m if module_name == "output" else m.get_submodule(module_name)
    out = []
    for k in features:
        box = {}

        def grab(mod, args, y):
            box["y"] = y
            raise _Done

        def leaf(mod, args, y):
            if isinstance(y, tuple):
                box["x"] = y[1].detach().requires_grad_(True)
                return y[0], box["x"]
            box["x"] = y.detach().requires_grad_(True)
            return box["x"]

        hs = [target.register_forward_hook(grab)]
        if at is not None:
            hs.append(m.get_submodule(at).register_forward_hook(leaf))
        xi = x.double().clone().requires_grad_(at is None)
        try:
            m(xi)
        except _Done:
            pass
        for h in hs:
            h.remove()
        y = box["y"]
        act = y.detach()
        g = torch.zeros_like(y)
        if module_name == "output":
            g[0, k] = 1
        elif seed == "map":
            g[0, k] = act[0, k]
        else:
            flat = act[0, k].reshape(-1)
            p = flat.argmax()
            g[0, k].view(-1)[p] = flat[p]
        out.append(torch.autograd.grad(y, box["x"] if at is not None else xi, g)[0][0])
    return torch.stack(out)


def _random_bn(m):
    for mod in m.modules():
        if isinstance(mod, nn.modules.batchnorm._BatchNorm):
            with torch.no_grad():
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 2.0)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.2, 0.2)
    return m.eval()


def check(model, x, layers, *, at=None, seeds=("map", "max")):
    """Every (layer -> module name) pair: the general path equals the oracle at that module, and the
    int layer equals the module name."""
    dn = ca.DeconvNet(copy.deepcopy(model).double())
    assert dn.general
    xd = x.double()
    for layer, name in layers.items():
        C = dn.n_features(layer)
        feats = sorted({0, C - 1, C // 2})
        for seed in seeds:
            got = dn.deconvolve(xd, layer, feats, seed=seed)
            want = oracle(model, x, name, feats, seed, at=at)
            assert got.shape == want.shape, (layer, got.shape, want.shape)
            assert want.abs().sum() > 0, (layer, "a test whose oracle is all zero tests nothing")
            torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10, msg=f"layer {layer} seed {seed}")
            if name != layer and not name.isdigit():  # digits name a conv index, not a module
                torch.testing.assert_close(dn.deconvolve(xd, name, feats, seed=seed), got)


# -- the families -------------------------------------------------------------------------------------
class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock: in-place ReLU, `out += identity`, a 1x1 downsample."""

    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                           if stride != 1 or cin != cout else None)

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNetish(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 5, 2, 2, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = nn.Sequential(BasicBlock(4, 4), BasicBlock(4, 6, 2))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def test_residual_blocks():
    torch.manual_seed(0)
    model = _random_bn(ResNetish())
    x = torch.rand(1, 1, 40, 32)
    check(model, x, {1: "maxpool", 2: "layer1.0.relu", 3: "layer1.0.bn2", 4: "layer1.1.relu",
                     5: "layer1.1.bn2", 6: "layer1.1.downsample.1", "layer1.0": "layer1.0",
                     "layer1.1.conv2": "layer1.1.conv2", "output": "output"}, seeds=("map",))
    check(model, x, {2: "layer1.0.relu", "layer1.1": "layer1.1"}, seeds=("max",))


class Inception(nn.Module):
    """Concatenated branches, average pooling inside, a LeakyReLU and an ELU."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.LeakyReLU(0.1), nn.MaxPool2d(2))
        self.b1 = nn.Conv2d(4, 3, 1)
        self.b3 = nn.Sequential(nn.Conv2d(4, 3, 3, padding=1), nn.ELU())
        self.bp = nn.Sequential(nn.AvgPool2d(3, 1, 1), nn.Conv2d(4, 2, 1))
        self.act = nn.ReLU()
        self.head = nn.Sequential(nn.Conv2d(8, 5, 3), nn.ReLU(), nn.AvgPool2d(2))

    def forward(self, x):
        x = self.stem(x)
        x = self.act(torch.cat([self.b1(x), self.b3(x), self.bp(x)], dim=1))
        return self.head(x)


def test_concatenation_and_average_pooling():
    torch.manual_seed(1)
    model = Inception().eval()
    x = torch.rand(1, 1, 32, 24)
    check(model, x, {1: "stem.2", 2: "b1", 3: "b3.1", 4: "bp.1", 5: "head.2", "act": "act"})


class Cnn14ish(nn.Module):
    """PANNs CNN14's shape: conv blocks of (conv bn relu) x 2 then 2x2 average pooling, and its
    global pooling head (mean over frequency, max + mean over time)."""

    def __init__(self):
        super().__init__()

        def block(cin, cout):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                                 nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                                 nn.AvgPool2d(2))
        self.block1, self.block2 = block(1, 4), block(4, 6)
        self.fc = nn.Linear(6, 4)

    def forward(self, x):
        x = self.block2(F.dropout(self.block1(x), 0.2, self.training))
        x = torch.mean(x, dim=2)
        x = torch.amax(x, dim=2) + torch.mean(x, dim=2)
        return torch.sigmoid(self.fc(x))


def test_average_pooling_and_global_pooling_head():
    torch.manual_seed(2)
    model = _random_bn(Cnn14ish())
    x = torch.rand(1, 1, 32, 24)
    check(model, x, {1: "block1.2", 2: "block1.6", 3: "block2.2", 4: "block2.6", "output": "output"},
          seeds=("map",))


class FrameConv1d(nn.Module):
    """Conv1d over spectrogram frames: the F' bins are the input channels."""

    def __init__(self, n_bins=16):
        super().__init__()
        self.features = nn.Sequential(nn.Conv1d(n_bins, 8, 3, padding=1), nn.BatchNorm1d(8), nn.ReLU(), nn.MaxPool1d(2),
                                      nn.Conv1d(8, 6, 3, dilation=2), nn.ReLU(), nn.MaxPool1d(3, 2),
                                      nn.Conv1d(6, 4, 1), nn.LeakyReLU())
        self.pool = nn.AdaptiveMaxPool1d(1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).squeeze(-1))


def test_conv1d_over_frames():
    torch.manual_seed(3)
    model = _random_bn(FrameConv1d())
    x = torch.rand(1, 16, 40)
    check(model, x, {1: "features.3", 2: "features.6", 3: "features.8", "output": "output"})


def test_grouped_and_depthwise_convolutions():
    torch.manual_seed(4)
    model = _random_bn(nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
        nn.Conv2d(4, 8, 3, padding=1, groups=2), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU(),  # depthwise
        nn.Conv2d(8, 5, 1), nn.ReLU(), nn.MaxPool2d(2)))  # pointwise
    dn = ca.DeconvNet(model)
    assert dn.general and "groups=2" in dn.describe()[1]
    check(model, torch.rand(1, 1, 24, 20), {1: "1", 2: "5", 3: "7", 4: "10"})


class WaveModel(nn.Module):
    """A model that takes the waveform: the project's Spectrogram is its first module."""

    def __init__(self, spec):
        super().__init__()
        self.spec = spec
        self.body = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(6, 2))

    def forward(self, wave):
        _, S = self.spec(wave)
        return self.body(S.unsqueeze(1))


def _wave_model():
    torch.manual_seed(5)
    spec = ca.Spectrogram(sample_rate=8000, n_fft=64, hop_length=32, scale="log1p")
    return WaveModel(spec).eval(), spec


def test_waveform_front_end_maps_are_taken_at_the_spectrogram():
    model, spec = _wave_model()
    wave = torch.randn(1, 2000)
    dn = ca.DeconvNet(model)
    assert dn.general and dn.takes_waveform
    _, S = spec(wave[0].double())
    for layer, name in {1: "body.2", 2: "body.4", "body.3": "body.3"}.items():
        got = ca.DeconvNet(copy.deepcopy(model).double()).deconvolve(wave.double(), layer, [0, 3])
        # the oracle: the body alone on the spectrogram, no front end involved
        want = oracle(model.body, S[None, None], name[5:], [0, 3])
        assert got.shape == (2, *S.shape)
        torch.testing.assert_close(got, want[:, 0], rtol=1e-9, atol=1e-10)
        # and through the model, with the front end's output as the input space
        torch.testing.assert_close(got, oracle(model, wave, name, [0, 3], at="spec"), rtol=1e-9, atol=1e-10)


def test_functional_rectifiers_equal_rectifier_modules():
    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.c2, self.c3 = nn.Conv2d(1, 4, 3), nn.Conv2d(4, 5, 3), nn.Conv2d(5, 3, 3)

        def forward(self, x):
            x = F.max_pool2d(F.relu(self.c1(x), inplace=True), 2)
            x = F.leaky_relu(self.c2(x), 0.2).relu_()
            return torch.relu(self.c3(x)) + F.elu(self.c3(x))

    torch.manual_seed(6)
    net = Functional().eval()
    seq = nn.Sequential(net.c1, nn.ReLU(), nn.MaxPool2d(2), net.c2, nn.LeakyReLU(0.2), nn.ReLU()).eval()
    x = torch.rand(1, 1, 24, 20)
    dn = ca.DeconvNet(copy.deepcopy(net).double())
    for layer, name in {1: "2", 2: "5"}.items():
        torch.testing.assert_close(dn.deconvolve(x.double(), layer, "all"),
                                   oracle(seq, x, name, list(range(dn.n_features(layer)))), rtol=1e-9, atol=1e-10)


# -- the chain path and the general path agree ------------------------------------------------------
def _zoo():
    from test_deconvnet import ZOO

    return ZOO


@pytest.mark.parametrize("name", ["paper_cnn5_small", "mixed", "batchnorm"])
def test_chain_and_general_paths_agree(name):
    model = copy.deepcopy(_zoo()[name]).double()
    chain, general = ca.DeconvNet(model), ca.DeconvNet(model, path="general")
    assert not chain.general and general.general
    assert chain.n_layers == general.n_layers
    x = torch.rand(1, 1, 64, 48, dtype=torch.float64)
    for layer in list(range(1, chain.n_layers + 1)) + ["output"]:
        assert chain.n_features(layer) == general.n_features(layer)
        for seed in ("map", "max"):
            a, fa = chain.deconvolve(x, layer, "top:3" if layer != "output" else "all", seed=seed,
                                     return_features=True)
            b, fb = general.deconvolve(x, layer, "top:3" if layer != "output" else "all", seed=seed,
                                       return_features=True)
            assert fa == fb
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
    ra, rb = chain.record(x, [2, 3]), general.record(x, [2, 3])
    for layer in (2, 3):
        torch.testing.assert_close(chain.activation(ra, layer), general.activation(rb, layer))
    outs_a, outs_b = chain.layer_outputs(x, [3, 1]), general.layer_outputs(x, [3, 1])
    assert list(outs_a) == list(outs_b) == [3, 1]
    for layer in (1, 3):
        torch.testing.assert_close(outs_a[layer], outs_b[layer])
        torch.testing.assert_close(chain.activations(x, layer), general.activations(x, layer))


def test_module_names_on_the_chain_path():
    model = copy.deepcopy(_zoo()["paper_cnn5_small"]).double()
    chain, general = ca.DeconvNet(model), ca.DeconvNet(model, path="general")
    x = torch.rand(1, 1, 64, 48, dtype=torch.float64)
    for name in ("features.block2", "features.block2.0", "features.block3.1", "classifier.1"):
        assert chain.n_features(name) == general.n_features(name)
        torch.testing.assert_close(chain.deconvolve(x, name, [0, 2]), general.deconvolve(x, name, [0, 2]),
                                   rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(chain.deconvolve(x, "features.block2", [1]), chain.deconvolve(x, 2, [1]))
    assert chain.conv("features.block1.0") is chain.conv(1)


# -- the four models of the issue ---------------------------------------------------------------------
class ConvNetSoftmax(nn.Module):
    """A Softmax after the last layer."""

    def __init__(self):
        super().__init__()
        self.conv1, self.relu1, self.pool1 = nn.Conv2d(1, 2, 3, 1), nn.ReLU(), nn.MaxPool2d(2)
        self.conv2, self.relu2, self.pool2 = nn.Conv2d(2, 4, 3, 1), nn.ReLU(), nn.MaxPool2d(2)
        self.fc1, self.relu3, self.fc2 = nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 10)
        self.softmax = nn.Softmax(dim=1)

    def forward(self, x):
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        x = x.view(-1, 4)
        return self.softmax(self.fc2(self.relu3(self.fc1(x))))


class ConvNetBatchSize(nn.Module):
    """`x.shape[0]` in forward, padding and dilation."""

    def __init__(self):
        super().__init__()
        self.conv1, self.relu1 = nn.Conv2d(1, 2, 3, padding=3, stride=2, dilation=2), nn.ReLU()
        self.fc1 = nn.Linear(16, 4)

    def forward(self, x):
        bsz = x.shape[0]
        x = self.relu1(self.conv1(x)).reshape(bsz, 2, -1)
        return self.fc1(x).reshape(bsz, -1)


class ConvNetOptionalInput(nn.Module):
    """An optional second input."""

    def __init__(self):
        super().__init__()
        self.conv1, self.relu1, self.fc1 = nn.Conv2d(1, 2, 3, 1), nn.ReLU(), nn.Linear(8, 4)

    def forward(self, x, x2=None):
        if x2 is not None:
            x = x + x2
        x = self.relu1(self.conv1(x)).view(-1, 8)
        return self.fc1(x)


class ConvNetWithConv1d(nn.Module):
    """A Conv1d the requested layer does not touch (after it, over the pooled frames)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.relu1, self.pool1 = nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)
        self.conv2, self.relu2 = nn.Conv1d(3 * 4, 5, 3), nn.ReLU()
        self.fc = nn.Linear(5, 2)

    def forward(self, x):
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.relu2(self.conv2(x.flatten(1, 2)))
        return self.fc(x.mean(-1))


@pytest.mark.parametrize("model, shape, layers", [
    (ConvNetSoftmax(), (1, 1, 10, 10), {1: "pool1", 2: "pool2", "conv2": "conv2"}),
    (ConvNetBatchSize(), (1, 1, 4, 4), {1: "relu1"}),
    (ConvNetOptionalInput(), (1, 1, 4, 4), {1: "relu1"}),
    (ConvNetWithConv1d(), (1, 1, 8, 12), {1: "pool1", 2: "relu2"}),
], ids=["softmax", "batch-size-in-forward", "optional-second-input", "conv1d"])
def test_the_four_models_that_stopped_the_chain_reader(model, shape, layers):
    torch.manual_seed(7)
    for p in model.parameters():
        nn.init.uniform_(p, -0.5, 1.0)  # positive enough that every feature is active
    model.eval()
    with pytest.raises(ca.CnnauralError):
        ca.DeconvNet(model, path="chain")
    check(model, torch.rand(*shape), layers, seeds=("map",))


def test_the_rest_of_the_model_never_runs():
    class Tail(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv2d(1, 2, 3)
            self.c2 = nn.Conv2d(2, 2, 3)

        def forward(self, x):
            x = torch.relu(self.c1(x))
            raise AssertionError("past the layer")

    dn = ca.DeconvNet(Tail())
    x = torch.rand(1, 1, 8, 8)
    assert dn.deconvolve(x, 1, [0]).shape == (1, 1, 8, 8)
    with pytest.raises(ca.CnnauralError, match="past the layer"):
        dn.deconvolve(x, 2, [0])


def test_model_left_as_it_was():
    torch.manual_seed(8)
    model = _random_bn(ResNetish()).train()
    model.layer1[0].bn1.eval()  # a mixed state must come back as it was
    modes = [m.training for m in model.modules()]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    dn = ca.DeconvNet(model)
    with torch.no_grad():  # the Auraliser calls it like this
        dn.deconvolve(torch.rand(1, 1, 40, 32), 4, "all")
    dn.layer_outputs(torch.rand(3, 1, 40, 32), [2, 5])
    assert [m.training for m in model.modules()] == modes
    assert all(p.grad is None for p in model.parameters())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_seeds_are_chunked_and_a_model_that_cannot_batch_goes_one_by_one():
    torch.manual_seed(9)
    model = _random_bn(ResNetish())
    x = torch.rand(1, 1, 40, 32)
    full = ca.DeconvNet(model).deconvolve(x, 5, "all")
    tiny = ca.DeconvNet(model, max_batch_bytes=1).deconvolve(x, 5, "all")
    torch.testing.assert_close(full, tiny)

    class OneAtATime(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(1, 3, 3)

        def forward(self, x):
            return torch.relu(self.c(x)).view(1, 3, 6, 6)  # batch of one only

    net = OneAtATime()
    x = torch.rand(1, 1, 8, 8)
    got = ca.DeconvNet(net).deconvolve(x, 1, "all")
    want = oracle(nn.Sequential(net.c, nn.ReLU()), x, "1", [0, 1, 2]).float()
    torch.testing.assert_close(got, want)


def test_waveform_model_in_the_auraliser_reads_its_front_end():
    model, spec = _wave_model()
    wave = torch.randn(4000)
    aur = ca.Auraliser(model)
    assert aur.spectrogram is spec and aur.deconvnet.takes_waveform
    res = aur.auralise(wave, layer="body.4", features=[0, 2], normalize=False)
    twin = ca.Auraliser(model.body, spec)  # the same network fed the spectrogram from outside
    want = twin.auralise(wave, layer=2, features=[0, 2], normalize=False)
    torch.testing.assert_close(res.maps, want.maps, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(res.audio, want.audio, rtol=1e-4, atol=1e-6)
    assert ca.Auraliser(model, spec).spectrogram is spec
    other = ca.Spectrogram(sample_rate=8000, n_fft=128, hop_length=32, scale="log1p")
    with pytest.raises(ca.CnnauralError, match="differs from the model's own front end 'spec'"):
        ca.Auraliser(model, other)


def test_conv1d_model_in_the_auraliser():
    torch.manual_seed(10)
    spec = ca.Spectrogram(sample_rate=8000, n_fft=30, hop_length=16)
    model = _random_bn(FrameConv1d(n_bins=spec.n_bins))
    wave = torch.randn(4000)
    res = ca.Auraliser(model, spec).auralise(wave, layer=2, features="top:2", normalize=False)
    _, S = spec(wave)
    want = ca.DeconvNet(model).deconvolve(S[None], 2, res.features)
    torch.testing.assert_close(res.maps, want)
    assert res.audio.shape == (2, 4000)


# -- what stays unsupported: clear errors naming the module -------------------------------------------
class Detached(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 3)

    def forward(self, x):
        return self.c2(torch.relu(self.c1(x)).detach())


@pytest.mark.parametrize("model, kw, msg", [
    (nn.Sequential(nn.Linear(3, 3), nn.Softmax(1)), {}, "found no Conv1d or Conv2d in Sequential"),
    (ResNetish(), dict(layer="layer9.conv1"), "no module named 'layer9.conv1'"),
    (ResNetish(), dict(layer=7), "layer 7 is out of range"),
    (ResNetish(), dict(layer="fc", features=[5]), "feature 5 is out of range"),
    (Detached(), dict(layer="c2"), "no gradient flows from layer 'c2' back to the input"),
    (Detached(), dict(layer=2), "no gradient flows from layer 'c2' back to the input"),
    (ResNetish(), dict(x=torch.rand(1, 3, 40, 32)), "does not fit the model in or after .conv1."),
    (ResNetish(), dict(x=torch.rand(2, 1, 40, 32)), "batch dimension of 1"),
    (WaveModel(ca.Spectrogram(8000, 64, 32)), dict(layer="spec"), "is the front end"),
])
def test_unsupported_requests_give_clear_errors(model, kw, msg):
    kw = dict(x=torch.rand(1, 1, 40, 32), layer=1, features=[0]) | kw
    with pytest.raises(ca.CnnauralError, match=msg):
        ca.DeconvNet(model.eval()).deconvolve(**kw)


def test_batchnorm_without_running_statistics_is_refused():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2, track_running_stats=False), nn.ReLU(),
                          nn.AvgPool2d(2))
    with pytest.raises(ca.CnnauralError, match="'1'.*running statistics"):
        ca.DeconvNet(model).deconvolve(torch.rand(1, 1, 10, 10), 1, [0])


# -- a second oracle: Captum's NeuronDeconvolution (optional) ----------------------------------------
@pytest.mark.parametrize("make, shape, layers", [
    (Cnn14ish, (1, 1, 32, 24), {2: "block1.6", 3: "block2.2", "block2.4": "block2.4"}),
    (lambda: ConvNetSoftmax(), (1, 1, 10, 10), {1: "pool1", 2: "pool2"}),
], ids=["cnn14", "softmax"])
@pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU")
def test_captum_neuron_deconvolution_agrees(make, shape, layers):
    """Captum overrides nn.ReLU modules' backward with relu(grad) the same way; seed "map" for feature
    k is the gradient of sum(out_k * out_k.detach())."""
    captum_attr = pytest.importorskip("captum.attr")
    torch.manual_seed(11)
    model = _random_bn(make()).double()
    x = torch.rand(*shape, dtype=torch.float64, requires_grad=True)
    dn = ca.DeconvNet(model)
    for layer, name in layers.items():
        nd = captum_attr.NeuronDeconvolution(model, model.get_submodule(name))
        for k in (0, dn.n_features(layer) - 1):
            def selector(out, k=k):
                return (out[:, k] * out[:, k].detach()).reshape(out.shape[0], -1).sum(1)
            want = nd.attribute(x, selector)
            got = dn.deconvolve(x.detach(), layer, [k])
            torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10)


class MelSpectrogram(nn.Module):
    """Stands in for torchaudio.transforms.MelSpectrogram (recognised by class name)."""

    def __init__(self, n_fft=64, hop_length=32, n_mels=12):
        super().__init__()
        self.n_fft, self.hop_length = n_fft, hop_length
        self.register_buffer("fb", torch.rand(n_fft // 2 + 1, n_mels))

    def forward(self, wave):
        X = torch.stft(wave, self.n_fft, self.hop_length, window=torch.hann_window(self.n_fft).to(wave),
                       return_complex=True)
        return torch.matmul(X.abs().pow(2).transpose(-1, -2), self.fb.to(wave)).transpose(-1, -2)


class AmplitudeToDB(nn.Module):
    def forward(self, x):
        return 10 * torch.log10(x.clamp_min(1e-10))


class Unsqueeze(nn.Module):
    def forward(self, x):
        return x.unsqueeze(1)


def test_torchaudio_style_front_end_is_recognised_by_class_name():
    torch.manual_seed(12)
    model = nn.Sequential(MelSpectrogram(), AmplitudeToDB(), Unsqueeze(), nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Conv2d(3, 4, 3), nn.ReLU()).eval()
    dn = ca.DeconvNet(model)
    assert dn.takes_waveform and [n for n, _ in dn.front_end] == ["0", "1"]
    wave = torch.randn(1, 1000)
    got = ca.DeconvNet(copy.deepcopy(model).double()).deconvolve(wave.double(), 2, [0, 3])
    assert got.shape == (2, 12, 32)  # the front end's output: (n_mels, frames)
    torch.testing.assert_close(got, oracle(model, wave, "7", [0, 3], at="1"), rtol=1e-9, atol=1e-10)
    with pytest.raises(ca.CnnauralError, match=r"front end \(MelSpectrogram \+ AmplitudeToDB\) is not a "
                                               r"cnnaural_ext.Spectrogram"):
        ca.Auraliser(model)


@pytest.mark.skipif(not ca.ops.native_available(), reason="native extension not built")
def test_conv_rectifier_maxpool_runs_take_the_fused_op_inside_any_graph(monkeypatch):
    """On the general path too, each conv -> [bn] -> rectifier -> [dropout/LRN] -> max-pool run goes
    back through unpool_conv_transpose2d; the result is the plain autograd one."""
    torch.manual_seed(13)
    model = ConvNetSoftmax().eval()
    zoo = _zoo()
    x = torch.rand(1, 1, 10, 10, dtype=torch.float64)
    cases = [(copy.deepcopy(model).double(), x, 2, 2), (copy.deepcopy(zoo["mixed"]).double(),
                                                        torch.rand(1, 1, 64, 48, dtype=torch.float64), 4, 3),
             (copy.deepcopy(_random_bn(ResNetish())).double(), torch.rand(1, 1, 40, 32, dtype=torch.float64), 4, 1)]
    for net, xi, layer, n_fused in cases:
        dn = ca.DeconvNet(net, path="general")
        fused = dn.deconvolve(xi, layer, "all")
        assert dn.fused_blocks == n_fused
        monkeypatch.setenv("CNNAURAL_BACKEND", "reference")
        plain = dn.deconvolve(xi, layer, "all")
        assert dn.fused_blocks == 0
        monkeypatch.delenv("CNNAURAL_BACKEND")
        torch.testing.assert_close(fused, plain, rtol=1e-9, atol=1e-12)


def test_in_place_additions_inside_a_block_keep_both_branches():
    class AddThenPool(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.bn, self.c2 = nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.Conv2d(3, 3, 3, padding=1)
            self.relu, self.pool = nn.ReLU(inplace=True), nn.MaxPool2d(2)

        def forward(self, x):
            y = self.relu(self.c1(x))
            out = self.bn(self.c2(y))
            out += y
            return self.pool(self.relu(out))

    torch.manual_seed(14)
    model = _random_bn(AddThenPool())
    check(model, torch.rand(1, 1, 12, 10), {1: "relu", 2: "bn", "pool": "pool"})  # oracle: plain autograd
    dn = ca.DeconvNet(copy.deepcopy(model).double())
    dn.deconvolve(torch.rand(1, 1, 12, 10, dtype=torch.float64), "pool", [0])
    assert dn.fused_blocks == 0
