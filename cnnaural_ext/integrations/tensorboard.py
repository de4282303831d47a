"""Listen to a model while it trains: chosen features of fixed probe clips, every N steps, to TensorBoard.

    from cnnaural_ext.integrations import AuralisationLogger, summary_writer

    writer = summary_writer("runs/exp1")             # torch.utils.tensorboard.SummaryWriter
    aur = ca.Auraliser(model, spectrogram)           # no copy: it sees the weights as they train
    log = AuralisationLogger(writer, aur, probes={"song": wave}, layers=[1, 5], features="top:4", every=100)
    for step, batch in enumerate(loader):
        ...                                          # forward, backward, optimizer step
        log.log(step)                                # does nothing unless step % 100 == 0

For every probe and layer, `log(step)` writes (tags under ``<prefix>/<probe>/``):

- ``layer<L>/feature<kkk>``: each chosen feature's clip, `add_audio` at the Auraliser's sample rate
  (clamped to [-1, 1]; peak-normalised unless ``normalize=False`` is passed);
- ``layer<L>/feature<kkk>/map``: its deconvolved map, `add_image` (CHW uint8). ``images="array"``
  (default, cheap): the map in dB below its maximum, floored at -80 dB, through the magma colour map,
  one pixel per input bin and frame, low frequencies at the bottom: the colours of
  `io.figures.save_map` without axes. ``images="figure"``: the `io.figures.save_map` figure itself
  (axes in s and kHz, colour bar), rendered to a temporary PNG and read back (about 0.1 s per map).
  ``images=None``: no images;
- ``layer<L>/activations``: the layer's whole activation tensor for the probe, `add_histogram`;
- ``original``: the probe itself, once, at the first step logged.

With ``features="top:K"`` the K most active features of the probe are chosen afresh at each logged
step, so which ``feature<kkk>`` tags receive a point can change from step to step; pass a list of
features to follow the same ones throughout.

The call leaves training as it was (`guard.training_state_preserved`): it runs under
`torch.no_grad()`, and the model's train/eval flags, ``requires_grad`` flags and ``.grad`` tensors,
its buffers (batch-norm running statistics) and the global RNG states (torch CPU and CUDA, numpy,
Python `random`) are the same after it. The writer is anything with ``add_audio``, ``add_image`` and
``add_histogram`` (``SummaryWriter``'s signatures); TensorBoard itself is needed only for
`summary_writer`, an optional extra: ``pip install cnnaural_ext[tensorboard]``.
"""
from __future__ import annotations

import inspect
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..auralise import Auraliser
from ..errors import CnnauralError
from .guard import training_state_preserved

WRITER_METHODS = ("add_audio", "add_image", "add_histogram")
IMAGES = ("array", "figure", None)
INSTALL_TENSORBOARD = "pip install cnnaural_ext[tensorboard]"


def summary_writer(log_dir, **kwargs):
    """``torch.utils.tensorboard.SummaryWriter(log_dir, **kwargs)``; a CnnauralError saying what to
    install when the tensorboard package is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise CnnauralError(f"logging to TensorBoard needs the tensorboard package: {INSTALL_TENSORBOARD}") from None
    return SummaryWriter(str(log_dir), **kwargs)


def map_image(m, *, floor_db: float = -80.0, cmap: str = "magma") -> torch.Tensor:
    """A deconvolved map (F', T) as an RGB image (3, F', T) uint8: its magnitude in dB below its
    maximum, floored at `floor_db`, through `cmap`, low frequencies at the bottom (row 0 of the
    image is the highest input bin), as `io.figures.save_map` colours it."""
    import matplotlib

    mag = np.abs(torch.as_tensor(m).detach().float().cpu().numpy().astype(np.float64))
    ref = mag.max() if mag.size and mag.max() > 0 else 1.0
    db = np.maximum(20 * np.log10(np.maximum(mag, 1e-12) / ref), floor_db)
    rgba = matplotlib.colormaps[cmap]((db - floor_db) / -floor_db, bytes=True)  # (F', T, 4) uint8
    return torch.from_numpy(np.ascontiguousarray(rgba[::-1, :, :3].transpose(2, 0, 1)))


def map_figure(m, spectrogram, *, title: str = "") -> torch.Tensor:
    """The `io.figures.save_map` figure of a map (F', T), as an RGB image (3, H, W) uint8."""
    import matplotlib.image

    from ..io import figures

    with tempfile.TemporaryDirectory(prefix="cnnaural-map-") as tmp:
        path = Path(tmp) / "map.png"
        figures.save_map(path, m, sample_rate=spectrogram.sample_rate, hop_length=spectrogram.hop_length,
                         frequencies=figures.input_frequencies(spectrogram), title=title)
        rgba = matplotlib.image.imread(str(path))  # (H, W, 4) float in [0, 1]
    rgb = np.clip(np.round(rgba[..., :3] * 255), 0, 255).astype(np.uint8)
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))


