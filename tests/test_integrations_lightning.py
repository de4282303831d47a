"""integrations.lightning.AuralisationCallback: a tiny Lightning fit logs auralisations to TensorBoard."""
import importlib
import sys

import pytest
import torch

import cnnaural_ext as ca
from cnnaural_ext.errors import CnnauralError
from helpers import SMALL_WIDTH, SR, tone

LIGHTNING_MODULES = ["lightning", "lightning.pytorch", "lightning.pytorch.callbacks", "pytorch_lightning",
                     "pytorch_lightning.callbacks"]


def test_missing_lightning_says_what_to_install(monkeypatch):
    for name in LIGHTNING_MODULES:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "cnnaural_ext.integrations.lightning", raising=False)
    with pytest.raises(CnnauralError, match=r"pip install cnnaural_ext\[lightning\]"):
        importlib.import_module("cnnaural_ext.integrations.lightning")
    import cnnaural_ext.integrations as integrations

    monkeypatch.delattr(integrations, "lightning", raising=False)
    with pytest.raises(CnnauralError, match=r"pip install cnnaural_ext\[lightning\]"):
        integrations.AuralisationCallback  # noqa: B018


def _lightning():
    pl = pytest.importorskip("lightning.pytorch")
    pytest.importorskip("tensorboard")
    return pl


def _module_class(pl):
    class Classifier(pl.LightningModule):
        """Waveforms in; the Spectrogram and the small paper_cnn5 (BatchNorm, Dropout) as attributes."""

        def __init__(self):
            super().__init__()
            self.spectrogram = ca.Spectrogram(sample_rate=SR, n_fft=256, hop_length=128, scale="log1p")
            self.net = ca.models.paper_cnn5(n_classes=2, width=SMALL_WIDTH, batchnorm=True, dense=(16,),
                                            input_shape=(self.spectrogram.n_bins, self.spectrogram.n_frames(2 * SR)))

        def training_step(self, batch, batch_idx):
            wave, y = batch
            _, S = self.spectrogram(wave)
            loss = torch.nn.functional.cross_entropy(self.net(S[:, None]), y)
            self.log("loss", loss)
            return loss

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    return Classifier


def _fit(pl, module, callback, logger, max_steps=3):
    g = torch.Generator().manual_seed(0)
    waves = torch.stack([tone() if k % 2 else 0.1 * torch.randn(2 * SR, generator=g) for k in range(8)])
    data = torch.utils.data.TensorDataset(waves, torch.arange(8) % 2)
    trainer = pl.Trainer(max_steps=max_steps, logger=logger, callbacks=[callback], enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
                         log_every_n_steps=1)
    trainer.fit(module, torch.utils.data.DataLoader(data, batch_size=2))
    return trainer


def test_fit_writes_audio_to_the_tensorboard_event_file(tmp_path):
    pl = _lightning()
    from lightning.pytorch.loggers import TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from cnnaural_ext.integrations.lightning import AuralisationCallback

    torch.manual_seed(0)
    module = _module_class(pl)()
    cb = AuralisationCallback(probes={"tone": tone()}, layers=[1, 5], features=[0, 1], every_n_steps=2,
                              model="net", spectrogram="spectrogram")
    logger = TensorBoardLogger(str(tmp_path), name="run")
    _fit(pl, module, cb, logger)
    logger.experiment.flush()
    assert cb.last is not None and cb.last.step == 2
    acc = EventAccumulator(logger.log_dir, size_guidance={"audio": 0, "images": 0, "histograms": 0})
    acc.Reload()
    for L in (1, 5):
        for k in (0, 1):
            events = acc.Audio(f"auralisation/tone/layer{L}/feature{k:03d}")
            assert [e.step for e in events] == [2]
            assert events[0].sample_rate == SR
            assert [e.step for e in acc.Images(f"auralisation/tone/layer{L}/feature{k:03d}/map")] == [2]
        assert [e.step for e in acc.Histograms(f"auralisation/tone/layer{L}/activations")] == [2]
    assert module.training  # Lightning's own state: still in train mode after the fit's last log


class RecordingWriter:
    def __init__(self):
        self.steps = []

    def add_audio(self, tag, snd, global_step=None, sample_rate=44100):
        self.steps.append(global_step)

    def add_image(self, *args, **kwargs):
        pass

    def add_histogram(self, *args, **kwargs):
        pass


def test_factory_and_explicit_writer_every_step(tmp_path):
    pl = _lightning()
    from cnnaural_ext.integrations.lightning import AuralisationCallback

    module = _module_class(pl)()
    made = []

    def factory(pl_module):
        made.append(pl_module)
        return ca.Auraliser(pl_module.net, pl_module.spectrogram)

    writer = RecordingWriter()
    cb = AuralisationCallback(probes={"tone": tone()}, features=[0], every_n_steps=1, auraliser=factory,
                              writer=writer, images=None, histograms=False)
    _fit(pl, module, cb, logger=False, max_steps=3)
    assert made == [module]  # built once, at the first step logged
    assert sorted(set(writer.steps)) == [1, 2, 3]
    assert writer.steps.count(1) == 2  # the original (first step only) and feature 0


def test_missing_attribute_and_logger_are_clear_errors():
    pl = _lightning()
    from cnnaural_ext.integrations.lightning import AuralisationCallback, trainer_writer

    module = _module_class(pl)()
    with pytest.raises(CnnauralError, match="no attribute 'model'"):
        AuralisationCallback(probes={"tone": tone()}).make_auraliser(module)
    with pytest.raises(CnnauralError, match="every_n_steps"):
        AuralisationCallback(probes={"tone": tone()}, every_n_steps=0)

    class NoLoggers:
        loggers = []

    with pytest.raises(CnnauralError, match="TensorBoard logger"):
        trainer_writer(NoLoggers())
