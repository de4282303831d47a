"""unpool_conv_transpose2d's entry point (ops.unpool_conv_transpose2d) against plain loops,
max_unpool2d + conv_transpose2d and autograd, on every backend; errors, gradcheck."""
import math

import pytest
import torch
import torch.nn.functional as F

from cnnaural_ext import ops, reference
from cnnaural_ext.errors import CnnauralError

# torch.istft warns whenever `length` asks for a zero-padded tail, which these tests do on purpose
pytestmark = pytest.mark.filterwarnings("ignore:The length of signal is shorter than the length parameter")

# Every device, CUDA included: conftest skips the "cuda" cases when no GPU is visible.
DEVICES = ["cpu", "cuda"]
CPLX = {torch.float32: torch.complex64, torch.float64: torch.complex128}
NATIVE_ISTFT = ops.native_available() and hasattr(torch.ops.cnnaural, "masked_istft")
needs_native_istft = pytest.mark.skipif(not NATIVE_ISTFT, reason="native masked_istft is not built")


# =============================================================================================
# unpool_conv_transpose2d
# =============================================================================================
def pooled_case(N=2, C_out=3, H=8, W=7, pool=2, pool_stride=None, device="cpu", dtype=torch.float64, seed=0):
    """Activations (N, C_out, H, W), max-pooled: (pooled values, switches)."""
    g = torch.Generator().manual_seed(seed)
    act = torch.randn(N, C_out, H, W, generator=g, dtype=torch.float64).to(device=device, dtype=dtype)
    pooled, idx = F.max_pool2d(act, pool, pool_stride, return_indices=True)
    return act, pooled, idx


