"""Shared benchmark plumbing: timing (median of repeats after warm-up), machine facts, JSON +
markdown output."""
from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch


def timeit(fn, repeats: int = 5, warmup: int = 1) -> dict:
    """Median and spread of `repeats` wall-clock runs of fn() after `warmup` runs, in ms."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t) * 1e3)
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times), "repeats": repeats}


def bench_args(doc: str, argv=None, devices: bool = False):
    """The options every benchmark script takes: --quick (tiny sizes) and --out (JSON + markdown),
    and --device where the script runs on a GPU too."""
    import argparse

    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny sizes, to check the script runs")
    ap.add_argument("--out", default=None, help="folder for JSON + markdown")
    if devices:
        ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where to run (default cpu)")
    return ap.parse_args(argv)


def paper_auraliser(seconds: float, width: int):
    """(Auraliser of an untrained paper_cnn5 sized for the clip, a noise clip of `seconds` at 11025 Hz)."""
    import cnnaural_ext as ca

    torch.manual_seed(0)
    spec = ca.Spectrogram(sample_rate=11025, n_fft=512, hop_length=256)
    n = int(seconds * 11025)
    model = ca.models.paper_cnn5(n_classes=3, width=width, input_shape=(spec.n_bins, spec.n_frames(n))).eval()
    return ca.Auraliser(model, spec), torch.randn(n) * 0.1


def machine() -> dict:
    from cnnaural_ext import ops

    return {"date": time.strftime("%Y-%m-%d"), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "native": ops.build_info().get("native", False)}


def write(out_dir, name: str, rows: list, columns: list, meta: dict) -> None:
    """Print a markdown table and write <out_dir>/<name>.json and .md."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(c, "")) for c in columns) + " |")
    table = "\n".join(lines)
    header = ", ".join(f"{k} {v}" for k, v in meta.items())
    print(f"\n{header}\n\n{table}\n")
    if out_dir:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{name}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
        (out / f"{name}.md").write_text(f"{header}\n\n{table}\n")


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.1f}" if abs(v) >= 10 else f"{v:.3g}"
    return str(v)
