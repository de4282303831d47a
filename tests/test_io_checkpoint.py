"""Checkpoints: weights-only loading, and files written before a rename still load."""
import pytest
import torch

import cnnaural_ext as ca
from cnnaural_ext.io.checkpoint import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint


class _Payload:
    """Anything a plain pickle would rebuild by running code."""

    def __reduce__(self):
        return (print, ("code ran while loading",))


def test_checkpoints_load_weights_only(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "payload": _Payload()}, path)
    with pytest.raises(ca.CnnauralError, match="cannot read checkpoint"):
        load_checkpoint(path)
    assert "code ran" not in capsys.readouterr().out


def test_checkpoints_written_before_the_renames_load(tmp_path):
    """The conv width was `channels` and the log1p factor `gain`: such files load unchanged."""
    model = ca.models.paper_cnn5(n_classes=2, width=4, input_shape=(64, 48), dense=(8,))
    spec = ca.Spectrogram(n_fft=64, hop_length=32, scale="log1p", compression=10.0)
    path = save_checkpoint(tmp_path / "new.pt", model, spec, arch="paper_cnn5",
                           arch_kwargs=dict(n_classes=2, width=4, input_shape=[64, 48], dense=[8]), classes=["a", "b"])
    ck = torch.load(path, weights_only=True)
    ck["arch_kwargs"]["channels"] = ck["arch_kwargs"].pop("width")
    ck["spectrogram"]["gain"] = ck["spectrogram"].pop("compression")
    torch.save(ck, tmp_path / "old.pt")
    old_model, old_spec, _ = load_checkpoint(tmp_path / "old.pt")
    assert old_spec.compression == 10.0 and old_spec.config() == spec.config()
    assert old_model[0][0][0].out_channels == 4
    for a, b in zip(old_model.state_dict().values(), model.state_dict().values()):
        assert torch.equal(a, b)


def test_corrupt_and_foreign_checkpoints_are_clear(tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"\x00garbage")
    with pytest.raises(ca.CnnauralError, match="cannot read checkpoint"):
        load_checkpoint(tmp_path / "bad.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "foreign.pt")
    with pytest.raises(ca.CnnauralError, match="not a cnnaural checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    with pytest.raises(ca.CnnauralError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "none.pt")
