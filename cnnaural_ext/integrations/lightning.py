"""A Lightning callback that logs auralisations every N training steps (`AuralisationLogger` inside).

    from cnnaural_ext.integrations.lightning import AuralisationCallback

    class Classifier(lightning.LightningModule):
        def __init__(self):
            super().__init__()
            self.spectrogram = ca.Spectrogram(scale="log1p")   # the network input of `net`
            self.net = ca.models.paper_cnn5(n_classes=3)       # the CNN the Auraliser reads
        ...

    cb = AuralisationCallback(probes={"song": wave}, layers=[1, 5], features="top:4", every_n_steps=200,
                              model="net", spectrogram="spectrogram")
    trainer = lightning.Trainer(callbacks=[cb], logger=TensorBoardLogger("runs"))

Which CNN and which Spectrogram: `model` and `spectrogram` name attributes of the LightningModule
(dotted paths allowed; `spectrogram` may also be a Spectrogram object), or `auraliser` is a factory
``auraliser(pl_module) -> Auraliser`` for anything else. The Auraliser is built at the first step
logged, when Lightning has put the module on its device, and built again if the module moves.

The writer is the experiment (a SummaryWriter) of the trainer's first logger that has one with
add_audio / add_image / add_histogram (a `TensorBoardLogger`), unless `writer` is given. Logging
happens on global rank zero only, after the optimizer step, when ``trainer.global_step %
every_n_steps == 0``, once per global step (with gradient accumulation several batches share a
step). Lightning is an optional extra: importing this module without it raises a CnnauralError
saying ``pip install cnnaural_ext[lightning]`` (``lightning`` or ``pytorch_lightning`` both work).
"""
from __future__ import annotations

from ..auralise import Auraliser
from ..errors import CnnauralError
from .tensorboard import WRITER_METHODS, AuralisationLogger

INSTALL_LIGHTNING = "pip install cnnaural_ext[lightning]"

try:
    from lightning.pytorch.callbacks import Callback
except ImportError:
    try:
        from pytorch_lightning.callbacks import Callback
    except ImportError:
        raise CnnauralError(f"the Lightning callback needs Lightning: {INSTALL_LIGHTNING}") from None


def _attribute(obj, path: str, what: str):
    value = obj
    for part in path.split("."):
        if not hasattr(value, part):
            raise CnnauralError(f"the LightningModule {type(obj).__name__} has no attribute {path!r} for the "
                                f"{what}: pass {what}='<attribute>' or auraliser=<factory> to AuralisationCallback")
        value = getattr(value, part)
    return value


def trainer_writer(trainer):
    """The experiment of the trainer's first logger that has add_audio / add_image / add_histogram."""
    for logger in getattr(trainer, "loggers", None) or []:
        experiment = getattr(logger, "experiment", None)
        if all(callable(getattr(experiment, m, None)) for m in WRITER_METHODS):
            return experiment
    raise CnnauralError("AuralisationCallback needs a TensorBoard logger on the Trainer "
                        "(Trainer(logger=TensorBoardLogger(...))) or a writer=SummaryWriter(...)")


class AuralisationCallback(Callback):
    """Log `AuralisationLogger` output every `every_n_steps` training steps.

    Args:
        probes (dict): name -> mono waveform at the Spectrogram's sample rate.
        layers, features: as `AuralisationLogger`.
        every_n_steps (int): log when ``trainer.global_step % every_n_steps == 0``.
        model (str): the attribute of the LightningModule that is the CNN (dotted path).
        spectrogram (str | Spectrogram): the attribute that is its Spectrogram, or the object.
        auraliser: instead of model/spectrogram, a factory ``auraliser(pl_module) -> Auraliser``.
        writer: a SummaryWriter-like writer instead of the trainer's TensorBoard logger.
        **options: the other keyword arguments of `AuralisationLogger` (images, histograms,
            prefix, mode, phase, seed, normalize, ...).

    Attributes:
        last: the `LoggedStep` of the last call that wrote (None before).
        logger: the `AuralisationLogger` (None before the first step logged).
    """

    def __init__(self, probes: dict, layers=1, features="top:4", every_n_steps: int = 100, *, model: str = "model",
                 spectrogram="spectrogram", auraliser=None, writer=None, **options):
        super().__init__()
        if isinstance(every_n_steps, bool) or not isinstance(every_n_steps, int) or every_n_steps < 1:
            raise CnnauralError(f"every_n_steps must be an integer >= 1 (got {every_n_steps!r})")
        if auraliser is not None and not callable(auraliser):
            raise CnnauralError("auraliser must be a factory: auraliser(pl_module) -> Auraliser")
        self.probes, self.layers, self.features = probes, layers, features
        self.every_n_steps = every_n_steps
        self.model_attr, self.spectrogram_attr, self.factory = model, spectrogram, auraliser
        self.writer, self.options = writer, options
        self.logger: AuralisationLogger | None = None
        self.last = None
        self._last_step = None

    def make_auraliser(self, pl_module) -> Auraliser:
        """The Auraliser over the module's CNN (from the factory, or the model/spectrogram attributes)."""
        if self.factory is not None:
            return self.factory(pl_module)
        cnn = _attribute(pl_module, self.model_attr, "model")
        spec = (_attribute(pl_module, self.spectrogram_attr, "spectrogram")
                if isinstance(self.spectrogram_attr, str) else self.spectrogram_attr)
        return Auraliser(cnn, spec, device=pl_module.device)

    def logger_for(self, trainer, pl_module) -> AuralisationLogger:
        """The AuralisationLogger, built at the first call and again when the module moved device."""
        if self.logger is None or self.logger.auraliser.device != pl_module.device:
            writer = self.writer if self.writer is not None else trainer_writer(trainer)
            self.logger = AuralisationLogger(writer, self.make_auraliser(pl_module), self.probes, self.layers,
                                             self.features, every=self.every_n_steps, **self.options)
        return self.logger

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        step = int(trainer.global_step)
        if not trainer.is_global_zero or step % self.every_n_steps or step == self._last_step:
            return
        self._last_step = step
        self.last = self.logger_for(trainer, pl_module).log(step)
