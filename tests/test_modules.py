"""modules.UnpoolConvTranspose2d: the fused op as a layer (formula, pairing with a conv and a pool,
gradients, errors), and torch.compile(fullgraph=True) over a module using both public ops."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cnnaural_ext as ca
from cnnaural_ext import ops
from cnnaural_ext.errors import CnnauralError


def pooled(N=2, C=3, H=12, W=10, k=2, s=2, p=0, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, C, H, W, generator=g, dtype=dtype)
    y, idx = F.max_pool2d(x, k, s, p, return_indices=True)
    return x, y, idx


def formula(step, y, idx, size):
    up = torch.zeros(y.shape[0], y.shape[1], size[0] * size[1], dtype=y.dtype)
    up.scatter_add_(2, idx.expand_as(y).reshape(y.shape[0], y.shape[1], -1), y.reshape(y.shape[0], y.shape[1], -1))
    up = up.view(y.shape[0], y.shape[1], *size)
    if step.rectify:
        up = torch.relu(up)
    return F.conv_transpose2d(up, step.weight, step.bias, step.stride, step.padding, step.output_padding, 1,
                              step.dilation)


@pytest.mark.parametrize("rectify", [True, False])
@pytest.mark.parametrize("pool", [(2, 2, 0), (3, 2, 1)])  # (kernel, stride, padding); the second overlaps
def test_module_equals_the_formula(rectify, pool):
    k, s, p = pool
    x, y, idx = pooled(k=k, s=s, p=p)
    step = ca.UnpoolConvTranspose2d(3, 4, 3, padding=1, pool_kernel_size=k, pool_stride=s, pool_padding=p,
                                    rectify=rectify, dtype=torch.float64)
    size = x.shape[-2:]
    out = step(y, idx, unpool_size=x.shape)
    torch.testing.assert_close(out, formula(step, y, idx, size))
    assert out.shape == (2, 4, 12, 10)
    if (k, s, p) == (2, 2, 0):  # the pool's own arithmetic gives the unpooled size
        torch.testing.assert_close(step(y, idx), out)
    assert "pool_kernel_size" in repr(step)


def test_from_modules_undoes_conv_relu_pool_and_shares_the_weight():
    conv, pool = nn.Conv2d(2, 5, 3, padding=1).double(), nn.MaxPool2d(2)
    step = ca.UnpoolConvTranspose2d.from_modules(conv, pool)
    assert step.weight is conv.weight and step.bias is None
    x = torch.randn(1, 2, 8, 6, dtype=torch.float64)
    a = torch.relu(conv(x))
    y, idx = F.max_pool2d(a, 2, return_indices=True)
    seed = torch.zeros_like(y)
    seed[0, 3] = y[0, 3]  # one feature's map, the deconvnet's seed
    out = step(seed, idx)
    dn = ca.DeconvNet(nn.Sequential(conv, nn.ReLU(), pool))
    torch.testing.assert_close(out, dn.deconvolve(x, 1, [3]))
    copy = ca.UnpoolConvTranspose2d.from_modules(conv, pool, share_weight=False, bias=True)
    assert copy.weight is not conv.weight and torch.equal(copy.weight, conv.weight) and not copy.bias.any()


def test_gradients_of_input_weight_and_bias(one_thread):
    _, y, idx = pooled(N=2, C=2, H=6, W=6)
    y = y.clone().requires_grad_()
    step = ca.UnpoolConvTranspose2d(2, 3, 3, padding=1, dtype=torch.float64)
    torch.autograd.gradcheck(lambda v, w, b: ops.unpool_conv_transpose2d(
        v, idx, w, b, unpool_size=(6, 6), padding=1), (y, step.weight, step.bias))
    step(y, idx).square().sum().backward()
    assert y.grad is not None and step.weight.grad is not None and step.bias.grad is not None


def test_bad_arguments_are_clear_errors():
    with pytest.raises(CnnauralError, match="Conv2d and an nn.MaxPool2d"):
        ca.UnpoolConvTranspose2d.from_modules(nn.Linear(2, 2), nn.MaxPool2d(2))
    with pytest.raises(CnnauralError, match="groups 1"):
        ca.UnpoolConvTranspose2d.from_modules(nn.Conv2d(4, 4, 3, groups=2), nn.MaxPool2d(2))
    with pytest.raises(CnnauralError, match="kernel_size must be an int or a pair"):
        ca.UnpoolConvTranspose2d(2, 2, (3, 3, 3))
    _, y, idx = pooled(C=2)
    step = ca.UnpoolConvTranspose2d(2, 1, 3, padding=1, dtype=torch.float64)
    with pytest.raises(CnnauralError, match="indices"):
        step(y, idx + 1000, unpool_size=(12, 10))
    with pytest.raises(CnnauralError):
        ca.UnpoolConvTranspose2d(3, 1, 3, dtype=torch.float64)(y, idx)  # 3 channels expected, 2 given


class Decoder(nn.Module):
    """Pooled features -> a gain over the STFT -> audio: both public ops in one module."""

    def __init__(self):
        super().__init__()
        self.step = ca.UnpoolConvTranspose2d(4, 1, 3, padding=1)

    def forward(self, y, idx, stft):
        gain = self.step(y, idx, unpool_size=stft.shape[-2:])[:, 0]
        return ca.masked_istft(stft, torch.sigmoid(gain), n_fft=32, hop_length=8, length=200)


def test_compiles_with_fullgraph_and_matches_eager():
    torch.manual_seed(0)
    stft = torch.stft(torch.randn(200), 32, 8, window=torch.ones(32), return_complex=True)  # (17, 26)
    a = torch.relu(torch.randn(2, 4, 17, 26))
    y, idx = F.max_pool2d(a, 2, return_indices=True, ceil_mode=False)
    idx = idx.contiguous()
    dec = Decoder()
    torch._dynamo.reset()
    compiled = torch.compile(dec, fullgraph=True)  # a graph break would raise
    with torch.no_grad():
        want = dec(y, idx, stft)
        got = compiled(y, idx, stft)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    # and the backward of the compiled module through the fused op
    y2 = y.clone().requires_grad_()
    compiled(y2, idx, stft).square().sum().backward()
    y3 = y.clone().requires_grad_()
    dec(y3, idx, stft).square().sum().backward()
    torch.testing.assert_close(y2.grad, y3.grad, rtol=1e-4, atol=1e-6)
