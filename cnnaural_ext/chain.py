"""Read a PyTorch CNN as a chain of classified layers: what DeconvNet can take back.

A model is read as nested nn.Sequential, or else traced with torch.fx; either way it must be a
chain (each layer takes the previous one's output) of the modules in SUPPORTED. Anything else
is a CnnauralError naming the module and why.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .errors import CnnauralError

RECTIFIERS = (nn.ReLU, nn.LeakyReLU, nn.ELU)
IDENTITIES = (nn.Dropout, nn.Dropout2d, nn.Identity)  # identity both ways (dropout in eval mode)
PASS_BACK = (nn.LocalResponseNorm,)  # applied going forward, identity going back
SUPPORTED = ("Conv2d, BatchNorm2d, ReLU / LeakyReLU / ELU, MaxPool2d, Dropout, LocalResponseNorm, "
             "Flatten, Linear")


@dataclass
class Step:
    """One module of the chain, classified."""
    kind: str  # conv | bn | act | pool | identity | passback | flatten | linear
    name: str
    module: nn.Module


def _classify(name: str, m: nn.Module) -> Step:
    if isinstance(m, nn.Conv2d):
        if m.groups != 1:
            raise CnnauralError(f"DeconvNet cannot read '{name}': grouped convolution (groups={m.groups}) "
                                "is not supported")
        if m.padding_mode != "zeros":
            raise CnnauralError(f"DeconvNet cannot read '{name}': padding_mode={m.padding_mode!r}, only 'zeros'")
        if isinstance(m.padding, str):
            pads = m._reversed_padding_repeated_twice
            if any(pads[i] != pads[i + 1] for i in (0, 2)):
                raise CnnauralError(f"DeconvNet cannot read '{name}': padding='same' with an even kernel pads "
                                    "asymmetrically; give the Conv2d explicit padding")
        return Step("conv", name, m)
    if isinstance(m, nn.BatchNorm2d):
        if not m.track_running_stats or m.running_var is None:
            raise CnnauralError(f"DeconvNet cannot read '{name}': BatchNorm2d without running statistics")
        return Step("bn", name, m)
    if isinstance(m, RECTIFIERS):
        return Step("act", name, m)
    if isinstance(m, nn.MaxPool2d):
        return Step("pool", name, m)
    if isinstance(m, IDENTITIES):
        return Step("identity", name, m)
    if isinstance(m, PASS_BACK):
        return Step("passback", name, m)
    if isinstance(m, nn.Flatten):
        return Step("flatten", name, m)
    if isinstance(m, nn.Linear):
        return Step("linear", name, m)
    raise CnnauralError(f"DeconvNet cannot read module '{name}' ({type(m).__name__}): supported modules are "
                        f"{SUPPORTED}")


def _flatten_sequential(model: nn.Sequential, prefix: str = "") -> list[Step]:
    steps = []
    for name, m in model.named_children():
        full = f"{prefix}{name}"
        if isinstance(m, nn.Sequential):
            steps += _flatten_sequential(m, full + ".")
        else:
            steps.append(_classify(full, m))
    return steps


_FX_RELU = {F.relu, torch.relu}
_FX_FLATTEN = {torch.flatten}


def _trace_chain(model: nn.Module) -> list[Step]:
    try:
        gm = torch.fx.symbolic_trace(model)
    except Exception as e:
        raise CnnauralError(f"DeconvNet cannot read {type(model).__name__}: it is not an nn.Sequential and "
                            f"torch.fx cannot trace it ({str(e).splitlines()[0]})") from None
    steps, prev = [], None
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            if prev is not None:
                raise CnnauralError(f"DeconvNet cannot read {type(model).__name__}: it takes more than one input")
            prev = node
            continue
        if node.op == "output":
            break
        if node.op == "get_attr" or not node.args or node.args[0] is not prev:
            raise CnnauralError(f"DeconvNet cannot read {type(model).__name__}: '{node.name}' does not take "
                                "the previous layer's output (only a chain of layers, no skip connections)")
        if node.op == "call_module":
            steps.append(_classify(str(node.target), gm.get_submodule(node.target)))
        elif node.op == "call_function" and node.target in _FX_RELU:
            steps.append(Step("act", node.name, nn.ReLU()))
        elif (node.op == "call_function" and node.target in _FX_FLATTEN) or (
                node.op == "call_method" and node.target in ("flatten", "view", "reshape")):
            steps.append(Step("flatten", node.name, nn.Flatten()))
        else:
            raise CnnauralError(f"DeconvNet cannot read {type(model).__name__}: '{node.name}' "
                                f"({node.op} {getattr(node.target, '__name__', node.target)}) is not a supported "
                                f"layer; supported: {SUPPORTED}, F.relu, torch.flatten")
        prev = node
    return steps


def read_chain(model: nn.Module) -> list[Step]:
    """The model's layers in execution order (nested nn.Sequential, or a torch.fx-traceable chain)."""
    steps = _flatten_sequential(model) if isinstance(model, nn.Sequential) else _trace_chain(model)
    if not any(s.kind == "conv" for s in steps):
        raise CnnauralError(f"DeconvNet found no Conv2d in {type(model).__name__}")
    return steps


def conv_geometry(conv: nn.Conv2d):
    """(stride, padding, dilation) pairs of a Conv2d, 'same'/'valid' padding resolved."""
    if isinstance(conv.padding, str):
        pads = conv._reversed_padding_repeated_twice
        padding = (pads[2], pads[0])
    else:
        padding = tuple(conv.padding)
    return tuple(conv.stride), padding, tuple(conv.dilation)
