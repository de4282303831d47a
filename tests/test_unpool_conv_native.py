"""Native kernels against their pure-PyTorch twins, property-based: random geometry, sparsity,
broadcast and full switches, strides, dtypes; bad switches caught in the kernel itself; opcheck.
Every kernel test runs on every device (conftest skips the "cuda" cases without a GPU)."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnaural_ext import ops, reference
from helpers import pooled_case

pytestmark = pytest.mark.skipif(not ops.native_available(), reason="native extension not built")
DEVICES = ["cpu", "cuda"]
on_every_device = pytest.mark.parametrize("device", DEVICES)


@on_every_device
@settings(max_examples=60, deadline=None)
@given(N=st.integers(1, 5), C_out=st.integers(1, 6), C_in=st.integers(1, 20), H=st.integers(2, 13),
       W=st.integers(2, 13), pool=st.sampled_from([(2, 2), (3, 2), (2, 1), (3, 3), (1, 1)]),
       kh=st.integers(1, 5), kw=st.integers(1, 5), stride=st.sampled_from([(1, 1), (2, 2), (1, 2), (3, 1)]),
       padding=st.sampled_from([(0, 0), (1, 1), (2, 0)]), dilation=st.sampled_from([(1, 1), (2, 1), (2, 3)]),
       dtype=st.sampled_from([torch.float32, torch.float64]), broadcast=st.booleans(),
       sparsity=st.sampled_from(["dense", "half", "one-feature"]), rectify=st.booleans(),
       bias=st.booleans(), seed=st.integers(0, 2**16))
def test_native_equals_reference(N, C_out, C_in, H, W, pool, kh, kw, stride, padding, dilation, dtype, broadcast,
                                 sparsity, rectify, bias, seed, device):
    if pool[0] > min(H, W):
        return
    x, idx, weight, usize = pooled_case(seed, N, C_out, C_in, H, W, pool[0], pool[1], (kh, kw), stride, padding,
                                        dilation, dtype, broadcast, sparsity, device)
    b = torch.randn(C_in, dtype=dtype, device=device) if bias else None
    # the largest output_padding allowed, to exercise it too
    op = tuple(max(0, min(stride[d], dilation[d]) - 1) if max(stride[d], dilation[d]) > 1 else 0 for d in range(2))
    for d in range(2):
        if (usize[d] - 1) * stride[d] - 2 * padding[d] + dilation[d] * ((kh, kw)[d] - 1) + op[d] + 1 <= 0:
            return
    got = torch.ops.cnnaural.unpool_conv_transpose2d(x, idx, weight, b, usize, stride, padding, op, dilation, rectify)
    want = reference.unpool_conv_transpose2d(x, idx, weight, b, unpool_size=usize, stride=stride, padding=padding,
                                             output_padding=op, dilation=dilation, rectify=rectify)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    assert got.device == x.device
    torch.testing.assert_close(got, want, **tol)


@on_every_device
def test_non_contiguous_inputs_and_channels_last(device):
    x, idx, weight, usize = pooled_case(3, 4, 6, 8, 12, 10, 2, 2, (3, 3), (1, 1), (1, 1), (1, 1), torch.float64,
                                        False, "half", device)
    want = reference.unpool_conv_transpose2d(x, idx, weight, unpool_size=usize, padding=(1, 1))
    xs = x.transpose(2, 3).contiguous().transpose(2, 3)  # same values, other strides
    idxs = idx.contiguous(memory_format=torch.channels_last)
    ws = weight.transpose(0, 1).contiguous().transpose(0, 1)
    got = torch.ops.cnnaural.unpool_conv_transpose2d(xs, idxs, ws, None, usize, (1, 1), (1, 1), (0, 0), (1, 1), True)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    assert got.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("C_in", [32, 1])  # 1: the per-position tap-vector path
@pytest.mark.parametrize("pool", [(3, 2), (2, 2)])  # repeated switches, and none
def test_results_are_deterministic_across_threads(C_in, pool):
    x, idx, weight, usize = pooled_case(5, 3, 8, C_in, 20, 20, pool[0], pool[1], (3, 3), (1, 1), (1, 1), (1, 1),
                                        torch.float32, True, "dense")
    args = (x, idx, weight, None, usize, (1, 1), (1, 1), (0, 0), (1, 1), True)
    n = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = torch.ops.cnnaural.unpool_conv_transpose2d(*args)
    finally:
        torch.set_num_threads(n)
    many = torch.ops.cnnaural.unpool_conv_transpose2d(*args)
    assert torch.equal(one, many)


@pytest.mark.cuda
@pytest.mark.parametrize("compact", [False, True])
@pytest.mark.parametrize("pool", [(2, 2), (3, 2), (3, 1)])  # (3, 1): up to 9 windows share a switch
def test_cuda_results_are_the_same_run_to_run(compact, pool):
    """No floating-point atomics: repeated switches are summed in raster order by one thread."""
    x, idx, weight, usize = pooled_case(6, 5, 8, 16, 19, 17, pool[0], pool[1], (3, 3), (1, 1), (1, 1), (1, 1),
                                        torch.float32, True, "dense", "cuda")
    channels = None
    if compact:
        channels = torch.arange(5, device="cuda") % 8
        x = x[:, :1].contiguous()
    args = (x, idx, weight, None, usize, (1, 1), (1, 1), (0, 0), (1, 1), True, channels)
    first = torch.ops.cnnaural.unpool_conv_transpose2d(*args)
    for _ in range(3):
        assert torch.equal(torch.ops.cnnaural.unpool_conv_transpose2d(*args), first)
    dense = x if channels is None else reference.densify(x, channels, 8)
    want = reference.unpool_conv_transpose2d(dense.double(), idx, weight.double(), unpool_size=usize, padding=1)
    torch.testing.assert_close(first.double(), want, rtol=1e-5, atol=1e-5)


@on_every_device
@settings(max_examples=40, deadline=None)
@given(bad=st.one_of(st.integers(-2**40, -1), st.integers(64, 2**40)), pos=st.integers(0, 2 * 3 * 4 * 4 - 1),
       compact=st.booleans())
def test_kernel_rejects_bad_switches(bad, pos, compact, device):
    """The kernel's own check (the Python wrapper checks first; this is the safety net): an error
    naming the op, never a crash or a device assert — the device stays usable afterwards."""
    x = torch.rand(2, 3, 4, 4, device=device) + 0.1
    idx = torch.randint(0, 64, (2, 3, 4, 4), device=device)
    idx.view(-1)[pos] = bad
    channels = None
    if compact:
        c_bad = pos // 16 % 3  # both seeds take the channel that holds the bad switch
        channels = torch.tensor([c_bad, c_bad], device=device)
        x = x[:, :1]
    with pytest.raises(RuntimeError, match="unpool_conv_transpose2d: indices must lie in"):
        torch.ops.cnnaural.unpool_conv_transpose2d(x, idx, torch.rand(3, 2, 3, 3, device=device), None, (8, 8),
                                                   (1, 1), (1, 1), (0, 0), (1, 1), True, channels)
    torch.ones(1, device=device).sum().item()  # the device still works


@on_every_device
def test_empty_inputs(device):
    out = torch.ops.cnnaural.unpool_conv_transpose2d(torch.rand(0, 3, 4, 4, device=device),
                                                     torch.zeros(1, 3, 4, 4, dtype=torch.long, device=device),
                                                     torch.rand(3, 2, 3, 3, device=device), None, (8, 8), (1, 1),
                                                     (1, 1), (0, 0), (1, 1), True)
    assert out.shape == (0, 2, 8, 8) and out.device.type == device
    bias = torch.rand(2, device=device)
    out = torch.ops.cnnaural.unpool_conv_transpose2d(torch.rand(2, 3, 0, 4, device=device),
                                                     torch.zeros(1, 3, 0, 4, dtype=torch.long, device=device),
                                                     torch.rand(3, 2, 3, 3, device=device), bias, (8, 8), (1, 1),
                                                     (1, 1), (0, 0), (1, 1), True)
    torch.testing.assert_close(out, bias.view(1, 2, 1, 1).expand(2, 2, 8, 8))


def test_routing_follows_the_backend_switch(monkeypatch):
    calls = []
    original = reference.unpool_conv_transpose2d
    monkeypatch.setattr(reference, "unpool_conv_transpose2d", lambda *a, **k: calls.append(1) or original(*a, **k))
    x, idx, weight, usize = pooled_case(1, 2, 3, 4, 8, 8, 2, 2, (3, 3), (1, 1), (1, 1), (1, 1), torch.float32,
                                        True, "dense")
    ops.unpool_conv_transpose2d(x, idx, weight, unpool_size=usize, padding=1)
    assert calls == [] and ops.active_backend("unpool_conv_transpose2d") == "native"
    monkeypatch.setenv("CNNAURAL_BACKEND", "reference")
    ops.unpool_conv_transpose2d(x, idx, weight, unpool_size=usize, padding=1)
    assert calls == [1] and ops.active_backend("unpool_conv_transpose2d") == "reference"


@on_every_device
def test_half_precision_runs_on_the_reference(device, monkeypatch):
    """The kernels take float32/float64; bfloat16 goes to the reference, or is refused with the
    reason when CNNAURAL_BACKEND=native."""
    from cnnaural_ext.errors import CnnauralError

    x, idx, weight, usize = pooled_case(1, 2, 3, 4, 8, 8, 2, 2, (3, 3), (1, 1), (1, 1), (1, 1), torch.float32,
                                        True, "half", device)
    got = ops.unpool_conv_transpose2d(x.bfloat16(), idx, weight.bfloat16(), unpool_size=usize, padding=1)
    want = ops.unpool_conv_transpose2d(x, idx, weight, unpool_size=usize, padding=1)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), want, rtol=0.05, atol=0.1)
    monkeypatch.setenv("CNNAURAL_BACKEND", "native")
    with pytest.raises(CnnauralError, match="float32 and float64"):
        ops.unpool_conv_transpose2d(x.bfloat16(), idx, weight.bfloat16(), unpool_size=usize, padding=1)


@on_every_device
@pytest.mark.parametrize("broadcast", [True, False])
def test_opcheck(broadcast, device):
    x, idx, weight, usize = pooled_case(2, 3, 4, 5, 8, 6, 2, 2, (3, 3), (1, 1), (1, 1), (1, 1), torch.float64,
                                        broadcast, "half", device)
    x.requires_grad_(True)
    weight.requires_grad_(True)
    args = (x, idx, weight, torch.rand(5, dtype=torch.float64, device=device, requires_grad=True), list(usize),
            [1, 1], [1, 1],
            [0, 0], [1, 1], True)
    torch.library.opcheck(torch.ops.cnnaural.unpool_conv_transpose2d, args)


@on_every_device
def test_gradcheck_native_backward(device):
    x, idx, weight, usize = pooled_case(4, 2, 3, 2, 6, 6, 3, 2, (3, 3), (2, 2), (1, 1), (1, 1), torch.float64,
                                        True, "dense", device)
    x.requires_grad_(True)
    weight.requires_grad_(True)
    bias = torch.rand(2, dtype=torch.float64, device=device, requires_grad=True)

    def f(x, w, b):
        return torch.ops.cnnaural.unpool_conv_transpose2d(x, idx, w, b, usize, (2, 2), (1, 1), (1, 1), (1, 1), True)

    assert torch.autograd.gradcheck(f, (x, weight, bias))


@on_every_device
@settings(max_examples=30, deadline=None)
@given(N=st.integers(1, 6), C_out=st.integers(1, 6), C_in=st.integers(1, 40), broadcast=st.booleans(),
       pool=st.sampled_from([(2, 2), (3, 2)]), dtype=st.sampled_from([torch.float32, torch.float64]),
       k=st.sampled_from([(3, 3), (1, 1), (12, 12)]), seed=st.integers(0, 2**16))
def test_compact_one_feature_seeds_equal_their_dense_form(N, C_out, C_in, broadcast, pool, dtype, k, seed, device):
    g = torch.Generator().manual_seed(seed)
    _, idx, weight, usize = pooled_case(seed, N, C_out, C_in, 11, 9, pool[0], pool[1], k, (1, 1), (1, 1),
                                        (1, 1), dtype, broadcast, "dense", device)
    x = torch.randn(N, 1, *idx.shape[-2:], generator=g, dtype=dtype).to(device)
    channels = torch.randint(C_out, (N,), generator=g).to(device)
    dense = reference.densify(x, channels, C_out)
    got = torch.ops.cnnaural.unpool_conv_transpose2d(x, idx, weight, None, usize, (1, 1), (1, 1), (0, 0), (1, 1),
                                                     True, channels)
    want = reference.unpool_conv_transpose2d(dense, idx, weight, unpool_size=usize, padding=(1, 1))
    torch.testing.assert_close(got, want, **(dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else {}))
    via_ops = ops.unpool_conv_transpose2d(x, idx, weight, unpool_size=usize, padding=1, channels=channels)
    torch.testing.assert_close(via_ops, got)


@on_every_device
def test_compact_seeds_bad_channels_and_grad(device):
    _, idx, weight, usize = pooled_case(1, 3, 4, 2, 8, 8, 2, 2, (3, 3), (1, 1), (1, 1), (1, 1), torch.float64,
                                        True, "dense", device)
    x = torch.rand(3, 1, 4, 4, dtype=torch.float64, device=device, requires_grad=True)
    for bad in ([0, 4, 1], [0, -1, 1]):
        with pytest.raises(RuntimeError, match="channels must lie in"):
            torch.ops.cnnaural.unpool_conv_transpose2d(x.detach(), idx, weight, None, usize, (1, 1), (1, 1), (0, 0),
                                                       (1, 1), True, torch.tensor(bad, device=device))
    channels = torch.tensor([2, 0, 2], device=device)
    w = weight.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda x, w: torch.ops.cnnaural.unpool_conv_transpose2d(x, idx, w, None, usize, (1, 1), (1, 1), (0, 0),
                                                                (1, 1), True, channels), (x, w))
    torch.library.opcheck(torch.ops.cnnaural.unpool_conv_transpose2d,
                          (x, idx, w, None, list(usize), [1, 1], [1, 1], [0, 0], [1, 1], True, channels))


@on_every_device
@pytest.mark.parametrize("layer", [1, 3, 5])
def test_native_and_reference_auralisations_agree_on_the_paper_model(layer, device, monkeypatch):
    import cnnaural_ext as ca

    torch.manual_seed(0)
    spec = ca.Spectrogram()
    model = ca.models.paper_cnn5(width=16, input_shape=(257, 87)).eval()
    aur = ca.Auraliser(model, spec, device=device)
    x = torch.randn(22050) * 0.1
    native = aur.auralise(x, layer=layer, features="all", normalize=False)
    monkeypatch.setenv("CNNAURAL_BACKEND", "reference")
    ref = aur.auralise(x, layer=layer, features="all", normalize=False)
    scale = ref.maps.abs().amax()
    torch.testing.assert_close(native.maps, ref.maps, rtol=1e-5, atol=1e-5 * float(scale))
    torch.testing.assert_close(native.audio, ref.audio, rtol=1e-5, atol=1e-5 * float(ref.audio.abs().amax()))


def test_both_cpu_loop_variants_equal_the_reference():
    """The fused op's CPU loop runs as the AVX2+FMA variant where the CPU has it and as the default
    loops elsewhere (chosen once per process): the default loops, forced with
    CNNAURAL_CPU_ISA=default in a fresh process, also equal the reference, so a machine without
    AVX2 is covered here too."""
    import os
    import subprocess
    import sys

    code = r"""
