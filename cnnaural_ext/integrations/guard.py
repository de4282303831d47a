"""Leave training exactly as it was: what a logging call may touch, saved before and put back after.

`training_state_preserved(*modules)` is the context every `AuralisationLogger.log` runs in:

- autograd is off inside (`torch.no_grad`), so no graph is built and nothing keeps one alive;
- the train/eval flag of every submodule is put back;
- every parameter's ``requires_grad`` flag and its ``.grad`` (the same tensor object) are put back;
- every buffer (batch-norm running statistics, ``num_batches_tracked``, ...) is compared with a
  copy taken before and copied back only if it changed (no in-place write otherwise, so a graph
  of the training step that saved a buffer stays valid);
- the global RNG states are put back: torch's CPU generator, every CUDA device's generator when
  CUDA is initialised, numpy's global `np.random` state and Python's `random`.
"""
from __future__ import annotations

import contextlib
import random

import numpy as np
import torch
from torch import nn


def rng_states() -> dict:
    """The global RNG states: torch CPU, CUDA (when initialised), numpy, Python `random`."""
    states = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    """Put back what `rng_states` returned."""
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    if "cuda" in states:
        torch.cuda.set_rng_state_all(states["cuda"])


def _unique(modules):
    seen, out = set(), []
    for m in modules:
        if isinstance(m, nn.Module) and id(m) not in seen:
            seen.add(id(m))
            out.append(m)
    return out


@contextlib.contextmanager
def training_state_preserved(*modules):
    """Run the body under `torch.no_grad()` and restore the training state of `modules` after it
    (also when it raises): see the module docstring for the list. Non-modules are ignored."""
    modules = _unique(modules)
    flags = [(m, m.training) for root in modules for m in root.modules()]
    params = {id(p): (p, p.requires_grad, p.grad) for root in modules for p in root.parameters()}
    buffers = {id(b): (b, b.detach().clone()) for root in modules for b in root.buffers()}
    rng = rng_states()
    try:
        with torch.no_grad():
            yield
    finally:
        set_rng_states(rng)
        for m, training in flags:
            if m.training != training:
                m.train(training)
        with torch.no_grad():
            for b, saved in buffers.values():
                if b.shape != saved.shape:
                    b.data = saved
                elif not torch.equal(b, saved):
                    b.copy_(saved)
        for p, requires_grad, grad in params.values():
            if p.requires_grad != requires_grad:
                p.requires_grad_(requires_grad)
            if p.grad is not grad:
                p.grad = grad
