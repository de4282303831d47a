"""The general path: the deconvnet as modified backprop over any differentiable model.

Zeiler & Fergus's deconvnet equals autograd with every rectifier's backward replaced by
relu(grad_output) (DESIGN, "Any model"). `GraphDeconvNet` runs the model itself under a
`TorchFunctionMode` that makes that one replacement, so it takes any graph autograd can
differentiate: residual additions, concatenations, average and adaptive pooling, Conv1d,
grouped and depthwise convolutions, a waveform front end inside the model. Max-pool switches
come from autograd; batchnorm runs with its running statistics and dropout is off (the model
runs in eval mode; every module's mode is restored afterwards); local response normalisation
acts going forward and is identity going back, as on the chain path.

Rectifiers: the modules nn.ReLU / nn.LeakyReLU / nn.ELU and the calls they make, and the same
functions called inside a forward (`F.relu`, `torch.relu`, `x.relu()`, their in-place forms,
`F.leaky_relu`, `F.elu`). In-place forms are computed out of place (the returned tensor is
right; a forward that relies on the input being overwritten without using the result is not).
Any other nonlinearity (sigmoid, tanh, GELU, ...) passes its ordinary gradient.

Layers:
- an int L: the L-th Conv1d/Conv2d module in registration order (`model.named_modules()`,
  the order the modules are defined in, which for almost every model is the order they run
  in). Its output is taken after what follows it in execution order up to the next
  convolution, as on the chain path: each batchnorm, rectifier, max/average pooling (not
  adaptive pooling), dropout or local response normalisation applied to the running output
  extends it; the next convolution, or any other operation on it (an addition, a
  concatenation, a reshape), ends it. For a ResNet block `conv1 bn1 relu conv2 bn2 (+x) relu`
  conv1's output is after `relu`, conv2's after `bn2` (before the addition).
- a module name (`"layer3.1.conv2"`, `"res2.relu2"`): that module's output, at its first call.
- "output": the model's return value (class scores: one-hot seeds; it must be one tensor).

What comes after the requested layer never runs: the forward stops (a private exception) as
soon as every output asked for is captured, so a Softmax, a second optional input or a head
that cannot be differentiated after it do not matter (an exception the model's own code raises
once the layer's output is complete is ignored too).

Front end: modules whose class is named Spectrogram (cnnaural_ext's or torchaudio's),
MelSpectrogram or AmplitudeToDB (told by name: torchaudio need not import) make the model a
waveform model: its input is the waveform and the maps are taken at the last front-end
module's output (the network input of cnnaural_ext.Spectrogram's (stft, input) pair), which
the backward pass treats as the leaf.

Fused blocks: where the forward runs conv2d -> [batchnorm] -> rectifier -> [dropout / LRN] ->
max_pool2d on one tensor (groups 1, symmetric padding), the pool's output is produced by
`_FusedBlock`, whose backward is the native `unpool_conv_transpose2d` straight to the conv's
input (batchnorm's scale folded into the weight) — the chain path's fused op inside any graph.
The intermediate tensors keep their ordinary graph for any other use. This happens when the
native op serves the device and dtype (`ops.uses_native`); the result is the same either way.

Seeds are batched: the input is repeated for each seed of a chunk and one backward pass of
`torch.autograd.grad` (with respect to the input only: no gradient is left in the model's
parameters) takes every seed back at once. A model that cannot run a batch falls back to one
forward pass and one backward pass per seed.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

from .deconvnet import DeconvNet, build_seeds
from .errors import CnnauralError

CONVS = (nn.Conv1d, nn.Conv2d)
FRONT_END_NAMES = ("Spectrogram", "MelSpectrogram", "AmplitudeToDB")  # ours and torchaudio's


class _Stop(BaseException):
    """Raised inside the forward once every output asked for is captured (a BaseException, so a
    model's own `except Exception` cannot swallow it)."""


class _Rectify(torch.autograd.Function):
    """Forward: the rectifier; backward: relu(grad_output) (the deconvnet rule)."""

    @staticmethod
    def forward(ctx, x, fn):
        return fn(x)

    @staticmethod
    def backward(ctx, g):
        return torch.relu(g), None


class _PassBack(torch.autograd.Function):
    """Forward: the function; backward: identity (local response normalisation)."""

    @staticmethod
    def forward(ctx, x, fn):
        return fn(x)

    @staticmethod
    def backward(ctx, g):
        return g, None


class _FusedBlock(torch.autograd.Function):
    """conv -> [batchnorm] -> rectifier -> max-pool taken back in one native op: forward is the
    pool (of the block's rectified output, already computed), backward the fused unpool ->
    ReLU -> transposed convolution to the conv's input, the switches kept from the forward."""

    @staticmethod
    def forward(ctx, x, act, block):
        pooled, idx = F.max_pool2d(act, block.pool_kernel, block.pool_stride, block.pool_padding, block.pool_dilation,
                                   block.ceil_mode, return_indices=True)
        ctx.block, ctx.idx, ctx.unpool_size = block, idx, tuple(act.shape[-2:])
        ctx.mark_non_differentiable(idx)
        return pooled, idx

    @staticmethod
    def backward(ctx, g, _g_idx):
        from . import ops

        b = ctx.block
        w = b.weight.to(g) if b.scale is None else b.weight.to(g) * b.scale.to(g)[:, None, None, None]
        gx = ops.unpool_conv_transpose2d(g.contiguous(), ctx.idx, w, None, unpool_size=ctx.unpool_size,
                                         stride=b.stride, padding=b.padding, output_padding=b.output_padding,
                                         dilation=b.dilation)
        return gx, None, None


class _Block:
    """A conv -> [bn] -> rectifier run seen going forward, waiting for its max-pool."""

    def __init__(self, x, out, weight, stride, padding, dilation):
        self.x, self.t, self.stage, self.version = x, out, "conv", x._version
        self.weight, self.scale = weight.detach(), None
        self.stride, self.padding, self.dilation = stride, padding, dilation


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (int(v), int(v))


def _conv_block(args, kwargs, out):
    """A _Block for a conv2d call the fused op can take back, else None."""
    x = args[0] if args else kwargs.get("input")
    weight = _arg(args, kwargs, 1, "weight", None)
    if not (isinstance(x, torch.Tensor) and isinstance(weight, torch.Tensor) and x.dim() == 4
            and isinstance(out, torch.Tensor) and x.requires_grad):
        return None
    if int(_arg(args, kwargs, 6, "groups", 1)) != 1:
        return None
    stride, dilation = _pair(_arg(args, kwargs, 3, "stride", 1)), _pair(_arg(args, kwargs, 5, "dilation", 1))
    padding = _arg(args, kwargs, 4, "padding", 0)
    if padding == "valid":
        padding = (0, 0)
    elif padding == "same":
        total = [dilation[d] * (weight.shape[2 + d] - 1) for d in range(2)]
        if any(t % 2 for t in total):
            return None  # asymmetric
        padding = (total[0] // 2, total[1] // 2)
    elif isinstance(padding, str):
        return None
    return _Block(x, out, weight, stride, _pair(padding), dilation)


def _arg(args, kwargs, pos, name, default):
    if name in kwargs:
        return kwargs[name]
    return args[pos] if len(args) > pos else default


def _relu(args, kwargs):
    return torch.relu


def _leaky(args, kwargs):
    slope = float(_arg(args, kwargs, 1, "negative_slope", 0.01))
    return lambda t: F.leaky_relu(t, slope)


def _elu(args, kwargs):
    alpha = float(_arg(args, kwargs, 1, "alpha", 1.0))
    return lambda t: F.elu(t, alpha)


# function -> builds the out-of-place rectifier from the call's arguments
RECTIFIER_FUNCS = {F.relu: _relu, torch.relu: _relu, torch.relu_: _relu, torch.Tensor.relu: _relu,
                   torch.Tensor.relu_: _relu, F.leaky_relu: _leaky, F.leaky_relu_: _leaky,
                   F.elu: _elu, F.elu_: _elu}
PASS_BACK_FUNCS = {F.local_response_norm}
# what extends a conv layer's output (the rest of a conv -> [bn] -> rectifier -> [pool] block)
FOLLOWER_FUNCS = set(RECTIFIER_FUNCS) | PASS_BACK_FUNCS | {
    F.batch_norm, F.max_pool1d, F.max_pool2d, F.max_pool1d_with_indices, F.max_pool2d_with_indices,
    F.avg_pool1d, F.avg_pool2d, F.dropout, F.dropout1d, F.dropout2d, F.alpha_dropout, F.feature_alpha_dropout}
IDENTITY_BACK_FUNCS = PASS_BACK_FUNCS | {F.dropout, F.dropout2d, F.alpha_dropout, F.feature_alpha_dropout}
POOL2D_FUNCS = {F.max_pool2d, F.max_pool2d_with_indices}
CONV_FUNCS = {torch.conv1d, torch.conv2d, torch.conv3d, torch.conv_transpose1d, torch.conv_transpose2d,
              torch.conv_transpose3d, F.conv1d, F.conv2d, F.conv3d}


def _in_place(func) -> bool:
    """An in-place tensor operation (add_, __iadd__, copy_, ...), told by its name."""
    name = getattr(func, "__name__", "")
    return (name.endswith("_") and not name.startswith("__")) or name.startswith("__i")


def _is_front_end(m: nn.Module) -> bool:
    return type(m).__name__ in FRONT_END_NAMES


def front_end_modules(model: nn.Module) -> list:
    """[(name, module)] of the model's front end: the modules of class cnnaural_ext.Spectrogram or
    torchaudio's Spectrogram / MelSpectrogram / AmplitudeToDB (told by class name, so torchaudio
    need not be importable), outermost ones only, in registration order. The maps are taken at the
    output of the last one."""
    if _is_front_end(model):
        return []
    found = []
    for name, m in model.named_modules():
        if _is_front_end(m) and not any(name.startswith(f + ".") for f, _ in found):
            found.append((name, m))
    return found


@dataclass
class GraphRecording:
    """One forward pass of the general path: the input and the outputs of the layers asked for."""
    x: torch.Tensor
    outputs: dict = field(default_factory=dict)  # layer key -> output (detached)
    bytes_per_example: int = 0  # what one example's forward produced up to the last layer


class _Tracer(TorchFunctionMode):
    """Replaces the rectifiers' backward, follows conv layers' outputs, captures, stops."""

    def __init__(self, run):
        super().__init__()
        self.run = run

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        run = self.run
        if func in CONV_FUNCS:
            run.close_all()
        elif _in_place(func) and func not in RECTIFIER_FUNCS:  # (those run out of place here)
            if run.open:
                run.close_consumed(args, kwargs)  # before the output it would overwrite is captured
            if run.block is not None and any(a is run.block.t or a is run.block.x
                                             for a in tree_flatten((args, kwargs))[0]):
                run.block = None  # e.g. `out += identity`: the run is no longer conv -> ... -> pool
        if run.fuse and func in POOL2D_FUNCS and run.block is not None and run.block.stage == "act" \
                and args and args[0] is run.block.t and run.block.x._version == run.block.version:
            out = run.fused_pool(func, args, kwargs)
        elif func in RECTIFIER_FUNCS and args and isinstance(args[0], torch.Tensor):
            out = _Rectify.apply(args[0], RECTIFIER_FUNCS[func](args, kwargs))
        elif func in PASS_BACK_FUNCS and args and isinstance(args[0], torch.Tensor):
            out = _PassBack.apply(args[0], lambda t: func(t, *args[1:], **kwargs))
        else:
            if func is F.batch_norm and _arg(args, kwargs, 5, "training", False):
                run.fail_batch_stats()
            out = func(*args, **kwargs)
        if run.fuse:
            run.track_block(func, args, kwargs, out)
        run.after(func, args, kwargs, out)
        return out


class _Run:
    """The state of one traced forward pass."""

    def __init__(self, net, wanted: list, leaf_front_end: bool):
        self.net = net
        self.wanted = list(wanted)
        self.captured: dict = {}
        self.open: dict = {}  # int layer -> its running output
        self.leaf = None  # the front end's output made a leaf (deconvolution at the front end)
        self.leaf_front_end = leaf_front_end
        self.bytes = 0
        self.module = None  # the last module entered (for error messages)
        self.fuse = False  # take conv -> [bn] -> rectifier -> max-pool runs back with the fused op
        self.block = None
        self.fused = 0

    # -- fused blocks -----------------------------------------------------------------------------
    def track_block(self, func, args, kwargs, out):
        b = self.block
        if func in (torch.conv2d, F.conv2d):
            self.block = _conv_block(args, kwargs, out)
        elif b is None or not args or args[0] is not b.t:
            return
        elif func is F.batch_norm and b.stage == "conv":
            var = _arg(args, kwargs, 2, "running_var", None)
            weight, eps = _arg(args, kwargs, 3, "weight", None), _arg(args, kwargs, 7, "eps", 1e-5)
            if var is None or var.dim() != 1:
                self.block = None
                return
            scale = torch.rsqrt(var.detach() + eps)
            b.scale = scale if weight is None else scale * weight.detach()
            b.stage, b.t = "bn", out
        elif func in RECTIFIER_FUNCS and b.stage in ("conv", "bn"):
            b.stage, b.t = "act", out
        elif func in IDENTITY_BACK_FUNCS and b.stage == "act" and isinstance(out, torch.Tensor):
            b.t = out  # dropout (eval) and local response normalisation: identity going back

    def fused_pool(self, func, args, kwargs):
        """The max-pool closing a block: through _FusedBlock (same forward values)."""
        b, act = self.block, args[0]
        kernel = _arg(args, kwargs, 1, "kernel_size", None)
        stride = _arg(args, kwargs, 2, "stride", None)
        b.pool_kernel, b.pool_stride = kernel, (stride if stride not in (None, [], ()) else kernel)
        b.pool_padding = _arg(args, kwargs, 3, "padding", 0)
        b.pool_dilation = _arg(args, kwargs, 4, "dilation", 1)
        b.ceil_mode = bool(_arg(args, kwargs, 5, "ceil_mode", False))
        want_idx = func is F.max_pool2d_with_indices or bool(_arg(args, kwargs, 6, "return_indices", False))
        from .deconvnet import _output_padding

        b.output_padding = _output_padding(b.x.shape[-2:], act.shape[-2:], b.weight.shape[-2:], b.stride,
                                           b.padding, b.dilation)
        pooled, idx = _FusedBlock.apply(b.x, act.detach(), b)
        b.x = b.t = None  # the backward needs neither: do not keep them alive
        self.block = None
        self.fused += 1
        return (pooled, idx) if want_idx else pooled

    # -- capture ----------------------------------------------------------------------------------
    def capture(self, key, value):
        if key in self.captured:
            return
        if len(self.wanted) > 1:  # the forward goes on: keep it from later in-place operations
            value = value.detach().clone()
        self.captured[key] = value
        if all(k in self.captured for k in self.wanted):
            raise _Stop

    def close_all(self):
        for layer in list(self.open):
            self.capture(layer, self.open.pop(layer))

    def close_consumed(self, args, kwargs):
        flat = tree_flatten((args, kwargs))[0]
        for layer, cur in list(self.open.items()):
            if any(a is cur for a in flat):
                self.capture(layer, self.open.pop(layer))

    def after(self, func, args, kwargs, out):
        if isinstance(out, torch.Tensor):
            self.bytes += out.numel() * out.element_size()
        if not self.open:
            return
        result = out[0] if func in (F.max_pool1d, F.max_pool2d, F.max_pool1d_with_indices,
                                    F.max_pool2d_with_indices) and isinstance(out, tuple) else out
        if not isinstance(result, torch.Tensor):
            return
        flat = None
        for layer, cur in list(self.open.items()):
            if result is cur:
                continue
            if func in FOLLOWER_FUNCS and args and args[0] is cur:
                self.open[layer] = result
                continue
            flat = tree_flatten((args, kwargs))[0] if flat is None else flat
            if any(a is cur for a in flat):
                self.capture(layer, self.open.pop(layer))

    def fail_batch_stats(self):
        raise CnnauralError(f"DeconvNet cannot take the model back through '{self.module}': batch normalisation "
                            "without running statistics normalises with the batch's own statistics")

    # -- hooks ------------------------------------------------------------------------------------
    def install(self, model: nn.Module):
        handles = []
        net = self.net
        names = {id(m): n for n, m in model.named_modules()}

        def enter(m, args):
            self.module = names.get(id(m), type(m).__name__)

        for _, m in model.named_modules():
            handles.append(m.register_forward_pre_hook(enter))
        for key in self.wanted:
            if isinstance(key, int):
                def conv_out(m, args, out, key=key):
                    if key not in self.captured and key not in self.open:
                        self.open[key] = out
                handles.append(net.convs[key - 1][1].register_forward_hook(conv_out))
            elif key != "output":
                mod = net.module(key)

                def module_out(m, args, out, key=key):
                    if not isinstance(out, torch.Tensor):
                        raise CnnauralError(f"layer '{key}' ({type(m).__name__}) returns "
                                            f"{type(out).__name__}, not one tensor")
                    self.capture(key, out)
                handles.append(mod.register_forward_hook(module_out))
        if net.front_end:
            name, fe = net.front_end[-1]

            def front(m, args, out):
                if not self.leaf_front_end:
                    return None
                return self._leaf_of(name, out)
            handles.append(fe.register_forward_hook(front))
        return handles

    def _leaf_of(self, name, out):
        if isinstance(out, torch.Tensor):
            self.leaf = out.detach().requires_grad_(True)
            return self.leaf
        if isinstance(out, tuple) and len(out) == 2 and all(isinstance(t, torch.Tensor) for t in out):
            # cnnaural_ext.Spectrogram: (complex STFT, network input)
            self.leaf = out[1].detach().requires_grad_(True)
            return out[0].detach(), self.leaf
        raise CnnauralError(f"the front end '{name}' returns {type(out).__name__}: expected a tensor or "
                            "(stft, network input)")


class GraphDeconvNet(DeconvNet):
    """The general path of `DeconvNet` (see the module docstring); same API as the chain path.

    `DeconvNet(model)` returns one when the chain path cannot read the model, and
    `DeconvNet(model, path="general")` always.
    """

    general = True

    def __init__(self, model: nn.Module, max_batch_bytes: int | None = None, path: str = "general"):
        from .deconvnet import _check_budget

        self.model = model
        self.max_batch_bytes = _check_budget(max_batch_bytes)
        self.front_end = front_end_modules(model)
        fe_ids = {id(m) for _, m in self.front_end}
        self.convs = [(n, m) for n, m in model.named_modules() if isinstance(m, CONVS) and id(m) not in fe_ids]
        if not self.convs:
            raise CnnauralError(f"DeconvNet found no Conv1d or Conv2d in {type(model).__name__}")
        self._by_name = dict(model.named_modules())
        self.fused_blocks = 0  # blocks the last backward pass took through the fused native op

    # -- description ------------------------------------------------------------------------------
    @property
    def n_layers(self) -> int:
        """Number of conv layers (Conv1d/Conv2d modules, 1-based, in registration order)."""
        return len(self.convs)

    @property
    def takes_waveform(self) -> bool:
        """The model's first modules are a front end: its input is a waveform and the maps are
        taken at the front end's output (the spectrogram)."""
        return bool(self.front_end)

    def module(self, name: str) -> nn.Module:
        m = self._by_name.get(name)
        if m is None or name == "":
            examples = ", ".join(repr(n) for n, _ in self.convs[:3])
            raise CnnauralError(f"the model has no module named {name!r}: a layer is an integer 1..{self.n_layers}, "
                                f"'output' or a module name such as {examples}")
        return m

    def key(self, layer):
        """The canonical key of a layer: an int (conv index), a module name or "output"."""
        if isinstance(layer, bool):
            raise CnnauralError(f"layer must be an integer 1..{self.n_layers}, 'output' or a module name "
                                f"(got {layer!r})")
        if isinstance(layer, str):
            text = layer.strip()
            if text.lower() == "output":
                return "output"
            if text.lstrip("+-").isdigit():
                layer = int(text)
            else:
                m = self.module(text)
                if any(m is fm for _, fm in self.front_end):
                    raise CnnauralError(f"layer '{text}' is the front end: the maps are taken at its output")
                return text
        return self._check_layer(layer)

    def name(self, layer) -> str:
        key = self.key(layer)
        return self.convs[key - 1][0] if isinstance(key, int) else key

    def conv(self, layer) -> nn.Module:
        """The Conv1d/Conv2d of a layer (1-based, or the name of a conv module)."""
        key = self.key(layer)
        if isinstance(key, int):
            return self.convs[key - 1][1]
        m = self.module(key) if key != "output" else None
        if not isinstance(m, CONVS):
            raise CnnauralError(f"layer {layer!r} is not a convolution")
        return m

    def n_features(self, layer) -> int:
        """Channels of a layer as its modules declare them (a conv's out_channels; for a module
        name, the last conv / batchnorm / Linear registered at or before it; for "output", the
        last Linear). The deconvolution checks the features against the actual output."""
        key = self.key(layer)
        if isinstance(key, int):
            return self.convs[key - 1][1].out_channels
        names = list(self._by_name)
        if key == "output":
            stop = len(names)
        else:
            inside = [i for i, n in enumerate(names) if n == key or n.startswith(key + ".")]
            stop = max(inside) + 1
        for n in reversed(names[:stop]):
            m = self._by_name[n]
            if key == "output":
                if isinstance(m, nn.Linear):
                    return m.out_features
                continue
            for attr in ("out_channels", "num_features", "out_features"):
                if isinstance(getattr(m, attr, None), int):
                    return getattr(m, attr)
        if key == "output":
            raise CnnauralError("this model has no Linear head: class targets need one")
        raise CnnauralError(f"cannot tell how many features layer '{key}' has: no convolution before it")

    def describe(self) -> list[str]:
        """One line per conv layer: its module name, type, channels and kernel."""
        lines = []
        if self.front_end:
            lines.append("front end: " + " ".join(f"{n} ({type(m).__name__})" for n, m in self.front_end))
        for k, (n, m) in enumerate(self.convs):
            groups = f" groups={m.groups}" if m.groups != 1 else ""
            lines.append(f"layer {k + 1}: {n} {type(m).__name__} {m.in_channels}->{m.out_channels} "
                         f"{tuple(m.kernel_size)}{groups} (general path)")
        return lines

    # -- forward ----------------------------------------------------------------------------------
    def fuse_blocks(self, g: torch.Tensor) -> bool:
        """Whether conv -> [bn] -> rectifier -> max-pool runs go back through the fused native op
        (when the native op serves this device and dtype)."""
        from . import ops

        return ops.uses_native("unpool_conv_transpose2d", g.device, g.dtype)

    def _trace(self, x, wanted: list, leaf: bool, fuse: bool = False):
        """Run the model on x until every layer in `wanted` is captured: (captured, run)."""
        run = _Run(self, wanted, leaf_front_end=leaf)
        run.fuse = fuse
        modes = [(m, m.training) for m in self.model.modules()]
        handles = run.install(self.model)
        self.model.eval()
        try:
            with _Tracer(run):
                try:
                    out = self.model(x)
                except _Stop:
                    out = None
                else:
                    run.close_all()
                    if "output" in wanted and "output" not in run.captured:
                        if not isinstance(out, torch.Tensor):
                            raise CnnauralError(f"layer 'output' needs the model to return one tensor "
                                                f"(it returns {type(out).__name__})")
                        run.captured["output"] = out
        except _Stop:
            pass
        except CnnauralError:
            raise
        except Exception as e:  # the model's own code failed
            try:  # after every layer asked for was complete (only open to followers): it does not matter
                if all(k in run.captured or k in run.open for k in wanted):
                    run.close_all()
            except _Stop:
                pass
            else:
                where = f" in or after '{run.module}'" if run.module else ""
                first = str(e).splitlines()[0] if str(e) else ""
                raise CnnauralError(f"the input {tuple(x.shape)} does not fit the model{where}: "
                                    f"{type(e).__name__}: {first}") from None
        finally:
            for h in handles:
                h.remove()
            for m, training in modes:
                m.training = training
        missing = [k for k in wanted if k not in run.captured]
        if missing:
            raise CnnauralError(f"layer {self.name(missing[0])!r} did not run in the model's forward pass "
                                "for this input")
        return run.captured, run

    def _check_input(self, x, one: bool):
        if not isinstance(x, torch.Tensor):
            raise CnnauralError(f"DeconvNet expects a tensor input, got {type(x).__name__}")
        if x.dim() < 1 or (one and x.shape[0] != 1):
            raise CnnauralError(f"DeconvNet expects one input with a batch dimension of 1, got {tuple(x.shape)}")

    @torch.no_grad()
    def record(self, x: torch.Tensor, layer="output", keep: str = "asked") -> GraphRecording:
        """One forward pass up to `layer` (or every layer of a list), keeping their outputs.

        Args:
            x (Tensor): (1, ...) the model's input (a waveform for a model with a front end).
            keep: accepted for the chain path's sake; the general path keeps the layers asked for.
        """
        self._check_input(x, True)
        layers = layer if isinstance(layer, (list, tuple)) else [layer]
        keys = list(dict.fromkeys(self.key(v) for v in layers))
        captured, run = self._trace(x, keys, leaf=False)
        rec = GraphRecording(x.detach())
        rec.outputs = {k: v.detach() for k, v in captured.items()}
        rec.bytes_per_example = run.bytes
        return rec

    @torch.no_grad()
    def activations(self, x: torch.Tensor, layer) -> torch.Tensor:
        """The output of `layer` for a batch x (B, ...)."""
        self._check_input(x, False)
        key = self.key(layer)
        return self._trace(x, [key], leaf=False)[0][key]

    @torch.no_grad()
    def layer_outputs(self, x: torch.Tensor, layers) -> dict:
        """The outputs of several layers for a batch x from one forward pass: {layer: output}."""
        self._check_input(x, False)
        keys = {layer: self.key(layer) for layer in layers}
        captured = self._trace(x, list(dict.fromkeys(keys.values())), leaf=False)[0]
        return {layer: captured[keys[layer]] for layer in layers}

    def activation(self, rec: GraphRecording, layer) -> torch.Tensor:
        """The output of `layer` recorded in `rec`: (1, C, ...), or (1, n_classes) for "output"."""
        key = self.key(layer)
        if key not in rec.outputs:
            raise CnnauralError(f"this recording does not hold layer {layer!r}; record(x, layer={layer!r})")
        return rec.outputs[key]

    def release(self, rec: GraphRecording, layer, keep=()) -> None:
        """Drop `layer`'s output from `rec`, unless a layer in `keep` is the same."""
        key = self.key(layer)
        if all(self.key(k) != key for k in keep):
            rec.outputs.pop(key, None)

    # -- backward ---------------------------------------------------------------------------------
    def _backprop(self, x: torch.Tensor, key, g: torch.Tensor) -> torch.Tensor:
        """Seeds g (K, ...) at the output of `key` back to the input (or the front end's output)."""
        K = g.shape[0]
        try:
            return self._backprop_batched(x, key, g)
        except _BatchFailed:
            if K == 1:
                raise
        return torch.cat([self._backprop_batched(x, key, g[k:k + 1]) for k in range(K)])

    def _backprop_batched(self, x, key, g):
        K = g.shape[0]
        xin = x.detach().expand(K, *x.shape[1:]).clone()
        if not self.front_end:
            xin.requires_grad_(True)
        with torch.enable_grad():
            try:
                captured, run = self._trace(xin, [key], leaf=True, fuse=self.fuse_blocks(g))
            except CnnauralError:
                if K > 1:
                    raise _BatchFailed from None
                raise
            out = captured[key]
            leaf = run.leaf if self.front_end else xin
            if leaf is None:
                raise CnnauralError("the front end did not run before the layer")
            if tuple(out.shape) != tuple(g.shape):
                if K > 1:
                    raise _BatchFailed
                raise CnnauralError(f"layer {self.name(key)!r} gives {tuple(out.shape)} for one input, the seeds "
                                    f"are {tuple(g.shape)}")
            if not out.requires_grad:
                raise CnnauralError(f"no gradient flows from layer {self.name(key)!r} back to the input: the "
                                    "model detaches it or computes it with non-differentiable operations")
            grad = torch.autograd.grad(out, leaf, g.to(out), allow_unused=True)[0]
            self.fused_blocks = run.fused
        if grad is None:
            raise CnnauralError(f"no gradient flows from layer {self.name(key)!r} back to the input: it does "
                                "not depend on the input")
        return grad.detach()

    def seeds(self, rec: GraphRecording, layer, features, seed: str = "map", compact: bool = False):
        """(seeds (K, C, ...), features, None): as the chain path's `seeds` (never compact)."""
        key = self.key(layer)
        return build_seeds(self.activation(rec, key), key, features, seed)

    def _chunk_size(self, rec: GraphRecording, seeds: torch.Tensor) -> int:
        """Seeds per chunk: a chunk's forward (everything it produces, kept for the backward) and its
        gradients stay under max_batch_bytes."""
        per_seed = max(1, 2 * rec.bytes_per_example)
        return max(1, self.budget(seeds.device) // per_seed)

    def deconvolve(self, x, layer, features="all", seed: str = "map", return_features: bool = False):
        """Deconvolve features of `layer` back to the input (the front end's output for a model
        with a front end): (K, ...) with the input's shape after the batch dimension."""
        rec = x if isinstance(x, GraphRecording) else self.record(x, layer)
        key = self.key(layer)
        s, feats, _ = self.seeds(rec, layer, features, seed)
        chunk = self._chunk_size(rec, s)
        parts = [self._backprop(rec.x, key, s[k:k + chunk]) for k in range(0, s.shape[0], chunk)]
        out = torch.cat(parts, dim=0).contiguous()
        return (out, feats) if return_features else out


class _BatchFailed(Exception):
    """The model did not take a batch of repeated inputs: go one seed at a time."""