import torch
from cnnaural_ext import _C, reference
from helpers import pooled_case
print(_C.build_info()["cpu_isa"])
for i, (n, c_out, c_in, sparsity, bc) in enumerate([(3, 4, 5, "dense", True), (2, 6, 17, "half", False),
                                                     (4, 3, 1, "one-feature", True), (1, 8, 64, "dense", True)]):
    x, idx, w, usize = pooled_case(i, n, c_out, c_in, 13, 11, 2, 2, (3, 3), (1, 1), (1, 1), (1, 1), torch.float64,
                                   bc, sparsity)
    got = torch.ops.cnnaural.unpool_conv_transpose2d(x, idx, w, None, usize, (1, 1), (1, 1), (0, 0), (1, 1), True, None)
    want = reference.unpool_conv_transpose2d(x, idx, w, None, unpool_size=usize, stride=(1, 1), padding=(1, 1))
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
print("ok")
"""
    tests = os.path.dirname(os.path.abspath(__file__))
    for isa in ("default", "auto"):
        env = dict(os.environ, CNNAURAL_CPU_ISA=isa, PYTHONPATH=tests + os.pathsep + os.environ.get("PYTHONPATH", ""))
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
        assert r.returncode == 0, r.stderr
        lines = r.stdout.split()
        assert lines[-1] == "ok"
        if isa == "default":
            assert lines[0] == "default"


# ---------------------------------------------------------------------------------------------
# The CPU's seed-batched GEMM (dense seeds sharing one track's switches). The op picks it for
# dense seeds; CNNAURAL_UNPOOL_CONV_CPU=gemm | scatter forces one path, so both are held to the
# reference on the same cases.
# ---------------------------------------------------------------------------------------------
def _both_cpu_paths(monkeypatch, fn):
    out = {}
    for path in ("gemm", "scatter"):
        monkeypatch.setenv("CNNAURAL_UNPOOL_CONV_CPU", path)
        out[path] = fn()
    monkeypatch.delenv("CNNAURAL_UNPOOL_CONV_CPU")
    return out


def _native_and_reference(x, idx, w, b, usize, stride, padding, opad, dilation, rectify):
    got = torch.ops.cnnaural.unpool_conv_transpose2d(x, idx, w, b, usize, stride, padding, opad, dilation, rectify)
    want = reference.unpool_conv_transpose2d(x, idx, w, b, unpool_size=usize, stride=stride, padding=padding,
                                             output_padding=opad, dilation=dilation, rectify=rectify)
    return got, want


@settings(max_examples=80, deadline=None)
@given(N=st.integers(1, 20), C_out=st.integers(1, 9), C_in=st.sampled_from([1, 2, 3, 7, 8, 9, 16, 17, 33]),
       H=st.integers(2, 17), W=st.integers(2, 17), pool=st.sampled_from([(2, 2), (3, 2), (2, 1), (3, 3), (1, 1)]),
       kh=st.integers(1, 5), kw=st.integers(1, 5), stride=st.sampled_from([(1, 1), (2, 2), (1, 2), (3, 1)]),
       padding=st.sampled_from([(0, 0), (1, 1), (2, 0)]), dilation=st.sampled_from([(1, 1), (2, 1), (2, 3)]),
       dtype=st.sampled_from([torch.float32, torch.float64]), channels_last=st.booleans(),
       sparsity=st.sampled_from(["dense", "half", "one-feature"]), rectify=st.booleans(), bias=st.booleans(),
       seed=st.integers(0, 2**16))
def test_seed_gemm_equals_reference(N, C_out, C_in, H, W, pool, kh, kw, stride, padding, dilation, dtype,
                                    channels_last, sparsity, rectify, bias, seed):
    """Forced onto the GEMM (and onto the scatter path): any geometry, odd sizes, overlapping pools
    (repeated switches), N that is no multiple of the micro-kernels' 4, 6 or 8 seeds, C_in below,
    at and above one vector, both memory formats of the input."""
    if pool[0] > min(H, W):
        return
    x, idx, w, usize = pooled_case(seed, N, C_out, C_in, H, W, pool[0], pool[1], (kh, kw), stride, padding,
                                   dilation, dtype, True, sparsity)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    b = torch.randn(C_in, dtype=dtype) if bias else None
    opad = tuple(max(0, min(stride[d], dilation[d]) - 1) if max(stride[d], dilation[d]) > 1 else 0 for d in range(2))
    if any((usize[d] - 1) * stride[d] - 2 * padding[d] + dilation[d] * ((kh, kw)[d] - 1) + opad[d] + 1 <= 0
           for d in range(2)):
        return
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    import os
    for path in ("gemm", "scatter"):
        os.environ["CNNAURAL_UNPOOL_CONV_CPU"] = path
        try:
            got, want = _native_and_reference(x, idx, w, b, usize, stride, padding, opad, dilation, rectify)
        finally:
            del os.environ["CNNAURAL_UNPOOL_CONV_CPU"]
        torch.testing.assert_close(got, want, **tol)
        assert got.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("C_in", [1, 3, 16, 64])
@pytest.mark.parametrize("N", [1, 4, 5, 7, 8, 9, 10, 12, 13, 65])
@pytest.mark.parametrize("pool", [(2, 2), (3, 2)])  # no repeated switches, and repeats
def test_seed_gemm_long_inputs(N, C_in, pool, monkeypatch):
    """A long track (1300 frames, 30 s at the paper's hop), 8 channels (multiples of 8 take the
    8 x 8 register transpose from channels-last input), every seed count's remainder."""
    x, idx, w, usize = pooled_case(N * 7 + C_in, N, 8, C_in, 9, 1300, pool[0], pool[1], (3, 3), (1, 1), (1, 1),
                                   (1, 1), torch.float32, True, "dense")
    for xs in (x, x.contiguous(memory_format=torch.channels_last)):
        out = _both_cpu_paths(monkeypatch, lambda: _native_and_reference(xs, idx, w, None, usize, (1, 1), (1, 1),
                                                                         (0, 0), (1, 1), True))
        for got, want in out.values():
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("C_in", [1, 24])
def test_seed_gemm_paper_block_shapes(C_in, monkeypatch):
    """The paper model's blocks with 64 channels, odd plane sizes (257 x 173 pooled to 128 x 86),
    64 dense seeds in channels-last memory, as DeconvNet chains them."""
    x, idx, w, usize = pooled_case(11, 19, 64, C_in, 257, 45, 2, 2, (3, 3), (1, 1), (1, 1), (1, 1), torch.float32,
                                   True, "dense")
    x = x.contiguous(memory_format=torch.channels_last)
    b = torch.randn(C_in)
    out = _both_cpu_paths(monkeypatch, lambda: _native_and_reference(x, idx, w, b, usize, (1, 1), (1, 1), (0, 0),
                                                                     (1, 1), True))
    for got, want in out.values():
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out["gemm"][0], out["scatter"][0], rtol=1e-5, atol=1e-5)


