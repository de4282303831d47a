"""Reading a model (chain.read_chain): nested Sequential and torch.fx chains, each supported module
classified, anything else refused with the module's name."""
import pytest
import torch.nn.functional as F
from torch import nn

import cnnaural_ext as ca
from cnnaural_ext.chain import conv_geometry, read_chain


@pytest.mark.parametrize("model, msg", [
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.Sigmoid()), r"'1' \(Sigmoid\)"),
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.AvgPool2d(2)), "AvgPool2d"),
    (nn.Sequential(nn.Conv2d(2, 4, 3, groups=2)), "grouped convolution"),
    (nn.Sequential(nn.Linear(3, 3)), "no Conv2d"),
])
def test_what_the_chain_reader_cannot_read_names_the_module(model, msg):
    """read_chain (and DeconvNet(path="chain")) refuse it, naming the module; DeconvNet takes it
    on the general path (tests/test_deconvnet_general.py) when it has a convolution."""
    with pytest.raises(ca.CnnauralError, match=msg):
        read_chain(model)
    with pytest.raises(ca.CnnauralError, match=msg):
        ca.DeconvNet(model, path="chain")
    if msg != "no Conv2d":
        assert ca.DeconvNet(model).general


def test_skip_connection_is_refused_by_the_chain_reader():
    class Res(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(1, 1, 3, padding=1)

        def forward(self, x):
            return x + self.c(x)

    with pytest.raises(ca.CnnauralError, match="chain of layers"):
        ca.DeconvNet(Res(), path="chain")
    assert ca.DeconvNet(Res()).general  # the general path takes it


def test_nested_sequential_and_fx_chains_read_the_same_steps():
    seq = nn.Sequential(nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.ReLU()),
                        nn.MaxPool2d(2), nn.Dropout(0.1), nn.Flatten(), nn.Linear(8, 2))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn, self.pool, self.fc = seq[0][0], seq[0][1], seq[1], seq[4]

        def forward(self, x):
            return self.fc(self.pool(F.relu(self.bn(self.conv(x)))).flatten(1))

    assert [s.kind for s in read_chain(seq)] == ["conv", "bn", "act", "pool", "identity", "flatten", "linear"]
    assert [s.name for s in read_chain(seq)][:2] == ["0.0", "0.1"]
    assert [s.kind for s in read_chain(Net())] == ["conv", "bn", "act", "pool", "flatten", "linear"]


@pytest.mark.parametrize("conv, want", [
    (nn.Conv2d(1, 1, 3, padding=1), ((1, 1), (1, 1), (1, 1))),
    (nn.Conv2d(1, 1, (3, 5), stride=(2, 1), padding=(1, 2), dilation=(1, 2)),
     ((2, 1), (1, 2), (1, 2))),
    (nn.Conv2d(1, 1, 5, padding="same"), ((1, 1), (2, 2), (1, 1))),
])
def test_conv_geometry(conv, want):
    assert conv_geometry(conv) == want


def test_same_padding_with_an_even_kernel_is_refused():
    with pytest.raises(ca.CnnauralError, match="asymmetrically"):
        read_chain(nn.Sequential(nn.Conv2d(1, 1, 4, padding="same")))


def test_readable_chains_keep_the_fast_path():
    seq = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2))
    assert not ca.DeconvNet(seq).general
    assert ca.DeconvNet(seq, path="general").general
    with pytest.raises(ca.CnnauralError, match="path must be"):
        ca.DeconvNet(seq, path="fast")
