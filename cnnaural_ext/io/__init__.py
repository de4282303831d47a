"""Files in and out: audio (load, resample, save), atomic files, checkpoints."""
from .audio import AUDIO_FORMATS, load, peak_normalize, resample, save_audio
from .checkpoint import load_checkpoint, save_checkpoint
from .files import atomic_write, write_json, write_text

__all__ = ["AUDIO_FORMATS", "atomic_write", "load", "load_checkpoint", "peak_normalize", "resample", "save_audio",
           "save_checkpoint", "write_json", "write_text"]