def test_seed_gemm_is_chosen_for_dense_seeds_only(monkeypatch):
    """Unforced, dense seeds and one-feature seeds both equal the reference (the op's own choice)."""
    monkeypatch.delenv("CNNAURAL_UNPOOL_CONV_CPU", raising=False)
    for sparsity in ("dense", "one-feature", "half"):
        x, idx, w, usize = pooled_case(3, 16, 12, 8, 20, 30, 2, 2, (3, 3), (1, 1), (1, 1), (1, 1), torch.float32,
                                       True, sparsity)
        got, want = _native_and_reference(x, idx, w, None, usize, (1, 1), (1, 1), (0, 0), (1, 1), True)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("C_in", [32, 1])
@pytest.mark.parametrize("pool", [(3, 2), (2, 2)])
def test_seed_gemm_is_deterministic_across_threads(C_in, pool, monkeypatch):
    monkeypatch.setenv("CNNAURAL_UNPOOL_CONV_CPU", "gemm")
    x, idx, weight, usize = pooled_case(5, 11, 8, C_in, 40, 30, pool[0], pool[1], (3, 3), (1, 1), (1, 1), (1, 1),
                                        torch.float32, True, "dense")
    args = (x, idx, weight, None, usize, (1, 1), (1, 1), (0, 0), (1, 1), True)
    n = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = torch.ops.cnnaural.unpool_conv_transpose2d(*args)
    finally:
        torch.set_num_threads(n)
    many = torch.ops.cnnaural.unpool_conv_transpose2d(*args)
    assert torch.equal(one, many)


