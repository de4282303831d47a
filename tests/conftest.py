"""Shared fixtures and the central CUDA skip."""
import os

import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")

CUDA = torch.cuda.is_available()


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


@pytest.fixture
def one_thread():
    """gradcheck runs hundreds of tiny ops, where waking an intra-op thread pool costs more than the
    op (dramatically so on a loaded machine): run them on one thread, then restore the setting."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory):
    """A small paper_cnn5 checkpoint (helpers.small_model_and_spec) with its initial first layer."""
    from cnnaural_ext.io.checkpoint import save_checkpoint
    from helpers import SMALL_WIDTH, SR, small_model_and_spec

    model, spec = small_model_and_spec()
    path = tmp_path_factory.mktemp("ckpt") / "small.pt"
    save_checkpoint(path, model, spec, arch="paper_cnn5",
                    arch_kwargs=dict(n_classes=3, width=SMALL_WIDTH, input_shape=[spec.n_bins, spec.n_frames(2 * SR)],
                                     dense=[16]),
                    classes=["a", "b", "c"], initial_conv1=model[0][0][0].weight.detach().clone())
    return path


@pytest.fixture(scope="session")
def track(tmp_path_factory):
    """A 3-s tone as a WAV file whose name has a space."""
    import soundfile as sf
    from helpers import SR, tone

    path = tmp_path_factory.mktemp("audio") / "tone track.wav"
    sf.write(path, tone(3.0).numpy(), SR)
    return path


@pytest.fixture
def corpus(tmp_path):
    """Two classes of two short tracks each; one class folder is named with markup."""
    import soundfile as sf
    from helpers import CLASSES, SR, tone

    root = tmp_path / "corpus"
    g = torch.Generator().manual_seed(0)
    for c, cls in enumerate(CLASSES):
        (root / cls).mkdir(parents=True)
        for k in range(2):
            x = tone(2.5) if c == 0 else 0.05 * torch.randn(int(2.5 * SR), generator=g)
            sf.write(root / cls / f"track{k}.wav", x.numpy(), SR)
    return root


@pytest.fixture
def fake_prelude(monkeypatch):
    """BWV 846 is not rendered: helpers.fake_bwv846 stands in for it."""
    from cnnaural_ext import corpus
    from helpers import fake_bwv846

    monkeypatch.setattr(corpus, "render_bwv846", fake_bwv846)


# ------------------------------------------------------------------------------------------------
# The synthetic corpus of the corpus / training tests: three easy classes (clicks, noise, tones)
# of 3-5 s tracks, and a tiny CNN recipe (CPU, one thread, 8 channels on 1 s clips at 8 kHz).
# ------------------------------------------------------------------------------------------------
def _synthetic_signal(kind: str, seconds: float, rng, sr: int):
    import numpy as np

    n = int(seconds * sr)
    t = np.arange(n) / sr
    if kind == "tones":  # steady harmonic tones, a new pitch every 0.5 s
        f0 = rng.uniform(200, 600, size=int(np.ceil(seconds / 0.5)))[(t // 0.5).astype(int)]
        ph = 2 * np.pi * np.cumsum(f0) / sr
        x = sum(np.sin(k * ph) / k for k in (1, 2, 3))
    elif kind == "noise":  # white-noise bursts
        x = rng.standard_normal(n) * (np.sin(2 * np.pi * rng.uniform(1, 3) * t) > -0.3)
    else:  # click trains
        x = np.zeros(n)
        period = int(sr / rng.uniform(4, 9))
        x[::period] = 1.0
        x = np.convolve(x, np.exp(-np.arange(40) / 4.0), mode="same")
    x = x / np.abs(x).max() * 0.5
    return x.astype(np.float32)


def _make_synthetic_corpus(root, n_tracks: int = 4, classes=("clicks", "noise", "tones"), sr: int = 16000):
    """``root/<class>/<class>_<i>.wav``, n_tracks per class, 3 + (i % 3) s each, at `sr` (16 kHz:
    loading them at the tiny model's 8 kHz resamples)."""
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(1234)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n_tracks):
            sf.write(root / c / f"{c}_{i}.wav", _synthetic_signal(c, 3.0 + (i % 3), rng, sr), sr)
    return root


def _tiny_spectrogram(**kw):
    from cnnaural_ext.spectrogram import Spectrogram

    return Spectrogram(**dict(dict(sample_rate=8000, n_fft=256, hop_length=128, scale="log1p"), **kw))


_TINY_TRAIN = dict(arch="paper_cnn5", width=8, dense=(), dropout=0.0, sample_rate=8000, n_fft=256,
                   hop_length=128, clip_seconds=1.0, clips_per_track=4, batch_size=4, lr=3e-3, batchnorm=True,
                   optimizer="adam", epochs=15, patience=15, random_seed=0, threads=1, progress=False)


@pytest.fixture(scope="session")
def tiny():
    """The tiny setup of the corpus / training tests.

    Attributes: sr (the model's rate, 8000), train (`training.train` keyword arguments: copy
    before changing), spectrogram(**overrides) (the tiny model's log1p Spectrogram),
    make_corpus(root, n_tracks=4, classes=("clicks", "noise", "tones")) (a synthetic corpus).
    """
    from types import MappingProxyType, SimpleNamespace

    return SimpleNamespace(sr=_TINY_TRAIN["sample_rate"], train=MappingProxyType(_TINY_TRAIN),
                           spectrogram=_tiny_spectrogram, make_corpus=_make_synthetic_corpus)


@pytest.fixture(scope="session")
def synthetic_corpus(tmp_path_factory):
    """A synthetic corpus of 3 classes x 4 tracks (`tiny.make_corpus`), shared read-only."""
    return _make_synthetic_corpus(tmp_path_factory.mktemp("synthetic_corpus"))


@pytest.fixture(scope="session")
def tiny_trained(synthetic_corpus, tmp_path_factory):
    """One tiny training run on `synthetic_corpus`: (checkpoint path, metrics, clip cache folder)."""
    from cnnaural_ext.training import train

    d = tmp_path_factory.mktemp("tiny_trained")
    out = d / "tiny.pt"
    metrics = train(synthetic_corpus, out, cache_dir=d / "cache", **_TINY_TRAIN)
    return out, metrics, d / "cache"
