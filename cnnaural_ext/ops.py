"""Typed entry points of the native ops, with their fake (meta) kernels, and the routing between
the native kernels (torch.ops.cnnaural.*) and the pure-PyTorch twins in reference.py.

Routing: the native kernel runs when `_C` is built, has a kernel for the tensors' device, the
dtype is float32 or float64 and the case needs no autograd the kernel lacks; otherwise the
reference runs (float16/bfloat16 included). `CNNAURAL_BACKEND=reference`
forces the reference everywhere (for comparisons); `CNNAURAL_BACKEND=native` makes a missing
native kernel an error instead of a silent fallback.

Compiling: which (op, device) pairs have a native kernel is read once at import, and the checks
that need the host (the C++ argument checks, reading switches and channels) are skipped while
torch.compile traces, so both ops compile with fullgraph=True (the native kernels check every
switch and channel themselves; the reference then relies on PyTorch's own checks).
"""
from __future__ import annotations

import contextlib
import os

import torch

from . import reference
from .errors import CnnauralError

try:  # the compiled extension registers torch.ops.cnnaural.*
    from . import _C  # noqa: F401

    _NATIVE_IMPORT_ERROR = None
except ImportError as e:  # a source checkout without a build
    _C = None
    _NATIVE_IMPORT_ERROR = str(e)

BACKENDS = ("auto", "native", "reference")


def backend() -> str:
    """The requested backend: CNNAURAL_BACKEND = auto (default) | native | reference."""
    b = os.environ.get("CNNAURAL_BACKEND", "auto").lower()
    if b not in BACKENDS:
        raise CnnauralError(f"CNNAURAL_BACKEND must be one of {', '.join(BACKENDS)} (got {b!r})")
    return b


def native_available() -> bool:
    """True when the compiled extension is importable."""
    return _C is not None


def build_info() -> dict:
    """How the native extension was built (version, CUDA, OpenMP threads), or why it is missing."""
    if _C is None:
        return {"native": False, "reason": _NATIVE_IMPORT_ERROR}
    info = dict(_C.build_info())
    info["native"] = True
    return info


@contextlib.contextmanager
def output_pool_for_chunks():
    """While inside: the native CPU kernels keep up to 1 GiB of freed outputs (256 MiB otherwise),
    so the chunks of seeds of one deconvolution reuse each other's block outputs instead of new,
    zero-filled mappings; on leaving, the limit is set back and what is kept beyond it returned
    to the OS. A no-op without the native build."""
    if _C is None or not hasattr(_C, "set_output_pool_limit"):
        yield
        return
    before = _C.set_output_pool_limit(_C.output_pool_max_bytes)
    try:
        yield
    finally:
        _C.set_output_pool_limit(before)


def _native_kernels() -> frozenset:
    """(op, device type) pairs with a native kernel, read once: the extension registers all its
    kernels when it loads. A set lookup, unlike asking the dispatcher, is traceable by
    torch.compile (Dynamo), so the routing below compiles with fullgraph=True."""
    if _C is None:
        return frozenset()
    found = set()
    for op in ("unpool_conv_transpose2d", "masked_istft"):
        for device, key in (("cpu", "CPU"), ("cuda", "CUDA")):
            if hasattr(torch.ops.cnnaural, op) and torch._C._dispatch_has_kernel_for_dispatch_key(f"cnnaural::{op}", key):
                found.add((op, device))
    return frozenset(found)


_NATIVE_KERNELS = _native_kernels()


def _has_native_kernel(op: str, device: torch.device) -> bool:
    return (op, device.type) in _NATIVE_KERNELS


NATIVE_DTYPES = (torch.float32, torch.float64)


def _use_native(op: str, device: torch.device, needs_grad: bool, dtype: torch.dtype = torch.float32) -> bool:
    b = backend()
    if b == "reference":
        return False
    ok = _has_native_kernel(op, device) and not needs_grad and dtype in NATIVE_DTYPES
    if b == "native" and not ok:
        why = "no native build" if _C is None else (
            "autograd through it runs on the reference" if needs_grad else
            f"the kernels take float32 and float64, not {dtype}" if dtype not in NATIVE_DTYPES else
            f"no {device.type} kernel")
        raise CnnauralError(f"CNNAURAL_BACKEND=native but {op} cannot run natively here ({why}); "
                            "unset CNNAURAL_BACKEND to fall back to the reference")
    return ok