@settings(max_examples=20, deadline=None)
@given(bad=st.one_of(st.integers(-2**40, -1), st.integers(64, 2**40)), pos=st.integers(0, 3 * 4 * 4 - 1))
def test_seed_gemm_rejects_bad_switches(bad, pos):
    import os
    x = torch.rand(7, 3, 4, 4) + 0.1
    idx = torch.randint(0, 64, (1, 3, 4, 4))
    idx.view(-1)[pos] = bad
    os.environ["CNNAURAL_UNPOOL_CONV_CPU"] = "gemm"
    try:
        with pytest.raises(RuntimeError, match="unpool_conv_transpose2d: indices must lie in"):
            torch.ops.cnnaural.unpool_conv_transpose2d(x, idx, torch.rand(3, 2, 3, 3), None, (8, 8), (1, 1), (1, 1),
                                                       (0, 0), (1, 1), True)
    finally:
        del os.environ["CNNAURAL_UNPOOL_CONV_CPU"]


def test_seed_gemm_both_cpu_loop_variants_equal_the_reference():
    """The GEMM's AVX2+FMA variant and its default loops (CNNAURAL_CPU_ISA=default, fresh process)
    on the cases that take each micro-kernel and the 8 x 8 transpose."""
    import os
    import subprocess
    import sys

    code = r"""
import torch
from cnnaural_ext import _C, reference
from helpers import pooled_case
print(_C.build_info()["cpu_isa"])
cases = [(13, 8, 1, torch.float32, True), (13, 8, 1, torch.float64, False), (7, 5, 20, torch.float32, False),
         (9, 16, 17, torch.float64, True), (4, 3, 8, torch.float32, False), (17, 8, 3, torch.float32, True)]
for i, (n, c_out, c_in, dtype, cl) in enumerate(cases):
    for pool in ((2, 2), (3, 2)):
        x, idx, w, usize = pooled_case(i, n, c_out, c_in, 21, 37, pool[0], pool[1], (3, 3), (1, 1), (1, 1), (1, 1),
                                       dtype, True, "dense")
        if cl:
            x = x.contiguous(memory_format=torch.channels_last)
        got = torch.ops.cnnaural.unpool_conv_transpose2d(x, idx, w, None, usize, (1, 1), (1, 1), (0, 0), (1, 1), True,
                                                         None)
        want = reference.unpool_conv_transpose2d(x, idx, w, None, unpool_size=usize, stride=(1, 1), padding=(1, 1))
        tol = 1e-4 if dtype == torch.float32 else 1e-10
        torch.testing.assert_close(got, want, rtol=tol, atol=tol)
print("ok")
"""
    tests = os.path.dirname(os.path.abspath(__file__))
    for isa in ("default", "auto"):
        env = dict(os.environ, CNNAURAL_CPU_ISA=isa, CNNAURAL_UNPOOL_CONV_CPU="gemm",
                   PYTHONPATH=tests + os.pathsep + os.environ.get("PYTHONPATH", ""))
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
        assert r.returncode == 0, r.stderr
        lines = r.stdout.split()
        assert lines[-1] == "ok"
        if isa == "default":
            assert lines[0] == "default"


