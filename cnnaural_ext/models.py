"""The paper's CNNs as plain nn.Modules (checkpoints: `cnnaural_ext.io.checkpoint`).

Both models are `nn.Sequential(features=..., classifier=...)` where every feature block is
`Sequential(conv, [batchnorm], relu, maxpool, [dropout])` — the block chain DeconvNet reads.
"""
from __future__ import annotations

from collections import OrderedDict
import torch
from torch import nn

from .errors import CnnauralError


def _as_list(v, n, name):
    if isinstance(v, (int, float)):
        return [v] * n
    v = list(v)
    if len(v) != n:
        raise CnnauralError(f"{name} needs {n} values (got {len(v)})")
    return v


def _cnn(n_blocks, n_classes, width, kernel_sizes, paddings, input_shape, in_channels, dropout,
         batchnorm, dense, pool):
    width = _as_list(width, n_blocks, "width")
    dropout = _as_list(dropout, n_blocks, "dropout")
    blocks = OrderedDict()
    c_prev = in_channels
    for i in range(n_blocks):
        layers = [nn.Conv2d(c_prev, width[i], kernel_sizes[i], padding=paddings[i])]
        if batchnorm:
            layers.append(nn.BatchNorm2d(width[i]))
        layers += [nn.ReLU(inplace=False), nn.MaxPool2d(pool)]
        if dropout[i] > 0:
            layers.append(nn.Dropout(dropout[i]))
        blocks[f"block{i + 1}"] = nn.Sequential(*layers)
        c_prev = width[i]
    features = nn.Sequential(blocks)
    with torch.no_grad():
        n_flat = features(torch.zeros(1, in_channels, *input_shape)).numel()
    head = [nn.Flatten()]
    d_prev = n_flat
    for d in dense:
        head += [nn.Linear(d_prev, d), nn.ReLU(), nn.Dropout(0.5)]
        d_prev = d
    head.append(nn.Linear(d_prev, n_classes))
    return nn.Sequential(OrderedDict(features=features, classifier=nn.Sequential(*head)))


def paper_cnn5(n_classes: int = 3, width=48, input_shape=(257, 173), in_channels: int = 1,
               dropout=(0.0, 0.25, 0.25, 0.25, 0.5), batchnorm: bool = False, dense=(512, 256)) -> nn.Sequential:
    """The paper's reference CNN: 5 blocks of [3x3 'same' conv, ReLU, 2x2 max-pool, dropout], dense head.

    Args:
        n_classes: outputs of the last Linear.
        width: conv channels per block, int or 5 ints (the original code builds 48).
        input_shape: (F', T) of the network input, fixes the size of the first Linear
            (257 x 173: 4 s at 11025 Hz with n_fft 512, hop 256).
        dropout: per-block dropout (the original: 0, .25, .25, .25, .5).
        batchnorm: insert BatchNorm2d after each conv (folded into the weights when deconvolving).
        dense: widths of the hidden Linear layers (the original: 512, 256).
    """
    return _cnn(5, n_classes, width, [3] * 5, [1] * 5, tuple(input_shape), in_channels, dropout,
                batchnorm, dense, 2)


def paper_cnn4_12x12(n_classes: int = 3, width=48, input_shape=(257, 173), in_channels: int = 1,
                     dropout=(0.0, 0.25, 0.25, 0.5), batchnorm: bool = False, dense=(512, 256)) -> nn.Sequential:
    """The paper's 4-block CNN with 12x12 first-layer filters (Figure 2), 3x3 after.

    The 12x12 convolution is unpadded ('valid'): an even kernel has no symmetric 'same' padding,
    and the transposed convolution maps a valid convolution back to the full input exactly.
    """
    return _cnn(4, n_classes, width, [12, 3, 3, 3], [0, 1, 1, 1], tuple(input_shape), in_channels,
                dropout, batchnorm, dense, 2)


ARCHITECTURES = {"paper_cnn5": paper_cnn5, "paper_cnn4_12x12": paper_cnn4_12x12}
