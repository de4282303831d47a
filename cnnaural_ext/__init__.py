"""cnnaural_ext: listen to what a convolutional network trained on spectrograms has learned.

Deconvolve a learned feature back to the input spectrogram (Zeiler & Fergus deconvnet: unpool
with the max-pool switches, rectify, transposed convolution), give it the phase of the original
STFT and inverse-STFT it into audio (Choi et al., 2015).
"""
from importlib.metadata import PackageNotFoundError, version

from . import models
from .auralise import AuralisationResult, Auraliser
from .deconvnet import DeconvNet
from .errors import CnnauralError
from .modules import UnpoolConvTranspose2d
from .ops import masked_istft, unpool_conv_transpose2d
from .spectrogram import Spectrogram

try:  # pyproject.toml holds the version; an installed package carries it in its metadata
    __version__ = version("cnnaural_ext")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "unknown"

__all__ = ["AuralisationResult", "Auraliser", "CnnauralError", "DeconvNet", "masked_istft", "unpool_conv_transpose2d",
           "Spectrogram", "UnpoolConvTranspose2d", "models", "__version__"]
