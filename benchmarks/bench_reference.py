"""Baseline: the pure-PyTorch reference path end to end.

Auralises all features of each layer of paper_cnn5 (64 channels) for a 4-s clip and a 30-s
track at 11025 Hz, n_fft 512, hop 256 (one forward pass, all seeds batched, batched ISTFT).
This is the baseline the native kernels are measured against (benchmarks/bench_kernels.py puts
them side by side). Not a test: nothing is asserted.

    python benchmarks/bench_reference.py [--quick] [--out DIR]
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, timeit, write  # noqa: E402


def auralise_rows(seconds_list, channels, repeats, layers):
    import cnnaural_ext as ca

    os.environ["CNNAURAL_BACKEND"] = "reference"
    rows = []
    spec = ca.Spectrogram(sample_rate=11025, n_fft=512, hop_length=256)
    torch.manual_seed(0)
    for seconds in seconds_list:
        n = int(seconds * 11025)
        x = torch.randn(n) * 0.1
        model = ca.models.paper_cnn5(n_classes=3, channels=channels,
                                     input_shape=(spec.n_bins, spec.n_frames(n))).eval()
        aur = ca.Auraliser(model, spec)
        for layer in layers:
            t = timeit(lambda: aur.auralise(x, layer=layer, features="all"), repeats=repeats)
            rows.append({"case": f"auralise {seconds:g} s, layer {layer}, {channels} features",
                         "backend": "reference", **t})
            print(rows[-1], flush=True)
    del os.environ["CNNAURAL_BACKEND"]
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny sizes, to check the script runs")
    ap.add_argument("--out", default=None, help="folder for JSON + markdown")
    args = ap.parse_args(argv)
    if args.quick:
        rows = auralise_rows([1.0], channels=8, repeats=1, layers=[1, 5])
    else:
        rows = (auralise_rows([4.0], channels=64, repeats=3, layers=[1, 2, 3, 4, 5])
                + auralise_rows([30.0], channels=64, repeats=1, layers=[1, 2, 3, 4, 5]))
    write(args.out, "reference", rows, ["case", "backend", "median_ms", "min_ms", "max_ms"], machine())
    return 0


if __name__ == "__main__":
    sys.exit(main())
