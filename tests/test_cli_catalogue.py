"""`cnnaural catalogue`: exit codes (0, 1 when tracks failed, 2 for user errors) and --status."""
from catalogue_helpers import add_bad_files, make_tree
from cnnaural_ext.cli import main


def test_catalogue_exit_codes_and_status(tmp_path, checkpoint, capsys):
    src = make_tree(tmp_path / "src", {"a/intro.wav": 2.0, "b/intro.wav": 2.0})
    out = tmp_path / "out"
    base = ["catalogue", str(src), "--out", str(out), "--model", str(checkpoint), "--layers", "1,5",
            "--features", "top:2", "--duration", "1", "--workers", "0", "--no-progress"]
    assert main(base) == 0
    assert "2 ok, 0 error, 0 skipped" in capsys.readouterr().err
    add_bad_files(src)
    assert main(base) == 1  # failures happened
    err = capsys.readouterr().err
    assert "0 ok, 4 error, 2 skipped" in err and "2 done before" in err
    assert main(base) == 0  # nothing failed in this run; the old errors are counted
    assert "4 earlier errors not retried (--retry-failed)" in capsys.readouterr().err
    assert main([*base, "--retry-failed"]) == 1

    assert main(["catalogue", "--status", str(out)]) == 0
    text = capsys.readouterr().out
    assert "8 tracks: 2 ok, 4 error, 2 skipped, 0 pending" in text
    assert "layers [1, 5], features top:2" in text
    assert "error: bad/corrupt.wav: CnnauralError: cannot read audio" in text

    assert main([*base, "--layers", "1"]) == 2  # another config (the last --layers wins)
    assert "another config (layers: [1, 5] there, [1] here)" in capsys.readouterr().err
    assert main(["catalogue", "--status", str(tmp_path / "nothing")]) == 2
    assert "is not a catalogue" in capsys.readouterr().err
    assert main(["catalogue", "--out", str(out)]) == 2
    assert "needs SRC and --out" in capsys.readouterr().err
    assert main(["catalogue", str(tmp_path / "missing"), "--out", str(out), "--model", str(checkpoint)]) == 2
    assert main(["catalogue", str(src), "--out", str(out), "--shard", "3/2", "--model", str(checkpoint)]) == 2
    assert "shard 3/2 is out of range" in capsys.readouterr().err
    assert main(["catalogue", str(src), "--out", str(out), "--batch-size", "0", "--model", str(checkpoint)]) == 2
    assert "--batch-size must be an integer >= 1" in capsys.readouterr().err


def test_catalogue_list_file_and_wav(tmp_path, checkpoint, capsys):
    src = make_tree(tmp_path / "src", {"x/a.wav": 2.0, "y/a.wav": 2.0})
    (src / "list.txt").write_text("x/a.wav\ny/a.wav\n")
    out = tmp_path / "out"
    assert main(["catalogue", str(src / "list.txt"), "--out", str(out), "--model", str(checkpoint), "--format", "wav",
                 "--features", "0", "--figures", "--workers", "0", "--no-progress"]) == 0
    for rel in ("x/a", "y/a"):
        names = {p.name for p in (out / "audio" / rel).iterdir()}
        assert {"original.wav", "layer1_feature000.wav", "layer1_feature000.png", "layer1_figure.png",
                "manifest.json"} <= names
