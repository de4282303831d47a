"""Deconvnet (Zeiler & Fergus 2014) over any PyTorch CNN whose conv/pool chain can be read.

Forward block: conv -> [batchnorm] -> rectifier -> [maxpool] -> [dropout]. Backward through a
block: unpool with the recorded switches -> ReLU -> transposed convolution with the same weights
(biases unused; eval-mode batchnorm contributes gamma / sqrt(var + eps), folded into the conv
weight; dropout is identity; local response normalisation acts going forward and is identity
going back). This equals autograd on the same model with the rectifier
backward replaced by relu(grad_output), which the tests use as an independent oracle.

Layer L (1-based) is the L-th Conv2d; its output is taken after everything that follows it up to
the next Conv2d (rectifier, pooling, dropout) — the pooled block output of the original code.
"""
from __future__ import annotations

import math

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from . import ops
from .chain import conv_geometry, read_chain
from .errors import CnnauralError
from .reference import densify, max_unpool2d_sum


@dataclass
class Recording:
    """One forward pass: the input shape of every step, the pool switches, the layer outputs."""
    x_shape: tuple
    in_shapes: list = field(default_factory=list)
    indices: dict = field(default_factory=dict)  # step index -> (1, C, h, w) int64
    outputs: dict = field(default_factory=dict)  # step index -> output of that step (layer ends)
    last_step: int = -1


def _output_padding(in_hw, out_hw, kernel, stride, padding, dilation):
    """output_padding that makes conv_transpose2d return exactly the forward conv's input size."""
    return tuple(int(in_hw[d]) - ((int(out_hw[d]) - 1) * stride[d] - 2 * padding[d] + dilation[d] * (kernel[d] - 1) + 1)
                 for d in range(2))


def _bn_scale(bn: nn.BatchNorm2d) -> torch.Tensor:
    scale = torch.rsqrt(bn.running_var + bn.eps)
    return scale * bn.weight if bn.affine else scale


def parse_features(features, n_available: int, activation: torch.Tensor | None = None, what: str = "layer"):
    """Resolve a features spec — list of ints | int | "all" | "top:K" | "0,7" — to a list of ints.

    "top:K" ranks by the mean of each channel's activation map (needs `activation` (C, ...)).
    """
    if isinstance(features, str):
        s = features.strip().lower()
        if s == "all":
            return list(range(n_available))
        if s.startswith("top:"):
            try:
                k = int(s[4:])
            except ValueError:
                raise CnnauralError(f"features 'top:K' needs an integer K (got {features!r})") from None
            if not 1 <= k <= n_available:
                raise CnnauralError(f"features {features!r}: K must be in 1..{n_available}")
            if activation is None:
                raise CnnauralError("features 'top:K' needs the activations of the input")
            score = activation.reshape(activation.shape[0], -1).mean(dim=1)
            return [int(i) for i in torch.argsort(score, descending=True, stable=True)[:k]]
        try:
            features = [int(v) for v in s.split(",") if v.strip()]
        except ValueError:
            raise CnnauralError(f"features must be a list of ints, 'all' or 'top:K' (got {features!r})") from None
    elif isinstance(features, int):
        features = [features]
    features = [int(f) for f in features]
    if not features:
        raise CnnauralError("no features selected")
    bad = [f for f in features if not 0 <= f < n_available]
    if bad:
        raise CnnauralError(f"feature {bad[0]} is out of range: the {what} has {n_available} features "
                            f"(0..{n_available - 1})")
    return features


