"""`cnnaural report --figures --data`: the gallery's Figure 2 / Figure 3 / onset / selectivity
sections — real HTML tables, escaped names, images that exist and decode, clear user errors."""
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest
import soundfile as sf
import torch
from markupsafe import escape

import cnnaural_ext as ca
from cnnaural_ext import cli
from cnnaural_ext.io.checkpoint import save_checkpoint
from helpers import CLASSES, EVIL_CLASS, SR, tone


def small_12x12_checkpoint(path):
    torch.manual_seed(1)
    spec = ca.Spectrogram(sample_rate=SR, n_fft=256, hop_length=128, scale="log1p")
    kw = dict(n_classes=2, width=[3, 4, 4, 4], input_shape=[spec.n_bins, spec.n_frames(2 * SR)], dense=[8])
    model = ca.models.paper_cnn4_12x12(**kw).eval()
    initial = model[0][0][0].weight.detach().clone()
    with torch.no_grad():
        model[0][0][0].weight.add_(0.1)  # "learned" differs from initial
    save_checkpoint(path, model, spec, arch="paper_cnn4_12x12", arch_kwargs=kw, classes=["x", "y"],
                    initial_conv1=initial)
    return path


class Tables(HTMLParser):
    """Tables of a page as {caption: [[cell text]]} (header row first), plus images and sections."""

    def __init__(self):
        super().__init__()
        self.tables, self.images, self.sections = {}, [], []
        self._rows = self._cell = self._caption = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self._rows, self._caption = [], ""
        elif tag == "tr" and self._rows is not None:
            self._rows.append([])
        elif tag in ("td", "th") and self._rows is not None:
            self._cell = ""
        elif tag == "caption":
            self._cell = ""
        elif tag == "img":
            self.images.append(a)
        elif tag == "section":
            self.sections.append(a["id"])

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._rows is not None:
            self._rows[-1].append(self._cell)
            self._cell = None
        elif tag == "caption":
            self._caption, self._cell = self._cell, None
        elif tag == "table":
            self.tables[self._caption] = self._rows
            self._rows = None

    def handle_data(self, d):
        if self._cell is not None:
            self._cell += d


def report(out, track, checkpoint, *extra):
    return cli.main(["report", str(track), "--model", str(checkpoint), "--layers", "1,5", "--features", "0,1",
                     "--duration", "2", "--out", str(out), *extra])


@pytest.fixture
def gallery_with_sections(checkpoint, corpus, fake_prelude, tmp_path):
    track = tmp_path / "tone.wav"
    sf.write(track, tone(2.5).numpy(), SR)
    filters12 = small_12x12_checkpoint(tmp_path / "small12.pt")
    out = tmp_path / "site"
    assert report(out, track, checkpoint, "--figures", "--onset-duration", "6", "--filters-model", str(filters12),
                  "--data", str(corpus), "--split", "all", "--cache-dir", str(tmp_path / "cache")) == 0
    return out


def test_report_sections_tables_and_images(gallery_with_sections):
    from PIL import Image

    out = gallery_with_sections
    page = (out / "index.html").read_text()
    p = Tables()
    p.feed(page)
    assert p.sections == ["figure2", "onsets", "selectivity"]
    # Figure 2: one image per model (initial beside learned), a table describing both models
    models = p.tables["Models"]
    assert models[0][:2] == ["checkpoint", "architecture"] and len(models) == 3
    assert [r[1] for r in models[1:]] == ["paper_cnn5", "paper_cnn4_12x12"]
    assert models[2][2] == "3 x 12x12"
    # onsets: every layer-1 feature ranked, F-measures in [0, 1]
    onsets = p.tables["Layer-1 features ranked as onset detectors"]
    assert onsets[0][:3] == ["rank", "feature", "F-measure"] and len(onsets) == 1 + 4
    assert sorted(int(r[1]) for r in onsets[1:]) == [0, 1, 2, 3]
    assert all(0 <= float(r[2]) <= 1 for r in onsets[1:])
    # selectivity: class names as column headers, escaped in the source, text on the page
    mean = p.tables["Mean activation per class"]
    assert mean[0] == ["feature", *sorted(CLASSES), "switched off by"] and len(mean) == 1 + 8
    summary = p.tables["Features each class switches off"]
    assert sorted(r[0] for r in summary[1:]) == sorted(CLASSES) and all(r[1] == "2" for r in summary[1:])
    assert "<em" not in page and str(escape(EVIL_CLASS)) in page  # escaped as the template engine does
    # every image has alt text, exists and decodes; every asset the page names exists
    analysis = [i for i in p.images if i["src"].startswith("_analysis/")]
    assert {Path(unquote(i["src"])).name for i in analysis} == {
        "figure2_filters.png", "figure2_filters_1.png", "figure3_bwv846.png", "selectivity.png"}
    for img in p.images:
        assert img.get("alt"), img
        with Image.open(out / unquote(img["src"])) as im:
            im.load()
            assert im.size[0] > 100 and im.size[1] > 50
    for s in re.findall(r'src="([^"]+)"', page):
        assert (out / unquote(s)).is_file(), s
    assert len([s for s in re.findall(r'src="([^"]+)"', page) if s.endswith(".wav")]) == 1 + 2 * 2 + 2
    for name in ("onsets.md", "onsets.json", "selectivity.md", "selectivity.json"):
        assert (out / "_analysis" / name).stat().st_size > 0


def test_report_without_options_has_no_sections(checkpoint, tmp_path):
    track = tmp_path / "tone.wav"
    sf.write(track, tone(2.5).numpy(), SR)
    assert report(tmp_path / "site", track, checkpoint) == 0
    page = (tmp_path / "site" / "index.html").read_text()
    assert "<section" not in page and "<table" not in page and not (tmp_path / "site" / "_analysis").exists()


@pytest.mark.parametrize("case, msg", [
    ("no split", "records no test split"),
    ("no data", "data folder not found"),
    ("no filters model", "checkpoint not found"),
    ("bad onset duration", "--onset-duration must be positive"),
    ("no track", "audio file not found"),
])
def test_report_section_errors_are_one_line_and_write_nothing(case, msg, checkpoint, corpus, fake_prelude,
                                                              tmp_path, capsys):
    track = tmp_path / "tone.wav"
    sf.write(track, tone(2.5).numpy(), SR)
    extra = {"no split": ["--data", str(corpus)],
             "no data": ["--data", str(tmp_path / "nowhere")],
             "no filters model": ["--filters-model", str(tmp_path / "none.pt")],
             "bad onset duration": ["--figures", "--onset-duration", "0"],
             "no track": ["--figures"]}[case]
    if case == "no track":
        track = tmp_path / "missing.wav"
    out = tmp_path / "site"
    assert report(out, track, checkpoint, *extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cnnaural: error:") and msg in err[0], err
    assert not out.exists() or not any(p.is_file() for p in out.rglob("*"))
