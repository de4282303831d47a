"""masked_istft (csrc/istft, ops.masked_istft): the entry point and its kernels against the reference
twin, torch.istft and independent oracles (scipy, a numpy overlap-add); routing, autograd, opcheck."""
import numpy as np
import pytest
import scipy.signal
import torch
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

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
# masked_istft
# =============================================================================================
def make_window(kind, win_length, dtype, device="cpu"):
    if kind == "hann":
        return torch.hann_window(win_length, periodic=True, dtype=dtype, device=device)
    if kind == "hann+":  # never zero: NOLA holds for center=False too
        return torch.hann_window(win_length, periodic=True, dtype=dtype, device=device) + 0.1
    if kind == "ones":
        return torch.ones(win_length, dtype=dtype, device=device)
    if kind == "random":
        g = torch.Generator().manual_seed(win_length)
        return (torch.rand(win_length, generator=g, dtype=torch.float64) + 0.2).to(dtype=dtype, device=device)
    raise ValueError(kind)


def make_stft(n_samples, n_fft, hop, win_length, window, center, batch=None, dtype=torch.float64,
              device="cpu", zero_frame=False):
    """A complex STFT of noise: (F, T), or (batch, F, T) when batch is given."""
    shape = (n_samples,) if batch is None else (batch, n_samples)
    x = torch.randn(shape, dtype=dtype, device=device)
    X = torch.stft(x, n_fft, hop, win_length, window, center=center, pad_mode="reflect", return_complex=True)
    if zero_frame:  # exact zero bins: magnitude mode must use the gain itself there
        X = X.clone()
        X[..., :, X.shape[-1] // 2] = 0
        X[..., 0, 0] = 0
    return X


def combined(stft, gain, mode):
    """Y of the op's contract, written out independently of reference.combine."""
    if mode == "mask":
        return stft * gain
    mag = stft.abs()
    phase = torch.where(mag > 0, stft / mag.clamp_min(1e-300), torch.ones_like(stft))
    return gain * phase


def torch_istft(stft, gain, mode, **kw):
    return torch.istft(combined(stft, gain, mode), **kw)


def numpy_istft(Y, n_fft, hop, win_length, window, center, length):
    """Independent oracle: inverse STFT written from its definition in float64 numpy — irfft of
    every frame, window (zero-padded, centred to n_fft), overlap-add, divide by the overlap-added
    squared window, drop n_fft // 2 samples at each end when centred, then crop / zero-pad to
    `length`. Y: (N, F, T) complex."""
    Y = np.asarray(Y, dtype=np.complex128)
    w = np.zeros(n_fft)
    left = (n_fft - win_length) // 2
    w[left:left + win_length] = np.asarray(window, dtype=np.float64)
    N, _, T = Y.shape
    frames = np.fft.irfft(Y, n=n_fft, axis=1)  # (N, n_fft, T)
    full = n_fft + hop * (T - 1)
    y = np.zeros((N, full))
    env = np.zeros(full)
    for t in range(T):
        y[:, t * hop:t * hop + n_fft] += frames[:, :, t] * w
        env[t * hop:t * hop + n_fft] += w * w
    start = n_fft // 2 if center else 0
    end = full - n_fft // 2 if center else full
    if length is not None:  # may reach into the n_fft // 2 samples a centred default trims
        end = min(full, start + length)
    y, env = y[:, start:end], env[start:end]
    assert env.size == 0 or env.min() > 1e-11, "the numpy oracle needs NOLA"
    y = y / env
    if length is not None and y.shape[1] < length:
        y = np.pad(y, ((0, 0), (0, length - y.shape[1])))
    return y


def scipy_istft(Y, n_fft, hop, window, center):
    """scipy.signal.istft with torch.istft's conventions: scipy scales its STFT by 1/sum(window)
    (scaling="spectrum") and multiplies it back, so divide Y by the window sum; boundary=True
    drops nperseg // 2 samples at each end exactly as center=True does. Only for
    win_length == n_fft (scipy puts a short window at the start of the frame, torch centres it)."""
    w = np.asarray(window, dtype=np.float64)
    _, y = scipy.signal.istft(np.asarray(Y) / w.sum(), fs=1.0, window=w, nperseg=n_fft, noverlap=n_fft - hop,
                              nfft=n_fft, input_onesided=True, boundary=center, time_axis=-1, freq_axis=-2)
    return np.atleast_2d(y)


def assert_close_to(got, want, dtype, scale=None):
    scale = float(want.abs().max()) + 1.0 if scale is None else scale
    tol = 1e-10 if dtype == torch.float64 else 2e-5
    assert got.shape == want.shape, (got.shape, want.shape)
    err = float((got.double() - want.double()).abs().max()) if got.numel() else 0.0
    assert err <= tol * scale, f"max abs error {err:.3g} > {tol * scale:.3g}"


def check_masked_istft(stft, gain, mode, dtype, *, n_fft, hop, win_length, window, center, length):
    """native (ops, backend auto) == reference == torch.istft(combined) == numpy oracle, where the
    float32 result's error against the float64 truth is at most 2x torch.istft's own + eps."""
    kw = dict(n_fft=n_fft, hop_length=hop, win_length=win_length, window=window, center=center, length=length)
    got = ops.masked_istft(stft, gain, mode=mode, **kw)
    ref = reference.masked_istft(stft, gain, mode=mode, **kw)
    g3 = gain if gain.dim() == 3 else gain.unsqueeze(0)
    want = torch_istft(stft, g3, mode, **kw)
    assert got.dtype == dtype and got.shape == want.shape == ref.shape
    # truth: float64 everything, independent numpy inverse STFT
    Y = combined(stft.to(torch.complex128), g3.double(), mode).expand(g3.shape[0], -1, -1)  # broadcast to N
    truth = torch.from_numpy(numpy_istft(Y.cpu().numpy(), n_fft, hop, win_length, window.double().cpu().numpy(),
                                         center, length))
    scale = float(truth.abs().max()) + 1.0 if truth.numel() else 1.0
    if dtype == torch.float64:
        assert_close_to(got, want, dtype, scale)
        assert_close_to(ref, want, dtype, scale)
        assert_close_to(got.cpu(), truth, dtype, scale)
    else:
        torch_err = float((want.cpu().double() - truth).abs().max()) if truth.numel() else 0.0
        err = float((got.cpu().double() - truth).abs().max()) if truth.numel() else 0.0
        assert err <= 2 * torch_err + 2e-6 * scale, f"float32 error {err:.3g} vs torch.istft's {torch_err:.3g}"
        assert_close_to(ref, want, dtype, scale)
    return got


# -- explicit cases ----------------------------------------------------------------------------
ISTFT_GEOMETRY = [
    # n_fft, hop, win_length, window, center
    (16, 4, 16, "hann", True),
    (16, 5, 16, "hann", True),  # hop not dividing n_fft
    (16, 4, 10, "hann", True),  # win_length < n_fft (zero-padded, centred)
    (17, 4, 17, "hann", True),  # odd n_fft
    (17, 6, 17, "random", False),  # odd, uncentred, a window without zeros
    (64, 16, 64, "hann", True),
    (64, 24, 48, "hann", True),
    (64, 16, 64, "hann+", False),
    (64, 20, 64, "ones", False),
    (512, 128, 512, "hann", True),
    (512, 256, 512, "hann", True),  # the paper's configuration
    (512, 100, 400, "hann", True),
    (512, 128, 512, "hann+", False),
]


@pytest.mark.parametrize("n_fft,hop,win_length,wkind,center", ISTFT_GEOMETRY)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("mode", ["mask", "magnitude"])
def test_masked_istft_matches_torch_istft(n_fft, hop, win_length, wkind, center, dtype, mode):
    window = make_window(wkind, win_length, dtype)
    stft = make_stft(6 * n_fft + 3, n_fft, hop, win_length, window, center, dtype=dtype,
                     zero_frame=(mode == "magnitude"))
    gain = torch.rand(3, *stft.shape, dtype=dtype) * 2 - 0.5
    natural = None
    for length in (None, 5 * n_fft, 9 * n_fft):  # natural, shorter, longer (zero tail)
        if length == 9 * n_fft and win_length < n_fft:
            # the longer output reaches the last frame's zero padding: torch.istft refuses it
            # (NOLA), and so does the op
            kw = dict(n_fft=n_fft, hop_length=hop, win_length=win_length, window=window, center=center,
                      length=length)
            with pytest.raises(RuntimeError, match="overlap"):
                torch_istft(stft, gain, mode, **kw)
            with pytest.raises(CnnauralError, match="NOLA" if NATIVE_ISTFT else "overlap"):
                ops.masked_istft(stft, gain, mode=mode, **kw)
            continue
        out = check_masked_istft(stft, gain, mode, dtype, n_fft=n_fft, hop=hop, win_length=win_length,
                                 window=window, center=center, length=length)
        if length is None:
            natural = out
        else:
            assert out.shape == (3, length)
            k = min(length, natural.shape[1])
            assert_close_to(out[:, :k], natural[:, :k], dtype)
            # centred, a longer output keeps the n_fft // 2 samples the natural length trims;
            # beyond the overlap-added signal it is zero-padded
            full = n_fft + hop * (stft.shape[-1] - 1)
            assert not out[:, full - (n_fft // 2 if center else 0):].any()


@pytest.mark.parametrize("layout", ["FT", "1FT", "NFT"])
@pytest.mark.parametrize("mode", ["mask", "magnitude"])
def test_masked_istft_stft_layouts(layout, mode):
    n_fft, hop, dtype = 64, 16, torch.float64
    window = make_window("hann", n_fft, dtype)
    base = make_stft(700, n_fft, hop, n_fft, window, True, batch=3, dtype=dtype, zero_frame=mode == "magnitude")
    gain = torch.rand(3, *base.shape[-2:], dtype=dtype)
    stft = {"FT": base[0], "1FT": base[:1], "NFT": base}[layout]
    out = check_masked_istft(stft, gain, mode, dtype, n_fft=n_fft, hop=hop, win_length=n_fft, window=window,
                             center=True, length=None)
    if layout != "NFT":  # a shared STFT equals the STFT repeated for every row
        shared = stft if stft.dim() == 2 else stft[0]
        rep = ops.masked_istft(shared.expand(3, *shared.shape).contiguous(), gain, n_fft=n_fft, hop_length=hop,
                               window=window, mode=mode)
        assert_close_to(out, rep, dtype)


def test_masked_istft_2d_gain():
    """(F, T) stft with an (F, T) gain is one row."""
    window = make_window("hann", 64, torch.float64)
    stft = make_stft(700, 64, 16, 64, window, True)
    gain = torch.rand(stft.shape, dtype=torch.float64)
    out = ops.masked_istft(stft, gain, n_fft=64, hop_length=16, window=window)
    assert out.shape[0] == 1
    assert_close_to(out[0], torch.istft(stft * gain, 64, 16, window=window), torch.float64)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("mode", ["mask", "magnitude"])
def test_masked_istft_non_contiguous(dtype, mode):
    n_fft, hop, T = 64, 16, 40
    window = make_window("hann", n_fft, dtype)
    F_ = n_fft // 2 + 1
    cd = CPLX[dtype]
    cases = {
        # stft (F, T) as the transpose of a (T, F) tensor; gain (N, F, T) as a transposed (N, T, F)
        "transposed": (torch.randn(T, F_, dtype=cd).t(), torch.rand(4, T, F_, dtype=dtype).transpose(1, 2)),
        # every other frame / batch row of bigger tensors
        "sliced": (torch.randn(5, F_, 2 * T, dtype=cd)[::2, :, ::2],
                   torch.rand(6, F_, 3 * T, dtype=dtype)[1::2, :, ::3]),
        # a batch-1 stft shared by rows of a gain expanded from one row (stride 0)
        "expanded": (torch.randn(1, F_, T, dtype=cd), torch.rand(1, F_, T, dtype=dtype).expand(3, F_, T)),
        # lazily conjugated / negated views (conj and neg bits, no data of their own)
        "conj-neg": (torch.randn(F_, T, dtype=cd).conj(), (torch.rand(2, F_, T, dtype=dtype) * 1j).conj().imag),
    }
    for name, (stft, gain) in cases.items():
        assert not (stft.is_contiguous() and gain.is_contiguous()) or stft.is_conj(), name
        out = ops.masked_istft(stft, gain, n_fft=n_fft, hop_length=hop, window=window, mode=mode)
        stft_c, gain_c = stft.resolve_conj().contiguous(), gain.resolve_neg().contiguous()
        want = torch_istft(stft_c, gain_c, mode, n_fft=n_fft, hop_length=hop, window=window)
        assert_close_to(out, want, dtype)
        assert_close_to(ops.masked_istft(stft_c, gain_c, n_fft=n_fft, hop_length=hop, window=window, mode=mode),
                        out, dtype)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("mode", ["mask", "magnitude"])
def test_masked_istft_on_device(device, dtype, mode):
    """Whatever runs on the device (native kernel or reference fallback) equals torch.istft there."""
    for n_fft, hop, win_length, center, length in [(512, 256, 512, True, None), (64, 20, 48, True, 900),
                                                   (17, 5, 17, False, None)]:
        window = make_window("hann" if center else "hann+", win_length, dtype, device)
        stft = make_stft(1000, n_fft, hop, win_length, window, center, batch=1, dtype=dtype, device=device,
                         zero_frame=mode == "magnitude")
        gain = torch.rand(3, *stft.shape[-2:], dtype=dtype, device=device).transpose(1, 2).contiguous().transpose(1, 2)
        kw = dict(n_fft=n_fft, hop_length=hop, win_length=win_length, window=window, center=center, length=length)
        out = ops.masked_istft(stft, gain, mode=mode, **kw)
        assert out.device.type == device
        assert_close_to(out, torch_istft(stft, gain, mode, **kw), dtype)


@pytest.mark.parametrize("n_fft,hop,wkind,center", [(16, 4, "hann", True), (17, 5, "hann", True),
                                                    (64, 16, "hann", True), (512, 128, "hann", True),
                                                    (512, 200, "hann", True), (64, 24, "hann+", False),
                                                    (17, 3, "random", False)])
@pytest.mark.parametrize("mode", ["mask", "magnitude"])
def test_masked_istft_matches_scipy(n_fft, hop, wkind, center, mode):
    """scipy.signal.istft, an implementation independent of torch, agrees to float64 precision."""
    dtype = torch.float64
    window = make_window(wkind, n_fft, dtype)
    stft = make_stft(5 * n_fft + 11, n_fft, hop, n_fft, window, center, zero_frame=mode == "magnitude")
    gain = torch.rand(2, *stft.shape, dtype=dtype)
    out = ops.masked_istft(stft, gain, n_fft=n_fft, hop_length=hop, window=window, center=center, mode=mode)
    want = torch.from_numpy(scipy_istft(combined(stft, gain, mode).numpy(), n_fft, hop, window.numpy(), center))
    assert_close_to(out, want[:, :out.shape[1]], dtype)
    assert want.shape[1] == out.shape[1]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n_fft,hop", [(512, 256), (512, 128), (64, 16), (17, 4)])
def test_masked_istft_unit_mask_gives_back_the_audio(dtype, n_fft, hop):
    x = torch.randn(2, 4000, dtype=dtype)
    window = make_window("hann", n_fft, dtype)
    X = torch.stft(x, n_fft, hop, window=window, center=True, pad_mode="reflect", return_complex=True)
    y = ops.masked_istft(X, torch.ones(X.shape, dtype=dtype), n_fft=n_fft, hop_length=hop, window=window,
                         length=x.shape[-1])
    snr = 10 * torch.log10(x.pow(2).sum(-1) / (y - x).pow(2).sum(-1))
    assert (snr > 60).all(), snr


@pytest.mark.filterwarnings("ignore:A window was not provided")
def test_masked_istft_defaults_follow_torch_istft():
    """hop_length n_fft // 4, win_length n_fft, an all-ones window."""
    stft = torch.randn(33, 20, dtype=torch.complex128)
    gain = torch.rand(2, 33, 20, dtype=torch.float64)
    assert_close_to(ops.masked_istft(stft, gain, n_fft=64), torch.istft(stft * gain, 64), torch.float64)


# -- hypothesis --------------------------------------------------------------------------------
@st.composite
def istft_cases(draw):
    n_fft = draw(st.sampled_from([16, 17, 64, 512]))
    win_length = draw(st.one_of(st.just(n_fft), st.integers(max(2, n_fft // 2), n_fft)))
    center = draw(st.booleans())
    wkind = draw(st.sampled_from(["hann", "hann+", "ones", "random"]))
    # mostly NOLA-safe hops, sometimes up to win_length (then torch.istft may refuse: see below)
    hop = draw(st.one_of(st.integers(1, max(1, win_length // 2)), st.integers(1, win_length)))
    n_frames = draw(st.integers(1, 12 if n_fft == 512 else 30))
    n = draw(st.integers(1, 4))
    layout = draw(st.sampled_from(["FT", "1FT", "NFT"]))
    length = draw(st.one_of(st.none(), st.integers(0, n_fft + hop * n_frames + 40)))
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    mode = draw(st.sampled_from(["mask", "magnitude"]))
    transpose_gain = draw(st.booleans())
    seed = draw(st.integers(0, 2**31 - 1))
    return dict(n_fft=n_fft, win_length=win_length, center=center, wkind=wkind, hop=hop, n_frames=n_frames, n=n,
                layout=layout, length=length, dtype=dtype, mode=mode, transpose_gain=transpose_gain, seed=seed)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(istft_cases())
def test_masked_istft_hypothesis(case):
    c = case
    n_fft, hop, dtype = c["n_fft"], c["hop"], c["dtype"]
    full = n_fft + hop * (c["n_frames"] - 1)
    # torch.istft's own precondition: the centred output must not be empty
    assume(not c["center"] or full - 2 * (n_fft // 2) > 0 or c["length"] is not None)
    g = torch.Generator().manual_seed(c["seed"])
    F_, T = n_fft // 2 + 1, c["n_frames"]
    nb = {"FT": None, "1FT": 1, "NFT": c["n"]}[c["layout"]]
    shape = (F_, T) if nb is None else (nb, F_, T)
    stft = torch.complex(torch.randn(shape, generator=g, dtype=torch.float64),
                         torch.randn(shape, generator=g, dtype=torch.float64)).to(CPLX[dtype])
    if c["mode"] == "magnitude":
        stft[..., 0, 0] = 0  # an exact zero bin
    if c["transpose_gain"]:
        gain = torch.rand(c["n"], T, F_, generator=g, dtype=torch.float64).to(dtype).transpose(1, 2)
    else:
        gain = torch.rand(c["n"], F_, T, generator=g, dtype=torch.float64).to(dtype)
    window = make_window(c["wkind"], c["win_length"], dtype)
    kw = dict(n_fft=n_fft, hop_length=hop, win_length=c["win_length"], window=window, center=c["center"],
              length=c["length"])
    if c["length"] == 0:  # torch.istft refuses length 0; the op returns (N, 0)
        assert ops.masked_istft(stft, gain, mode=c["mode"], **kw).shape == (c["n"], 0)
        return
    try:
        torch_istft(stft, gain, c["mode"], **kw)
    except RuntimeError as e:
        event("torch.istft refuses")
        # torch.istft refuses (NOLA: the window envelope vanishes inside the output): so must the op
        with pytest.raises(CnnauralError, match="masked_istft"):
            ops.masked_istft(stft, gain, mode=c["mode"], **kw)
        assert "overlap" in str(e) or "NOLA" in str(e) or "length" in str(e), str(e)
        return
    check_masked_istft(stft, gain, c["mode"], dtype, n_fft=n_fft, hop=hop, win_length=c["win_length"],
                       window=window, center=c["center"], length=c["length"])


# -- edge cases and errors ---------------------------------------------------------------------
@pytest.mark.parametrize("backend", [
    "auto",
    "reference",
])
def test_masked_istft_empty(backend, monkeypatch):
    monkeypatch.setenv("CNNAURAL_BACKEND", backend)
    window = make_window("hann", 64, torch.float64)
    stft = make_stft(700, 64, 16, 64, window, True)
    gain = torch.rand(3, *stft.shape, dtype=torch.float64)
    out = ops.masked_istft(stft, gain[:0], n_fft=64, hop_length=16, window=window)
    natural = ops.masked_istft(stft, gain[:1], n_fft=64, hop_length=16, window=window).shape[1]
    assert out.shape == (0, natural) and out.dtype == torch.float64
    out = ops.masked_istft(stft, gain, n_fft=64, hop_length=16, window=window, length=0)
    assert out.shape == (3, 0)


@needs_native_istft
@pytest.mark.parametrize("device", DEVICES)
def test_masked_istft_envelope_cache(device):
    """The window envelope is computed once per (window, geometry): a repeat call adds no cache
    entry; an in-place change of the window (a new version) or another length is recomputed."""
    from cnnaural_ext import _C

    window = torch.hann_window(64, dtype=torch.float64, device=device)
    stft = make_stft(900, 64, 16, 64, window, True, device=device)
    gain = torch.rand(2, *stft.shape, dtype=torch.float64, device=device)
    kw = dict(n_fft=64, hop_length=16, window=window)
    first = ops.masked_istft(stft, gain, **kw)
    size = _C.envelope_cache_size()
    again = ops.masked_istft(stft, gain, **kw)
    assert _C.envelope_cache_size() == size and torch.equal(again, first)
    with torch.no_grad():
        window.mul_(0.5).add_(0.25)  # same tensor, new values
    changed = ops.masked_istft(stft, gain, **kw)
    assert_close_to(changed, torch_istft(stft, gain, "mask", **kw), torch.float64)
    shorter = ops.masked_istft(stft, gain, length=500, **kw)
    assert_close_to(shorter, torch_istft(stft, gain, "mask", length=500, **kw), torch.float64)
    for _ in range(40):  # bounded: old entries are dropped
        w = torch.hann_window(64, dtype=torch.float64, device=device) + 0.1
        ops.masked_istft(stft, gain, n_fft=64, hop_length=16, window=w)
    assert _C.envelope_cache_size() <= 16
    with torch.inference_mode():  # inference tensors have no version counter: computed every call
        w = torch.hann_window(64, dtype=torch.float64, device=device) + 0.1
        out = ops.masked_istft(stft, gain, n_fft=64, hop_length=16, window=w)
    assert_close_to(out, torch_istft(stft, gain, "mask", n_fft=64, hop_length=16, window=w), torch.float64)


@needs_native_istft
@pytest.mark.cuda
def test_masked_istft_cuda_does_not_synchronise():
    """After the first call with a window, a call neither waits for the GPU nor copies to the host."""
    window = torch.hann_window(512, device="cuda")
    stft = make_stft(44100, 512, 128, 512, window, True, dtype=torch.float32, device="cuda")
    gain = torch.rand(8, *stft.shape, device="cuda")
    kw = dict(n_fft=512, hop_length=128, window=window, length=44100)
    ops.masked_istft(stft, gain, **kw)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = ops.masked_istft(stft, gain, mode="magnitude", **kw)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert_close_to(out, torch_istft(stft, gain, "magnitude", **kw), torch.float32)


@needs_native_istft
@pytest.mark.parametrize("wkind,win_length,hop,center", [
    ("hann", 64, 16, False),  # center=False keeps sample 0, where a Hann window is zero
    ("hann", 48, 16, False),  # a window shorter than n_fft is zero-padded at both ends
    ("hann", 64, 64, True),  # hop == n_fft: every frame start has envelope w[0]^2 = 0
    ("hann", 40, 40, True),  # zero-padded short window, no overlap: gaps between frames
])
def test_masked_istft_nola_violation(wkind, win_length, hop, center):
    """Where torch.istft refuses a window (its envelope vanishes inside the output), so does the op,
    with a message naming it and NOLA."""
    n_fft, dtype = 64, torch.float64
    window = make_window(wkind, win_length, dtype)
    stft = torch.randn(n_fft // 2 + 1, 10, dtype=torch.complex128)
    gain = torch.rand(2, *stft.shape, dtype=dtype)
    kw = dict(n_fft=n_fft, hop_length=hop, win_length=win_length, window=window, center=center)
    with pytest.raises(RuntimeError, match="overlap"):
        torch.istft(stft * gain, **kw)
    with pytest.raises(CnnauralError, match=r"masked_istft.*NOLA"):
        ops.masked_istft(stft, gain, **kw)


@needs_native_istft
def test_masked_istft_bad_arguments():
    window = make_window("hann", 64, torch.float64)
    stft = make_stft(700, 64, 16, 64, window, True)
    gain = torch.rand(2, *stft.shape, dtype=torch.float64)
    kw = dict(n_fft=64, hop_length=16, window=window)
    with pytest.raises(CnnauralError, match=r"masked_istft.*frequency bins"):
        ops.masked_istft(stft[:-1], gain[:, :-1], **kw)
    with pytest.raises(CnnauralError, match=r"masked_istft.*frequency bins"):
        ops.masked_istft(stft, gain, n_fft=128, hop_length=16)
    with pytest.raises(CnnauralError, match=r"masked_istft.*gain.*match"):
        ops.masked_istft(stft, gain[:, :, :-1], **kw)
    with pytest.raises(CnnauralError, match=r"masked_istft.*precision"):
        ops.masked_istft(stft, gain.float(), **kw)
    with pytest.raises(CnnauralError, match=r"masked_istft.*complex"):
        ops.masked_istft(stft.real.contiguous(), gain, **kw)
    with pytest.raises(CnnauralError, match=r"masked_istft.*batch"):
        ops.masked_istft(stft.expand(3, *stft.shape), gain, **kw)
    with pytest.raises(CnnauralError, match=r"masked_istft.*window"):
        ops.masked_istft(stft, gain, n_fft=64, hop_length=16, window=window[:-1])
    with pytest.raises(CnnauralError, match=r"masked_istft.*hop_length"):
        ops.masked_istft(stft, gain, n_fft=64, hop_length=0, window=window)
    with pytest.raises(CnnauralError, match=r"masked_istft.*mode"):
        ops.masked_istft(stft, gain, mode="x", **kw)


def test_masked_istft_bad_arguments_reference_path(monkeypatch):
    monkeypatch.setenv("CNNAURAL_BACKEND", "reference")
    window = make_window("hann", 64, torch.float64)
    stft = make_stft(700, 64, 16, 64, window, True)
    gain = torch.rand(2, *stft.shape, dtype=torch.float64)
    kw = dict(n_fft=64, hop_length=16, window=window)
    with pytest.raises(CnnauralError, match="masked_istft"):
        ops.masked_istft(stft[:-1], gain[:, :-1], **kw)
    with pytest.raises(CnnauralError, match="masked_istft"):
        ops.masked_istft(stft, gain.float(), **kw)


# -- routing and autograd ----------------------------------------------------------------------
@pytest.fixture
def count_reference(monkeypatch):
    calls = []
    original = reference.masked_istft

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(reference, "masked_istft", counting)
    return calls


def _small_istft_args(dtype=torch.float64, n=2):
    window = make_window("hann", 16, dtype)
    stft = make_stft(120, 16, 4, 16, window, True, dtype=dtype)
    gain = torch.rand(n, *stft.shape, dtype=dtype)
    return stft, gain, dict(n_fft=16, hop_length=4, window=window)


def test_masked_istft_routes_to_reference_when_asked(monkeypatch, count_reference):
    stft, gain, kw = _small_istft_args()
    monkeypatch.delenv("CNNAURAL_BACKEND", raising=False)
    native = ops.masked_istft(stft, gain, **kw)
    if NATIVE_ISTFT:
        assert ops.active_backend("masked_istft") == "native"
        assert count_reference == []
    monkeypatch.setenv("CNNAURAL_BACKEND", "reference")
    assert ops.active_backend("masked_istft") == "reference"
    ref = ops.masked_istft(stft, gain, **kw)
    assert len(count_reference) == 1
    assert_close_to(ref, native, torch.float64)


def test_masked_istft_backend_env_errors(monkeypatch):
    stft, gain, kw = _small_istft_args()
    monkeypatch.setenv("CNNAURAL_BACKEND", "fastest")
    with pytest.raises(CnnauralError, match="CNNAURAL_BACKEND"):
        ops.masked_istft(stft, gain, **kw)
    monkeypatch.setenv("CNNAURAL_BACKEND", "native")
    with pytest.raises(CnnauralError, match="masked_istft"):  # autograd runs on the reference only
        ops.masked_istft(stft, gain.requires_grad_(), **kw)


@pytest.mark.parametrize("mode", ["mask", "magnitude"])
def test_masked_istft_autograd_routes_to_reference(mode, monkeypatch, count_reference):
    monkeypatch.delenv("CNNAURAL_BACKEND", raising=False)
    stft, gain, kw = _small_istft_args()
    gain.requires_grad_()
    out = ops.masked_istft(stft, gain, mode=mode, **kw)
    assert len(count_reference) == 1 and out.requires_grad
    (out * torch.randn_like(out)).sum().backward()
    assert gain.grad is not None and gain.grad.abs().sum() > 0
    with torch.no_grad():  # no autograd needed: back on the native kernel
        ops.masked_istft(stft, gain, mode=mode, **kw)
    assert len(count_reference) == (1 if NATIVE_ISTFT else 2)


@pytest.mark.parametrize("mode", ["mask", "magnitude"])
def test_masked_istft_gradcheck(mode, one_thread):
    stft, gain, kw = _small_istft_args(n=2)
    stft = stft[:, :6].contiguous()
    gain = gain[:, :, :6].contiguous().requires_grad_()
    stft_g = stft.clone().requires_grad_()
    torch.autograd.gradcheck(lambda g: ops.masked_istft(stft, g, mode=mode, **kw), (gain,))
    torch.autograd.gradcheck(lambda s, g: ops.masked_istft(s, g, mode=mode, **kw), (stft_g, gain))


@needs_native_istft
@pytest.mark.parametrize("case", ["mask", "magnitude-f32-batched", "short-window-length"])
def test_masked_istft_opcheck(case):
    if case == "mask":
        stft, gain, kw = _small_istft_args()
        args = (stft, gain, 16, 4, 16, kw["window"], True, None, "mask")
    elif case == "magnitude-f32-batched":
        stft, gain, kw = _small_istft_args(torch.float32, n=3)
        args = (stft.unsqueeze(0), gain, 16, 4, 16, kw["window"], True, 100, "magnitude")
    else:
        window = make_window("hann", 12, torch.float64)
        stft = make_stft(200, 16, 5, 12, window, True)
        gain = torch.rand(2, *stft.shape, dtype=torch.float64)
        args = (stft, gain, 16, 5, 12, window, True, 150, "mask")
    torch.library.opcheck(torch.ops.cnnaural.masked_istft, args)