def uses_native(op: str, device="cpu", dtype: torch.dtype = torch.float32) -> bool:
    """Whether `op` runs its native kernel for `dtype` tensors on `device` without autograd."""
    return _use_native(op, torch.device(device), False, dtype)


def active_backend(op: str, device="cpu") -> str:
    """Which implementation `op` uses for tensors on `device` without autograd: native | reference."""
    return "native" if uses_native(op, device) else "reference"


def _user_error(op: str, e: RuntimeError) -> CnnauralError | None:
    """The CnnauralError for an op's own argument error (its message names the op), else None."""
    first = str(e).splitlines()[0] if str(e) else ""
    return CnnauralError(first[first.index(op):]) if f"cnnaural.{op}: " in first else None


def _native(op: str, kernel, *args):
    """Run a native op; its argument errors (the checks in csrc/<op>/) become CnnauralErrors."""
    try:
        return kernel(*args)
    except RuntimeError as e:
        err = _user_error(op, e)
        if err is None:
            raise
        raise err from None


def _check(op: str, check: str, *args) -> None:
    """Before the reference runs: the native op's own argument checks (csrc/<op>/<op>.cpp, the one
    place they are written; no data read), as a CnnauralError. Without a native build there are
    none to run, and PyTorch's own checks inside the reference stand (see `_reference`)."""
    if _C is not None:
        _native(op, getattr(_C, check), *args)


def _reference(op: str, fn, *args, **kwargs):
    """Run a reference twin; a RuntimeError from it is PyTorch's own refusal of the arguments
    (torch.istft's NOLA check, or any check when no native build ran ours first), reported as the
    op's CnnauralError."""
    try:
        return fn(*args, **kwargs)
    except RuntimeError as e:
        raise CnnauralError(f"{op}: {str(e).splitlines()[0]}") from None


# ---------------------------------------------------------------------------------------------
# unpool_conv_transpose2d
# ---------------------------------------------------------------------------------------------
def as_pair(v, name: str, owner: str = "unpool_conv_transpose2d") -> tuple:
    """An int or a pair as a pair of ints; anything else is a CnnauralError naming `owner`."""
    if isinstance(v, int):
        return (v, v)
    v = tuple(int(a) for a in v)
    if len(v) != 2:
        raise CnnauralError(f"{owner}: {name} must be an int or a pair (got {v})")
    return v


def check_indices(indices: torch.Tensor, unpool_size, op: str = "unpool_conv_transpose2d") -> None:
    """Raise a CnnauralError naming `op` when any switch is outside the (H, W) plane."""
    H, W = unpool_size
    if indices.numel() == 0:
        return
    lo, hi = torch.aminmax(indices)
    if int(lo) < 0 or int(hi) >= H * W:
        raise CnnauralError(f"{op}: indices must lie in [0, H*W) = [0, {H * W}) for unpool_size ({H}, {W}); "
                            f"got values in [{int(lo)}, {int(hi)}]. Pass the indices returned by "
                            "F.max_pool2d(..., return_indices=True) on the same activation")