# ---------------------------------------------------------------------------------------------
# The CUDA seed-batched GEMM (dense seeds sharing one track's switches), opt-in until it has been
# measured on a GPU; CNNAURAL_UNPOOL_CONV_CUDA=gemm | cudnn forces one path (cudnn: the unpool + cuDNN
# transposed convolution), so both are held to the reference on the same cases. These run only
# where a GPU is visible (conftest skips them elsewhere).
# ---------------------------------------------------------------------------------------------
CUDA_PATHS = ["gemm", "cudnn"]


def _on_cuda_path(monkeypatch, path, fn):
    monkeypatch.setenv("CNNAURAL_UNPOOL_CONV_CUDA", path)
    try:
        return fn()
    finally:
        monkeypatch.delenv("CNNAURAL_UNPOOL_CONV_CUDA")


@pytest.mark.cuda
@settings(max_examples=80, deadline=None)
@given(N=st.integers(1, 70), C_out=st.integers(1, 9), C_in=st.sampled_from([1, 2, 3, 7, 16, 17, 33]),
       H=st.integers(2, 17), W=st.integers(2, 17), pool=st.sampled_from([(2, 2), (3, 2), (2, 1), (3, 3), (1, 1)]),
       kh=st.integers(1, 5), kw=st.integers(1, 5), stride=st.sampled_from([(1, 1), (2, 2), (1, 2), (3, 1)]),
       padding=st.sampled_from([(0, 0), (1, 1), (2, 0)]), dilation=st.sampled_from([(1, 1), (2, 1), (2, 3)]),
       dtype=st.sampled_from([torch.float32, torch.float64]), channels_last=st.booleans(),
       sparsity=st.sampled_from(["dense", "half", "one-feature"]), rectify=st.booleans(), bias=st.booleans(),
       seed=st.integers(0, 2**16))
