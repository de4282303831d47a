"""Auraliser: results equal their definitions; auralise_file writes what it returns, atomically."""
import json

import numpy as np
import pytest
import soundfile as sf
import torch

import cnnaural_ext as ca
from cnnaural_ext.io.audio import load
from helpers import SR, small_model_and_spec, tone


@pytest.mark.parametrize("scale, n_mels", [("linear", None), ("log1p", None), ("db", 32)])
@pytest.mark.parametrize("mode", ["mask", "magnitude"])
def test_auralise_equals_its_definition(scale, n_mels, mode):
    model, spec = small_model_and_spec(scale, n_mels)
    x = tone()
    aur = ca.Auraliser(model, spec)
    res = aur.auralise(x, layer=2, features=[0, 3], mode=mode, normalize=False)
    X, S = spec(x)
    D = ca.DeconvNet(model).deconvolve(S[None, None], 2, [0, 3])[:, 0]
    torch.testing.assert_close(res.maps, D)
    if mode == "mask":
        Y = X * spec.to_linear(D, "mask")
    else:
        Y = spec.to_linear(D, "magnitude") * torch.exp(1j * X.angle())
    want = torch.istft(Y, spec.n_fft, spec.hop_length, window=spec.window, length=x.shape[0])
    torch.testing.assert_close(res.audio, want, rtol=1e-4, atol=1e-6 * float(want.abs().max()))
    assert res.features == [0, 3] and res.sample_rate == SR and len(res.stats) == 2
    assert res.audio.shape == (2, x.shape[0])


def test_normalize_peaks_each_clip():
    model, spec = small_model_and_spec()
    res = ca.Auraliser(model, spec).auralise(tone(), layer=1, features="all")
    peaks = res.audio.abs().amax(dim=1)
    nonsilent = peaks > 0
    torch.testing.assert_close(peaks[nonsilent], torch.full_like(peaks[nonsilent], 0.99))


def test_griffinlim_makes_the_magnitude_consistent():
    model, spec = small_model_and_spec()
    aur = ca.Auraliser(model, spec)
    x = tone()
    kw = dict(layer=1, features=[0, 1], mode="magnitude", normalize=False)
    target = spec.to_linear(aur.auralise(x, **kw).maps, "magnitude")

    def inconsistency(audio):
        return float(((spec.stft(audio).abs() - target).norm() / target.norm()))

    errs = [inconsistency(aur.auralise(x, phase="griffinlim", griffinlim_iters=n, **kw).audio) for n in (0, 4, 30)]
    assert errs[0] > errs[1] > errs[2]


def test_griffinlim_recovers_a_consistent_magnitude():
    from cnnaural_ext.auralise import griffin_lim

    _, spec = small_model_and_spec()
    x = tone()
    mag = spec.stft(x).abs()[None]
    kw = dict(n_fft=spec.n_fft, hop_length=spec.hop_length, win_length=spec.win_length, window=spec.window,
              center=True, length=x.shape[0])
    start = ca.masked_istft(torch.ones_like(mag, dtype=torch.complex64), mag, mode="magnitude", **kw)
    y = griffin_lim(mag, start, spec, 60, kw)
    err = float((spec.stft(y).abs() - mag).norm() / mag.norm())
    err0 = float((spec.stft(start).abs() - mag).norm() / mag.norm())
    assert err < 0.15 < err0


def test_bad_options_are_clear():
    model, spec = small_model_and_spec()
    aur = ca.Auraliser(model, spec)
    with pytest.raises(ca.CnnauralError, match="mode must be"):
        aur.auralise(tone(), 1, [0], mode="masq")
    with pytest.raises(ca.CnnauralError, match="phase must be"):
        aur.auralise(tone(), 1, [0], phase="random")
    with pytest.raises(ca.CnnauralError, match="mono"):
        aur.auralise(torch.zeros(2, 100), 1, [0])


