"""Deconvnet (Zeiler & Fergus 2014) over any PyTorch CNN.

Two paths with one definition and one API. The chain path (this module) takes a model whose
conv/pool chain `chain.read_chain` can read back block by block with the fused native op; any
other differentiable model goes through the general path (`graph.GraphDeconvNet`): autograd
on the model itself with every rectifier's backward replaced by relu(grad_output). `DeconvNet(model)`
picks the chain path when it can read the model and the general path otherwise.

Chain path:

Forward block: conv -> [batchnorm] -> rectifier -> [maxpool] -> [dropout]. Backward through a
block: unpool with the recorded switches -> ReLU -> transposed convolution with the same weights
(biases unused; eval-mode batchnorm contributes gamma / sqrt(var + eps), folded into the conv
weight; dropout is identity; local response normalisation acts going forward and is identity
going back). This equals autograd on the same model with the rectifier
backward replaced by relu(grad_output), which the tests use as an independent oracle.

Layer L (1-based) is the L-th Conv2d; its output is taken after everything that follows it up to
the next Conv2d (rectifier, pooling, dropout) — the pooled block output of the original code. A
module name (`"features.block2.0"`) names that module's output (a container's: its last module's).
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
    """One forward pass of B inputs (B = 1 for one track): the input shape of every step, the pool
    switches, the layer outputs."""
    x_shape: tuple
    in_shapes: list = field(default_factory=list)
    indices: dict = field(default_factory=dict)  # step index -> (B, C, h, w) int64
    outputs: dict = field(default_factory=dict)  # step index -> output of that step (layer ends)
    last_step: int = -1

    @property
    def batch(self) -> int:
        """The number of inputs recorded."""
        return int(self.x_shape[0])

    def rows(self, which: slice) -> "Recording":
        """The recording of the inputs `which` (a slice): views of the switches and outputs."""
        n = len(range(*which.indices(self.batch)))
        return Recording((n, *self.x_shape[1:]), [(n, *s[1:]) for s in self.in_shapes],
                         {i: v[which] for i, v in self.indices.items()},
                         {i: v[which] for i, v in self.outputs.items()}, self.last_step)

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


def build_seeds(act: torch.Tensor, layer, features, seed: str = "map", compact: bool = False):
    """Seeds for `features` of a layer whose output (1, C, ...) is `act`: (seeds, features, channels).

    seed "map" keeps channel k's whole activation map, "max" only its strongest position; for
    layer "output" the seeds are one-hot class scores. compact: (K, 1, ...) seeds and the channel
    of each row (K,) instead of (K, C, ...) and None.
    """
    if seed not in ("map", "max"):
        raise CnnauralError(f"seed must be 'map' or 'max' (got {seed!r})")
    act = act[0]
    feats = parse_features(features, act.shape[0], act, "output" if layer == "output" else f"layer {layer}")
    K = len(feats)
    rows = torch.arange(K, device=act.device)
    fidx = torch.tensor(feats, device=act.device)
    if layer == "output":
        s = act.new_zeros((K,) + tuple(act.shape))
        s[rows, fidx] = 1.0
        return s, feats, None
    maps = act[fidx]  # (K, ...)
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


def _check_budget(max_batch_bytes):
    if max_batch_bytes is None:
        return None
    try:
        value = int(max_batch_bytes)
    except (TypeError, ValueError):
        value = 0
    if isinstance(max_batch_bytes, bool) or value < 1:
        raise CnnauralError(f"max_batch_bytes must be a positive number of bytes or None (got {max_batch_bytes!r})")
    return value


def chain_error(model: nn.Module) -> CnnauralError | None:
    """Why the chain path cannot take `model` (None when it can)."""
    try:
        _chain_layout(read_chain(model))
    except CnnauralError as e:
        return e
    return None


def _chain_layout(steps):
    conv_idx = [i for i, s in enumerate(steps) if s.kind == "conv"]
    head = next((i for i, s in enumerate(steps) if s.kind in ("flatten", "linear")), len(steps))
    if any(i > head for i in conv_idx):
        raise CnnauralError("DeconvNet needs every Conv2d before the Flatten/Linear head")
    return conv_idx, head


TILE_BYTES = 64 * 2**20  # the largest full-resolution conv output a recording holds at once (see _forward)


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (int(v), int(v))


def _rectify_(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The rectifier module m applied to x in place."""
    if isinstance(m, nn.LeakyReLU):
        return F.leaky_relu_(x, m.negative_slope)
    if isinstance(m, nn.ELU):
        return F.elu_(x, m.alpha)
    if isinstance(m, nn.ReLU):
        return torch.relu_(x)
    return m(x)


