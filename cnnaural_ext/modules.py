"""The fused deconvnet step as a layer: `UnpoolConvTranspose2d`, for decoders that are trained.

A deconvnet block going back is unpool (with the forward max-pool's switches) -> ReLU ->
transposed convolution. Decoders that learn to turn a network's pooled features back into a
spectrogram (listenable-explanation decoders) stack exactly these steps; this module runs them as
the one fused op `unpool_conv_transpose2d`, with gradients for the input, the weight and the bias,
on the native kernels where they are built and on the pure-PyTorch twin elsewhere. It compiles
with ``torch.compile(fullgraph=True)``.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from . import ops
from .errors import CnnauralError


def _pair(v, name: str) -> tuple:
    return ops.as_pair(v, name, "UnpoolConvTranspose2d")


class UnpoolConvTranspose2d(nn.Module):
    """Max-unpool with switches -> ReLU -> transposed convolution, fused.

    The convolution's arguments are nn.ConvTranspose2d's: `in_channels` are the pooled channels
    (the paired forward Conv2d's out_channels), `out_channels` what it returns (that Conv2d's
    in_channels), and the weight is (in_channels, out_channels, kH, kW) — the paired Conv2d's own
    weight layout, so `from_modules` can share it. The pool's arguments (`pool_kernel_size`,
    `pool_stride`, `pool_padding`) are the paired nn.MaxPool2d's; they give the unpooled size
    when `forward` is not told it, as nn.MaxUnpool2d computes it.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, output_padding, dilation, bias:
            as nn.ConvTranspose2d (groups 1).
        pool_kernel_size, pool_stride, pool_padding: of the paired max-pool (stride defaults to
            the kernel size).
        rectify: the ReLU between unpooling and the convolution (the deconvnet's); False unpools
            and convolves only.

    Shapes:
        input (N, in_channels, h, w); indices (N or 1, in_channels, h, w) int64, from
        ``F.max_pool2d(..., return_indices=True)`` (or nn.MaxPool2d(return_indices=True));
        output (N, out_channels, H_out, W_out) with H_out = (H - 1) * stride - 2 * padding +
        dilation * (kH - 1) + output_padding + 1 for the unpooled height H.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, output_padding=0,
                 dilation=1, bias: bool = True, *, pool_kernel_size=2, pool_stride=None, pool_padding=0,
                 rectify: bool = True, device=None, dtype=None):
        super().__init__()
        if in_channels < 1 or out_channels < 1:
            raise CnnauralError(f"UnpoolConvTranspose2d: channels must be positive (got {in_channels}, {out_channels})")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride, self.padding = _pair(stride, "stride"), _pair(padding, "padding")
        self.output_padding, self.dilation = _pair(output_padding, "output_padding"), _pair(dilation, "dilation")
        self.pool_kernel_size = _pair(pool_kernel_size, "pool_kernel_size")
        self.pool_stride = self.pool_kernel_size if pool_stride is None else _pair(pool_stride, "pool_stride")
        self.pool_padding = _pair(pool_padding, "pool_padding")
        self.rectify = bool(rectify)
        kw = dict(device=device, dtype=dtype)
        self.weight = nn.Parameter(torch.empty(self.in_channels, self.out_channels, *self.kernel_size, **kw))
        self.bias = nn.Parameter(torch.empty(self.out_channels, **kw)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """nn.ConvTranspose2d's initialisation."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight.shape[1] * self.weight[0, 0].numel()
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            nn.init.uniform_(self.bias, -bound, bound)

    @classmethod
    def from_modules(cls, conv: nn.Conv2d, pool: nn.MaxPool2d, *, bias: bool = False, rectify: bool = True,
                     share_weight: bool = True) -> "UnpoolConvTranspose2d":
        """The deconvnet step that undoes `conv` -> rectifier -> `pool`.

        Args:
            conv: the forward nn.Conv2d (groups 1).
            pool: the max-pool after it (an nn.MaxPool2d, dilation 1, ceil_mode False).
            bias: give the step a bias of its own (zero to start; the deconvnet uses none).
            share_weight: use conv's weight Parameter itself (training one trains both);
                False copies it.
        """
        if not isinstance(conv, nn.Conv2d) or not isinstance(pool, nn.MaxPool2d):
            raise CnnauralError("UnpoolConvTranspose2d.from_modules takes an nn.Conv2d and an nn.MaxPool2d "
                                f"(got {type(conv).__name__}, {type(pool).__name__})")
        if conv.groups != 1 or isinstance(conv.padding, str):
            raise CnnauralError("UnpoolConvTranspose2d.from_modules needs a Conv2d with groups 1 and numeric padding")
        if _pair(pool.dilation, "dilation") != (1, 1) or pool.ceil_mode:
            raise CnnauralError("UnpoolConvTranspose2d.from_modules needs a MaxPool2d with dilation 1 and ceil_mode False")
        step = cls(conv.out_channels, conv.in_channels, conv.kernel_size, conv.stride, conv.padding, 0, conv.dilation,
                   bias, pool_kernel_size=pool.kernel_size, pool_stride=pool.stride, pool_padding=pool.padding,
                   rectify=rectify, device=conv.weight.device, dtype=conv.weight.dtype)
        with torch.no_grad():
            if share_weight:
                step.weight = conv.weight
            else:
                step.weight.copy_(conv.weight)
            if step.bias is not None:
                step.bias.zero_()
        return step

    def unpool_size(self, pooled_hw) -> tuple:
        """The unpooled (H, W) for a pooled (h, w), as nn.MaxUnpool2d computes it."""
        return tuple((int(pooled_hw[d]) - 1) * self.pool_stride[d] - 2 * self.pool_padding[d] + self.pool_kernel_size[d]
                     for d in range(2))

    def forward(self, input: torch.Tensor, indices: torch.Tensor, unpool_size=None) -> torch.Tensor:
        """Args:
            input: (N, in_channels, h, w) pooled values.
            indices: (N or 1, in_channels, h, w) the pool's switches.
            unpool_size: (H, W) of the plane the pool read (its input), or a shape ending in it;
                default from the pool's arguments (give it when the pool's input was cropped).
        """
        if unpool_size is None:
            unpool_size = self.unpool_size(input.shape[-2:])
        else:
            unpool_size = tuple(int(v) for v in unpool_size)[-2:]
        return ops.unpool_conv_transpose2d(input, indices, self.weight, self.bias, unpool_size=unpool_size,
                                           stride=self.stride, padding=self.padding,
                                           output_padding=self.output_padding, dilation=self.dilation,
                                           rectify=self.rectify)

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
             f"padding={self.padding}, pool_kernel_size={self.pool_kernel_size}, pool_stride={self.pool_stride}")
        if self.output_padding != (0, 0):
            s += f", output_padding={self.output_padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.pool_padding != (0, 0):
            s += f", pool_padding={self.pool_padding}"
        if self.bias is None:
            s += ", bias=False"
        if not self.rectify:
            s += ", rectify=False"
        return s
