"""The example programs in python/ run on small inputs, so they never rot."""
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def track(tmp_path):
    sr = 22050
    t = np.arange(int(1.5 * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * 330 * t) * (np.sin(2 * np.pi * 3 * t) > 0) + 0.01 * np.random.randn(t.size)
    path = tmp_path / "clip.wav"
    sf.write(path, x, sr)
    return path


@pytest.mark.parametrize("script, extra", [
    ("auralise_own_model.py", ["--features", "top:2", "--duration", "1.5"]),
])
def test_example_runs(script, extra, track, tmp_path, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setattr(sys, "argv", [script, str(track), "--out", str(out), *extra])
    with pytest.raises(SystemExit) as e:
        runpy.run_path(str(ROOT / "python" / script), run_name="__main__")
    assert e.value.code == 0
    assert list(out.glob("*.wav"))


@pytest.mark.parametrize("mode", ["toy", "corpus"])
def test_listen_while_training_logs_audio_to_tensorboard(mode, track, tmp_path, monkeypatch, request):
    """The training example, on its toy task and on a small corpus: the event file has the audio."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "out"
    extra = ["--steps", "2", "--every", "2", "--width", "4"]
    if mode == "corpus":
        extra += ["--data", str(request.getfixturevalue("synthetic_corpus")), "--clips-per-track", "1",
                  "--batch-size", "2", "--cache-dir", str(tmp_path / "cache")]
    script = "listen_while_training.py"
    monkeypatch.setattr(sys, "argv", [script, str(track), "--out", str(out), *extra])
    with pytest.raises(SystemExit) as e:
        runpy.run_path(str(ROOT / "python" / script), run_name="__main__")
    assert e.value.code == 0
    acc = EventAccumulator(str(out), size_guidance={"audio": 0})
    acc.Reload()
    audio = [t for t in acc.Tags()["audio"] if "/layer" in t]
    assert len(audio) == 2 * 4  # layers 1 and 5, top:4 features
    assert all([ev.step for ev in acc.Audio(t)] == [2] for t in audio)
    assert [ev.step for ev in acc.Audio("auralisation/probe/original")] == [2]


def test_benchmark_script_runs(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        mod = runpy.run_path(str(ROOT / "benchmarks" / "bench_reference.py"))
        assert mod["main"](["--quick", "--out", str(tmp_path)]) == 0
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    assert (tmp_path / "reference.json").is_file() and (tmp_path / "reference.md").is_file()


def test_gpu_check_says_what_it_needs_without_a_gpu(tmp_path):
    """benchmarks/gpu_check.sh on a machine without a CUDA torch or a GPU: one clear line, status
    1, nothing built or written but its output folder."""
    import subprocess

    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: gpu_check.sh would run for real")
    r = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), str(tmp_path / "out")],
                       env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable}, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 1
    assert "gpu_check.sh: needs a CUDA build of torch and a visible GPU" in r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    assert list((tmp_path / "out").iterdir()) == []


def test_cuda_benchmark_refuses_without_a_gpu(capsys):
    """bench_kernels.py --device cuda says why it cannot run, instead of failing halfway."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        mod = runpy.run_path(str(ROOT / "benchmarks" / "bench_kernels.py"))
        assert mod["main"](["--quick", "--device", "cuda"]) == 1
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    assert "no CUDA device is visible" in capsys.readouterr().out
