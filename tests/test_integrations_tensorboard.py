"""integrations.AuralisationLogger: what it writes and when, and that training is left exactly as it was."""
import copy
import random
import sys

import numpy as np
import pytest
import torch

import cnnaural_ext as ca
from cnnaural_ext.errors import CnnauralError
from cnnaural_ext.integrations import AuralisationLogger, map_image, summary_writer, training_state_preserved
from helpers import SMALL_WIDTH, SR, tone


class RecordingWriter:
    """A SummaryWriter stand-in: records every call."""

    def __init__(self):
        self.calls = []

    def add_audio(self, tag, snd, global_step=None, sample_rate=44100):
        self.calls.append(("audio", tag, global_step, snd, sample_rate))

    def add_image(self, tag, img, global_step=None, dataformats="CHW"):
        self.calls.append(("image", tag, global_step, img, dataformats))

    def add_histogram(self, tag, values, global_step=None):
        self.calls.append(("histogram", tag, global_step, values, None))


def bn_model_and_spec():
    """The small paper_cnn5 of helpers, with BatchNorm and Dropout, in train mode."""
    torch.manual_seed(0)
    spec = ca.Spectrogram(sample_rate=SR, n_fft=256, hop_length=128, scale="log1p")
    model = ca.models.paper_cnn5(n_classes=3, width=SMALL_WIDTH, input_shape=(spec.n_bins, spec.n_frames(2 * SR)),
                                 dense=(16,), batchnorm=True, dropout=(0.1, 0.25, 0.25, 0.25, 0.5))
    return model.train(), spec


def train_steps(model, opt, spec, n, logger=None, start=0):
    """n training steps on a noisy batch of the tone (dropout and the noise draw from the global RNG)."""
    _, S = spec(tone())
    for step in range(start, start + n):
        x = S[None, None] + 0.1 * torch.randn(4, 1, *S.shape) + float(np.random.rand()) * 0.01 + random.random() * 0.01
        loss = torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2, 0]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if logger is not None:
            logger.log(step)


