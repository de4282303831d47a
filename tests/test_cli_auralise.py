"""`cnnaural auralise | report | filters | info`: what they write, and user errors as one clear
line, exit status 2 and no partial files."""
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import cnnaural_ext as ca
from cnnaural_ext import cli
from cnnaural_ext.auralise import PRETRAINED, track_name, track_names
from cnnaural_ext.report import ANALYSIS
from helpers import SR, tone


def test_cli_auralise_writes_what_it_says(checkpoint, track, tmp_path, capsys):
    out = tmp_path / "out"
    rc = cli.main(["auralise", str(track), "--model", str(checkpoint), "--layers", "1,5", "--features", "0,2",
                   "--duration", "2", "--out", str(out)])
    assert rc == 0
    d = out / "tone_track"
    names = sorted(p.name for p in d.iterdir())
    for layer in (1, 5):
        for k in (0, 2):
            assert f"layer{layer}_feature{k:03d}.wav" in names and f"layer{layer}_feature{k:03d}.png" in names
        assert f"layer{layer}_figure.png" in names
    assert "original.wav" in names and "manifest.json" in names
    assert not [n for n in names if n.endswith(".part") or ".part." in n]
    audio, sr = sf.read(d / "layer1_feature002.wav")
    assert sr == SR and audio.shape == (2 * SR,) and np.abs(audio).max() > 0.5
    manifest = json.loads((d / "manifest.json").read_text())
    assert {(i["layer"], i["feature"]) for i in manifest["items"]} == {(1, 0), (1, 2), (5, 0), (5, 2)}


def test_tracks_with_the_same_name_get_their_own_folders(checkpoint, tmp_path):
    """a/song.wav and b/song.wav (and 'song!.wav', the same once made file-system-safe) do not
    overwrite each other's results."""
    paths = []
    for sub, name, f0 in [("a", "song.wav", 220.0), ("b", "song.wav", 330.0), ("a", "song!.wav", 440.0)]:
        (tmp_path / sub).mkdir(exist_ok=True)
        paths.append(tmp_path / sub / name)
        t = torch.arange(2 * SR) / SR
        sf.write(paths[-1], (0.5 * torch.sin(2 * math.pi * f0 * t)).numpy(), SR)
    assert track_names(paths) == ["song", "song_2", "song_3"]
    out = tmp_path / "out"
    assert cli.main(["auralise", *map(str, paths), "--model", str(checkpoint), "--layers", "1", "--features", "0",
                     "--out", str(out)]) == 0
    tracks = [json.loads((out / d / "manifest.json").read_text())["track"] for d in ("song", "song_2", "song_3")]
    assert tracks == [str(p) for p in paths]


def test_cli_filters_and_info(checkpoint, tmp_path, capsys):
    assert cli.main(["filters", "--model", str(checkpoint), "--out", str(tmp_path / "f.png")]) == 0
    assert (tmp_path / "f.png").stat().st_size > 1000
    assert cli.main(["info", "--model", str(checkpoint)]) == 0
    out = capsys.readouterr().out
    assert "native extension" in out and "layer 5" in out


def test_shipped_12x12_model_draws_figure2(tmp_path):
    """The shipped paper_cnn4_12x12 model: 12x12 first-layer filters with their initial weights,
    trained on the recorded split, and Figure 2 drawn from it."""
    path = PRETRAINED.parent / "paper_cnn4_12x12.pt"
    model, spec, meta = ca.io.load_checkpoint(path)
    conv = model[0][0][0]
    assert meta["arch"] == "paper_cnn4_12x12" and tuple(conv.weight.shape) == (48, 1, 12, 12)
    assert tuple(meta["initial_conv1"].shape) == tuple(conv.weight.shape)
    assert not torch.equal(meta["initial_conv1"], conv.weight)
    assert len(meta["split"]["test"]) == 14 and meta["metrics"]["baseline"] is not None
    assert spec.sample_rate == 11025 and spec.n_fft == 512
    assert path.stat().st_size <= 8_000_000
    assert cli.main(["filters", "--model", str(path), "--out", str(tmp_path / "fig2.png")]) == 0
    assert (tmp_path / "fig2.png").stat().st_size > 10_000


def _run_cli(*args):
    return subprocess.run([sys.executable, "-m", "cnnaural_ext", *args], capture_output=True, text=True)


@pytest.mark.parametrize("args, msg", [
    (["--layers", "9"], "layer 9 is out of range"),
    (["--features", "99"], "feature 99 is out of range"),
    (["--features", "top:x"], "needs an integer K"),
    (["--offset", "999"], "past the end"),
    ("MISSING", "audio file not found"),
    ("NOT_AUDIO", "cannot read audio"),
    ("BAD_CKPT", "cannot read checkpoint"),
    ("NO_CKPT", "checkpoint not found"),
])
def test_cli_user_errors(args, msg, checkpoint, track, tmp_path):
    out = tmp_path / "out"
    model, trk, extra = str(checkpoint), str(track), []
    if args == "MISSING":
        trk = str(tmp_path / "nope.ogg")
    elif args == "NOT_AUDIO":
        trk = str(tmp_path / "text.wav")
        Path(trk).write_text("not audio")
    elif args == "BAD_CKPT":
        model = str(tmp_path / "bad.pt")
        Path(model).write_bytes(b"\x00garbage")
    elif args == "NO_CKPT":
        model = str(tmp_path / "none.pt")
    else:
        extra = args
    r = _run_cli("auralise", trk, "--model", model, "--out", str(out), *extra)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cnnaural: error:") and msg in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    leftovers = [p for p in out.rglob("*") if p.is_file() and p.suffix in (".wav", ".png")] if out.exists() else []
    assert not leftovers


