"""Scores rendered to audio with exact ground-truth onsets.

A music21 score -> MIDI -> audio (tinysoundfont with the General MIDI soundfont shipped in the
pretty_midi wheel); the MIDI note-on times are the onsets. `render_bwv846` is the demo piece.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from ..errors import CnnauralError
from ..io.audio import load, save_audio
from ..io.files import write_text
from ..io.console import report

_MUSIC_HINT = "pip install music21 pretty_midi && pip install --no-deps tinysoundfont"


def music_modules():
    """Import music21, pretty_midi and tinysoundfont, or say how to install the missing one.

    Returns:
        (pretty_midi, tinysoundfont) modules.

    Raises:
        CnnauralError: one of the three is not installed.
    """
    try:
        import music21  # noqa: F401
        import pretty_midi
        import tinysoundfont
    except ImportError as e:
        raise CnnauralError(f"{e.name} is not installed: {_MUSIC_HINT}") from None
    return pretty_midi, tinysoundfont


def soundfont_path() -> Path:
    """The General MIDI soundfont TimGM6mb.sf2 that ships inside the pretty_midi wheel."""
    pretty_midi, _ = music_modules()
    sf2 = Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"
    if not sf2.is_file():
        raise CnnauralError(f"the soundfont {sf2} is missing from the pretty_midi install: "
                            f"reinstall it (pip install --force-reinstall pretty_midi)")
    return sf2


def _midi_events(pm, sample_rate, program):
    """The events of `pm` on the sample grid, sorted, and the note-on times in seconds.

    Events are (sample, order, kind, channel, a, b), note-offs ordered before note-ons on the
    same sample so a repeated key is released and struck again. Every distinct program gets its
    own channel (drums on 9; past 15 programs they share the last channel).
    """
    events = []
    onsets = []
    free_channels = [c for c in range(16) if c != 9]
    channel_of = {}
    for inst in pm.instruments:
        prog = int(inst.program) if program is None or inst.is_drum else int(program)
        key = ("drum",) if inst.is_drum else ("prog", prog)
        if key not in channel_of:
            if inst.is_drum:
                channel_of[key] = 9
            elif free_channels:
                channel_of[key] = free_channels.pop(0)
            else:  # more than 15 distinct programs: share the last channel
                channel_of[key] = 15
            events.append((0, 0, "program", channel_of[key], prog, inst.is_drum))
        ch = channel_of[key]
        for n in inst.notes:
            if n.end <= n.start:
                continue
            onsets.append(float(n.start))
            events.append((int(round(n.start * sample_rate)), 3, "on", ch, int(n.pitch), int(n.velocity)))
            events.append((int(round(n.end * sample_rate)), 1, "off", ch, int(n.pitch), 0))
        for cc in inst.control_changes:
            events.append((int(round(cc.time * sample_rate)), 2, "cc", ch, int(cc.number), int(cc.value)))
        for pb in inst.pitch_bends:
            events.append((int(round(pb.time * sample_rate)), 2, "bend", ch, int(pb.pitch) + 8192, 0))
    if not onsets:
        raise CnnauralError("the score holds no notes to render")
    events.sort(key=lambda e: (e[0], e[1]))
    return events, onsets


def render_midi(pm, sample_rate: int = 22050, *, program: int | None = None, tail: float = 1.0,
                peak: float = 0.9):
    """Render a `pretty_midi.PrettyMIDI` with tinysoundfont, offline, sample-accurately.

    Every note-on / note-off / control change / pitch bend lands on the sample
    ``round(t * sample_rate)``; the synth is run in segments between events.

    Args:
        pm: the MIDI.
        sample_rate: output rate.
        program: if given, every non-drum instrument plays this GM program (0 = piano).
        tail: seconds rendered after the last event (release of the last notes).
        peak: the result is scaled so its largest magnitude is `peak` (None: no scaling).

    Returns:
        (waveform, onsets): float32 Tensor (n,) mono, and the sorted distinct note-on times in
        seconds (np.ndarray float64).
    """
    _, tsf = music_modules()
    sf2 = soundfont_path()
    synth = tsf.Synth(samplerate=int(sample_rate), gain=-6.0)
    try:
        sfid = synth.sfload(str(sf2))
    except Exception as e:
        raise CnnauralError(f"tinysoundfont cannot load {sf2}: {e}") from None
    events, onsets = _midi_events(pm, sample_rate, program)
    total = events[-1][0] + int(round(tail * sample_rate))
    out = np.zeros((total, 2), dtype=np.float32)
    pos = 0

    def render_to(stop):
        nonlocal pos
        while pos < stop:
            n = min(stop - pos, 65536)
            buf = synth.generate_simple(n)
            out[pos:pos + n] = np.frombuffer(buf, dtype=np.float32).reshape(n, 2)
            pos += n

    for sample, _, kind, ch, a, b in events:
        render_to(sample)
        if kind == "program":
            try:
                synth.program_select(ch, sfid, 0, a, is_drums=bool(b))
            except Exception:  # a preset the soundfont lacks: fall back to the piano
                synth.program_select(ch, sfid, 0, 0, is_drums=bool(b))
        elif kind == "on":
            synth.noteon(ch, a, b)
        elif kind == "off":
            synth.noteoff(ch, a)
        elif kind == "cc":
            synth.control_change(ch, a, b)
        else:
            synth.pitchbend(ch, a)
    render_to(total)
    mono = out.mean(axis=1)
    m = float(np.abs(mono).max())
    if peak is not None and m > 0:
        mono *= peak / m
    on = np.unique(np.round(np.asarray(onsets, dtype=np.float64), 6))
    return torch.from_numpy(np.ascontiguousarray(mono, dtype=np.float32)), on


def score_to_midi(score):
    """A music21 stream -> `pretty_midi.PrettyMIDI` (through music21's MIDI writer and a temp file)."""
    pretty_midi, _ = music_modules()
    from music21.midi import translate

    fd, tmp = tempfile.mkstemp(suffix=".mid", prefix="cnnaural-")
    os.close(fd)
    try:
        try:
            mf = translate.streamToMidiFile(score)
            mf.open(tmp, "wb")
            try:
                mf.write()
            finally:
                mf.close()
        except Exception as e:
            raise CnnauralError(f"music21 cannot turn the score into MIDI: {e}") from None
        try:
            return pretty_midi.PrettyMIDI(tmp)
        except Exception as e:
            raise CnnauralError(f"pretty_midi cannot read the MIDI music21 wrote: {e}") from None
    finally:
        os.unlink(tmp)


def render_score(score, sample_rate: int = 22050, *, program: int | None = None):
    """Render a music21 score (any Stream) to audio with ground-truth onsets.

    music21 -> MIDI -> pretty_midi -> tinysoundfont (TimGM6mb.sf2 from the pretty_midi wheel).

    Args:
        score: a music21 Stream (Score, Part, Stream of notes).
        sample_rate: output rate in Hz.
        program: force every non-drum part onto this GM program (0 = acoustic grand piano).

    Returns:
        (waveform, onsets): float32 Tensor (n,), sorted distinct MIDI note-on times in seconds
        (np.ndarray).

    Raises:
        CnnauralError: music21 / pretty_midi / tinysoundfont missing, or the score cannot be rendered.
    """
    return render_midi(score_to_midi(score), sample_rate, program=program)


def render_bwv846(sample_rate: int = 22050, cache_dir=None):
    """J.S. Bach, Prelude in C major BWV 846 (music21 corpus), rendered; ~120 s, 529 onsets.

    Args:
        sample_rate: output rate.
        cache_dir: if given, ``bwv846_<rate>.wav`` and ``bwv846_<rate>.onsets.json`` are written
            there on the first call and read back on later ones.

    Returns:
        (waveform float32 Tensor (n,), onsets np.ndarray seconds).
    """
    wav = json_path = None
    if cache_dir is not None:
        cache_dir = Path(cache_dir)
        wav = cache_dir / f"bwv846_{int(sample_rate)}.wav"
        json_path = cache_dir / f"bwv846_{int(sample_rate)}.onsets.json"
        if wav.is_file() and json_path.is_file():
            try:
                onsets = np.asarray(json.loads(json_path.read_text())["onsets"], dtype=np.float64)
                x, _ = load(wav, sample_rate)
                return x, onsets
            except Exception as e:  # a damaged cache is rebuilt, not fatal
                report(f"cnnaural: rebuilding the BWV 846 cache ({e})")
    music_modules()
    try:
        from music21 import corpus
        score = corpus.parse("bach/bwv846")
    except Exception as e:
        raise CnnauralError(f"music21 cannot parse its corpus score bach/bwv846: {e}") from None
    x, onsets = render_score(score, sample_rate)
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        save_audio(wav, x, sample_rate)
        write_text(json_path, json.dumps(
            {"piece": "J.S. Bach BWV 846 Prelude (music21 corpus bach/bwv846)",
             "sample_rate": int(sample_rate), "onsets": [float(t) for t in onsets]}))
    return x, onsets
