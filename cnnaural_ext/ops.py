"""Typed entry points of the native ops, with their fake (meta) kernels, and the routing between
the native kernels (torch.ops.cnnaural.*) and the pure-PyTorch twins in reference.py.

Routing: the native kernel runs when `_C` is built, has a kernel for the tensors' device, the
dtype is float32 or float64 and the case needs no autograd the kernel lacks; otherwise the
reference runs (float16/bfloat16 included). `CNNAURAL_BACKEND=reference`
forces the reference everywhere (for comparisons); `CNNAURAL_BACKEND=native` makes a missing
native kernel an error instead of a silent fallback.
"""
from __future__ import annotations

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


def _has_native_kernel(op: str, device: torch.device) -> bool:
    if _C is None or not hasattr(torch.ops.cnnaural, op):
        return False
    key = {"cpu": "CPU", "cuda": "CUDA"}.get(device.type)
    return key is not None and torch._C._dispatch_has_kernel_for_dispatch_key(f"cnnaural::{op}", key)


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


# ---------------------------------------------------------------------------------------------
# unpool_conv_transpose2d
# ---------------------------------------------------------------------------------------------
def _pair(v, name):
    if isinstance(v, int):
        return (v, v)
    v = tuple(int(a) for a in v)
    if len(v) != 2:
        raise CnnauralError(f"unpool_conv_transpose2d: {name} must be an int or a pair (got {v})")
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
    if input.dim() != 4 or indices.dim() != 4 or weight.dim() != 4:
        raise CnnauralError(f"{op}: input, indices and weight must be 4-D (got {input.dim()}, "
                            f"{indices.dim()}, {weight.dim()} dims)")
    if indices.dtype != torch.int64:
        raise CnnauralError(f"{op}: indices must be int64 (got {indices.dtype})")
    if not input.is_floating_point() or weight.dtype != input.dtype:
        raise CnnauralError(f"{op}: input and weight must share a floating dtype (got {input.dtype}, {weight.dtype})")
    N, C, h, w = input.shape[0], indices.shape[1], input.shape[2], input.shape[3]
    if channels is not None:
        if input.shape[1] != 1:
            raise CnnauralError(f"{op}: with channels, input must be (N, 1, h, w), got {tuple(input.shape)}")
        if channels.shape != (N,) or channels.dtype != torch.int64:
            raise CnnauralError(f"{op}: channels must be int64 of shape ({N},), got {channels.dtype} "
                                f"{tuple(channels.shape)}")
    elif input.shape[1] != C:
        raise CnnauralError(f"{op}: indices {tuple(indices.shape)} must be (N or 1, C, h, w) with the "
                            f"C={input.shape[1]} channels of input {tuple(input.shape)}")
    if indices.shape[2:] != input.shape[2:] or indices.shape[0] not in (1, N):
        raise CnnauralError(f"{op}: indices {tuple(indices.shape)} must be (N or 1, C, h, w) "
                            f"matching input {tuple(input.shape)}")
    if weight.shape[0] != C:
        raise CnnauralError(f"{op}: weight {tuple(weight.shape)} must be (C_out={C}, C_in, kH, kW)")
    if bias is not None and bias.shape != (weight.shape[1],):
        raise CnnauralError(f"{op}: bias must be ({weight.shape[1]},), got {tuple(bias.shape)}")
    unpool_size = _pair(unpool_size, "unpool_size")
    stride, padding = _pair(stride, "stride"), _pair(padding, "padding")
    output_padding, dilation = _pair(output_padding, "output_padding"), _pair(dilation, "dilation")
    if _use_native(op, input.device, False, input.dtype):
        # the kernels check every switch and channel where they read it (on a GPU with one small
        # read-back, instead of the three a check here would cost); their error becomes ours
        try:
            return torch.ops.cnnaural.unpool_conv_transpose2d(input, indices, weight, bias, unpool_size, stride,
                                                              padding, output_padding, dilation, rectify, channels)
        except RuntimeError as e:
            first = str(e).splitlines()[0] if str(e) else ""
            if f"cnnaural.{op}: " in first:
                raise CnnauralError(first[first.index(op):]) from None
            raise
    if channels is not None and N and (int(channels.min()) < 0 or int(channels.max()) >= C):
        raise CnnauralError(f"{op}: channels must lie in [0, {C})")
    check_indices(indices, unpool_size, op)  # before max_unpool2d reads them: no device assert
    return reference.unpool_conv_transpose2d(input, indices, weight, bias, unpool_size=unpool_size, stride=stride,
                                             padding=padding, output_padding=output_padding, dilation=dilation,
                                             rectify=rectify, channels=channels)


