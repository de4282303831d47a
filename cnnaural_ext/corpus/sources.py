"""A folder-per-class corpus of real audio built from installed Debian packages (see DATA.md).

orchestral: wesnoth-1.16-music, electronic: warzone2100-music, speech: klettres-data, and an
optional piano class rendered from music21 corpus scores.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import CnnauralError
from ..io.audio import load, save_audio
from ..io.console import progress_bar, report
from .render import music_modules, render_score
from .splits import AUDIO_EXTENSIONS

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
    _need(KLETTRES, "klettres-data")
    langs = sorted(d for d in KLETTRES.iterdir()
                   if d.is_dir() and (list(d.glob("alpha/*.ogg")) or list(d.glob("syllab/*.ogg"))))
    if not langs:
        raise CnnauralError(f"no klettres speech clips under {KLETTRES}: {_INSTALL_HINT}")
    silence = torch.zeros(int(round(gap * sample_rate)))
    made = 0
    for lang in progress_bar(langs, progress, "speech (klettres)"):
        dst = out / f"klettres_{lang.name}.wav"
        if dst.exists():
            continue
        parts = []
        for clip in sorted(lang.glob("alpha/*.ogg")) + sorted(lang.glob("syllab/*.ogg")):
            try:
                x, _ = load(clip, sample_rate)
            except CnnauralError as e:
                report(f"cnnaural: skipping {clip}: {e}")
                continue
            parts += [x, silence]
        if parts:
            save_audio(dst, torch.cat(parts), sample_rate, subtype="PCM_16")
            made += 1
    return made


def _piano(out: Path, scores, sample_rate: int = 22050, progress: bool = True) -> int:
    """One WAV per music21 corpus score, rendered with a GM piano."""
    music_modules()
    from music21 import corpus

    made = 0
    for name in progress_bar(list(scores), progress, "piano (music21)"):
        dst = out / (name.replace("/", "_") + ".wav")
        if dst.exists():
            continue
        try:
            score = corpus.parse(name)
        except Exception as e:
            report(f"cnnaural: skipping music21 score {name}: {e}")
            continue
        try:
            x, _ = render_score(score, sample_rate, program=0)
        except CnnauralError as e:
            report(f"cnnaural: skipping music21 score {name}: {e}")
            continue
        save_audio(dst, x, sample_rate, subtype="PCM_16")
        made += 1
    return made


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
        music_modules()
    out = Path(out_dir)
    counts = {}
    for c in classes:
        d = out / c
        d.mkdir(parents=True, exist_ok=True)
        made = builders[c](d)
        counts[c] = sum(1 for f in d.iterdir() if f.suffix.lower() in AUDIO_EXTENSIONS)
        print(f"{c:>11}: {counts[c]} tracks in {d} ({made} new)")
    return counts
