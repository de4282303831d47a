"""Shared fixtures and the central CUDA skip."""
import os

import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")

CUDA = torch.cuda.is_available()


def devices():
    return ["cpu"] + (["cuda"] if CUDA else [])


def pytest_collection_modifyitems(config, items):
    if CUDA:
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if "cuda" in item.keywords or params.get("device") == "cuda":
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    if CUDA:
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    yield
