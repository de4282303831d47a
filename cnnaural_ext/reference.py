"""Pure-PyTorch twins of every native op: the oracle the kernels are tested against, and the
fallback where the native build (or a case it does not cover) is missing.

Same signatures and semantics as `cnnaural_ext.ops`; no argument checking beyond PyTorch's own
(ops.py validates before routing here).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def max_unpool2d_sum(input: torch.Tensor, indices: torch.Tensor, unpool_size) -> torch.Tensor:
    """Max-unpool with switches, summing repeated switches (overlapping pools) as autograd does.

    Args:
        input (Tensor): (N, C, h, w) pooled values.
        indices (Tensor): (N or 1, C, h, w) int64 flat positions in the (H, W) plane; batch 1
            broadcasts over N without a copy.
        unpool_size: (H, W).

    Returns:
        (N, C, H, W)
    """
    N, C, h, w = input.shape
    H, W = int(unpool_size[0]), int(unpool_size[1])
    idx = indices.reshape(indices.shape[0], C, h * w).expand(N, C, h * w)
    out = input.new_zeros(N, C, H * W)
    out.scatter_add_(2, idx, input.reshape(N, C, h * w))
    return out.view(N, C, H, W)


def densify(input: torch.Tensor, channels: torch.Tensor, n_channels: int) -> torch.Tensor:
    """Compact one-feature seeds (N, 1, h, w) + channels (N,) -> (N, n_channels, h, w), zeros elsewhere."""
    dense = input.new_zeros(input.shape[0], n_channels, *input.shape[2:])
    dense[torch.arange(input.shape[0], device=input.device), channels] = input[:, 0]
    return dense


def unpool_conv_transpose2d(input, indices, weight, bias=None, *, unpool_size, stride=1, padding=0,
                            output_padding=0, dilation=1, rectify=True, channels=None):
    """`conv_transpose2d(relu(max_unpool2d(input, indices)), weight, bias, ...)`, repeats summed.

    With `channels`, input (N, 1, h, w) is row n's map of channel channels[n] only."""
    if channels is not None:
        input = densify(input, channels, indices.shape[1])
    up = max_unpool2d_sum(input, indices, unpool_size)
    if rectify:
        up = torch.relu(up)
    return F.conv_transpose2d(up, weight, bias, stride, padding, output_padding, 1, dilation)


def combine(stft: torch.Tensor, gain: torch.Tensor, mode: str) -> torch.Tensor:
    """The complex spectrogram to invert: "mask" stft * gain; "magnitude" gain * stft / |stft|
    (gain where stft == 0)."""
    if mode == "mask":
        return stft * gain
    mag = stft.abs()
    unit = torch.where(mag > 0, stft / torch.where(mag > 0, mag, torch.ones_like(mag)), torch.ones_like(stft))
    return gain * unit


def masked_istft(stft, gain, *, n_fft, hop_length=None, win_length=None, window=None, center=True,
                 length=None, mode="mask"):
    """`torch.istft(combine(stft, gain, mode), ...)`: (F, T) or (N|1, F, T) complex, (N, F, T) real -> (N, L)."""
    if gain.shape[0] == 0:  # torch.istft refuses an empty batch: invert one silent row for the length
        one = gain.new_zeros(1, *gain.shape[1:])
        return masked_istft(stft[:1] if stft.dim() == 3 else stft, one, n_fft=n_fft, hop_length=hop_length,
                            win_length=win_length, window=window, center=center, length=length, mode=mode)[:0]
    if length == 0:
        return gain.new_zeros(gain.shape[0], 0)
    y = combine(stft, gain, mode)
    return torch.istft(y, n_fft, hop_length=hop_length, win_length=win_length, window=window,
                       center=center, length=length)
