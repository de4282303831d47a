"""Plain helpers the tests share (fixtures live in conftest.py): a small paper model and test signals."""
import numpy as np
import torch
import torch.nn.functional as F

import cnnaural_ext as ca

SR = 8000
SMALL_WIDTH = [4, 4, 6, 6, 8]


def small_model_and_spec(scale="linear", n_mels=None):
    """An untrained paper_cnn5, 4 to 8 channels wide, for 2-s inputs at SR."""
    torch.manual_seed(0)
    spec = ca.Spectrogram(sample_rate=SR, n_fft=256, hop_length=128, scale=scale, n_mels=n_mels)
    frames = spec.n_frames(2 * SR)
    model = ca.models.paper_cnn5(n_classes=3, width=SMALL_WIDTH, input_shape=(spec.n_bins, frames),
                                 dense=(16,)).eval()
    return model, spec


def tone(seconds=2.0, sr=SR):
    """A gated 440 Hz tone with a little noise."""
    t = torch.arange(int(seconds * sr)) / sr
    x = 0.5 * torch.sin(2 * np.pi * 440 * t) * (1 + torch.sign(torch.sin(2 * np.pi * 2 * t))) / 2
    return (x + 0.05 * torch.randn_like(x)).float()


EVIL_CLASS = '<em onmouseover="x">loud & clear'  # a class folder name with markup: must stay text
CLASSES = [EVIL_CLASS, "quiet"]


def fake_bwv846(sample_rate=22050, cache_dir=None):
    """Stands in for the rendered Prelude: decaying tones every 0.25 s, their times as onsets."""
    onsets = np.arange(0.1, 8.0, 0.25)
    t = np.arange(int(8.0 * sample_rate)) / sample_rate
    x = np.zeros_like(t)
    for i, on in enumerate(onsets):
        f0 = 220 * 2 ** ((i % 7) / 12)
        x += np.where(t >= on, np.exp(-(t - on) * 8.0), 0.0) * np.sin(2 * np.pi * f0 * (t - on))
    return torch.from_numpy((0.3 * x / np.abs(x).max()).astype(np.float32)), onsets


def pooled_case(seed, N, C_out, C_in, H, W, pool_k, pool_s, k, stride, padding, dilation, dtype,
                broadcast, sparsity, device="cpu"):
    """Switches from a real max-pool of a random activation; seeds with some channels and values zero."""
    g = torch.Generator().manual_seed(seed)
    act = torch.randn(1 if broadcast else N, C_out, H, W, generator=g, dtype=dtype)
    _, idx = F.max_pool2d(act, pool_k, pool_s, return_indices=True)
    h, w = idx.shape[-2:]
    x = torch.randn(N, C_out, h, w, generator=g, dtype=dtype)
    if sparsity == "one-feature":
        keep = torch.zeros(N, C_out, 1, 1, dtype=dtype)
        keep[torch.arange(N), torch.randint(C_out, (N,), generator=g)] = 1
        x = x * keep
    elif sparsity == "half":
        x = x * (torch.rand(x.shape, generator=g) > 0.5)
    weight = torch.randn(C_out, C_in, k[0], k[1], generator=g, dtype=dtype)
    return x.to(device), idx.to(device), weight.to(device), (H, W)
