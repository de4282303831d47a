"""Native kernels against the pure-PyTorch reference, same run, same inputs.

Shapes of the paper model: a 4-s clip at 11025 Hz, n_fft 512 -> 257 x 173 input, 64 channels,
3x3 convs, 2x2 pools, N = 64 seeds sharing one track's switches (indices of batch 1).

- unpool_conv_transpose2d through block 1 (64 -> 1 channel at 257 x 173) and block 2
  (64 -> 64 at 128 x 86), with one-feature seeds (one channel active per seed) and dense seeds;
  the dense cases also on a 30-s track (257 x 1292 and 128 x 646) with the 11 seeds per call
  DeconvNet's chunking gives a 30-s track under the end-to-end cases' fixed 512 MiB budget
- masked_istft of 64 clips of 4 s
- end to end: auralise all 64 features of layer 5 (and layer 1) of a 4-s clip and a 30-s track
  with random weights, and all 48 features of layer 5 of the shipped trained model
  (assets/paper_cnn5_default.pt) on a synthetic music-like clip (harmonic notes, its real
  activations are sparser than random weights')

Reports the median time of each, the ratio reference / native, and the useful GFLOP/s
(2 * positive unpooled values * C_in * kH * kW per fused op call; for the end-to-end cases
summed over the fused calls of one auralisation, counted in an untimed run) beside this
machine's sgemm rate measured in the same run (the `sgemm_pct` column), and for the end-to-end
cases the growth of peak resident memory while auralising (fresh process).

With --device cuda (benchmarks/gpu_check.sh runs it), the same cases on the GPU in FP32 (TF32
off) plus all 64 features of all 5 layers of a 30-s track and of a batch of 8 tracks; the fused
op's rows add the bandwidth it reaches writing its output (GB/s) and the GPU's measured copy
bandwidth and FP32 matrix-product rate as the peaks to compare with; memory is the peak the
CUDA allocator held.

    python benchmarks/bench_kernels.py [--quick] [--device cpu|cuda] [--out DIR]
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import bench_args, machine, paper_auraliser, timeit, write  # noqa: E402


def sgemm_gflops(n=2048, repeats=5, device="cpu"):
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    t = timeit(lambda: a @ b, repeats=repeats)
    return 2 * n ** 3 / (t["median_ms"] * 1e-3) / 1e9


def copy_gbps(device, n_bytes=1 << 30, repeats=10):
    """Device-to-device copy rate, bytes read + written per second (the bandwidth peak in practice)."""
    a = torch.empty(n_bytes // 4, device=device)
    b = torch.empty_like(a)
    t = timeit(lambda: b.copy_(a), repeats=repeats)
    return 2 * n_bytes / (t["median_ms"] * 1e-3) / 1e9


def block_case(N, C_out, C_in, H, W, sparsity, seed=0, device="cpu"):
    """Seeds, switches (batch 1, from a real max-pool), weight of one 3x3 'same' block."""
    g = torch.Generator().manual_seed(seed)
    act = torch.relu(torch.randn(1, C_out, H, W, generator=g))
    pooled, idx = F.max_pool2d(act, 2, return_indices=True)
    x = torch.randn(N, C_out, *pooled.shape[-2:], generator=g)
    if sparsity == "one-feature":
        keep = torch.zeros(N, C_out, 1, 1)
        keep[torch.arange(N), torch.arange(N) % C_out] = 1
        x = x * keep
    w = torch.randn(C_out, C_in, 3, 3, generator=g) * 0.1
    return x.to(device), idx.to(device), w.to(device), (H, W)


def fused_rows(N, repeats, device="cpu", long_frames=None, long_n=None, long_repeats=None):
    """The fused op through blocks 1 and 2. long_frames: also the dense seeds on a track of that
    many frames (block 1 input width), with long_n seeds per call."""
    cases = [("block 1 (64 -> 1, 257 x 173)", 1, 257, 173, ("one-feature", "dense"), N, repeats),
             ("block 2 (64 -> 64, 128 x 86)", 64, 128, 86, ("one-feature", "dense"), N, repeats)]
    if long_frames:
        cases += [(f"block 1 (64 -> 1, 257 x {long_frames}), 30 s", 1, 257, long_frames, ("dense",), long_n,
                   long_repeats or repeats),
                  (f"block 2 (64 -> 64, 128 x {long_frames // 2}), 30 s", 64, 128, long_frames // 2, ("dense",),
                   long_n, long_repeats or repeats)]
    rows = []
    for name, C_in, H, W, sparsities, n_seeds, reps in cases:
        for sparsity in sparsities:
            rows += _fused_case(name, C_in, H, W, sparsity, n_seeds, reps, device)
    return rows


def _fused_case(name, C_in, H, W, sparsity, N, repeats, device):
    from cnnaural_ext import reference

    rows = []
    x, idx, w, usize = block_case(N, 64, C_in, H, W, sparsity, device=device)
    # as DeconvNet chains the blocks: the previous fused op's output is channels-last
    x = x.contiguous(memory_format=torch.channels_last)
    out_gb = N * C_in * H * W * x.element_size() / 1e9  # what the op must write
    kw = dict(unpool_size=usize, stride=(1, 1), padding=(1, 1))

    def ref():
        return reference.unpool_conv_transpose2d(x, idx, w, None, **kw)

    def nat():
        return torch.ops.cnnaural.unpool_conv_transpose2d(x, idx, w, None, usize, (1, 1), (1, 1), (0, 0),
                                                          (1, 1), True)
    torch.testing.assert_close(nat(), ref(), rtol=1e-4, atol=1e-4)
    positive = int((reference.max_unpool2d_sum(x, idx, usize) > 0).sum())
    flop = 2.0 * positive * C_in * 9
    r, n = timeit(ref, repeats=repeats), timeit(nat, repeats=repeats)
    case = f"unpool_conv {name}, {N} {sparsity} seeds"
    rows.append({"case": case, "backend": "reference", **r, "useful_gflops": flop / r["median_ms"] / 1e6,
                 "out_gbps": out_gb / r["median_ms"] * 1e3})
    rows.append({"case": case, "backend": "native", **n, "useful_gflops": flop / n["median_ms"] / 1e6,
                 "out_gbps": out_gb / n["median_ms"] * 1e3, "speedup": r["median_ms"] / n["median_ms"]})
    if sparsity == "one-feature":  # as DeconvNet passes them: one map per seed + its channel
        channels = torch.arange(N, device=device) % 64
        xc = x[torch.arange(N), channels][:, None].contiguous()

        def compact():
            return torch.ops.cnnaural.unpool_conv_transpose2d(xc, idx, w, None, usize, (1, 1), (1, 1), (0, 0),
                                                              (1, 1), True, channels)
        torch.testing.assert_close(compact(), ref(), rtol=1e-4, atol=1e-4)
        c = timeit(compact, repeats=repeats)
        rows.append({"case": case, "backend": "native, compact seeds", **c,
                     "useful_gflops": flop / c["median_ms"] / 1e6, "out_gbps": out_gb / c["median_ms"] * 1e3,
                     "speedup": r["median_ms"] / c["median_ms"]})
    for row in rows:
        print(row, flush=True)
    return rows


def istft_rows(N, seconds, repeats, device="cpu"):
    import cnnaural_ext as ca
    from cnnaural_ext import reference

    spec = ca.Spectrogram().to(device)
    n = int(seconds * 11025)
    X = spec.stft(torch.randn(n, device=device))
    gain = torch.rand(N, *X.shape, device=device)
    kw = dict(n_fft=512, hop_length=256, win_length=512, window=spec.window, center=True, length=n)
    r = timeit(lambda: reference.masked_istft(X, gain, mode="mask", **kw), repeats=repeats)
    nat = timeit(lambda: torch.ops.cnnaural.masked_istft(X, gain, 512, 256, 512, spec.window, True, n, "mask"),
                 repeats=repeats)
    case = f"masked_istft {N} x {seconds:g} s"
    return [{"case": case, "backend": "reference", **r},
            {"case": case, "backend": "native", **nat, "speedup": r["median_ms"] / nat["median_ms"]}]


_PEAK_SNIPPET = """
import sys, torch, cnnaural_ext as ca
sys.path.insert(0, {bench_dir!r})
from bench_kernels import make_auraliser