@pytest.mark.audio
def test_real_audio_end_to_end_with_the_shipped_model(tmp_path):
    """The shipped model auralises a real orchestral track through the CLI."""
    tracks = sorted(Path("/usr/share/games/wesnoth/1.16/data/core/music").glob("*.ogg"))
    if not tracks:
        pytest.skip("wesnoth-1.16-music is not installed (scripts/install_data.sh)")
    if not PRETRAINED.is_file():
        pytest.fail("the shipped model is missing")
    out = tmp_path / "real"
    rc = cli.main(["auralise", str(tracks[0]), "--layers", "1,5", "--features", "top:2", "--offset", "20",
                   "--out", str(out)])
    assert rc == 0
    d = out / track_name(tracks[0])
    manifest = json.loads((d / "manifest.json").read_text())
    assert len(manifest["items"]) == 4
    orig, sr = sf.read(d / "original.wav")
    assert sr == 11025 and orig.shape == (4 * 11025,)
    for item in manifest["items"]:
        a, _ = sf.read(d / item["audio"])
        assert a.shape == orig.shape and np.isfinite(a).all() and np.abs(a).max() > 0.5
        # an auralised feature is a filtered version of the original: correlated with it
        assert abs(np.corrcoef(a, orig)[0, 1]) > 0.05 or item["layer"] > 1


@pytest.mark.audio
def test_demo_runs_and_writes_what_the_readme_says(tmp_path):
    """`make demo`'s script: BWV 846 plus real tracks with the shipped model, and the gallery's
    figure and analysis sections (the corpus's test split for the class selectivity)."""
    if not Path("/usr/share/games/wesnoth/1.16/data/core/music").is_dir():
        pytest.skip("the Debian music packages are not installed (scripts/install_data.sh)")
    pytest.importorskip("music21")
    import runpy

    root = Path(__file__).resolve().parents[1]
    demo = runpy.run_path(str(root / "scripts" / "demo.py"))
    corpus = root / "data" / "corpus"  # built by the demo on its first run, as `make demo` does
    assert demo["main"](["--out", str(tmp_path), "--features", "top:2", "--data", str(corpus)]) == 0
    analysis = tmp_path / ANALYSIS
    assert (analysis / "figure3_bwv846.png").stat().st_size > 10_000
    assert {"figure2_filters.png", "onsets.md", "selectivity.png", "selectivity.md"} <= {p.name for p in analysis.iterdir()}
    page = (tmp_path / "index.html").read_text()
    assert "<audio" in page and all(f'<section id="{s}">' in page for s in ("figure2", "onsets", "selectivity"))
    folders = [d for d in tmp_path.iterdir() if d.is_dir() and d != analysis]
    assert len(folders) == 3  # BWV 846, one orchestral, one electronic track
    for d in folders:
        names = {p.name for p in d.iterdir()}
        assert {"original.wav", "manifest.json", "layer1_figure.png", "layer5_figure.png"} <= names
        assert len([n for n in names if n.endswith(".wav")]) == 1 + 2 * 2


def test_cli_report_writes_an_escaped_gallery(checkpoint, tmp_path):
    import html
    import re
    from urllib.parse import unquote

    evil = tmp_path / "<script>alert(1)</script>.wav"  # '/' makes it a folder and a file: both hostile
    evil.parent.mkdir()
    sf.write(evil, tone(2.5).numpy(), SR)
    out = tmp_path / "gallery"
    assert cli.main(["report", str(evil), "--model", str(checkpoint), "--layers", "1,5", "--features", "0,1",
                     "--duration", "2", "--out", str(out)]) == 0
    page = (out / "index.html").read_text()
    assert "<script>" not in page
    assert html.escape("<script>alert(1)</script>.wav") in page
    sources = re.findall(r'src="([^"]+)"', page)
    assert len([s for s in sources if s.endswith(".wav")]) == 1 + 2 * 2
    assert len([s for s in sources if s.endswith(".png")]) == 2 * 2 + 2
    for s in sources:
        assert (out / unquote(s)).is_file(), s


def test_old_layer_spelling_still_works_with_a_warning(checkpoint, track, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["auralise", str(track), "--model", str(checkpoint), "--layer", "5", "--features", "0",
                     "--duration", "1", "--format", "flac", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "--layer is deprecated" in err and "use --layers" in err
    manifest = json.loads((out / "tone_track" / "manifest.json").read_text())
    assert [(i["layer"], i["audio"]) for i in manifest["items"]] == [(5, "layer5_feature000.flac")]
    assert (out / "tone_track" / "original.flac").is_file()


def test_help_names_every_command():
    text = cli.build_parser().format_help()
    for command in ("info", "auralise", "report", "filters", "onsets", "selectivity", "dataset", "train", "crossval"):
        assert command in text