def memory_budget(device="cpu") -> int:
    """The default seed-chunk budget in bytes for `device`, from its free memory: a quarter of the
    free memory of a CUDA device (torch.cuda.mem_get_info), an eighth of the CPU's available
    memory (MemAvailable) and at most 1 GiB there; 512 MiB when it cannot be read."""
    device = torch.device(device)
    try:
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            return max(64 * 2**20, int(free) // 4)
        if device.type == "cpu":
            with open("/proc/meminfo") as f:
                avail = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
            return max(64 * 2**20, min(2**30, avail // 8))
    except (OSError, StopIteration, RuntimeError, ValueError):
        pass
    return 512 * 2**20


def balanced_chunk(k: int, limit: int) -> int:
    """Seeds per chunk for k seeds under a chunk limit: the fewest chunks the limit allows, of near
    equal size, rounded up to a multiple of 8 where the limit leaves room (the native kernels work
    on 6 or 8 seeds at a time: 64 seeds under a limit of 25 go as 24 + 24 + 16, not 25 + 25 + 14)."""
    limit = max(1, limit)
    if k <= limit:
        return max(1, k)
    size = -(-k // -(-k // limit))
    rounded = -(-size // 8) * 8
    return rounded if rounded <= limit else size


class DeconvNet:
    """Deconvolve learned features of a CNN back to its input.

    `DeconvNet(model)` returns the chain path (this class) when `chain.read_chain` reads the
    model — a chain (nested nn.Sequential or torch.fx-traceable) of Conv2d, BatchNorm2d,
    ReLU/LeakyReLU/ELU, MaxPool2d, Dropout/LRN, Flatten, Linear — and otherwise the general
    path, `graph.GraphDeconvNet` (a subclass with the same API), which takes any differentiable
    model with Conv1d/Conv2d layers. Both compute the same thing (modified backprop).

    Args:
        model: the nn.Module. It is not copied, and it is left as it was: the forward passes here
            run batchnorm with its running statistics and skip dropout; no gradient is left in its
            parameters.
        max_batch_bytes: seeds are deconvolved in chunks whose largest intermediates stay under
            this many bytes; None (default): `memory_budget` of the device the seeds are on, from
            its free memory.
        path: "auto" (default), "chain" (the chain path or a CnnauralError saying why not) or
            "general".

    Attributes:
        general (bool): which path this is.

    Layers: a 1-based conv index, a module name (its output), or "output" (class scores).

    Raises:
        CnnauralError: naming the module it cannot take.
    """

    general = False

    def __new__(cls, model=None, max_batch_bytes: int | None = None, path: str = "auto"):
        if cls is DeconvNet:
            if path not in ("auto", "chain", "general"):
                raise CnnauralError(f"path must be 'auto', 'chain' or 'general' (got {path!r})")
            if not isinstance(model, nn.Module):
                raise CnnauralError(f"DeconvNet needs an nn.Module (got {type(model).__name__})")
            if path == "general" or (path == "auto" and chain_error(model) is not None):
                from .graph import GraphDeconvNet

                cls = GraphDeconvNet
        return object.__new__(cls)

    def __init__(self, model: nn.Module, max_batch_bytes: int | None = None, path: str = "auto"):
        self.model = model
        self.steps = read_chain(model)
        self.max_batch_bytes = _check_budget(max_batch_bytes)
        conv_idx, head = _chain_layout(self.steps)
        self._names = dict(model.named_modules())
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
        """Number of features of a layer (1-based int, module name, or "output" for the class scores)."""
        key = self.key(layer)
        if key == "output":
            return self._out_features()
        if isinstance(key, int):
            return self.conv(key).out_channels
        for st in reversed(self.steps[:self._end_step(key) + 1]):
            if st.kind == "conv":
                return st.module.out_channels
            if st.kind == "bn":
                return st.module.num_features
            if st.kind == "linear":
                return st.module.out_features
            if st.kind == "flatten":
                break
        raise CnnauralError(f"layer {key!r} is flattened: name a layer before the Flatten, or a Linear")

    def conv(self, layer) -> nn.Conv2d:
        """The Conv2d of a layer (1-based, or the name of a conv module)."""
        key = self.key(layer)
        if isinstance(key, int):
            return self.steps[self._conv_idx[key - 1]].module
        m = self._names.get(key)
        if not isinstance(m, nn.Conv2d):
            raise CnnauralError(f"layer {layer!r} is not a convolution")
        return m

    @property
    def takes_waveform(self) -> bool:
        """Whether the model's input is a waveform (a front end inside it): never on the chain path."""
        return False

    def key(self, layer):
        """The canonical form of a layer: an int 1..n_layers, a module name, or "output"."""
        if isinstance(layer, str):
            text = layer.strip()
            if text.lower() == "output":
                return "output"
            if not text.lstrip("+-").isdigit():
                if text == "" or text not in self._names:
                    examples = ", ".join(repr(self.steps[i].name) for i in self._conv_idx[:3])
                    raise CnnauralError(f"the model has no module named {text!r}: a layer is an integer "
                                        f"1..{self.n_layers}, 'output' or a module name such as {examples}")
                return text
        return self._check_layer(layer)

    def _out_features(self):
        if not self.has_head:
            raise CnnauralError("this model has no Linear head: class targets need one")
        return [s for s in self.steps if s.kind == "linear"][-1].module.out_features

    def _check_layer(self, layer) -> int:
        try:
            if isinstance(layer, bool) or (isinstance(layer, float) and not layer.is_integer()):
                raise TypeError
            layer = int(layer)
        except (TypeError, ValueError):
            raise CnnauralError(f"layer must be an integer 1..{self.n_layers}, 'output' or a module name "
                                f"(got {layer!r})") from None
        if not 1 <= layer <= self.n_layers:
            raise CnnauralError(f"layer {layer} is out of range: the model has {self.n_layers} conv layers "
                                f"(1..{self.n_layers})")
        return layer

    def _end_step(self, layer) -> int:
        key = self.key(layer)
        if key == "output":
            self._out_features()
            return len(self.steps) - 1
        if isinstance(key, str):
            inside = [i for i, st in enumerate(self.steps) if st.name == key or st.name.startswith(key + ".")]
            if not inside:
                raise CnnauralError(f"layer {key!r} is not a step of the model's forward pass")
            return max(inside)
        return self._layer_end[key - 1]

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
    def record(self, x: torch.Tensor, layer="output", keep: str = "ends") -> Recording:
        """One forward pass up to `layer` (or the deepest of a list of layers), recording every
        pool's switches and each layer's output.

        Args:
            x (Tensor): (1, C_in, F', T) network input, or (B, C_in, F', T): B inputs of one size
                recorded in one pass (e.g. excerpts of B tracks), each with its own switches;
                `deconvolve_batch` takes such a recording back.
            keep: "ends" keeps the output of every conv layer on the way (any of them can be
                deconvolved from the recording); "asked" only those of the layers asked for
                (less memory for a long input).
        """
        if keep not in ("ends", "asked"):
            raise CnnauralError(f"keep must be 'ends' or 'asked' (got {keep!r})")
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[0] < 1:
            raise CnnauralError(f"DeconvNet expects inputs of shape (B, C, F, T), got "
                                f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        layers = layer if isinstance(layer, (list, tuple)) else [layer]
        ends = {self._end_step(v) for v in layers}
        end = max(ends)
        rec = Recording(tuple(x.shape))
        self._forward(x, end, rec, store=ends, keep_ends=keep == "ends")
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

    def _forward(self, x, end, rec, keep=None, store=(), keep_ends=True):
        """Run steps 0..end as the model would in eval mode; record shapes, switches and the
        outputs of every layer end (keep_ends) and of the steps in `store` into `rec` when given;
        call keep(step, output) after every step when given.

        Memory: a rectifier overwrites its input when nothing else holds it, and with a
        recording, a conv -> [bn] -> rectifier -> [dropout] -> max-pool block whose full-size
        conv output is larger than the tile budget runs in time tiles: only the pooled output
        and its switches are ever whole."""
        ends = (set(self._layer_end) if keep_ends else set()) | set(store) | {end}
        fresh = False  # x is an intermediate nothing else holds: it may be overwritten
        i = 0
        while i <= end:
            st = self.steps[i]
            m = st.module
            if rec is not None and keep is None and st.kind == "conv":
                pool_i = self._tileable(i, end, ends)
                tiled = None if pool_i is None else self._tiled_block(x, i, pool_i, rec)
                if tiled is not None:
                    x, i, fresh = tiled, pool_i, True
                    if i in ends:
                        rec.outputs[i] = x
                        fresh = False
                    i += 1
                    continue
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
            elif st.kind == "act" and fresh and keep is None:
                x = _rectify_(m, x)
            elif st.kind == "identity":
                pass
            else:
                try:
                    x = m(x)
                except RuntimeError as e:
                    raise CnnauralError(f"the input {tuple(x.shape)} does not fit the model at '{st.name}': "
                                        f"{str(e).splitlines()[0]}") from None
            if st.kind not in ("identity", "flatten"):
                fresh = True
            if rec is not None and i in ends:
                rec.outputs[i] = x
                fresh = False
            if keep is not None:
                keep(i, x)
            i += 1
        return x

    def _tileable(self, conv_i, end, ends):
        """The pool index when steps conv_i.. are conv -> [bn] -> rectifier -> [dropout] -> max-pool
        (pool padding 0, dilation 1, floor mode) ending by `end`, none of them but the pool kept."""
        j = conv_i + 1
        if j < len(self.steps) and self.steps[j].kind == "bn":
            j += 1
        if j >= len(self.steps) or self.steps[j].kind != "act":
            return None
        j += 1
        while j < len(self.steps) and self.steps[j].kind == "identity":
            j += 1
        if j > end or j >= len(self.steps) or self.steps[j].kind != "pool":
            return None
        pool = self.steps[j].module
        if _pair(pool.padding) != (0, 0) or _pair(pool.dilation) != (1, 1) or pool.ceil_mode:
            return None
        if any(k in ends for k in range(conv_i, j)):
            return None
        return j

    def _tiled_block(self, x, conv_i, pool_i, rec):
        """conv -> [bn] -> rectifier -> max-pool over time tiles: the pooled output, its switches in
        rec (flat positions in the whole conv output, as one max_pool2d gives them). None when one
        tile would do (or the input does not fit: the plain path says why)."""
        conv = self.steps[conv_i].module
        bn = self.steps[conv_i + 1].module if self.steps[conv_i + 1].kind == "bn" else None
        act = self.steps[conv_i + (2 if bn is not None else 1)].module
        pool = self.steps[pool_i].module
        (sh, sw), (ph, pw), (dh, dw) = conv_geometry(conv)
        kh, kw = conv.kernel_size
        if x.dim() != 4 or x.shape[1] != conv.in_channels:
            return None
        N, _, H_in, W_in = x.shape
        H_c = (H_in + 2 * ph - dh * (kh - 1) - 1) // sh + 1
        W_c = (W_in + 2 * pw - dw * (kw - 1) - 1) // sw + 1
        pk = _pair(pool.kernel_size)
        ps = _pair(pool.stride) if pool.stride not in (None, (), []) else pk
        if H_c < pk[0] or W_c < pk[1]:
            return None
        H_p, W_p = (H_c - pk[0]) // ps[0] + 1, (W_c - pk[1]) // ps[1] + 1
        C = conv.out_channels
        per_col = N * C * H_c * ps[1] * x.element_size()
        cols = max(1, TILE_BYTES // max(per_col, 1))
        if cols >= W_p:
            return None
        out = x.new_empty(N, C, H_p, W_p)
        idx = torch.empty(N, C, H_p, W_p, dtype=torch.int64, device=x.device)
        w = conv.weight.to(x)
        b = None if conv.bias is None else conv.bias.to(x)
        for c0 in range(0, W_p, cols):
            c1 = min(W_p, c0 + cols)
            a, z = c0 * ps[1], (c1 - 1) * ps[1] + pk[1]  # conv output columns [a, z)
            lo, hi = a * sw - pw, (z - 1) * sw - pw + dw * (kw - 1) + 1  # input columns [lo, hi)
            xt = x[..., max(lo, 0):min(hi, W_in)]
            if lo < 0 or hi > W_in:
                xt = F.pad(xt, (max(0, -lo), max(0, hi - W_in)))
            y = F.conv2d(xt, w, b, (sh, sw), (ph, 0), (dh, dw))
            if bn is not None:
                y = F.batch_norm(y, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
            y = _rectify_(act, y)
            p, i = F.max_pool2d(y, pk, ps, 0, 1, False, return_indices=True)
            out[..., c0:c1] = p
            idx[..., c0:c1] = torch.div(i, z - a, rounding_mode="floor") * W_c + i % (z - a) + a
        rec.in_shapes.append(tuple(x.shape))
        rec.in_shapes += [(N, C, H_c, W_c)] * (pool_i - conv_i)
        rec.indices[pool_i] = idx
        return out

    def activation(self, rec: Recording, layer) -> torch.Tensor:
        """The output of `layer` recorded in `rec`: (1, C, h, w), or (1, n_classes) for "output"."""
        end = self._end_step(layer)
        if end > rec.last_step or end not in rec.outputs:
            raise CnnauralError(f"this recording does not hold layer {layer!r}; record(x, layer={layer!r})")
        return rec.outputs[end]

    def release(self, rec: Recording, layer, keep=()) -> None:
        """Drop `layer`'s output from `rec` (to free its memory), unless a layer in `keep` shares it."""
        end = self._end_step(layer)
        if all(self._end_step(k) != end for k in keep):
            rec.outputs.pop(end, None)

    # -- backward --------------------------------------------------------------------------------------
    def seeds(self, rec: Recording, layer, features, seed: str = "map", compact: bool = False):
        """Build the seeds for `features` of `layer` and return (seeds, features, channels).

        seed: "map" keeps channel k's whole activation map (the original code), "max" only its
        strongest position (Zeiler & Fergus). For layer "output", seeds are one-hot class scores.
        compact: for conv layers, return the seeds as (K, 1, h, w) with channels (K,) naming
        each row's channel (every other channel is zero); otherwise (K, C, h, w) and None.
        """
        key = self.key(layer)
        act = self.activation(rec, key)
        return build_seeds(act, key, features, seed, compact=compact and act.dim() == 4 and key != "output")

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
        return max(1, self.budget(seeds.device) // max(per_seed, 1))

    def budget(self, device) -> int:
        """The seed-chunk budget in bytes: max_batch_bytes, or the device's `memory_budget`."""
        return self.max_batch_bytes if self.max_batch_bytes is not None else memory_budget(device)

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
            layer: 1-based conv layer, a module name (that module's output), or "output" for class
                scores (features are then classes).
            features: list of ints | int | "all" | "top:K" (K most active for this input).
            seed: "map" | "max".
            return_features: also return the resolved list of features.

        Returns:
            (K, C_in, F', T) deconvolved maps (and the features when asked). All K seeds share the
            one recording's switches (broadcast, never copied per seed).
        """
        rec = x if isinstance(x, Recording) else self.record(x, layer)
        if rec.batch != 1:
            raise CnnauralError(f"this recording holds {rec.batch} inputs: deconvolve_batch takes them back "
                                "(deconvolve takes one)")
        s, feats, channels = self.seeds(rec, layer, features, seed, compact=True)
        out = self._take_back(rec, self._end_step(layer), s, channels)
        return (out, feats) if return_features else out

    def _take_back(self, rec: Recording, end: int, s: torch.Tensor, channels) -> torch.Tensor:
        """`backward` of seeds s from step `end` of a batch-1 recording, in chunks that fit the budget."""
        chunk = balanced_chunk(s.shape[0], self._chunk_size(rec, end, s))
        with ops.output_pool_for_chunks():  # the chunks reuse each other's block outputs
            parts = [self.backward(rec, s[k:k + chunk], end, None if channels is None else channels[k:k + chunk])
                     for k in range(0, s.shape[0], chunk)]
        return torch.cat(parts, dim=0).contiguous()

    def deconvolve_batch(self, rec: Recording, layer, features="all", seed: str = "map"):
        """Deconvolve features of `layer` for every input of a batched recording (`record` of
        (B, C_in, F', T)): [(maps (K_b, C_in, F', T), features)] per input, each equal to
        `deconvolve` of that input alone (up to float rounding: the batched forward pass sums
        in another order). features, seed: as `deconvolve`, per input ("top:K" picks each
        input's own top K). Each input's seeds go back together with its own switches, shared by
        all of them (views of the recording, never copied per seed), which the dense kernels
        exploit (`unpool_conv_transpose2d`'s seed-batched GEMM).
        """
        if self.key(layer) == "output":
            raise CnnauralError("deconvolve_batch takes conv layers (class targets: deconvolve per input)")
        end, out = self._end_step(layer), []
        for b in range(rec.batch):
            one = rec.rows(slice(b, b + 1))
            s, feats, channels = self.seeds(one, layer, features, seed, compact=True)
            out.append((self._take_back(one, end, s, channels), feats))
        return out