@dataclass
class LoggedStep:
    """What one `AuralisationLogger.log` call wrote.

    Attributes:
        step (int)
        audio (dict): tag -> (n,) float32 clip, as passed to add_audio (one row of (1, n)).
        images (dict): tag -> (3, H, W) uint8 image, as passed to add_image.
        histograms (dict): tag -> (N,) float32 activations, as passed to add_histogram.
        results (dict): probe name -> [AuralisationResult per layer] (maps, stats, features).
        seconds (float): wall-clock time of the call.
    """
    step: int
    audio: dict = field(default_factory=dict)
    images: dict = field(default_factory=dict)
    histograms: dict = field(default_factory=dict)
    results: dict = field(default_factory=dict)
    seconds: float = 0.0

    def tags(self) -> list:
        """Every tag written, audio then images then histograms."""
        return [*self.audio, *self.images, *self.histograms]


def check_writer(writer) -> None:
    """CnnauralError unless `writer` has callable add_audio, add_image and add_histogram."""
    missing = [m for m in WRITER_METHODS if not callable(getattr(writer, m, None))]
    if missing:
        raise CnnauralError(f"the writer must have {', '.join(WRITER_METHODS)} (a SummaryWriter does); "
                            f"{type(writer).__name__} has no {', '.join(missing)}")


def _tag_part(name) -> str:
    text = re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("_")
    if not text:
        raise CnnauralError(f"probe name {name!r} has no letter or digit to name its TensorBoard tags")
    return text