def test_cuda_seed_gemm_equals_reference(N, C_out, C_in, H, W, pool, kh, kw, stride, padding, dilation, dtype,
                                         channels_last, sparsity, rectify, bias, seed):
    """Both CUDA paths on any geometry: odd sizes, overlapping pools (repeated switches), stride
    != kernel, dilation, padding, output_padding, N no multiple of the 8 or 32 seeds of a block,
    C_in below, at and above the 16 channels of a block, both memory formats, float and double."""
    import os

    if pool[0] > min(H, W):
        return
    x, idx, w, usize = pooled_case(seed, N, C_out, C_in, H, W, pool[0], pool[1], (kh, kw), stride, padding,
                                   dilation, dtype, True, sparsity, "cuda")
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    b = torch.randn(C_in, dtype=dtype, device="cuda") if bias else None
    opad = tuple(max(0, min(stride[d], dilation[d]) - 1) if max(stride[d], dilation[d]) > 1 else 0 for d in range(2))
    if any((usize[d] - 1) * stride[d] - 2 * padding[d] + dilation[d] * ((kh, kw)[d] - 1) + opad[d] + 1 <= 0
           for d in range(2)):
        return
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    for path in CUDA_PATHS:
        os.environ["CNNAURAL_UNPOOL_CONV_CUDA"] = path
        try:
            got, want = _native_and_reference(x, idx, w, b, usize, stride, padding, opad, dilation, rectify)
        finally:
            del os.environ["CNNAURAL_UNPOOL_CONV_CUDA"]
        torch.testing.assert_close(got, want, **tol)
        assert got.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.cuda
