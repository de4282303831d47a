"""Baseline: the pure-PyTorch reference path end to end.

Auralises all features of each layer of paper_cnn5 (64 channels) for a 4-s clip and a 30-s
track at 11025 Hz, n_fft 512, hop 256 (one forward pass, all seeds batched, batched ISTFT).
This is the baseline the native kernels are measured against (benchmarks/bench_kernels.py puts
them side by side). Not a test: nothing is asserted.

    python benchmarks/bench_reference.py [--quick] [--out DIR]
"""
from __future__ import annotations

import os
import sys
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import bench_args, machine, paper_auraliser, timeit, write  # noqa: E402


def auralise_rows(seconds_list, width, repeats, layers):
    os.environ["CNNAURAL_BACKEND"] = "reference"
    rows = []
    for seconds in seconds_list:
        aur, x = paper_auraliser(seconds, width)
        for layer in layers:
            t = timeit(lambda: aur.auralise(x, layer=layer, features="all"), repeats=repeats)
            rows.append({"case": f"auralise {seconds:g} s, layer {layer}, {width} features",
                         "backend": "reference", **t})
            print(rows[-1], flush=True)
    del os.environ["CNNAURAL_BACKEND"]
    return rows


def main(argv=None):
    args = bench_args(__doc__, argv)
    if args.quick:
        rows = auralise_rows([1.0], width=8, repeats=1, layers=[1, 5])
    else:
        rows = (auralise_rows([4.0], width=64, repeats=3, layers=[1, 2, 3, 4, 5])
                + auralise_rows([30.0], width=64, repeats=1, layers=[1, 2, 3, 4, 5]))
    write(args.out, "reference", rows, ["case", "backend", "median_ms", "min_ms", "max_ms"], machine())
    return 0


if __name__ == "__main__":
    sys.exit(main())