def unpool_conv_transpose2d(input: torch.Tensor, indices: torch.Tensor, weight: torch.Tensor,
                            bias: torch.Tensor | None = None, *, unpool_size, stride=1, padding=0,
                            output_padding=0, dilation=1, rectify: bool = True,
                            channels: torch.Tensor | None = None) -> torch.Tensor:
    """Fused deconvnet step: max-unpool with switches -> ReLU -> transposed convolution.

    Equals `F.conv_transpose2d(relu(max_unpool2d(input, indices, output_size=unpool_size)),
    weight, bias, stride, padding, output_padding, 1, dilation)`, with repeated switches
    (overlapping pools) summed as autograd sums them.

    Args:
        input (Tensor): (N, C_out, h, w) float — pooled values (e.g. seeds).
        indices (Tensor): (N or 1, C_out, h, w) int64 — flat positions in the (H, W) plane, as
            returned by `F.max_pool2d(..., return_indices=True)`; batch 1 is shared by all N rows.
        weight (Tensor): (C_out, C_in, kH, kW) — the forward Conv2d's weight.
        bias (Tensor, optional): (C_in,).
        unpool_size: (H, W) of the unpooled plane (the forward conv's output size).
        stride, padding, output_padding, dilation: of the forward Conv2d (int or pair).
        rectify: apply the ReLU between unpooling and the transposed convolution.
        channels (Tensor, optional): (N,) int64 — one-feature seeds stored compactly: input is
            then (N, 1, h, w) and row n is the pooled map of channel channels[n] (every other
            channel zero). The kernel then reads one map per seed instead of C_out.

    Returns:
        (N, C_in, H_in, W_in) with H_in = (H - 1) * stride - 2 * padding + dilation * (kH - 1)
        + output_padding + 1.

    Raises:
        CnnauralError: shapes that do not fit together, or a switch outside the (H, W) plane.

    Runs the native kernel where one is built for the device (work proportional to the positive
    unpooled values; output in channels-last memory format; autograd through
    torch.library.register_autograd), otherwise the reference in reference.py.
    """
    op = "unpool_conv_transpose2d"
    for name, t in (("input", input), ("indices", indices), ("weight", weight)):
        if not isinstance(t, torch.Tensor):
            raise CnnauralError(f"{op}: {name} must be a tensor (got {type(t).__name__})")
    args = (input, indices, weight, bias, as_pair(unpool_size, "unpool_size"), as_pair(stride, "stride"),
            as_pair(padding, "padding"), as_pair(output_padding, "output_padding"), as_pair(dilation, "dilation"))
    if _use_native(op, input.device, False, input.dtype):
        # the kernels check every switch and channel where they read it (on a GPU with one small
        # read-back, instead of the three a check here would cost)
        return _native(op, torch.ops.cnnaural.unpool_conv_transpose2d, *args, rectify, channels)
    if not torch.compiler.is_compiling():  # checks a compiled graph cannot hold (host calls, data reads)
        _check(op, "check_unpool_conv_transpose2d", *args, channels)
        if channels is not None and input.shape[0] and (int(channels.min()) < 0 or int(channels.max()) >= indices.shape[1]):
            raise CnnauralError(f"{op}: channels must lie in [0, {indices.shape[1]})")
        check_indices(indices, args[4], op)  # before max_unpool2d reads them: no device assert
    return _reference(op, reference.unpool_conv_transpose2d, *args[:4], unpool_size=args[4], stride=args[5],
                      padding=args[6], output_padding=args[7], dilation=args[8], rectify=rectify, channels=channels)


if _C is not None and hasattr(torch.ops.cnnaural, "unpool_conv_transpose2d"):
    # the Meta (shape) kernel is native: csrc/unpool_conv/unpool_conv_meta.cpp
    def _unpool_conv_setup(ctx, inputs, output):
        input, indices, weight, bias, unpool_size, stride, padding, output_padding, dilation, rectify, channels = inputs
        ctx.save_for_backward(input, indices, weight, channels)
        ctx.params = (tuple(unpool_size), tuple(stride), tuple(padding), tuple(output_padding), tuple(dilation),
                      rectify, bias is not None)

    def _unpool_conv_backward(ctx, grad):
        """Gradients w.r.t. input, weight and bias, composed from library ops: the forward conv
        of grad gives the gradient at every unpooled position; the switches gather it back,
        masked by the rectifier; the weight gradient is the convolution's own."""
        input, indices, weight, channels = ctx.saved_tensors
        unpool_size, stride, padding, output_padding, dilation, rectify, has_bias = ctx.params
        if channels is not None:
            input = reference.densify(input, channels, indices.shape[1])
        N, C, h, w = input.shape
        grad = grad.contiguous()
        up = reference.max_unpool2d_sum(input, indices, unpool_size)
        r = torch.relu(up) if rectify else up
        g_input = g_weight = g_bias = None
        if ctx.needs_input_grad[0]:
            g_up = torch.nn.functional.conv2d(grad, weight, None, stride, padding, dilation)
            g_up = g_up[..., :unpool_size[0], :unpool_size[1]]
            if rectify:
                g_up = g_up * (up > 0)
            idx = indices.reshape(indices.shape[0], C, h * w).expand(N, C, h * w)
            g_input = g_up.reshape(N, C, -1).gather(2, idx).view(N, C, h, w)
            if channels is not None:
                g_input = g_input[torch.arange(N, device=g_input.device), channels][:, None]
        if ctx.needs_input_grad[2]:
            g_weight = torch.ops.aten.convolution_backward(
                grad, r, weight, None, list(stride), list(padding), list(dilation), True, list(output_padding), 1,
                [False, True, False])[1]
        if has_bias and ctx.needs_input_grad[3]:
            g_bias = grad.sum(dim=(0, 2, 3))
        return g_input, None, g_weight, g_bias, None, None, None, None, None, None, None

    torch.library.register_autograd("cnnaural::unpool_conv_transpose2d", _unpool_conv_backward,
                                    setup_context=_unpool_conv_setup)