def test_auralise_layers_shares_one_stft_and_equals_one_layer_at_a_time():
    model, spec = small_model_and_spec()
    aur = ca.Auraliser(model, spec)
    x = tone()
    both = aur.auralise_layers(x, "1,5", [0, 2])
    assert [r.layer for r in both] == [1, 5] and both[0].stft is both[1].stft
    for res in both:
        alone = aur.auralise(x, res.layer, [0, 2])
        torch.testing.assert_close(res.audio, alone.audio)
        torch.testing.assert_close(res.maps, alone.maps)
        assert res.stats == alone.stats


@pytest.mark.parametrize("mode", ["mask", "magnitude"])
def test_auralise_batch_equals_each_waveform_alone(mode):
    """Excerpts of several tracks in one batched pass: every waveform's own top features, clips,
    maps, statistics and inversion measures, as auralise_layers gives them one at a time."""
    model, spec = small_model_and_spec()
    aur = ca.Auraliser(model, spec)
    torch.manual_seed(5)
    waves = [tone(), 0.3 * tone() + 0.1 * torch.randn(2 * SR), tone().flip(0)]
    batch = aur.auralise_batch(waves, "1,5", "top:2", mode=mode)
    assert len(batch) == 3
    for wave, results in zip(waves, batch):
        alone = aur.auralise_layers(wave, "1,5", "top:2", mode=mode)
        for got, want in zip(results, alone):
            assert (got.layer, got.features) == (want.layer, want.features)
            torch.testing.assert_close(got.maps, want.maps, rtol=1e-4, atol=1e-6)
            torch.testing.assert_close(got.audio, want.audio, rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(got.original, want.original)
            for a, b in zip(got.stats + got.inversion, want.stats + want.inversion):
                assert a.keys() == b.keys() and all(a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-6) for k in a)
    # class targets go one waveform at a time, with the same results
    out = aur.auralise_batch(torch.stack(waves[:2]), "output", [0])
    torch.testing.assert_close(out[1][0].audio, aur.auralise(waves[1], "output", [0]).audio)
    with pytest.raises(ca.CnnauralError, match="of one length"):
        aur.auralise_batch([tone(), tone(1.5)], 1, [0])
    with pytest.raises(ca.CnnauralError, match=r"\(B, n\)"):
        aur.auralise_batch(torch.zeros(2, 1, 100), 1, [0])


def test_auralise_file_writes_what_it_returns(track, tmp_path):
    model, spec = small_model_and_spec()
    aur = ca.Auraliser(model, spec)
    rows = aur.auralise_file(track, tmp_path / "t", layers=[1, 5], features="top:2", offset=0.5, duration=2.0,
                             audio_format="flac")
    names = {p.name for p in (tmp_path / "t").iterdir()}
    assert {"original.flac", "manifest.json", "layer1_figure.png", "layer5_figure.png"} <= names
    assert not [n for n in names if ".part" in n]
    assert [(r["layer"], len([q for q in rows if q["layer"] == r["layer"]])) for r in rows] == [(1, 2)] * 2 + [(5, 2)] * 2
    manifest = json.loads((tmp_path / "t" / "manifest.json").read_text())
    assert manifest["items"] == [{k: r[k] for k in manifest["items"][0]} for r in rows]
    assert manifest["track"] == str(track) and manifest["offset"] == 0.5 and manifest["model"] == "Sequential"
    # the clips are the library's auralisation of the same excerpt
    wave, _ = load(track, SR, offset=0.5, duration=2.0)
    want = aur.auralise(wave, 5, [rows[2]["feature"], rows[3]["feature"]])
    for row, r in enumerate(rows[2:]):
        got, sr = sf.read(tmp_path / "t" / r["audio"])
        assert sr == SR and r["image"] == r["audio"].replace(".flac", ".png")
        np.testing.assert_allclose(got, want.audio[row].numpy(), atol=2 / 2 ** 15)
        assert r["mean"] == pytest.approx(want.stats[row]["mean"])


