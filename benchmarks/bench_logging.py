"""What logging while training costs: one `AuralisationLogger.log(step)` call beside one training step.

The shipped model (`Auraliser.pretrained()`: paper_cnn5, 48 channels, 11025 Hz, n_fft 512) with
1 probe of 4 s, layers 1 and 5, features "top:4" (8 clips, 8 map images, 2 histograms per call),
against one training step of the same model (forward, backward, Adam step, train mode with its
dropout) on a batch of 32 clips of 4 s (32 x 1 x 257 x 173 network inputs). Each log case runs
with a null writer (the auralisation and rendering alone) and, when tensorboard is installed, a
real SummaryWriter (plus encoding the WAVs, PNGs and histograms into the event file).

`per_step` is log time / training-step time: logging every N steps adds per_step / N to the
training time (`overhead_every_100` gives it in percent for N = 100).

    python benchmarks/bench_logging.py [--quick] [--out DIR]
"""
from __future__ import annotations

import copy
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import bench_args, machine, timeit, write  # noqa: E402


class NullWriter:
    """Takes everything, writes nothing: the cost of the auralisation and the images alone."""

    def add_audio(self, *args, **kwargs):
        pass

    def add_image(self, *args, **kwargs):
        pass

    def add_histogram(self, *args, **kwargs):
        pass


def train_step_row(aur, batch: int, repeats: int) -> dict:
    """One training step of a copy of the shipped model on `batch` 4-s network inputs."""
    model = copy.deepcopy(aur.model).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(0)
    n = int(4.0 * aur.sample_rate)
    shape = (aur.spectrogram.n_bins, aur.spectrogram.n_frames(n))
    x = torch.rand(batch, 1, *shape, generator=g)
    y = torch.randint(0, aur.deconvnet.n_features("output"), (batch,), generator=g)

    def step():
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    t = timeit(step, repeats=repeats)
    return {"case": f"training step, batch {batch} x 4 s ({shape[0]} x {shape[1]})", "writer": "-", **t}


def log_rows(aur, probe, cases, writers, repeats: int, train_ms: float) -> list:
    from cnnaural_ext.integrations import AuralisationLogger

    rows = []
    for layers, images in cases:
        for writer_name, writer in writers:
            logger = AuralisationLogger(writer, aur, {"probe": probe}, layers=layers, features="top:4", every=1,
                                        images=images)
            step = iter(range(10 ** 6))
            t = timeit(lambda: logger.log(next(step)), repeats=repeats)
            rows.append({"case": f"log(step): 1 probe x 4 s, layers {layers}, top:4, images {images}",
                         "writer": writer_name, **t, "per_step": t["median_ms"] / train_ms,
                         "overhead_every_100": 100 * t["median_ms"] / (100 * train_ms)})
            print(rows[-1], flush=True)
    return rows


def main(argv=None):
    args = bench_args(__doc__, argv)
    import cnnaural_ext as ca

    aur = ca.Auraliser.pretrained()
    g = torch.Generator().manual_seed(1)
    probe = 0.1 * torch.randn(int(4.0 * aur.sample_rate), generator=g)
    repeats = 2 if args.quick else 5
    train = train_step_row(aur, 32, repeats)
    print(train, flush=True)
    writers = [("null", NullWriter())]
    tmp = tempfile.TemporaryDirectory(prefix="bench-logging-")
    try:
        from cnnaural_ext.integrations import summary_writer

        writers.append(("SummaryWriter", summary_writer(tmp.name)))
    except ca.CnnauralError as e:
        print(f"no SummaryWriter rows: {e}")
    cases = [("1", "array"), ("5", "array"), ("1,5", "array")]
    if not args.quick:
        cases.append(("1,5", "figure"))
    try:
        rows = [train] + log_rows(aur, probe, cases, writers, repeats, train["median_ms"])
    finally:
        for _, w in writers:
            getattr(w, "close", lambda: None)()
        tmp.cleanup()
    meta = machine()
    meta["model"] = "shipped paper_cnn5 (48 channels)"
    write(args.out, "logging", rows, ["case", "writer", "median_ms", "min_ms", "max_ms", "per_step",
                                      "overhead_every_100"], meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