def snapshot(model):
    """Everything a logging call must not change, copied."""
    state = {
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grad_ids": [id(p.grad) for p in model.parameters()],
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "buffers": [b.clone() for b in model.buffers()],
        "torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def assert_same(before, after):
    assert after["training"] == before["training"]
    assert after["requires_grad"] == before["requires_grad"]
    assert after["grad_ids"] == before["grad_ids"]
    for a, b in zip(after["grads"], before["grads"]):
        assert (a is None and b is None) or torch.equal(a, b)
    assert len(after["buffers"]) == len(before["buffers"]) > 0
    for a, b in zip(after["buffers"], before["buffers"]):
        assert torch.equal(a, b)
    assert torch.equal(after["torch"], before["torch"])
    np_a, np_b = after["numpy"], before["numpy"]
    assert np_a[0] == np_b[0] and np.array_equal(np_a[1], np_b[1]) and np_a[2:] == np_b[2:]
    assert after["python"] == before["python"]
    if "cuda" in before:
        assert all(torch.equal(a, b) for a, b in zip(after["cuda"], before["cuda"]))


@pytest.fixture
def mid_training():
    """A model with BatchNorm and Dropout in train mode after 3 steps, gradients of a 4th present,
    one parameter frozen."""
    model, spec = bn_model_and_spec()
    model[0][0][0].bias.requires_grad_(False)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    train_steps(model, opt, spec, 3)
    _, S = spec(tone())
    loss = model(S[None, None].repeat(2, 1, 1, 1)).sum()
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    return model, spec, opt


def test_logs_every_n_steps():
    model, spec = bn_model_and_spec()
    w = RecordingWriter()
    log = AuralisationLogger(w, ca.Auraliser(model, spec), {"tone": tone(), "noise": 0.1 * torch.randn(2 * SR)},
                             layers=[1, 5], features="top:2", every=3)
    logged = [step for step in range(8) if log.log(step) is not None]
    assert logged == [0, 3, 6]
    assert sorted({c[2] for c in w.calls}) == [0, 3, 6]
    for step in (0, 3, 6):
        calls = [c for c in w.calls if c[2] == step]
        originals = [c for c in calls if c[1].endswith("/original")]
        assert len(originals) == (2 if step == 0 else 0)  # each probe's original once, at the first step
        # per probe: 2 layers x 2 features of audio and images, 2 histograms
        assert sum(c[0] == "audio" for c in calls) == 8 + len(originals)
        assert sum(c[0] == "image" for c in calls) == 8
        assert sum(c[0] == "histogram" for c in calls) == 4
    for kind, tag, step, value, extra in w.calls:
        assert tag.startswith(("auralisation/tone/", "auralisation/noise/"))
        if kind == "audio":
            assert extra == SR and value.shape == (1, 2 * SR) and value.abs().max() <= 1
        elif kind == "image":
            assert extra == "CHW" and value.dtype == torch.uint8
            assert value.shape == (3, spec.n_bins, spec.n_frames(2 * SR))
    hist = next(c for c in w.calls if c[1] == "auralisation/tone/layer1/activations")
    assert hist[3].numel() == SMALL_WIDTH[0] * (spec.n_bins // 2) * (spec.n_frames(2 * SR) // 2)


def test_logging_leaves_training_exactly_as_it_was(mid_training):
    model, spec, _ = mid_training
    log = AuralisationLogger(RecordingWriter(), ca.Auraliser(model, spec), {"tone": tone()}, layers=[1, 5],
                             features="top:3", every=1)
    before = snapshot(model)
    torch.set_grad_enabled(True)
    out = log.log(7)
    assert out is not None and len(out.audio) == 1 + 6
    assert torch.is_grad_enabled()
    assert_same(before, snapshot(model))


def test_training_with_logging_matches_training_without(mid_training):
    """The strongest form: the same run with and without logging ends with identical weights."""
    model, spec, opt = mid_training
    twin = copy.deepcopy(model)
    twin_opt = torch.optim.Adam([p for p in twin.parameters() if p.requires_grad], lr=1e-2)
    twin_opt.load_state_dict(copy.deepcopy(opt.state_dict()))  # its own moments, not opt's
    log = AuralisationLogger(RecordingWriter(), ca.Auraliser(twin, spec), {"tone": tone()}, layers="1,5",
                             features="top:2", every=2)
    rng = snapshot(model)
    train_steps(model, opt, spec, 4)
    torch.set_rng_state(rng["torch"])
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])
    train_steps(twin, twin_opt, spec, 4, logger=log)
    assert [c[2] for c in log.writer.calls if c[0] == "histogram"] == [0, 0, 2, 2]
    for a, b in zip(model.state_dict().values(), twin.state_dict().values()):
        assert torch.equal(a, b)