def test_auralise_file_takes_a_waveform_and_checks_before_writing(tmp_path):
    model, spec = small_model_and_spec()
    aur = ca.Auraliser(model, spec)
    rows = aur.auralise_file(tone(3.0), tmp_path / "w", layers=1, features=[0], offset=1.0, duration=None,
                             figures=False, name="my tone")
    assert rows[0]["track"] == "my tone" and rows[0]["duration"] == 2.0 and rows[0]["image"] is None
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == ["layer1_feature000.wav", "manifest.json",
                                                                   "original.wav"]
    for bad, msg in [(dict(layers=9), "layer 9 is out of range"), (dict(features=[99]), "feature 99"),
                     (dict(audio_format="mp3"), "audio_format must be"), (dict(seed="peak"), "seed must be"),
                     (dict(offset=5.0), "past the end")]:
        with pytest.raises(ca.CnnauralError, match=msg):
            aur.auralise_file(tone(3.0), tmp_path / "bad", **bad)
        assert not (tmp_path / "bad").exists()


def test_parse_layers_takes_module_names():
    from cnnaural_ext.auralise import parse_layers

    assert parse_layers("1, features.block2.0 ,output", 5) == [1, "features.block2.0", "output"]
    assert parse_layers(["Layer3.1.conv2", 2, "4"], 5) == ["Layer3.1.conv2", 2, 4]  # names keep their case
    assert parse_layers("all", 3) == [1, 2, 3] and parse_layers(2, 5) == [2]
    for bad in ("", [], True, 1.5, [None]):
        with pytest.raises(ca.CnnauralError):
            parse_layers(bad, 5)


def test_module_name_layers_in_the_auraliser(tmp_path):
    model, spec = small_model_and_spec()
    aur = ca.Auraliser(model, spec)
    x = tone()
    by_name, by_index = aur.auralise_layers(x, "features.block2,2", [0, 1])
    assert by_name.layer == "features.block2" and by_index.layer == 2
    torch.testing.assert_close(by_name.audio, by_index.audio)
    raw = aur.auralise(x, "features.block2.0", [0, 1])  # the conv module's own output (before its ReLU)
    assert not torch.allclose(raw.maps, by_index.maps)
    rows = aur.auralise_file(x, tmp_path / "n", layers="features.block1.1", features=[0], figures=False)
    assert rows[0]["layer"] == "features.block1.1" and rows[0]["audio"] == "layer_features.block1.1_feature000.wav"
    with pytest.raises(ca.CnnauralError, match="no module named 'features.block7'"):
        aur.check_request("features.block7")


def test_auraliser_needs_a_spectrogram_unless_the_model_has_one():
    model, _ = small_model_and_spec()
    with pytest.raises(ca.CnnauralError, match="needs the Spectrogram the model was trained with"):
        ca.Auraliser(model)


MEMORY_SCRIPT = r"""
import resource, sys, torch
import cnnaural_ext as ca
aur = ca.Auraliser.pretrained()
sr = aur.sample_rate
n = int(float(sys.argv[1]) * 60 * sr)
t = torch.arange(n) / sr
g = torch.Generator().manual_seed(0)
wave = (0.3 * torch.sin(2 * torch.pi * 440 * t) + 0.05 * torch.randn(n, generator=g)).float()
del t
res = aur.auralise_layers(wave, [1, 5], features="top:8")
assert [tuple(r.audio.shape) for r in res] == [(8, n)] * 2
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


@pytest.mark.slow
def test_eight_features_of_a_ten_minute_track_fit_in_2_5_gb():
    """The shipped model, layers 1 and 5, 8 features of a 10-minute track: the peak resident memory of
    the whole process (torch included) stays under 2.5 GB (time tiles going forward, seed chunks by
    the memory budget going back)."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, "10"], capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stderr[-2000:]
    peak = int(out.stdout.split()[-1])
    assert peak < 2.5 * 2**30, f"peak {peak / 2**30:.2f} GiB"