class AuralisationLogger:
    """Every `every` steps, auralise chosen features of fixed probe clips and write them to `writer`.

    Args:
        writer: a `torch.utils.tensorboard.SummaryWriter` (see `summary_writer`) or anything with
            its add_audio / add_image / add_histogram.
        auraliser: an `Auraliser` over the model being trained (it reads the weights in place).
        probes (dict): name -> mono waveform (n,) at the Auraliser's sample rate (tensor or array);
            copied once, as float32 on the CPU.
        layers: as `Auraliser.auralise_layers` ("1,5", [1, 5], "all", ...).
        features: list of ints | "all" | "top:K" (per layer and probe).
        every (int): `log(step)` writes only when ``step % every == 0`` (step 0 included).
        images: "array" | "figure" | None (see the module docstring).
        histograms (bool): also write each layer's activations.
        prefix (str): the first part of every tag.
        **options: passed to `Auraliser.auralise_layers` (mode, phase, seed, normalize, ...).
    """

    def __init__(self, writer, auraliser: Auraliser, probes: dict, layers=1, features="top:4", every: int = 100,
                 *, images: str | None = "array", histograms: bool = True, prefix: str = "auralisation", **options):
        check_writer(writer)
        if not hasattr(auraliser, "auralise_layers"):
            raise CnnauralError(f"auraliser must be a cnnaural_ext.Auraliser (got {type(auraliser).__name__})")
        if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1:
            raise CnnauralError(f"every must be an integer >= 1 (got {every!r})")
        if images not in IMAGES:
            raise CnnauralError(f"images must be one of 'array', 'figure' or None (got {images!r})")
        if not isinstance(probes, dict) or not probes:
            raise CnnauralError("probes must be a non-empty dict {name: waveform}")
        self.writer, self.auraliser = writer, auraliser
        self.every, self.images, self.histograms = int(every), images, bool(histograms)
        self.prefix = _tag_part(prefix)
        known = inspect.signature(auraliser.auralise_layers).parameters
        unknown = sorted(k for k in options if k not in known or k in ("waveform", "layers", "features"))
        if unknown:
            raise CnnauralError(f"unknown option {unknown[0]!r}: AuralisationLogger passes mode, phase, seed, normalize, "
                                "griffinlim_iters and mel_inverse on to Auraliser.auralise_layers")
        self.options = dict(options)
        self.layers = auraliser.check_request(layers, features, **{k: v for k, v in options.items()
                                                                   if k in ("mode", "phase", "seed")})
        self.features = features
        self.probes, self.tags = {}, {}
        for name, wave in probes.items():
            w = torch.as_tensor(np.asarray(wave) if not isinstance(wave, torch.Tensor) else wave.detach())
            if w.dim() != 1 or w.numel() == 0:
                raise CnnauralError(f"probe {name!r} must be a mono waveform (n,), got shape {tuple(w.shape)}")
            tag = _tag_part(name)
            if tag in self.tags.values():
                raise CnnauralError(f"probes {name!r} and another name the same tags ({tag!r}): rename one")
            self.probes[name], self.tags[name] = w.float().cpu().clone(), tag
        self.logged_original = False

    def due(self, step: int) -> bool:
        """Whether `log(step)` would write: ``step % every == 0``."""
        return int(step) % self.every == 0

    def log(self, step: int) -> LoggedStep | None:
        """Write the probes' audio, maps and activations at `step` if it is due (see `due`).

        Returns:
            None when the step is not due (nothing is computed), else a `LoggedStep`.
        """
        if not self.due(step):
            return None
        t0 = time.perf_counter()
        aur = self.auraliser
        logged = LoggedStep(int(step))
        with training_state_preserved(aur.model, aur.spectrogram):
            for name, wave in self.probes.items():
                self._log_probe(name, wave, logged)
        self.logged_original = True
        logged.seconds = time.perf_counter() - t0
        return logged

    def _log_probe(self, name: str, wave: torch.Tensor, logged: LoggedStep) -> None:
        aur, w, step = self.auraliser, self.writer, logged.step
        base = f"{self.prefix}/{self.tags[name]}"
        if not self.logged_original:
            self._audio(f"{base}/original", wave, logged)
        results = aur.auralise_layers(wave, self.layers, self.features, **self.options)
        logged.results[name] = results
        outputs = {}
        if self.histograms:
            _, S = aur.spectrogram(wave.to(aur.device))
            outputs = aur.deconvnet.layer_outputs(aur.model_input(S, wave), self.layers)
        for res in results:
            tag = f"{base}/layer{_tag_part(res.layer)}"
            for row, k in enumerate(res.features):
                self._audio(f"{tag}/feature{k:03d}", res.audio[row], logged)
                if self.images is not None:
                    img = (map_image(res.maps[row]) if self.images == "array" else
                           map_figure(res.maps[row], aur.spectrogram,
                                      title=f"{name}: layer {res.layer}, feature {k}, step {step}"))
                    w.add_image(f"{tag}/feature{k:03d}/map", img, step, dataformats="CHW")
                    logged.images[f"{tag}/feature{k:03d}/map"] = img
            if self.histograms:
                values = outputs[res.layer].detach().float().cpu().reshape(-1)
                w.add_histogram(f"{tag}/activations", values, step)
                logged.histograms[f"{tag}/activations"] = values

    def _audio(self, tag: str, clip: torch.Tensor, logged: LoggedStep) -> None:
        clip = clip.detach().float().cpu().clamp(-1.0, 1.0)
        self.writer.add_audio(tag, clip[None], logged.step, sample_rate=self.auraliser.sample_rate)
        logged.audio[tag] = clip
