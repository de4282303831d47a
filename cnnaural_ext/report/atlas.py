"""The feature atlas's pages: ``OUT/atlas/index.html`` (the layers, their features, the class
folders) and one page per layer, ``OUT/atlas/layer<L>.html``: per feature a histogram of its
per-track maximum over the catalogue (the top tracks' values marked), its mean activation per
class folder, and its top tracks, each with a player for the original window and one for the
auralised feature, the deconvolved map and a link to the window's Figure 3.

Rendering only: `write_atlas` takes the plain data `catalogue.atlas.build_atlas` returns, draws
the histograms (``OUT/atlas/img/``) and writes the pages with the gallery's Jinja2 environment
(autoescaped: every name from the files shows as text) on its base template and CSS; every asset
is a URL-quoted relative path, audio has preload="none" and images load lazily, so a page lists
only the top tracks and opens fast whatever the catalogue's size.
"""
from __future__ import annotations

from pathlib import Path

from ..io.files import write_text
from .gallery import CSS, asset_url, environment

ATLAS_CSS = CSS + """
.feature { margin-bottom: 2.5em; }
.head { display: flex; flex-wrap: wrap; gap: 1.5em; align-items: flex-start; }
.head img { width: 400px; }
.card.track { width: 320px; }
.card .path { font-size: 0.85em; word-break: break-all; }
td.best { font-weight: bold; } td.text { text-align: left; }
.missing { color: #a33; font-size: 0.85em; }
"""


def layer_page(layer) -> str:
    """The file name of a layer's page."""
    return f"layer{layer}.html"


def _feature_view(root: Path, layer: int, f: dict, classes: list, class_tracks: list) -> dict:
    from ..io import figures

    hist = f"img/layer{layer}/feature{f['feature']:03d}.png"
    figures.histogram(root / hist, f["values"], marks=[w["value"] for w in f["top"]],
                      title=f"layer {layer}, feature {f['feature']}: per-track maximum",
                      xlabel="maximum activation over the track")
    top = []
    for w in f["top"]:
        files = {k: asset_url(w["folder"], w[k]) if w.get(k) else None for k in ("original", "audio", "image",
                                                                                 "figure")}
        top.append(dict(w, **files, cls=w.get("class"), spectral_convergence=w.get("spectral_convergence"),
                        clipped=w.get("clipped"), inconsistent=bool(w.get("inconsistent"))))
    means = None
    if f.get("class_means") is not None and classes:
        best = max(range(len(classes)), key=lambda i: f["class_means"][i])
        means = [dict(name=c, tracks=n, mean=m, best=i == best)
                 for i, (c, n, m) in enumerate(zip(classes, class_tracks, f["class_means"]))]
    values = f["values"]
    return dict(feature=f["feature"], anchor=f"feature{f['feature']:03d}", histogram=asset_url(hist), top=top,
                means=means, n=len(values), max=float(values.max()) if len(values) else 0.0,
                fires=int((values > 0).sum()))


def write_atlas(root, data: dict, *, title: str = "cnnaural feature atlas") -> Path:
    """Write root/index.html and root/layer<L>.html (root: OUT/atlas) for `build_atlas`'s data.

    Returns:
        the path of index.html.
    """
    root = Path(root)
    env = environment()
    common = dict(css=ATLAS_CSS, atlas=data, classes=[dict(name=c, tracks=n) for c, n in
                                                      zip(data["classes"], data["class_tracks"])])
    layers = []
    for lv in data["layers"]:
        feats = [_feature_view(root, lv["layer"], f, data["classes"], data["class_tracks"]) for f in lv["features"]]
        page = layer_page(lv["layer"])
        layers.append(dict(layer=lv["layer"], page=asset_url(page), features=feats))
        write_text(root / page, env.get_template("atlas_layer.html").render(
            title=f"{title}: layer {lv['layer']}", layer=layers[-1], **common))
    return write_text(root / "index.html", env.get_template("atlas_index.html").render(
        title=title, layers=layers, **common))
