"""Auralise features of your own PyTorch CNN. A chain of Conv2d / BatchNorm2d / ReLU-family /
MaxPool2d / Dropout / Flatten / Linear (nn.Sequential or torch.fx-traceable) takes the fast chain
path; any other differentiable model (residual blocks, concatenation, average pooling, Conv1d,
grouped convs, a front end inside the model) takes the general path (see the README's "Your own
model"). Layers are 1-based conv indices or module names.

    python python/auralise_own_model.py TRACK [--layer 2] [--features top:4] [--out out/own]
"""
import argparse
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

import cnnaural_ext as ca
from cnnaural_ext.io.audio import load, save_audio


class TinyNet(nn.Module):
    """A user's model: not an nn.Sequential, read through torch.fx."""

    def __init__(self, n_classes=4):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 5, padding=2)
        self.bn1 = nn.BatchNorm2d(16)
        self.pool1 = nn.MaxPool2d(3, stride=2)  # overlapping pools are fine
        self.conv2 = nn.Conv2d(16, 24, 3, padding=1)
        self.pool2 = nn.MaxPool2d(2)
        self.fc = nn.LazyLinear(n_classes)

    def forward(self, x):
        x = self.pool1(F.relu(self.bn1(self.conv1(x))))
        x = self.pool2(F.relu(self.conv2(x)))
        return self.fc(torch.flatten(x, 1))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("track")
    ap.add_argument("--layer", type=int, default=2)
    ap.add_argument("--features", default="top:4")
    ap.add_argument("--duration", type=float, default=4.0)
    ap.add_argument("--out", default="out/own")
    args = ap.parse_args(argv)

    spec = ca.Spectrogram(sample_rate=11025, n_fft=512, hop_length=256, scale="log1p")
    model = TinyNet().eval()
    wave, sr = load(args.track, spec.sample_rate, duration=args.duration)

    # the deconvnet alone: maps in the network-input space
    _, S = spec(wave)
    model(S[None, None])  # materialise the lazy Linear; the deconvnet does not need it
    maps = ca.DeconvNet(model).deconvolve(S[None, None], layer=args.layer, features=args.features)
    print(f"deconvolved maps: {tuple(maps.shape)}")

    # the whole road to audio
    res = ca.Auraliser(model, spec).auralise(wave, layer=args.layer, features=args.features)
    out = Path(args.out)
    for row, k in enumerate(res.features):
        path = save_audio(out / f"layer{args.layer}_feature{k}.wav", res.audio[row], res.sample_rate)
        print(f"feature {k}: mean activation {res.stats[row]['mean']:.3f} -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