class MeddlingWriter(RecordingWriter):
    """A writer that disturbs everything the guard protects, to show the guard puts it all back."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def add_histogram(self, tag, values, global_step=None):
        super().add_histogram(tag, values, global_step)
        torch.rand(3), np.random.rand(3), random.random()
        self.model.eval()
        for p in self.model.parameters():
            p.grad = None
            p.requires_grad_(True)
        for m in self.model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.add_(1.0)
                m.num_batches_tracked += 5


def test_guard_puts_back_what_was_disturbed(mid_training):
    model, spec, _ = mid_training
    log = AuralisationLogger(MeddlingWriter(model), ca.Auraliser(model, spec), {"tone": tone()}, features=[0, 1],
                             every=1)
    before = snapshot(model)
    log.log(0)
    assert_same(before, snapshot(model))


def test_guard_restores_when_the_body_raises(mid_training):
    model, spec, _ = mid_training
    before = snapshot(model)
    with pytest.raises(RuntimeError):
        with training_state_preserved(model, spec):
            model.eval()
            torch.randn(5)
            raise RuntimeError("boom")
    assert_same(before, snapshot(model))


def _tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors(v)
    elif hasattr(obj, "__dataclass_fields__"):
        for name in obj.__dataclass_fields__:
            yield from _tensors(getattr(obj, name))


def test_nothing_returned_keeps_a_graph(mid_training):
    model, spec, _ = mid_training
    w = RecordingWriter()
    out = AuralisationLogger(w, ca.Auraliser(model, spec), {"tone": tone()}, layers=[1, 3, 5], features="top:2",
                             every=1).log(0)
    tensors = list(_tensors(out)) + [c[3] for c in w.calls]
    assert len(tensors) > 20
    assert not any(t.requires_grad or t.grad_fn is not None for t in tensors)


def test_summary_writer_event_file_has_audio_images_histograms(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    model, spec = bn_model_and_spec()
    writer = summary_writer(tmp_path)
    log = AuralisationLogger(writer, ca.Auraliser(model, spec), {"tone": tone()}, layers=[1, 5], features=[0, 2],
                             every=2)
    for step in range(5):
        log.log(step)
    writer.close()
    acc = EventAccumulator(str(tmp_path), size_guidance={"audio": 0, "images": 0, "histograms": 0})
    acc.Reload()
    tags = acc.Tags()
    expected_audio = {f"auralisation/tone/layer{L}/feature{k:03d}" for L in (1, 5) for k in (0, 2)}
    assert set(tags["audio"]) == expected_audio | {"auralisation/tone/original"}
    assert set(tags["images"]) == {t + "/map" for t in expected_audio}
    assert set(tags["histograms"]) == {"auralisation/tone/layer1/activations", "auralisation/tone/layer5/activations"}
    for tag in expected_audio:
        events = acc.Audio(tag)
        assert [e.step for e in events] == [0, 2, 4]
        assert all(e.sample_rate == SR and e.length_frames == 2 * SR for e in events)
        images = acc.Images(tag + "/map")
        assert [e.step for e in images] == [0, 2, 4]
        assert (images[0].height, images[0].width) == (spec.n_bins, spec.n_frames(2 * SR))
    assert [e.step for e in acc.Audio("auralisation/tone/original")] == [0]
    assert [e.step for e in acc.Histograms("auralisation/tone/layer5/activations")] == [0, 2, 4]


def test_figure_images():
    model, spec = bn_model_and_spec()
    out = AuralisationLogger(RecordingWriter(), ca.Auraliser(model, spec), {"tone": tone()}, features=[1],
                             every=1, images="figure", histograms=False).log(0)
    (img,) = out.images.values()
    assert img.dtype == torch.uint8 and img.shape[0] == 3 and img.shape[1] > 100 and img.shape[2] > 200
    assert not out.histograms


def test_map_image_puts_low_frequencies_at_the_bottom():
    m = torch.zeros(10, 4)
    m[0] = 1.0  # energy in the lowest bin only
    img = map_image(m)
    assert img.shape == (3, 10, 4) and img.dtype == torch.uint8
    assert img[:, -1].float().sum() > img[:, 0].float().sum()  # bright bottom row, dark (-80 dB) top


def test_missing_tensorboard_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(CnnauralError, match=r"pip install cnnaural_ext\[tensorboard\]"):
        summary_writer(tmp_path)


@pytest.mark.parametrize("kwargs, message", [
    (dict(writer=object()), "add_audio, add_image, add_histogram"),
    (dict(every=0), "every must be"),
    (dict(probes={"x": torch.zeros(2, 100)}), "mono waveform"),
    (dict(probes={}), "non-empty"),
    (dict(images="png"), "images must be"),
    (dict(features="top:99"), "K must be in"),
    (dict(layers=9), "out of range"),
    (dict(colour="red"), "unknown option 'colour'"),
    (dict(mode="loud"), "mode must be"),
])
def test_bad_arguments_are_clear_errors(kwargs, message):
    model, spec = bn_model_and_spec()
    args = dict(writer=RecordingWriter(), auraliser=ca.Auraliser(model, spec), probes={"tone": tone()})
    args.update(kwargs)
    with pytest.raises(CnnauralError, match=message):
        AuralisationLogger(**args)