def status(key):  # kB, from /proc: per process image, unlike ru_maxrss, which exec inherits
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1])

aur, x = make_auraliser({model!r}, {seconds}, {width})
aur.auralise(x[:11025], layer={layer}, features=[0])  # load kernels, warm allocators
open("/proc/self/clear_refs", "w").write("5")  # reset the high-water mark to the current RSS
before = status("VmRSS:")
aur.auralise(x, layer={layer}, features="all")
print((status("VmHWM:") - before) / 1024)
"""


def music_like(seconds, sample_rate=11025, seed=0):
    """A deterministic music-like clip: harmonic notes (4 partials, decaying) every 0.25 s on a
    pentatonic scale, a little noise; peak about 0.5."""
    g = torch.Generator().manual_seed(seed)
    n = int(seconds * sample_rate)
    t = torch.arange(n) / sample_rate
    x = 0.01 * torch.randn(n, generator=g)
    scale = [0, 2, 4, 7, 9, 12, 14, 16]
    for k, on in enumerate(torch.arange(0.0, seconds, 0.25).tolist()):
        f0 = 220.0 * 2 ** (scale[int(torch.randint(len(scale), (1,), generator=g))] / 12)
        env = torch.where(t >= on, torch.exp(-(t - on) * 6.0), torch.zeros(()))
        for h in range(1, 5):
            x = x + env * torch.sin(2 * torch.pi * f0 * h * (t - on)) / h
    return (0.5 * x / x.abs().max()).float()


# The end-to-end cases' seed-chunk budget, fixed: the default (`memory_budget`) follows the
# machine's available memory, which changes the chunks, and so the times and the peak, run to run.
E2E_BUDGET = 512 * 2 ** 20


def make_auraliser(model, seconds, width):
    """(Auraliser, clip): model "random" is an untrained paper_cnn5 of `width` on noise (the
    benchmark's historical case); "shipped" the trained model on a music-like clip. Seeds go back
    in chunks under E2E_BUDGET."""
    import cnnaural_ext as ca

    if model == "shipped":
        aur, x = ca.Auraliser.pretrained(), music_like(seconds)
    else:
        aur, x = paper_auraliser(seconds, width)
    aur.deconvnet.max_batch_bytes = E2E_BUDGET
    return aur, x


def peak_mb(backend, seconds, layer, width, model="random"):
    """Growth of the peak resident memory (MB) while auralising, in a fresh process."""
    import subprocess

    env = dict(os.environ, CNNAURAL_BACKEND=backend)
    code = _PEAK_SNIPPET.format(seconds=seconds, layer=layer, width=width, model=model,
                                bench_dir=str(Path(__file__).resolve().parent))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def useful_flop(aur, x, layer):
    """2 * positive unpooled values * C_in * taps, summed over the fused op's calls while
    auralising every feature of `layer` (an untimed run through the reference)."""
    from cnnaural_ext import ops, reference

    total = [0.0]
    original = ops.unpool_conv_transpose2d

    def counting(input, indices, weight, bias=None, **kw):
        g = input
        if kw.get("channels") is not None:
            g = reference.densify(input, kw["channels"], indices.shape[1])
        up = reference.max_unpool2d_sum(g, indices, kw["unpool_size"])
        total[0] += 2.0 * int((up > 0).sum()) * weight.shape[1] * weight.shape[2] * weight.shape[3]
        return original(input, indices, weight, bias, **kw)

    ops.unpool_conv_transpose2d = counting
    try:
        os.environ["CNNAURAL_BACKEND"] = "reference"
        aur.auralise(x, layer=layer, features="all")
    finally:
        ops.unpool_conv_transpose2d = original
        del os.environ["CNNAURAL_BACKEND"]
    return total[0]


def end_to_end_rows(seconds_list, layers, width, repeats, model="random"):
    rows = []
    for seconds in seconds_list:
        aur, x = make_auraliser(model, seconds, width)
        n_features = aur.deconvnet.n_features(layers[0])
        for layer in layers:
            flop = useful_flop(aur, x, layer)
            times = {}
            for backend in ("reference", "auto"):
                os.environ["CNNAURAL_BACKEND"] = backend
                times[backend] = timeit(lambda: aur.auralise(x, layer=layer, features="all"), repeats=repeats)
            del os.environ["CNNAURAL_BACKEND"]
            what = "shipped model, music-like clip" if model == "shipped" else "random weights"
            case = f"auralise {seconds:g} s, layer {layer}, all {n_features} features ({what})"
            rows.append({"case": case, "backend": "reference", **times["reference"],
                         "useful_gflops": flop / times["reference"]["median_ms"] / 1e6,
                         "peak_mb": peak_mb("reference", seconds, layer, width, model)})
            rows.append({"case": case, "backend": "native", **times["auto"],
                         "useful_gflops": flop / times["auto"]["median_ms"] / 1e6,
                         "peak_mb": peak_mb("auto", seconds, layer, width, model),
                         "speedup": times["reference"]["median_ms"] / times["auto"]["median_ms"]})
            print(rows[-2], rows[-1], sep="\n", flush=True)
    return rows


def cuda_end_to_end_rows(seconds, n_tracks, layers, width, repeats):
    """All `width` features of every layer in `layers`, for one track and for a batch of
    `n_tracks` tracks (one after another, as a catalogue run does), reference against native."""
    aur, _ = paper_auraliser(seconds, width)
    aur = type(aur)(aur.model.cuda(), aur.spectrogram, "cuda")
    tracks = [torch.randn(int(seconds * 11025), generator=torch.Generator().manual_seed(i)) * 0.1
              for i in range(n_tracks)]
    rows = []
    for label, batch in ((f"1 track of {seconds:g} s", tracks[:1]), (f"{n_tracks} tracks of {seconds:g} s", tracks)):
        times, peaks = {}, {}
        for backend in ("reference", "auto"):
            os.environ["CNNAURAL_BACKEND"] = backend

            def run():
                for x in batch:
                    for layer in layers:
                        aur.auralise(x, layer=layer, features="all")
            run()  # warm-up, and the peak memory of one pass
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            run()
            torch.cuda.synchronize()
            peaks[backend] = torch.cuda.max_memory_allocated() / 2**20
            times[backend] = timeit(run, repeats=repeats, warmup=0)
        del os.environ["CNNAURAL_BACKEND"]
        case = f"auralise {label}, layers {layers[0]}-{layers[-1]}, all {width} features each"
        rows.append({"case": case, "backend": "reference", **times["reference"], "peak_mb": peaks["reference"]})
        rows.append({"case": case, "backend": "native", **times["auto"], "peak_mb": peaks["auto"],
                     "speedup": times["reference"]["median_ms"] / times["auto"]["median_ms"]})
        print(rows[-2], rows[-1], sep="\n", flush=True)
    return rows


def main(argv=None):
    args = bench_args(__doc__, argv, devices=True)
    from cnnaural_ext import ops

    if not ops.native_available():
        print("the native extension is not built: pip install -e . --no-build-isolation")
        return 1
    device = args.device
    if device == "cuda":
        if not torch.cuda.is_available():
            print("--device cuda: no CUDA device is visible")
            return 1
        if ops.active_backend("unpool_conv_transpose2d", "cuda") != "native":
            print("--device cuda: the extension has no CUDA kernels (build it with a CUDA torch and nvcc)")
            return 1
        torch.backends.cuda.matmul.allow_tf32 = False  # FP32 throughout, reference and native alike
        torch.backends.cudnn.allow_tf32 = False
    meta = machine()
    meta["device"] = device
    columns = ["case", "backend", "median_ms", "min_ms", "max_ms", "useful_gflops", "sgemm_pct", "peak_mb",
               "speedup"]
    if device == "cuda":
        columns.insert(6, "out_gbps")
        meta["fp32_matmul_gflops"] = round(sgemm_gflops(8192, device="cuda"), 1)
        meta["copy_gbps"] = round(copy_gbps("cuda"), 1)
        if args.quick:
            rows = fused_rows(4, 2, "cuda") + istft_rows(4, 1.0, 2, "cuda") + cuda_end_to_end_rows(1.0, 2, [1, 5], 8, 1)
        else:
            rows = (fused_rows(64, 20, "cuda", long_frames=1292, long_n=64, long_repeats=10)
                    + istft_rows(64, 4.0, 20, "cuda") + istft_rows(64, 30.0, 10, "cuda")
                    + cuda_end_to_end_rows(30.0, 8, [1, 2, 3, 4, 5], 64, 3))
    elif args.quick:
        meta["sgemm_gflops"] = round(sgemm_gflops(512, 2), 1)
        rows = (fused_rows(4, 2, long_frames=400, long_n=3, long_repeats=1) + istft_rows(4, 1.0, 2)
                + end_to_end_rows([1.0], [5], 8, 1) + end_to_end_rows([1.0], [5], 48, 1, model="shipped"))
    else:
        meta["sgemm_gflops"] = round(sgemm_gflops(), 1)
        # a 30-s track: 1292 frames; the end-to-end cases' chunks (E2E_BUDGET over twice block 2's
        # output of one seed, 64 x 128 x 646 floats: 12 seeds, balanced to 5 calls of 11 and one of 9
        # for 64 features) take 11 seeds per call
        rows = (fused_rows(64, 5, long_frames=1292, long_n=11, long_repeats=3) + istft_rows(64, 4.0, 10)
                + end_to_end_rows([4.0], [1, 5], 64, 3) + end_to_end_rows([30.0], [1, 5], 64, 1)
                + end_to_end_rows([4.0], [5], 48, 3, model="shipped") + end_to_end_rows([30.0], [5], 48, 1,
                                                                                     model="shipped"))
        meta["sgemm_gflops_after"] = round(sgemm_gflops(), 1)  # the machine's load may change during the run
    if meta.get("sgemm_gflops"):
        for row in rows:
            if row.get("useful_gflops"):
                row["sgemm_pct"] = 100.0 * row["useful_gflops"] / meta["sgemm_gflops"]
    write(args.out, "kernels" if device == "cpu" else "kernels_cuda", rows, columns, meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