class DeconvNet:
    """Deconvolve learned features of a CNN back to its input.

    Args:
        model: an nn.Module whose layers form a chain (nested nn.Sequential or torch.fx-traceable)
            of Conv2d, BatchNorm2d, ReLU/LeakyReLU/ELU, MaxPool2d, Dropout/LRN, Flatten, Linear.
            The model is not copied and its train/eval mode is not touched: the forward pass here
            always runs batchnorm with its running statistics and skips dropout.
        max_batch_bytes: seeds are deconvolved in chunks whose largest intermediate stays under this.

    Raises:
        CnnauralError: naming the first module it cannot read.
    """

    def __init__(self, model: nn.Module, max_batch_bytes: int = 512 * 2**20):
        self.model = model
        self.steps = read_chain(model)
        self.max_batch_bytes = int(max_batch_bytes)
        conv_idx = [i for i, s in enumerate(self.steps) if s.kind == "conv"]
        head = next((i for i, s in enumerate(self.steps) if s.kind in ("flatten", "linear")), len(self.steps))
        if any(i > head for i in conv_idx):
            raise CnnauralError("DeconvNet needs every Conv2d before the Flatten/Linear head")
        self._layer_end = [(conv_idx[k + 1] - 1) if k + 1 < len(conv_idx) else head - 1
                           for k in range(len(conv_idx))]
        self._conv_idx = conv_idx
        self.has_head = head < len(self.steps) and any(s.kind == "linear" for s in self.steps[head:])

    # -- description -------------------------------------------------------------------------------
    @property
    def n_layers(self) -> int:
        """Number of conv layers (layers are 1-based)."""
        return len(self._conv_idx)

    def n_features(self, layer) -> int:
        """Number of features of a layer (1-based int, or "output" for the class scores)."""
        if layer == "output":
            return self._out_features()
        return self.conv(layer).out_channels

    def conv(self, layer) -> nn.Conv2d:
        """The Conv2d of a layer (1-based)."""
        return self.steps[self._conv_idx[self._check_layer(layer) - 1]].module

    def _out_features(self):
        if not self.has_head:
            raise CnnauralError("this model has no Linear head: class targets need one")
        return [s for s in self.steps if s.kind == "linear"][-1].module.out_features

    def _check_layer(self, layer) -> int:
        try:
            layer = int(layer)
        except (TypeError, ValueError):
            raise CnnauralError(f"layer must be an integer 1..{self.n_layers} or 'output' (got {layer!r})") from None
        if not 1 <= layer <= self.n_layers:
            raise CnnauralError(f"layer {layer} is out of range: the model has {self.n_layers} conv layers "
                                f"(1..{self.n_layers})")
        return layer

    def _end_step(self, layer) -> int:
        if layer == "output":
            self._out_features()
            return len(self.steps) - 1
        return self._layer_end[self._check_layer(layer) - 1]

    def describe(self) -> list[str]:
        """One line per conv layer: name, channels, kernel, and what follows it."""
        lines = []
        for k, c in enumerate(self._conv_idx):
            conv = self.steps[c].module
            rest = [s.kind for s in self.steps[c + 1:self._layer_end[k] + 1]]
            lines.append(f"layer {k + 1}: {self.steps[c].name} {conv.in_channels}->{conv.out_channels} "
                         f"{tuple(conv.kernel_size)} then {' '.join(rest) or '-'}")
        return lines

    # -- forward with switches -----------------------------------------------------------------------
    @torch.no_grad()
    def record(self, x: torch.Tensor, layer="output") -> Recording:
        """One forward pass up to `layer`, recording every pool's switches and each layer's output.

        Args:
            x (Tensor): (1, C_in, F', T) network input.
        """
        if x.dim() != 4 or x.shape[0] != 1:
            raise CnnauralError(f"DeconvNet expects one input of shape (1, C, F, T), got {tuple(x.shape)}")
        end = self._end_step(layer)
        rec = Recording(tuple(x.shape))
        self._forward(x, end, rec)
        rec.last_step = end
        return rec

    @torch.no_grad()
    def activations(self, x: torch.Tensor, layer) -> torch.Tensor:
        """The output of `layer` for a batch x (B, C_in, F', T), without recording switches."""
        if x.dim() != 4:
            raise CnnauralError(f"DeconvNet expects inputs of shape (B, C, F, T), got {tuple(x.shape)}")
        return self._forward(x, self._end_step(layer), None)

    @torch.no_grad()
    def layer_outputs(self, x: torch.Tensor, layers) -> dict:
        """The outputs of several layers for a batch x (B, C_in, F', T) from one forward pass,
        without recording switches (so a long track costs its activations only): {layer: output}."""
        if x.dim() != 4:
            raise CnnauralError(f"DeconvNet expects inputs of shape (B, C, F, T), got {tuple(x.shape)}")
        steps = {self._end_step(layer): layer for layer in layers}
        kept: dict = {}
        self._forward(x, max(steps), None, keep=lambda i, y: kept.__setitem__(steps[i], y) if i in steps else None)
        return {layer: kept[layer] for layer in layers}

    def _forward(self, x, end, rec, keep=None):
        """Run steps 0..end as the model would in eval mode; record shapes, switches and layer
        outputs into `rec` when given; call keep(step, output) after every step when given."""
        ends = set(self._layer_end)
        for i, st in enumerate(self.steps[:end + 1]):
            m = st.module
            if rec is not None:
                rec.in_shapes.append(tuple(x.shape))
            if st.kind == "pool":
                if rec is None:
                    x = F.max_pool2d(x, m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode)
                else:
                    x, rec.indices[i] = F.max_pool2d(x, m.kernel_size, m.stride, m.padding, m.dilation,
                                                     m.ceil_mode, return_indices=True)
            elif st.kind == "bn":
                x = F.batch_norm(x, m.running_mean, m.running_var, m.weight, m.bias, False, 0.0, m.eps)
            elif st.kind == "identity":
                pass
            else:
                try:
                    x = m(x)
                except RuntimeError as e:
                    raise CnnauralError(f"the input {tuple(x.shape)} does not fit the model at '{st.name}': "
                                        f"{str(e).splitlines()[0]}") from None
            if rec is not None and (i in ends or i == end):
                rec.outputs[i] = x
            if keep is not None:
                keep(i, x)
        return x

    def activation(self, rec: Recording, layer) -> torch.Tensor:
        """The output of `layer` recorded in `rec`: (1, C, h, w), or (1, n_classes) for "output"."""
        end = self._end_step(layer)
        if end > rec.last_step:
            raise CnnauralError(f"this recording stops before layer {layer}; record(x, layer={layer})")
        return rec.outputs[end]

    # -- backward --------------------------------------------------------------------------------------
    def seeds(self, rec: Recording, layer, features, seed: str = "map", compact: bool = False):
        """Build the seeds for `features` of `layer` and return (seeds, features, channels).

        seed: "map" keeps channel k's whole activation map (the original code), "max" only its
        strongest position (Zeiler & Fergus). For layer "output", seeds are one-hot class scores.
        compact: for conv layers, return the seeds as (K, 1, h, w) with channels (K,) naming
        each row's channel (every other channel is zero); otherwise (K, C, h, w) and None.
        """
        if seed not in ("map", "max"):
            raise CnnauralError(f"seed must be 'map' or 'max' (got {seed!r})")
        act = self.activation(rec, layer)[0]
        feats = parse_features(features, act.shape[0], act, "output" if layer == "output" else f"layer {layer}")
        K = len(feats)
        rows = torch.arange(K, device=act.device)
        fidx = torch.tensor(feats, device=act.device)
        if layer == "output":
            s = act.new_zeros((K,) + tuple(act.shape))
            s[rows, fidx] = 1.0
            return s, feats, None
        maps = act[fidx]  # (K, h, w)
        if seed == "max":
            flat = maps.reshape(K, -1)
            pos = flat.argmax(dim=1)
            peak = torch.zeros_like(flat)
            peak[rows, pos] = flat[rows, pos]
            maps = peak.view_as(maps)
        if compact:
            return maps[:, None].contiguous(), feats, fidx
        s = act.new_zeros((K,) + tuple(act.shape))
        s[rows, fidx] = maps
        return s, feats, None

    def _chunk_size(self, rec: Recording, end: int, seeds: torch.Tensor) -> int:
        """Seeds per chunk: twice (a step's input and output) the largest map one seed materialises
        on the way back from step `end` stays under max_batch_bytes. A block the native fused op
        takes back never materialises its unpooled maps (the pool's, the rectifier's inputs): only
        its output counts, so chunks are larger there (4x fewer, larger calls on a 30-s track)."""
        native = ops.uses_native("unpool_conv_transpose2d", seeds.device, seeds.dtype)
        inside_fused, i = set(), end
        while native and i >= 0:
            fused = self._fusable(i) if self.steps[i].kind == "pool" else None
            if fused is None:
                i -= 1
                continue
            inside_fused.update(range(fused[0] + 1, i + 1))
            i = fused[0] - 1
        sizes = [math.prod(s[1:]) for k, s in enumerate(rec.in_shapes[:end + 1]) if k not in inside_fused]
        per_seed = max(sizes, default=1) * seeds.element_size() * 2
        return max(1, self.max_batch_bytes // max(per_seed, 1))

    @torch.no_grad()
    def backward(self, rec: Recording, g: torch.Tensor, from_step: int, channels: torch.Tensor | None = None):
        """Take seeds g (K, ...) at the output of step `from_step` back to the input: (K, C_in, F', T).

        channels: g is compact (K, 1, h, w), row k being channel channels[k] (see `seeds`).
        """
        steps, i = self.steps, from_step
        while i >= 0:
            st = steps[i]
            m = st.module
            fused = self._fusable(i) if st.kind == "pool" else None
            if channels is not None and fused is None and st.kind not in ("identity", "passback"):
                g = densify(g, channels, rec.outputs[from_step].shape[1])
                channels = None
            if st.kind == "pool":
                if fused is not None:
                    conv_i, bn_i = fused
                    g = self._unpool_conv(rec, g, i, conv_i, bn_i, channels)
                    channels = None
                    i = conv_i - 1
                    continue
                g = max_unpool2d_sum(g, rec.indices[i], rec.in_shapes[i][-2:])
            elif st.kind == "act":
                g = torch.relu(g)
            elif st.kind == "bn":
                g = g * _bn_scale(m).to(g)[None, :, None, None]
            elif st.kind == "conv":
                stride, padding, dilation = conv_geometry(m)
                out_pad = _output_padding(rec.in_shapes[i][-2:], g.shape[-2:], m.kernel_size, stride, padding, dilation)
                g = F.conv_transpose2d(g, m.weight.to(g), None, stride, padding, out_pad, 1, dilation)
            elif st.kind == "flatten":
                g = g.reshape(g.shape[0], *rec.in_shapes[i][1:])
            elif st.kind == "linear":
                g = g @ m.weight.to(g)
            i -= 1
        return g

    def _fusable(self, pool_i):
        """(conv index, bn index or None) when pool_i closes a conv -> [bn] -> rectifier -> pool block."""
        j = pool_i - 1
        while j >= 0 and self.steps[j].kind in ("identity", "passback"):
            j -= 1
        if j < 0 or self.steps[j].kind != "act":
            return None
        j -= 1
        bn_i = None
        if j >= 0 and self.steps[j].kind == "bn":
            bn_i, j = j, j - 1
        if j >= 0 and self.steps[j].kind == "conv":
            return j, bn_i
        return None

    def _unpool_conv(self, rec, g, pool_i, conv_i, bn_i, channels=None):
        conv = self.steps[conv_i].module
        w = conv.weight.to(g)
        if bn_i is not None:
            w = w * _bn_scale(self.steps[bn_i].module).to(g)[:, None, None, None]
        stride, padding, dilation = conv_geometry(conv)
        unpool_size = rec.in_shapes[pool_i][-2:]
        out_pad = _output_padding(rec.in_shapes[conv_i][-2:], unpool_size, conv.kernel_size, stride, padding, dilation)
        return ops.unpool_conv_transpose2d(g, rec.indices[pool_i], w, None, unpool_size=unpool_size, stride=stride,
                                           padding=padding, output_padding=out_pad, dilation=dilation,
                                           channels=channels)

    def deconvolve(self, x, layer, features="all", seed: str = "map", return_features: bool = False):
        """Deconvolve features of `layer` back to the input space.

        Args:
            x (Tensor | Recording): (1, C_in, F', T) network input, or a Recording of it.
            layer: 1-based conv layer, or "output" for class scores (features are then classes).
            features: list of ints | int | "all" | "top:K" (K most active for this input).
            seed: "map" | "max".
            return_features: also return the resolved list of features.

        Returns:
            (K, C_in, F', T) deconvolved maps (and the features when asked). All K seeds share the
            one recording's switches (broadcast, never copied per seed).
        """
        rec = x if isinstance(x, Recording) else self.record(x, layer)
        s, feats, channels = self.seeds(rec, layer, features, seed, compact=layer != "output")
        end = self._end_step(layer)
        chunk = self._chunk_size(rec, end, s)
        parts = [self.backward(rec, s[k:k + chunk], end, None if channels is None else channels[k:k + chunk])
                 for k in range(0, s.shape[0], chunk)]
        out = torch.cat(parts, dim=0).contiguous()
        return (out, feats) if return_features else out
