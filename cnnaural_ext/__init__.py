"""cnnaural_ext: listen to what a convolutional network trained on spectrograms has learned.

Deconvolve a learned feature back to the input spectrogram (Zeiler & Fergus deconvnet: unpool
with the max-pool switches, rectify, transposed convolution), give it the phase of the original
STFT and inverse-STFT it into audio (Choi et al., 2015).
"""
from . import models
from .auralise import AuralisationResult, Auraliser
from .deconvnet import DeconvNet
from .errors import CnnauralError
from .ops import masked_istft, unpool_conv_transpose2d
from .spectrogram import Spectrogram

__version__ = "0.1.0"
__all__ = ["AuralisationResult", "Auraliser", "CnnauralError", "DeconvNet", "masked_istft", "unpool_conv_transpose2d", "Spectrogram", "models", "__version__"]
