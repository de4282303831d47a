"""`cnnaural sanity`: writes its files and exits 0; a user error is one line and exit status 2."""
import json

import pytest
import torch

import cnnaural_ext as ca
from cnnaural_ext import cli


@pytest.fixture(scope="module")
def tiny_model(synthetic_corpus, tiny, tmp_path_factory):
    """An untrained tiny checkpoint that records a split of the synthetic corpus."""
    from cnnaural_ext.corpus import scan_tracks, split_by_track
    from cnnaural_ext.io.checkpoint import save_checkpoint
    from cnnaural_ext.training.fit import split_paths

    spec = tiny.spectrogram()
    kw = dict(n_classes=3, width=[4, 4, 4, 4, 6], input_shape=[spec.n_bins, spec.n_frames(tiny.sr)], dense=[])
    torch.manual_seed(0)
    model = ca.models.paper_cnn5(**kw).eval()
    split = split_by_track(scan_tracks(synthetic_corpus), val=0.25, test=0.25, random_seed=0)
    path = tmp_path_factory.mktemp("trust") / "tiny.pt"
    save_checkpoint(path, model, spec, arch="paper_cnn5", arch_kwargs=kw, classes=["clicks", "noise", "tones"],
                    split=split_paths(split, synthetic_corpus), clips=dict(clip_seconds=1.0, clips_per_track=4))
    return path


def test_cli_sanity_writes_json_markdown_and_figure(tiny_model, synthetic_corpus, tmp_path, capsys):
    out = tmp_path / "sanity"
    args = ["sanity", "--model", str(tiny_model), "--data", str(synthetic_corpus), "--layers", "1,2",
            "--clips", "1", "--features", "1", "--epochs", "0", "--out", str(out), "--no-progress"]
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    assert "cascade 5..1, layer 1: |rho|" in printed and "sanity.md" in printed
    data = json.loads((out / "sanity.json").read_text())
    assert data["settings"]["layers"] == [1, 2] and data["settings"]["split"] == "test"
    assert len(data["clips"]) == 1 and data["clips"][0]["name"].split("@")[0] in \
        torch.load(tiny_model, weights_only=True)["split"]["test"]
    variants = {r["variant"] for r in data["summary"]}
    assert variants >= {"cascade 5", "cascade 5..1", "layer 1 alone"}
    assert "another feature" not in variants  # one feature: no pair of features to compare
    assert not any(r["variant"] == "shuffled labels" for r in data["summary"])  # --epochs 0
    md = (out / "sanity.md").read_text()
    assert "| cascade 5..1 |" in md and "layer 2" in md
    assert (out / "sanity.png").read_bytes()[:4] == b"\x89PNG"
    assert len(list((out / "parts").glob("*.json"))) == 1
    assert cli.main(args) == 0  # a rerun reuses the part and rewrites the files


@pytest.mark.parametrize("extra, message", [
    (["--layers", "9"], "conv layer numbers 1..5"),
    (["--layers", "output"], "conv layer numbers"),
    (["--clips", "0"], "--clips must be >= 1"),
    (["--epochs", "-1"], "--epochs must be >= 0"),
    (["--features", "0"], "--features must be >= 1"),
    (["--split", "val", "--data", "{missing}"], "data folder not found"),
])
def test_cli_sanity_user_errors_exit_2_with_one_line(tiny_model, synthetic_corpus, tmp_path, capsys, extra, message):
    args = ["sanity", "--model", str(tiny_model), "--data", str(synthetic_corpus), "--epochs", "0",
            "--out", str(tmp_path / "o"), "--no-progress"]
    args += [a.replace("{missing}", str(tmp_path / "nowhere")) for a in extra]
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cnnaural: error:") and message in err[0], err


def test_cli_sanity_without_a_recorded_split_is_a_user_error(checkpoint, synthetic_corpus, tmp_path, capsys):
    args = ["sanity", "--model", str(checkpoint), "--data", str(synthetic_corpus), "--epochs", "0",
            "--out", str(tmp_path / "o"), "--no-progress"]
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "records no test split" in err[0]
    args = ["sanity", "--model", str(checkpoint), "--data", str(synthetic_corpus), "--epochs", "1", "--split", "all",
            "--out", str(tmp_path / "o"), "--no-progress"]
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "records none" in err[0]


def test_sanity_is_listed_in_the_help():
    parser = cli.build_parser()
    assert "cnnaural sanity" in parser.epilog
    assert "sanity" in parser.format_help()


def test_cli_sanity_with_the_shuffled_label_model(tiny_model, synthetic_corpus, tmp_path, capsys):
    out = tmp_path / "sanity"
    args = ["sanity", "--model", str(tiny_model), "--data", str(synthetic_corpus), "--layers", "1", "--clips", "1",
            "--features", "1", "--epochs", "1", "--threads", "1", "--cache-dir", str(tmp_path / "cache"),
            "--out", str(out), "--no-progress"]
    assert cli.main(args) == 0
    assert "shuffled labels, layer 1: |rho|" in capsys.readouterr().out
    data = json.loads((out / "sanity.json").read_text())
    assert data["shuffled"]["epochs"] == 1 and set(data["shuffled"]["weight_distance_from_trained"]) == set("12345")
    assert any(r["variant"] == "shuffled labels" for r in data["summary"])
    assert (out / "shuffled_labels.pt").is_file()
    assert "## The shuffled-label model" in (out / "sanity.md").read_text()