def loop_unpool_conv_transpose2d(input, indices, weight, bias, unpool_size, stride=(1, 1), padding=(0, 0),
                                 output_padding=(0, 0), dilation=(1, 1), rectify=True):
    """Plain-loop oracle: scatter the switches into the (H, W) plane (repeats summed), ReLU, then
    the transposed convolution as its defining scatter: out[y*s - p + ky*d] += up[y] * w[ky]."""
    x, idx, w = input.double().cpu(), indices.cpu(), weight.double().cpu()
    N, C_out, h, wd = x.shape
    _, C_in, kH, kW = w.shape
    H, W = unpool_size
    up = [[[[0.0] * W for _ in range(H)] for _ in range(C_out)] for _ in range(N)]
    for n in range(N):
        for c in range(C_out):
            for i in range(h):
                for j in range(wd):
                    pos = int(idx[n if idx.shape[0] > 1 else 0, c, i, j])
                    up[n][c][pos // W][pos % W] += float(x[n, c, i, j])
    H_in = (H - 1) * stride[0] - 2 * padding[0] + dilation[0] * (kH - 1) + output_padding[0] + 1
    W_in = (W - 1) * stride[1] - 2 * padding[1] + dilation[1] * (kW - 1) + output_padding[1] + 1
    out = torch.zeros(N, C_in, H_in, W_in, dtype=torch.float64)
    if bias is not None:
        out += bias.double().cpu().view(1, -1, 1, 1)
    wl = w.tolist()
    for n in range(N):
        for co in range(C_out):
            for y in range(H):
                for xx in range(W):
                    v = up[n][co][y][xx]
                    if rectify:
                        v = max(v, 0.0)
                    if v == 0.0:
                        continue
                    for ci in range(C_in):
                        for ky in range(kH):
                            oy = y * stride[0] - padding[0] + ky * dilation[0]
                            if not 0 <= oy < H_in:
                                continue
                            for kx in range(kW):
                                ox = xx * stride[1] - padding[1] + kx * dilation[1]
                                if 0 <= ox < W_in:
                                    out[n, ci, oy, ox] += v * wl[co][ci][ky][kx]
    return out


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


CONV_VARIANTS = [
    dict(),
    dict(stride=2),
    dict(stride=2, output_padding=1),
    dict(stride=(2, 1), padding=(1, 0), output_padding=(1, 0)),
    dict(padding=1),
    dict(dilation=2),
    dict(stride=3, padding=(2, 1), dilation=(1, 2), output_padding=(2, 1)),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("conv", CONV_VARIANTS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "plain")
@pytest.mark.parametrize("overlap", [False, True])
@pytest.mark.parametrize("with_bias", [False, True])
def test_unpool_conv_transpose2d_matches_loops(device, conv, overlap, with_bias):
    pool, pool_stride = (3, 2) if overlap else (2, None)
    act, x, idx = pooled_case(N=2, C_out=3, H=7, W=6, pool=pool, pool_stride=pool_stride, device=device)
    x = x * torch.sign(torch.randn_like(x))  # seeds of both signs: the ReLU matters
    weight = torch.randn(3, 2, 3, 2, dtype=torch.float64, device=device)
    bias = torch.randn(2, dtype=torch.float64, device=device) if with_bias else None
    out = ops.unpool_conv_transpose2d(x, idx, weight, bias, unpool_size=(7, 6), **conv)
    want = loop_unpool_conv_transpose2d(x, idx, weight, bias, (7, 6), **{k: _pair(v) for k, v in conv.items()})
    assert out.device.type == device
    torch.testing.assert_close(out.cpu(), want, rtol=1e-10, atol=1e-10)
    ref = reference.unpool_conv_transpose2d(x, idx, weight, bias, unpool_size=(7, 6), **conv)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("rectify", [True, False])
def test_unpool_conv_transpose2d_matches_max_unpool2d(device, dtype, rectify):
    """Non-overlapping pools never repeat a switch: max_unpool2d is then the exact unpooling."""
    act, x, idx = pooled_case(N=3, C_out=4, H=10, W=12, pool=2, device=device, dtype=dtype)
    x = x * torch.sign(torch.randn_like(x))
    weight = torch.randn(4, 5, 3, 3, dtype=dtype, device=device)
    bias = torch.randn(5, dtype=dtype, device=device)
    out = ops.unpool_conv_transpose2d(x, idx, weight, bias, unpool_size=(10, 12), stride=1, padding=1,
                                      rectify=rectify)
    up = F.max_unpool2d(x, idx, 2, output_size=(10, 12))
    want = F.conv_transpose2d(torch.relu(up) if rectify else up, weight, bias, 1, 1)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(out, want, rtol=tol, atol=tol)
    assert out.shape == (3, 5, 10, 12)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("pool,pool_stride", [(3, 2), (3, 1), ((3, 2), (2, 1))])
def test_unpool_conv_transpose2d_overlapping_pools_sum_like_autograd(device, pool, pool_stride):
    """Overlapping pools repeat switches; unpooling is then the gradient of the pool: repeats sum."""
    act, x, idx = pooled_case(N=2, C_out=3, H=9, W=11, pool=pool, pool_stride=pool_stride, device=device)
    flat = idx.flatten(2)
    assert any(len(torch.unique(r)) < r.numel() for r in flat.reshape(-1, flat.shape[-1])), "no repeated switch"
    seed = torch.randn_like(x)
    act = act.clone().requires_grad_()
    pooled = F.max_pool2d(act, pool, pool_stride)
    (unpooled,) = torch.autograd.grad((pooled * seed).sum(), act)
    weight = torch.randn(3, 2, 3, 3, dtype=torch.float64, device=device)
    want = F.conv_transpose2d(torch.relu(unpooled), weight, None, 2, 1)
    out = ops.unpool_conv_transpose2d(seed, idx, weight, unpool_size=(9, 11), stride=2, padding=1)
    torch.testing.assert_close(out, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("device", DEVICES)
def test_unpool_conv_transpose2d_broadcast_indices(device):
    """Switches of batch 1 serve every seed, as if expanded to N."""
    act, _, idx = pooled_case(N=1, C_out=4, H=8, W=8, device=device)
    x = torch.randn(5, 4, 4, 4, dtype=torch.float64, device=device)
    weight = torch.randn(4, 2, 3, 3, dtype=torch.float64, device=device)
    out = ops.unpool_conv_transpose2d(x, idx, weight, unpool_size=(8, 8), padding=1)
    torch.testing.assert_close(out, ops.unpool_conv_transpose2d(x, idx.expand(5, -1, -1, -1).contiguous(), weight,
                                                                unpool_size=(8, 8), padding=1))
    torch.testing.assert_close(out, ops.unpool_conv_transpose2d(x, idx.expand(5, -1, -1, -1), weight,
                                                                unpool_size=(8, 8), padding=1))
    for n in range(5):
        torch.testing.assert_close(out[n:n + 1], ops.unpool_conv_transpose2d(x[n:n + 1], idx, weight,
                                                                             unpool_size=(8, 8), padding=1))


@pytest.mark.parametrize("device", DEVICES)
def test_unpool_conv_transpose2d_non_contiguous(device):
    act, x, idx = pooled_case(N=3, C_out=4, H=8, W=10, device=device)
    weight = torch.randn(2, 4, 3, 3, dtype=torch.float64, device=device).transpose(0, 1)  # (4, 2, 3, 3) view
    xs = x.transpose(2, 3).contiguous().transpose(2, 3)  # same values, channels-last-like strides
    idxs = idx.transpose(2, 3).contiguous().transpose(2, 3)
    assert not (weight.is_contiguous() or xs.is_contiguous() or idxs.is_contiguous())
    out = ops.unpool_conv_transpose2d(xs, idxs, weight, unpool_size=(8, 10), stride=2)
    want = ops.unpool_conv_transpose2d(x, idx, weight.contiguous(), unpool_size=(8, 10), stride=2)
    torch.testing.assert_close(out, want)
    sliced = torch.randn(6, 4, 4, 5, dtype=torch.float64, device=device)[::2]
    torch.testing.assert_close(ops.unpool_conv_transpose2d(sliced, idx, weight, unpool_size=(8, 10)),
                               ops.unpool_conv_transpose2d(sliced.contiguous(), idx, weight.contiguous(),
                                                           unpool_size=(8, 10)))


@pytest.mark.parametrize("device", DEVICES)
def test_unpool_conv_transpose2d_empty_batch(device):
    _, x, idx = pooled_case(N=2, C_out=3, H=6, W=6, device=device)
    weight = torch.randn(3, 2, 3, 3, dtype=torch.float64, device=device)
    out = ops.unpool_conv_transpose2d(x[:0], idx[:0], weight, unpool_size=(6, 6))
    assert out.shape == (0, 2, 8, 8)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("bad", [-1, 36, 10**6])
def test_unpool_conv_transpose2d_bad_indices(device, bad):
    _, x, idx = pooled_case(N=2, C_out=3, H=6, W=6, device=device)
    weight = torch.randn(3, 2, 3, 3, dtype=torch.float64, device=device)
    idx = idx.clone()
    idx[1, 2, 0, 1] = bad
    with pytest.raises(CnnauralError, match=r"unpool_conv_transpose2d.*indices"):
        ops.unpool_conv_transpose2d(x, idx, weight, unpool_size=(6, 6))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_unpool_conv_transpose2d_bad_channels_and_switches_either_backend(device, backend, monkeypatch):
    """Native (the kernel checks) or reference (ops checks first): the same CnnauralError."""
    monkeypatch.setenv("CNNAURAL_BACKEND", backend)
    _, x, idx = pooled_case(N=1, C_out=3, H=6, W=6, device=device)
    weight = torch.randn(3, 2, 3, 3, dtype=torch.float64, device=device)
    seeds = torch.rand(2, 1, 3, 3, dtype=torch.float64, device=device)
    for bad in ([0, 3], [-1, 0]):
        with pytest.raises(CnnauralError, match=r"^unpool_conv_transpose2d: channels must lie in \[0, 3\)"):
            ops.unpool_conv_transpose2d(seeds, idx, weight, unpool_size=(6, 6),
                                        channels=torch.tensor(bad, device=device))
    idx = idx.clone()
    idx[0, 1, 2, 2] = 36
    with pytest.raises(CnnauralError, match=r"^unpool_conv_transpose2d: indices must lie in \[0, H\*W\)"):
        ops.unpool_conv_transpose2d(seeds, idx, weight, unpool_size=(6, 6), channels=torch.tensor([1, 1], device=device))


@pytest.mark.parametrize("device", DEVICES)
def test_unpool_conv_transpose2d_shape_errors(device):
    _, x, idx = pooled_case(N=2, C_out=3, H=6, W=6, device=device)
    w = torch.randn(3, 2, 3, 3, dtype=torch.float64, device=device)
    f = ops.unpool_conv_transpose2d
    cases = [
        (lambda: f(x[0], idx[0], w, unpool_size=(6, 6)), "4-D"),
        (lambda: f(x, idx.int(), w, unpool_size=(6, 6)), "int64"),
        (lambda: f(x, idx[:, :2], w, unpool_size=(6, 6)), r"indices .* must be"),
        (lambda: f(x, idx[:, :, :2], w, unpool_size=(6, 6)), r"indices .* must be"),
        (lambda: f(torch.cat([x, x[:1]]), idx, w, unpool_size=(6, 6)), r"N or 1"),
        (lambda: f(x, idx, w[:2], unpool_size=(6, 6)), r"weight .* must be \(C_out=3"),
        (lambda: f(x, idx, w.float(), unpool_size=(6, 6)), "dtype"),
        (lambda: f(x.long(), idx, w.long(), unpool_size=(6, 6)), "floating"),
        (lambda: f(x, idx, w, torch.zeros(3, dtype=torch.float64, device=device), unpool_size=(6, 6)), "bias"),
        (lambda: f(x, idx, w, unpool_size=(6, 6, 1)), "unpool_size"),
        (lambda: f(x, idx, w, unpool_size=(6, 6), stride=(1, 2, 3)), "stride"),
        (lambda: f(x, idx, w, unpool_size=(2, 2)), r"\[0, 4\)"),  # switches beyond a too-small plane
    ]
    for call, msg in cases:
        with pytest.raises(CnnauralError, match=msg) as info:
            call()
        assert "unpool_conv_transpose2d" in str(info.value)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("overlap", [False, True])
def test_unpool_conv_transpose2d_gradcheck(device, overlap, one_thread):
    pool, pool_stride = (3, 2) if overlap else (2, None)
    _, x, idx = pooled_case(N=2, C_out=2, H=5, W=5, pool=pool, pool_stride=pool_stride, device=device)
    # keep the seeds away from the ReLU's kink
    x = (x.abs() + 0.1) * torch.tensor([1.0, -1.0], dtype=torch.float64, device=device).view(1, 2, 1, 1)
    x = x.requires_grad_()
    w = torch.randn(2, 3, 2, 3, dtype=torch.float64, device=device, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, device=device, requires_grad=True)
    torch.autograd.gradcheck(
        lambda x, w, b: ops.unpool_conv_transpose2d(x, idx, w, b, unpool_size=(5, 5), stride=2, padding=1,
                                                    output_padding=1), (x, w, b))


@pytest.mark.parametrize("device", DEVICES)
def test_unpool_conv_transpose2d_is_a_deconvnet_step(device):
    """Backward through conv -> ReLU -> pool with the ReLU gradient replaced by relu(grad_output)
    (the deconvnet): one fused op per block."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 2, 12, 12, generator=g, dtype=torch.float64).to(device).requires_grad_()
    weight = torch.randn(4, 2, 3, 3, generator=g, dtype=torch.float64).to(device)
    a = torch.relu(F.conv2d(x, weight, padding=1))
    pooled, idx = F.max_pool2d(a, 2, return_indices=True)
    seed = torch.zeros_like(pooled)
    seed[:, 1] = pooled[:, 1].detach()  # feature 1's map, every other channel zero
    unpooled = torch.zeros_like(a).flatten(2).scatter_add(2, idx.flatten(2), seed.flatten(2)).view_as(a)
    (want,) = torch.autograd.grad(F.conv2d(x, weight, padding=1), x, torch.relu(unpooled))
    out = ops.unpool_conv_transpose2d(seed, idx, weight, unpool_size=(12, 12), padding=1)
    torch.testing.assert_close(out, want)
    assert not math.isclose(float(out.abs().sum()), 0.0)
