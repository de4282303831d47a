"""Auralisation inside training loops: TensorBoard logging and a Lightning callback.

* `AuralisationLogger` (`integrations.tensorboard`): every N steps, the audio of chosen features
  of fixed probe clips (`add_audio`), their deconvolved maps (`add_image`) and the layers'
  activations (`add_histogram`), without disturbing training (`guard.training_state_preserved`).
* `AuralisationCallback` (`integrations.lightning`, needs Lightning): the same from a Lightning
  `Trainer`, through its TensorBoard logger. Imported on first use, so this package imports
  without Lightning; without it, using the name raises a CnnauralError saying what to install.

TensorBoard and Lightning are optional extras: ``pip install cnnaural_ext[tensorboard]`` and
``pip install cnnaural_ext[lightning]``.
"""
from .guard import rng_states, set_rng_states, training_state_preserved
from .tensorboard import AuralisationLogger, LoggedStep, check_writer, map_figure, map_image, summary_writer

__all__ = ["AuralisationCallback", "AuralisationLogger", "LoggedStep", "check_writer", "map_figure", "map_image",
           "rng_states", "set_rng_states", "summary_writer", "training_state_preserved"]


def __getattr__(name):
    if name == "AuralisationCallback":
        from .lightning import AuralisationCallback

        return AuralisationCallback
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