# ---------------------------------------------------------------------------------------------
# masked_istft
# ---------------------------------------------------------------------------------------------
# the Meta (shape) kernel is native: csrc/istft/istft_meta.cpp
_window_cache: dict = {}


def _default_window(win_length, dtype, device):
    if torch.compiler.is_compiling():  # a constant of the compiled graph
        return torch.ones(win_length, dtype=dtype, device=device)
    key = (win_length, dtype, device)
    w = _window_cache.get(key)
    if w is None:
        # a normal tensor even under inference_mode: the native op caches its envelope by the
        # window's version counter, which inference tensors lack
        with torch.inference_mode(False):
            w = _window_cache[key] = torch.ones(win_length, dtype=dtype, device=device)
    return w


def masked_istft(stft: torch.Tensor, gain: torch.Tensor, *, n_fft: int, hop_length: int | None = None,
                 win_length: int | None = None, window: torch.Tensor | None = None, center: bool = True,
                 length: int | None = None, mode: str = "mask") -> torch.Tensor:
    """Inverse STFT of the original STFT combined with N real gains, batched.

    Equals `torch.istft(Y, n_fft, hop_length, win_length, window, center, length=length)` with
    Y = stft * gain ("mask", the original code) or Y = gain * stft / |stft| ("magnitude": gain is
    the new magnitude, the phase is the original one; Y = gain where stft == 0).

    Args:
        stft (Tensor): (F, T) or (N | 1, F, T) complex, F = n_fft // 2 + 1 — shared by every row of
            gain without a copy.
        gain (Tensor): (N, F, T) real, the precision of stft.
        n_fft, hop_length, win_length, window, center, length: as torch.istft (hop_length defaults
            to n_fft // 4, win_length to n_fft, window to all ones).
        mode: "mask" | "magnitude".

    Returns:
        (N, L) real audio.

    Autograd: when gain requires grad the reference path runs (it is differentiable).
    """
    if stft.dim() == 2 and gain.dim() == 2:
        gain = gain.unsqueeze(0)
    hop_length = n_fft // 4 if hop_length is None else int(hop_length)
    win_length = n_fft if win_length is None else int(win_length)
    if window is None:
        window = _default_window(win_length, gain.dtype, gain.device)
    if not isinstance(stft, torch.Tensor) or not isinstance(gain, torch.Tensor):
        raise CnnauralError("masked_istft: stft and gain must be tensors")
    if mode not in ("mask", "magnitude"):  # before the reference picks a formula by it
        raise CnnauralError(f"masked_istft: mode must be 'mask' or 'magnitude', got {mode!r}")
    args = (stft, gain, n_fft, hop_length, win_length, window, center, length, mode)
    needs_grad = torch.is_grad_enabled() and (gain.requires_grad or stft.requires_grad or window.requires_grad)
    if _use_native("masked_istft", gain.device, needs_grad, gain.dtype):
        return _native("masked_istft", torch.ops.cnnaural.masked_istft, *args)
    if not torch.compiler.is_compiling():
        _check("masked_istft", "check_masked_istft", *args)
    return _reference("masked_istft", reference.masked_istft, stft, gain, n_fft=n_fft, hop_length=hop_length,
                      win_length=win_length, window=window, center=center, length=length, mode=mode)