@pytest.mark.parametrize("path", CUDA_PATHS)
@pytest.mark.parametrize("C_in", [1, 2, 3, 16, 64])
@pytest.mark.parametrize("N", [1, 7, 8, 9, 31, 33, 65])
@pytest.mark.parametrize("pool", [(2, 2), (3, 2), (3, 1)])  # no repeated switches, and repeats
def test_cuda_seed_gemm_long_inputs(N, C_in, pool, path, monkeypatch):
    """A long track (1300 frames), every seed block's remainder, each block shape (C_in <= 2,
    N <= 8, the rest), both memory formats."""
    x, idx, w, usize = pooled_case(N * 7 + C_in, N, 8, C_in, 9, 1300, pool[0], pool[1], (3, 3), (1, 1), (1, 1),
                                   (1, 1), torch.float32, True, "dense", "cuda")
    for xs in (x, x.contiguous(memory_format=torch.channels_last)):
        got, want = _on_cuda_path(monkeypatch, path, lambda: _native_and_reference(
            xs, idx, w, None, usize, (1, 1), (1, 1), (0, 0), (1, 1), True))
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.cuda
@pytest.mark.parametrize("C_in", [1, 24])
def test_cuda_seed_gemm_paper_block_shapes_and_seed_chunks(C_in, monkeypatch):
    """The paper model's blocks with 64 channels and odd plane sizes (257 x 173 pooled to
    128 x 86); 100 seeds take several chunks of seed blocks on both paths. Both paths agree."""
    x, idx, w, usize = pooled_case(11, 100, 64, C_in, 257, 173, 2, 2, (3, 3), (1, 1), (1, 1), (1, 1),
                                   torch.float32, True, "dense", "cuda")
    x = x.contiguous(memory_format=torch.channels_last)
    b = torch.randn(C_in, device="cuda")
    out = {}
    for path in CUDA_PATHS:
        out[path] = _on_cuda_path(monkeypatch, path, lambda: _native_and_reference(
            x, idx, w, b, usize, (1, 1), (1, 1), (0, 0), (1, 1), True))
        torch.testing.assert_close(out[path][0], out[path][1], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out["gemm"][0], out["cudnn"][0], rtol=1e-4, atol=1e-4)


