"""report.atlas: the atlas pages from plain data: names with markup show as text, every asset
they reference exists, audio is not preloaded."""
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import numpy as np

from cnnaural_ext.report.atlas import write_atlas
from helpers import EVIL_CLASS

EVIL = "<img src=x onerror=alert(1)> & co.wav"


class Page(HTMLParser):
    """Every start tag with its attributes, and the text."""

    def __init__(self, text):
        super().__init__()
        self.tags, self.text = [], []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def window(root: Path, layer, feature, rank, rel, tid, files=True):
    folder = f"audio/layer{layer}/feature{feature:03d}/{tid}-w1"
    names = dict(original="original.flac", audio=f"layer{layer}_feature{feature:03d}.flac",
                 image=f"layer{layer}_feature{feature:03d}.png", figure=f"layer{layer}_figure.png")
    if files:
        (root / folder).mkdir(parents=True, exist_ok=True)
        for name in names.values():
            (root / folder / name).write_bytes(b"x")
    return dict(rank=rank, id=tid, relative_path=rel, window=1, value=0.5 / rank, duration=9.0, start=4.0, end=8.0,
                folder=folder, **{"class": rel.split("/")[0] if "/" in rel else None},
                **(names if files else dict.fromkeys(names)))


def atlas_data(root: Path) -> dict:
    rels = [f"{EVIL_CLASS}/{EVIL}", "quiet/b.wav", "top level.wav"]
    features = []
    for k in range(3):
        top = [window(root, 5, k, r + 1, rel, f"{r:016x}", files=not (k == 2 and r == 2)) for r, rel in enumerate(rels)]
        features.append(dict(feature=k, values=np.array([0.5, 0.25, 0.0, 0.1 * k]), top=top,
                             class_means=[0.3 + k, 0.1]))
    features.append(dict(feature=3, values=np.zeros(4), top=[], class_means=[0.0, 0.0]))  # never fires
    return dict(out=str(root.parent), model="shipped", window=4.0, top=3, tracks=4, classes=[EVIL_CLASS, "quiet"],
                class_tracks=[2, 1], layers=[dict(layer=5, features=features)], auralised=8, reused=0,
                missing=["top level.wav"])


def test_names_with_markup_show_as_text_and_every_asset_exists(tmp_path):
    root = tmp_path / "atlas"
    index = write_atlas(root, atlas_data(root))
    assert index == root / "index.html"
    pages = {p.name: Page(p.read_text(encoding="utf-8")) for p in (index, root / "layer5.html")}
    for name, page in pages.items():
        assert not any(tag == "em" or (tag == "img" and a.get("src") == "x") for tag, a in page.tags), name
        text = "".join(page.text)
        assert EVIL_CLASS in text, name  # the class folder, as text
        refs = [a[k] for _, a in page.tags for k in ("src", "href") if a.get(k)]
        for ref in refs:
            if ref.startswith(("#", "data:")):
                continue
            assert (root / unquote(ref.split("#")[0])).is_file(), (name, ref)
    layer = pages["layer5.html"]
    assert f"{EVIL_CLASS}/{EVIL}" in "".join(layer.text)  # the track, as text
    audio = [a for tag, a in layer.tags if tag == "audio"]
    assert len(audio) == 2 * 8 and all(a["preload"] == "none" for a in audio)  # one window not auralised
    images = [a for tag, a in layer.tags if tag == "img"]
    assert len(images) == 4 + 8 and all(a["loading"] == "lazy" for a in images)  # histograms + maps
    assert "not auralised" in "".join(layer.text) and "no track switches this feature on" in "".join(layer.text)
    assert sum(a.get("id", "").startswith("feature") for _, a in layer.tags) == 4
    assert "feature 3" in "".join(pages["index.html"].text)
