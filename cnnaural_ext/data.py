"""Real audio for training and demos: rendered scores, a folder-per-class corpus, cached clips.

* `render_score` / `render_bwv846`: a music21 score -> MIDI -> audio (tinysoundfont with the
  General MIDI soundfont shipped in the pretty_midi wheel), with the MIDI note-on times as exact
  ground-truth onsets.
* `prepare_corpus`: builds ``OUT/<class>/<track>`` from the Debian packages listed in DATA.md
  (orchestral: wesnoth, electronic: warzone2100, speech: klettres, optional piano: music21).
* `scan_tracks`, `split_by_track`: a corpus on disk -> tracks -> train/val/test by *track*.
* `ClipCache`, `ClipDataset`: fixed clips of every track, turned into network inputs once and
  kept as one ``.npy`` per track on disk (memory-mapped), so epochs and reruns do no STFT.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from .errors import CnnauralError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus", ".mp3")
DEFAULT_CLASSES = ("orchestral", "electronic", "speech")
#: music21 corpus scores rendered (with a piano) for the optional "piano" class. BWV 846 is left
#: out on purpose: it is the demo track, so a model trained on this class never heard it.
DEFAULT_PIANO_SCORES = (
    "joplin/maple_leaf_rag", "mozart/k545/movement1_exposition", "schumann_clara/polonaise_op1n1",
    "schumann_robert/dichterliebe_no2", "schubert/Lindenbaum", "bach/bwv66.6", "bach/bwv7.7",
    "bach/bwv269", "bach/bwv347", "bach/bwv153.1",
)
WESNOTH_MUSIC = Path("/usr/share/games/wesnoth/1.16/data/core/music")
WARZONE_MUSIC = Path("/usr/share/games/warzone2100/music")
KLETTRES = Path("/usr/share/klettres")
_INSTALL_HINT = "run scripts/install_data.sh (apt-get install --no-install-recommends " \
                "wesnoth-1.16-music warzone2100-music klettres-data)"
_MUSIC_HINT = "pip install music21 pretty_midi && pip install --no-deps tinysoundfont"


def _report(msg: str) -> None:
    """One line on stderr that does not break a running tqdm bar."""
    try:
        from tqdm import tqdm
        tqdm.write(msg, file=sys.stderr)
    except Exception:  # pragma: no cover - tqdm is a dependency
        print(msg, file=sys.stderr)


# ------------------------------------------------------------------------------------------------
# Rendering scores
# ------------------------------------------------------------------------------------------------
def _music_modules():
    try:
        import music21  # noqa: F401
        import pretty_midi
        import tinysoundfont
    except ImportError as e:
        raise CnnauralError(f"{e.name} is not installed: {_MUSIC_HINT}") from None
    return pretty_midi, tinysoundfont


def soundfont_path() -> Path:
    """The General MIDI soundfont TimGM6mb.sf2 that ships inside the pretty_midi wheel."""
    pretty_midi, _ = _music_modules()
    sf2 = Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"
    if not sf2.is_file():
        raise CnnauralError(f"the soundfont {sf2} is missing from the pretty_midi install: "
                            f"reinstall it (pip install --force-reinstall pretty_midi)")
    return sf2


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
    _, tsf = _music_modules()
    sf2 = soundfont_path()
    synth = tsf.Synth(samplerate=int(sample_rate), gain=-6.0)
    try:
        sfid = synth.sfload(str(sf2))
    except Exception as e:
        raise CnnauralError(f"tinysoundfont cannot load {sf2}: {e}") from None

    # (sample, order, kind, channel, a, b): note-offs before note-ons on the same sample so a
    # repeated key is released and struck again.
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
    pretty_midi, _ = _music_modules()
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
    from .audio import atomic_write, load, save_wav

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
                _report(f"cnnaural: rebuilding the BWV 846 cache ({e})")
    _music_modules()
    try:
        from music21 import corpus
        score = corpus.parse("bach/bwv846")
    except Exception as e:
        raise CnnauralError(f"music21 cannot parse its corpus score bach/bwv846: {e}") from None
    x, onsets = render_score(score, sample_rate)
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        save_wav(wav, x, sample_rate)
        atomic_write(json_path, lambda tmp: Path(tmp).write_text(json.dumps(
            {"piece": "J.S. Bach BWV 846 Prelude (music21 corpus bach/bwv846)",
             "sample_rate": int(sample_rate), "onsets": [float(t) for t in onsets]})))
    return x, onsets


# ------------------------------------------------------------------------------------------------
# Building the corpus from the Debian packages
# ------------------------------------------------------------------------------------------------
def _symlink(src: Path, dst: Path) -> bool:
    if dst.is_symlink() or dst.exists():
        return False
    dst.symlink_to(src)
    return True


def _need(path: Path, package: str) -> None:
    if not path.is_dir():
        raise CnnauralError(f"{path} is missing (Debian package {package}): {_INSTALL_HINT}")


def _orchestral(out: Path) -> int:
    _need(WESNOTH_MUSIC, "wesnoth-1.16-music")
    files = sorted(WESNOTH_MUSIC.glob("*.ogg"))
    if not files:
        raise CnnauralError(f"no .ogg files in {WESNOTH_MUSIC}: {_INSTALL_HINT}")
    return sum(_symlink(f, out / f.name) for f in files)


def _electronic(out: Path) -> int:
    _need(WARZONE_MUSIC, "warzone2100-music")
    files = sorted(WARZONE_MUSIC.glob("albums/*/*.opus"))
    if (WARZONE_MUSIC / "menu.opus").is_file():
        files.append(WARZONE_MUSIC / "menu.opus")
    if not files:
        raise CnnauralError(f"no .opus files under {WARZONE_MUSIC}: {_INSTALL_HINT}")
    made = 0
    for f in files:
        name = f.name if f.parent == WARZONE_MUSIC else f"{f.parent.name}__{f.name}"
        made += _symlink(f, out / name)
    return made


def _speech(out: Path, sample_rate: int = 22050, gap: float = 0.3, progress: bool = True) -> int:
    """One WAV per klettres language: its alpha + syllab clips, resampled, joined by silence."""
    from .audio import load, save_wav

    _need(KLETTRES, "klettres-data")
    langs = sorted(d for d in KLETTRES.iterdir()
                   if d.is_dir() and (list(d.glob("alpha/*.ogg")) or list(d.glob("syllab/*.ogg"))))
    if not langs:
        raise CnnauralError(f"no klettres speech clips under {KLETTRES}: {_INSTALL_HINT}")
    silence = torch.zeros(int(round(gap * sample_rate)))
    made = 0
    for lang in _progress(langs, progress, "speech (klettres)"):
        dst = out / f"klettres_{lang.name}.wav"
        if dst.exists():
            continue
        parts = []
        for clip in sorted(lang.glob("alpha/*.ogg")) + sorted(lang.glob("syllab/*.ogg")):
            try:
                x, _ = load(clip, sample_rate)
            except CnnauralError as e:
                _report(f"cnnaural: skipping {clip}: {e}")
                continue
            parts += [x, silence]
        if parts:
            save_wav(dst, torch.cat(parts), sample_rate, subtype="PCM_16")
            made += 1
    return made


def _piano(out: Path, scores, sample_rate: int = 22050, progress: bool = True) -> int:
    from .audio import save_wav

    _music_modules()
    from music21 import corpus

    made = 0
    for name in _progress(list(scores), progress, "piano (music21)"):
        dst = out / (name.replace("/", "_") + ".wav")
        if dst.exists():
            continue
        try:
            score = corpus.parse(name)
        except Exception as e:
            _report(f"cnnaural: skipping music21 score {name}: {e}")
            continue
        try:
            x, _ = render_score(score, sample_rate, program=0)
        except CnnauralError as e:
            _report(f"cnnaural: skipping music21 score {name}: {e}")
            continue
        save_wav(dst, x, sample_rate, subtype="PCM_16")
        made += 1
    return made


def _progress(items, enabled, desc):
    if not enabled:
        return items
    from tqdm import tqdm
    return tqdm(items, desc=desc, unit="file", leave=False)


def prepare_corpus(out_dir, classes=DEFAULT_CLASSES, piano_scores=DEFAULT_PIANO_SCORES, *,
                   sample_rate: int = 22050, progress: bool = True) -> dict:
    """Build a folder-per-class corpus ``out_dir/<class>/<track>`` from installed sources.

    * orchestral: symlinks to the 41 wesnoth ``*.ogg`` tracks (wesnoth-1.16-music);
    * electronic: symlinks to the warzone2100 ``albums/*/*.opus`` and ``menu.opus`` (warzone2100-music);
    * speech: one WAV per klettres language (klettres-data), its alpha + syllab clips resampled
      to `sample_rate` mono and joined with 0.3 s of silence, so one track is one language;
    * piano (only if in `classes`): `piano_scores` from the music21 corpus rendered once each
      with a GM piano.

    Idempotent: what exists already is kept. Progress is printed.

    Returns:
        {class: number of tracks in its folder}.

    Raises:
        CnnauralError: unknown class, or a source package that is not installed.
    """
    builders = {"orchestral": _orchestral, "electronic": _electronic,
                "speech": lambda d: _speech(d, sample_rate, progress=progress),
                "piano": lambda d: _piano(d, piano_scores, sample_rate, progress=progress)}
    classes = list(classes)
    unknown = [c for c in classes if c not in builders]
    if unknown:
        raise CnnauralError(f"unknown corpus class(es) {', '.join(unknown)} (known: {', '.join(builders)})")
    # check every source before writing anything
    for c, (path, pkg) in {"orchestral": (WESNOTH_MUSIC, "wesnoth-1.16-music"),
                           "electronic": (WARZONE_MUSIC, "warzone2100-music"),
                           "speech": (KLETTRES, "klettres-data")}.items():
        if c in classes:
            _need(path, pkg)
    if "piano" in classes:
        _music_modules()
    out = Path(out_dir)
    counts = {}
    for c in classes:
        d = out / c
        d.mkdir(parents=True, exist_ok=True)
        made = builders[c](d)
        counts[c] = sum(1 for f in d.iterdir() if f.suffix.lower() in AUDIO_EXTENSIONS)
        print(f"{c:>11}: {counts[c]} tracks in {d} ({made} new)")
    return counts


# ------------------------------------------------------------------------------------------------
# Tracks and splits
# ------------------------------------------------------------------------------------------------
def scan_tracks(data_dir):
    """List the tracks of a folder-per-class corpus.

    Every non-hidden sub-folder holding audio files (wav, flac, ogg, opus, mp3; searched
    recursively) is a class named after the folder.

    Returns:
        sorted list of (Path, class_name); class names are sorted too (`class_names`).

    Raises:
        CnnauralError: `data_dir` is not a folder or holds no class folder with audio.
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise CnnauralError(f"data folder not found: {root} (make one with `cnnaural dataset {root}`)")
    tracks = []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(f for f in d.rglob("*")
                       if f.suffix.lower() in AUDIO_EXTENSIONS and f.is_file()
                       and not any(part.startswith(".") for part in f.relative_to(d).parts))
        tracks += [(f, d.name) for f in files]
    if not tracks:
        raise CnnauralError(f"no class folders with audio in {root}: expected one sub-folder per class "
                            f"holding {'/'.join(e[1:] for e in AUDIO_EXTENSIONS)} files "
                            f"(make a corpus with `cnnaural dataset {root}`)")
    return tracks


def class_names(tracks):
    """Sorted distinct class names of a track list."""
    return sorted({c for _, c in tracks})


_VARIANT_SUFFIX = re.compile(r"([ _-]+(enhanced|old|remix|remastered|edit|alt|version))+$")


def track_group(path) -> str:
    """Key that keeps versions of one piece together in a split.

    The lower-cased file stem without an album prefix ``<album>__`` (as `prepare_corpus` names
    the warzone2100 tracks) and without variant suffixes (``_enhanced``, ``-old``, ``_remix``,
    ...): ``menu.opus`` and ``aftermath_soundtrack__menu_enhanced.opus`` share the key ``menu``,
    ``frantic.ogg`` and ``frantic-old.ogg`` share ``frantic``.
    """
    stem = Path(path).stem.lower().split("__")[-1]
    return _VARIANT_SUFFIX.sub("", stem) or stem


def _class_groups(tracks, c, group):
    """The tracks of class `c` grouped by ``group(path)`` (None: one group per track): (sorted keys, {key: tracks})."""
    groups = {}
    for t in sorted((t for t in tracks if t[1] == c), key=lambda t: str(t[0])):
        groups.setdefault(group(t[0]) if group is not None else str(t[0]), []).append(t)
    return sorted(groups), groups


def split_by_track(tracks, val: float = 0.15, test: float = 0.15, seed: int = 0, group=track_group):
    """Split tracks into train / val / test, stratified per class, no track in two splits.

    Tracks of one class with the same ``group(path)`` (versions of one piece, see `track_group`;
    ``group=None`` makes every track its own group) always land in the same split, so a remix
    of a test track is never trained on. Per class, with g groups: g >= 3 gives
    max(1, round(g * test)) test and max(1, round(g * val)) validation groups (at least one
    training group is always kept); g == 2 gives one training and one test group; g == 1 only
    training. The assignment is a seeded permutation, deterministic for a given `seed`.

    Returns:
        {"train": [...], "val": [...], "test": [...]}: lists of (Path, class_name), sorted.
    """
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise CnnauralError(f"val and test fractions must be in [0, 1) with val + test < 1 (got {val}, {test})")
    rng = np.random.default_rng(seed)
    out = {"train": [], "val": [], "test": []}
    for c in class_names(tracks):
        keys, groups = _class_groups(tracks, c, group)
        n = len(keys)
        keys = [keys[i] for i in rng.permutation(n)]
        if n >= 3:
            n_test = max(1, int(round(n * test))) if test > 0 else 0
            n_val = max(1, int(round(n * val))) if val > 0 else 0
            while n_test + n_val > n - 1:
                if (n_val >= n_test and n_val > 1) or n_test <= 1:
                    n_val -= 1
                else:
                    n_test -= 1
        elif n == 2:
            n_test, n_val = (1 if test > 0 else 0), 0
        else:
            n_test, n_val = 0, 0
        for i, k in enumerate(keys):
            part = "test" if i < n_test else "val" if i < n_test + n_val else "train"
            out[part] += groups[k]
    return {k: sorted(v, key=lambda t: (t[1], str(t[0]))) for k, v in out.items()}


def fold_splits(tracks, folds: int = 5, val: float = 0.15, seed: int = 0, group=track_group):
    """K-fold cross-validation splits by track: every track is in exactly one test fold.

    Per class, the groups of tracks (`track_group`: versions of one piece stay together) are
    dealt in a seeded random order onto the `folds` folds, so each fold holds about 1/folds of
    every class. For fold i the test split is fold i; of the remaining groups of each class,
    max(1, round(g * val)) (g: the class's groups) are drawn as validation, at least one is
    kept for training.

    Returns:
        a list of `folds` dicts {"train", "val", "test"} of sorted (Path, class_name) lists.

    Raises:
        CnnauralError: folds < 2, val outside [0, 1), or a class with too few groups: fewer
            than `folds` (a test fold without that class), or so few that a fold would keep no
            training (or, with val > 0, no validation) group.
    """
    if int(folds) != folds or folds < 2:
        raise CnnauralError(f"folds must be an integer >= 2 (got {folds})")
    if not 0 <= val < 1:
        raise CnnauralError(f"the validation fraction must be in [0, 1) (got {val})")
    folds = int(folds)
    rng = np.random.default_rng(seed)
    out = [{"train": [], "val": [], "test": []} for _ in range(folds)]
    for c in class_names(tracks):
        keys, groups = _class_groups(tracks, c, group)
        n = len(keys)
        left = 2 if val > 0 else 1  # pieces each fold must keep out of its test split
        if n < folds or n - math.ceil(n / folds) < left:
            raise CnnauralError(f"class {c!r} has {n} distinct pieces; {folds}-fold cross-validation needs at "
                                f"least {max(folds, left + 1)} (one per test fold, with training"
                                f"{' and validation' if val > 0 else ''} pieces left in every fold): "
                                "use fewer --folds or add tracks")
        keys = [keys[i] for i in rng.permutation(n)]
        n_val = max(1, int(round(n * val))) if val > 0 else 0
        for i, split in enumerate(out):
            test_keys = keys[i::folds]
            rest = [k for k in keys if k not in test_keys]
            rest = [rest[j] for j in rng.permutation(len(rest))]
            k_val = min(n_val, len(rest) - 1)
            split["test"] += [t for k in test_keys for t in groups[k]]
            split["val"] += [t for k in rest[:k_val] for t in groups[k]]
            split["train"] += [t for k in rest[k_val:] for t in groups[k]]
    return [{k: sorted(v, key=lambda t: (t[1], str(t[0]))) for k, v in split.items()} for split in out]


# ------------------------------------------------------------------------------------------------
# Clips cached as network inputs
# ------------------------------------------------------------------------------------------------
def default_cache_dir() -> Path:
    """``$CNNAURAL_CACHE`` or ``$XDG_CACHE_HOME/cnnaural`` (default ``~/.cache/cnnaural``)."""
    if os.environ.get("CNNAURAL_CACHE"):
        return Path(os.environ["CNNAURAL_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "cnnaural"


def clip_offsets(duration: float, clip_seconds: float, clips_per_track: int):
    """Start times (s) of the clips of a track: `clips_per_track` evenly spaced over the track,
    fewer (non-overlapping, evenly spaced) when the track is shorter than that many clips, one
    clip at 0 when it is shorter than one clip (that clip is zero-padded)."""
    n = min(int(clips_per_track), max(1, int(math.floor(duration / clip_seconds + 1e-9))))
    last = max(0.0, duration - clip_seconds)
    if n == 1:
        return [0.0] if duration <= clip_seconds else [last / 2]
    return [last * i / (n - 1) for i in range(n)]


class ClipCache:
    """Fixed clips of every track as network inputs, computed once and kept on disk.

    For a track of duration d, `clip_offsets` picks up to `clips_per_track` clips of
    `clip_seconds` evenly spaced over it; each is loaded at the Spectrogram's sample rate
    (mono), cut/zero-padded to exactly ``int(clip_seconds * sample_rate)`` samples and turned
    into the network input (float32 (F', T)). A track shorter than one clip gives one clip,
    zero-padded at the end; a track shorter than `min_seconds` (default: a quarter of a clip)
    is skipped with a warning. The clips of a track are one ``.npy`` (n_clips, F', T) under
    ``cache_dir/<key>/`` where key hashes the Spectrogram config and the clip settings; the file
    name hashes the track's resolved path, size and mtime, so an edited file is recomputed.
    Arrays are opened with ``np.load(mmap_mode='r')``.

    A file that cannot be read is reported on stderr (one line), recorded in `skipped` and
    left out; it is never fatal.

    Attributes:
        computed / reused (int): tracks whose clips were computed / read from the cache.
        skipped (list): (path, reason) of the tracks left out.
    """

    VERSION = "clipcache/1"

    def __init__(self, spectrogram, cache_dir=None, *, clip_seconds: float = 4.0,
                 clips_per_track: int = 10, min_seconds: float | None = None, progress: bool = True):
        if clip_seconds <= 0 or clips_per_track < 1:
            raise CnnauralError(f"clip_seconds must be > 0 and clips_per_track >= 1 "
                                f"(got {clip_seconds}, {clips_per_track})")
        self.spectrogram = spectrogram
        self.clip_seconds = float(clip_seconds)
        self.clips_per_track = int(clips_per_track)
        self.min_seconds = self.clip_seconds / 4 if min_seconds is None else float(min_seconds)
        self.n_samples = int(self.clip_seconds * spectrogram.sample_rate)
        self.progress = progress
        settings = dict(version=self.VERSION, spectrogram=spectrogram.config(),
                        clip_seconds=self.clip_seconds, clips_per_track=self.clips_per_track,
                        n_samples=self.n_samples)
        self.key = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
        self.directory = Path(cache_dir if cache_dir is not None else default_cache_dir()) / self.key
        self.computed = 0
        self.reused = 0
        self.skipped = []
        self._settings = settings

    @property
    def shape(self):
        """(F', T) of one clip."""
        return (self.spectrogram.n_bins, self.spectrogram.n_frames(self.n_samples))

    def path_for(self, track) -> Path:
        track = Path(track)
        real = track.resolve()
        st = real.stat()
        h = hashlib.sha1(f"{real}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()[:16]
        stem = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in track.stem)[:40]
        return self.directory / f"{stem}-{h}.npy"

    def _compute(self, track: Path) -> np.ndarray:
        import soundfile as sf
        from .audio import load

        try:
            info = sf.info(str(track))
            duration = info.frames / info.samplerate
        except Exception as e:
            raise CnnauralError(f"cannot read audio from {track}: {str(e).strip().splitlines()[0]}") from None
        if duration < self.min_seconds:
            raise CnnauralError(f"{track} is {duration:.2f} s long, shorter than {self.min_seconds:g} s")
        sr = self.spectrogram.sample_rate
        clips = []
        for off in clip_offsets(duration, self.clip_seconds, self.clips_per_track):
            x, _ = load(track, sr, offset=off, duration=self.clip_seconds)
            x = x[: self.n_samples]
            if x.shape[0] < self.n_samples:
                x = torch.nn.functional.pad(x, (0, self.n_samples - x.shape[0]))
            clips.append(x)
        with torch.no_grad():
            _, s = self.spectrogram(torch.stack(clips))
        return np.ascontiguousarray(s.numpy(), dtype=np.float32)

    def get(self, track):
        """The clips of one track, (n_clips, F', T) float32 memory-mapped; None if unreadable."""
        from .audio import atomic_write

        track = Path(track)
        try:
            dst = self.path_for(track)
        except OSError as e:
            return self._skip(track, f"cannot stat it ({e.strerror or e})")
        if dst.is_file():
            try:
                arr = np.load(dst, mmap_mode="r")
                if arr.ndim == 3 and arr.shape[1:] == self.shape and arr.dtype == np.float32:
                    self.reused += 1
                    return arr
            except Exception:
                pass  # damaged cache entry: recompute it
        try:
            arr = self._compute(track)
        except CnnauralError as e:
            return self._skip(track, str(e))
        self.directory.mkdir(parents=True, exist_ok=True)
        settings = self.directory / "settings.json"
        if not settings.is_file():
            atomic_write(settings, lambda tmp: Path(tmp).write_text(json.dumps(self._settings, indent=1)))

        def write(tmp):
            with open(tmp, "wb") as f:
                np.save(f, arr)

        atomic_write(dst, write)
        self.computed += 1
        return np.load(dst, mmap_mode="r")

    def _skip(self, track, reason):
        self.skipped.append((Path(track), reason))
        _report(f"cnnaural: skipping {track}: {reason}")
        return None

    def load(self, tracks, desc: str = "clips"):
        """`get` for every track (paths or (path, class) pairs), with a tqdm bar.

        Returns:
            list of arrays (or None for a skipped track), aligned with `tracks`.
        """
        paths = [t[0] if isinstance(t, (tuple, list)) else t for t in tracks]
        it = paths
        if self.progress:
            from tqdm import tqdm
            it = tqdm(paths, desc=desc, unit="track", leave=False)
        return [self.get(p) for p in it]


class ClipDataset(torch.utils.data.Dataset):
    """Every cached clip of a list of tracks: items (clip (1, F', T) float32, label, track index).

    Args:
        tracks: list of (path, class_name).
        classes: the class names; label = classes.index(class_name).
        cache: a `ClipCache`. Unreadable tracks are skipped (see `ClipCache`); `tracks` keeps
            the ones that made it, and the track index of an item refers to that list.
    """

    def __init__(self, tracks, classes, cache: ClipCache, desc: str = "clips"):
        classes = list(classes)
        arrays = cache.load(tracks, desc=desc)
        self.tracks, self.arrays, self.labels = [], [], []
        for (path, c), arr in zip(tracks, arrays):
            if arr is None:
                continue
            if c not in classes:
                raise CnnauralError(f"track {path} has class {c!r}, not one of {classes}")
            self.tracks.append((Path(path), c))
            self.arrays.append(arr)
            self.labels.append(classes.index(c))
        self.classes = classes
        self.index = [(i, j) for i, a in enumerate(self.arrays) for j in range(a.shape[0])]

    def __len__(self):
        return len(self.index)

    def __getitem__(self, k):
        i, j = self.index[k]
        x = torch.from_numpy(np.array(self.arrays[i][j], dtype=np.float32))
        return x.unsqueeze(0), self.labels[i], i

    def track_labels(self):
        return list(self.labels)


# ------------------------------------------------------------------------------------------------
# CLI: cnnaural dataset OUT_DIR [--piano]
# ------------------------------------------------------------------------------------------------
def add_arguments(parser):
    """Arguments of `cnnaural dataset`."""
    parser.add_argument("out_dir", metavar="OUT_DIR", help="folder to build the corpus in (one sub-folder per class)")
    parser.add_argument("--piano", action="store_true",
                        help="add a 'piano' class rendered from music21 corpus scores (needs music21, pretty_midi, tinysoundfont)")
    parser.add_argument("--classes", default=",".join(DEFAULT_CLASSES),
                        help="comma-separated classes among orchestral,electronic,speech,piano "
                             f"(default: {','.join(DEFAULT_CLASSES)})")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def run(args) -> int:
    """`cnnaural dataset`: build the corpus; returns the exit code."""
    classes = [c.strip() for c in str(args.classes).split(",") if c.strip()]
    if getattr(args, "piano", False) and "piano" not in classes:
        classes.append("piano")
    counts = prepare_corpus(args.out_dir, classes, progress=not getattr(args, "no_progress", False))
    print(f"corpus ready in {args.out_dir}: " + ", ".join(f"{c} {n}" for c, n in counts.items()))
    return 0