@pytest.mark.cuda
@pytest.mark.parametrize("C_in", [1, 5, 32])
@pytest.mark.parametrize("N", [3, 40])
@pytest.mark.parametrize("pool", [(2, 2), (3, 2), (3, 1)])
def test_cuda_seed_gemm_is_the_same_run_to_run(N, C_in, pool, monkeypatch):
    """No floating-point atomics: every output is summed by one thread in a fixed order."""
    monkeypatch.setenv("CNNAURAL_UNPOOL_CONV_CUDA", "gemm")
    x, idx, weight, usize = pooled_case(5, N, 8, C_in, 40, 30, pool[0], pool[1], (3, 3), (1, 1), (1, 1), (1, 1),
                                        torch.float32, True, "dense", "cuda")
    args = (x, idx, weight, None, usize, (1, 1), (1, 1), (0, 0), (1, 1), True)
    first = torch.ops.cnnaural.unpool_conv_transpose2d(*args)
    for _ in range(3):
        assert torch.equal(torch.ops.cnnaural.unpool_conv_transpose2d(*args), first)
    # the seeds are independent: one seed alone gives its row of the batch, bit for bit
    # (the same block shape: N <= 8 and N > 8 differ only in how many seeds share a block)
    if N > 8:
        part = torch.ops.cnnaural.unpool_conv_transpose2d(x[9:], *args[1:])
        assert torch.equal(part, first[9:])


@pytest.mark.cuda
@pytest.mark.parametrize("path", CUDA_PATHS)
@settings(max_examples=20, deadline=None)
@given(bad=st.one_of(st.integers(-2**40, -1), st.integers(64, 2**40)), pos=st.integers(0, 3 * 4 * 4 - 1))
def test_cuda_seed_gemm_rejects_bad_switches(bad, pos, path):
    """Indices of batch 1 with dense seeds (the GEMM's case): an error naming the op, and the
    device stays usable."""
    import os

    x = torch.rand(7, 3, 4, 4, device="cuda") + 0.1
    idx = torch.randint(0, 64, (1, 3, 4, 4), device="cuda")
    idx.view(-1)[pos] = bad
    os.environ["CNNAURAL_UNPOOL_CONV_CUDA"] = path
    try:
        with pytest.raises(RuntimeError, match="unpool_conv_transpose2d: indices must lie in"):
            torch.ops.cnnaural.unpool_conv_transpose2d(x, idx, torch.rand(3, 2, 3, 3, device="cuda"), None, (8, 8),
                                                       (1, 1), (1, 1), (0, 0), (1, 1), True)
    finally:
        del os.environ["CNNAURAL_UNPOOL_CONV_CUDA"]
    torch.ones(1, device="cuda").sum().item()


@pytest.mark.cuda
@pytest.mark.parametrize("path", CUDA_PATHS)
def test_cuda_seed_gemm_gradcheck_and_opcheck(path, monkeypatch):
    monkeypatch.setenv("CNNAURAL_UNPOOL_CONV_CUDA", path)
    x, idx, weight, usize = pooled_case(4, 10, 3, 4, 7, 9, 3, 2, (3, 3), (2, 1), (1, 1), (1, 1), torch.float64,
                                        True, "dense", "cuda")
    x.requires_grad_(True)
    weight.requires_grad_(True)
    bias = torch.rand(4, dtype=torch.float64, device="cuda", requires_grad=True)

    def f(x, w, b):
        return torch.ops.cnnaural.unpool_conv_transpose2d(x, idx, w, b, usize, (2, 1), (1, 1), (1, 0), (1, 1), True)

    assert torch.autograd.gradcheck(f, (x, weight, bias))
    torch.library.opcheck(torch.ops.cnnaural.unpool_conv_transpose2d,
                          (x, idx, weight, bias, list(usize), [2, 1], [1, 1], [1, 0], [1, 1], True))