def _unpool_conv_out_size(input, weight, unpool_size, stride, padding, output_padding, dilation):
    return tuple((unpool_size[d] - 1) * stride[d] - 2 * padding[d] + dilation[d] * (weight.shape[2 + d] - 1)
                 + output_padding[d] + 1 for d in range(2))


if _C is not None and hasattr(torch.ops.cnnaural, "unpool_conv_transpose2d"):
    @torch.library.register_fake("cnnaural::unpool_conv_transpose2d")
    def _unpool_conv_fake(input, indices, weight, bias, unpool_size, stride, padding, output_padding, dilation,
                          rectify, channels=None):
        oh, ow = _unpool_conv_out_size(input, weight, unpool_size, stride, padding, output_padding, dilation)
        return torch.empty((input.shape[0], weight.shape[1], oh, ow), dtype=input.dtype, device=input.device,
                           memory_format=torch.channels_last)

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
if _C is not None:
    @torch.library.register_fake("cnnaural::masked_istft")
    def _masked_istft_fake(stft, gain, n_fft, hop_length, win_length, window, center, length, mode):
        T = stft.shape[-1]
        full = n_fft + hop_length * (T - 1)
        start = n_fft // 2 if center else 0
        n_out = length if length is not None else (full - n_fft // 2 if center else full) - start
        return gain.new_empty(gain.shape[0], n_out)


_window_cache: dict = {}


def _default_window(win_length, dtype, device):
    key = (win_length, dtype, device)
    w = _window_cache.get(key)
    if w is None:
        # a normal tensor even under inference_mode: the native op caches its envelope by the
        # window's version counter, which inference tensors lack
        with torch.inference_mode(False):
            w = _window_cache[key] = torch.ones(win_length, dtype=dtype, device=device)
    return w


def _check_masked_istft(stft, gain, n_fft, hop_length, win_length, window, length, mode):
    """The native kernel's argument checks, for every path, as CnnauralErrors naming the op."""
    def fail(msg):
        raise CnnauralError(f"masked_istft: {msg}")

    if mode not in ("mask", "magnitude"):
        fail(f"mode must be 'mask' or 'magnitude' (got {mode!r})")
    if not stft.is_complex():
        fail(f"stft must be complex (torch.stft(..., return_complex=True)), got {stft.dtype}")
    if stft.dim() not in (2, 3):
        fail(f"stft must be (F, T) or (N, F, T), got shape {tuple(stft.shape)}")
    if gain.dim() != 3 or not gain.is_floating_point():
        fail(f"gain must be real (N, F, T), got {gain.dtype} of shape {tuple(gain.shape)}")
    if stft.real.dtype != gain.dtype or window.dtype != gain.dtype:
        fail(f"stft {stft.dtype}, gain {gain.dtype} and window {window.dtype} must share one precision")
    if not (stft.device == gain.device == window.device):
        fail(f"stft, gain and window must be on one device (got {stft.device}, {gain.device}, {window.device})")
    if n_fft <= 0 or hop_length <= 0 or not 0 < win_length <= n_fft or hop_length > win_length:
        fail(f"need 0 < hop_length <= win_length <= n_fft (got n_fft={n_fft}, hop_length={hop_length}, "
             f"win_length={win_length})")
    if window.shape != (win_length,):
        fail(f"window must be 1-D of size win_length={win_length}, got shape {tuple(window.shape)}")
    F_, T = stft.shape[-2:]
    if F_ != n_fft // 2 + 1:
        fail(f"stft has {F_} frequency bins; a one-sided STFT with n_fft={n_fft} has {n_fft // 2 + 1}")
    if gain.shape[1:] != (F_, T):
        fail(f"gain (N, F, T) must match stft's (F, T) = ({F_}, {T}), got {tuple(gain.shape)}")
    if stft.dim() == 3 and stft.shape[0] not in (1, gain.shape[0]):
        fail(f"stft batch must be 1 or gain's N={gain.shape[0]}, got {stft.shape[0]}")
    if T == 0:
        fail("stft has no frames")
    if length is not None and length < 0:
        fail(f"length must be non-negative, got {length}")


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
    _check_masked_istft(stft, gain, n_fft, hop_length, win_length, window, length, mode)
    needs_grad = torch.is_grad_enabled() and (gain.requires_grad or stft.requires_grad or window.requires_grad)
    if _use_native("masked_istft", gain.device, needs_grad, gain.dtype):
        return torch.ops.cnnaural.masked_istft(stft, gain, n_fft, hop_length, win_length, window, center,
                                               length, mode)
    return reference.masked_istft(stft, gain, n_fft=n_fft, hop_length=hop_length, win_length=win_length,
                                  window=window, center=center, length=length, mode=mode)
