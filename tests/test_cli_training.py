"""`cnnaural dataset`, `cnnaural train` and `cnnaural crossval` (cli.corpus, cli.training): parsing,
the recorded recipe, the renamed options (old spellings still work, with a warning) and exit codes."""
from __future__ import annotations

import argparse

import pytest

from cnnaural_ext.cli import corpus as corpus_cli
from cnnaural_ext.cli import main
from cnnaural_ext.cli import training as training_cli
from cnnaural_ext.errors import CnnauralError
from cnnaural_ext.io.checkpoint import load_checkpoint


def _parser():
    """A `cnnaural`-like parser with only the commands of cli.corpus and cli.training."""
    parser = argparse.ArgumentParser(prog="cnnaural")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    corpus_cli.register(sub)
    training_cli.register(sub)
    return parser


def _small(tiny, cache_dir):
    """Options of a one-epoch run of a tiny model on the synthetic corpus."""
    return ["--dense", "16", "--sample-rate", str(tiny.sr), "--n-fft", "256", "--hop-length", "128",
            "--clip-seconds", "1", "--clips-per-track", "2", "--epochs", "1", "--threads", "1",
            "--cache-dir", str(cache_dir), "--no-progress"]


def test_register_adds_the_commands_with_their_help():
    help_text = " ".join(_parser().format_help().split())
    assert "dataset build a folder-per-class corpus of real music from the Debian packages" in help_text
    assert "train train a paper CNN on a folder-per-class corpus" in help_text
    assert ("crossval k-fold cross-validation by track of a paper CNN against the linear log-mel baseline "
            "(every track tested once)") in help_text
    args = _parser().parse_args(["train", "data", "--out", "m.pt"])
    assert args.func is training_cli.run
    assert (args.width, args.compression, args.random_seed) == (48, 1.0, 0)
    args = _parser().parse_args(["crossval", "data", "--out", "cv"])
    assert args.func is training_cli.run_crossval and args.folds == 5
    args = _parser().parse_args(["dataset", "out"])
    assert args.func is corpus_cli.run and args.classes == "orchestral,electronic,speech"


@pytest.mark.parametrize("command", ["train", "crossval"])
def test_renamed_options_still_work_and_warn(command, capsys):
    p = _parser()
    new = p.parse_args([command, "d", "--out", "o", "--width", "4", "--compression", "1000", "--random-seed", "3"])
    assert capsys.readouterr().err == ""
    old = p.parse_args([command, "d", "--out", "o", "--channels", "4", "--gain", "1000", "--seed", "3"])
    err = capsys.readouterr().err
    for was, now in (("--channels", "--width"), ("--gain", "--compression"), ("--seed", "--random-seed")):
        assert f"{was} is deprecated" in err and f"use {now}" in err
    assert vars(old) == vars(new)
    assert (old.width, old.compression, old.random_seed) == (4, 1000.0, 3)
    recipe = training_cli.recipe_from_args(old, command)
    assert "--width 4" in recipe and "--compression 1000" in recipe and "--random-seed 3" in recipe
    assert "--channels" not in recipe and "--gain" not in recipe and "--seed" not in recipe.replace("--random-seed", "")
    assert "--channels" not in " ".join(p.format_help().split())  # old spellings are not advertised


def test_cli_train_parses_and_records_recipe(synthetic_corpus, tiny_trained, tiny, tmp_path):
    _, _, cache_dir = tiny_trained
    args = _parser().parse_args(["train", str(synthetic_corpus), "--out", str(tmp_path / "m.pt"), "--width", "4",
                                 *_small(tiny, cache_dir), "--no-baseline"])
    assert args.func(args) == 0
    _, _, meta = load_checkpoint(tmp_path / "m.pt")
    assert meta["recipe"].startswith("cnnaural train ") and "--width 4" in meta["recipe"]
    assert meta["arch_kwargs"]["width"] == 4
    assert meta["metrics"]["baseline"] is None


def test_cli_dataset_unknown_class(tmp_path):
    args = _parser().parse_args(["dataset", str(tmp_path / "o"), "--classes", "jazz"])
    with pytest.raises(CnnauralError, match="unknown corpus class"):
        args.func(args)


# ------------------------------------------------------------------------------------------------
# through `cnnaural_ext.cli.main`
# ------------------------------------------------------------------------------------------------
def test_cli_train_error_exit_code(tmp_path, capsys):
    (tmp_path / "d").mkdir()
    rc = main(["train", str(tmp_path / "d"), "--out", str(tmp_path / "m.pt"), "--no-progress"])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cnnaural dataset" in err[0]


def test_cli_crossval(synthetic_corpus, tiny, tmp_path, capsys):
    args = [str(synthetic_corpus), "--out", str(tmp_path / "cv"), "--folds", "2", "--width", "4",
            *_small(tiny, tmp_path / "cache")]
    args[args.index("--dense") + 1] = "8"
    assert main(["crossval", *args]) == 0
    out = capsys.readouterr().out
    assert "Cross-validation by track: 2 folds, 12 tracks" in out
    _, _, meta = load_checkpoint(tmp_path / "cv" / "fold1.pt")
    assert meta["recipe"].startswith("cnnaural crossval ") and "--folds 2" in meta["recipe"]
    with pytest.raises(SystemExit):  # crossval always fits the baseline: no such option
        main(["crossval", *args, "--no-baseline"])
    assert "unrecognized arguments: --no-baseline" in capsys.readouterr().err
    assert main(["crossval", *args[:3], "--folds", "9", *args[5:]]) == 2
    assert "fewer --folds" in capsys.readouterr().err
