"""A static HTML listening gallery: per track, layer and feature the deconvolved spectrogram, a
player for the auralised clip beside the original, and the feature's statistics; optionally
sections of figures and analysis tables (the paper's Figures 2 and 3, onset detectors, class
selectivity) that `cnnaural report --figures --data` adds.

The page is a Jinja2 template (templates/gallery.html on templates/base.html) with autoescaping
on: everything taken from user data (file names, paths, class names, table cells) is escaped by
default. The feature atlas's pages (`report.atlas`) share the base template, `CSS`, `asset_url`
and `environment`. Every asset is referenced by a URL-quoted relative path, so the folder can be
opened from disk or served as is.
"""
from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from ..io.files import write_text

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 2em; border-bottom: 1px solid #ccc; }
h3 { font-size: 1em; color: #555; }
.grid { display: flex; flex-wrap: wrap; gap: 1em; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 0.6em; width: 360px; }
.card img, .figure img { width: 100%; }
.figure { max-width: 900px; }
.stats { font-size: 0.85em; color: #555; }
.stats.warn { color: #a33; font-weight: bold; }
audio { width: 100%; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.6em 0 1.2em; }
th, td { border: 1px solid #ddd; padding: 0.2em 0.6em; text-align: right; }
th { background: #f4f4f4; } td:first-child, th:first-child { text-align: left; }
caption { text-align: left; font-weight: bold; padding-bottom: 0.3em; }
.scroll { max-height: 28em; overflow-y: auto; display: inline-block; }
nav { font-size: 0.9em; } nav a { margin-right: 1em; }
"""


def asset_url(*parts) -> str:
    """A URL-quoted relative path from '/'-separated parts."""
    return "/".join(quote(str(p)) for part in parts for p in str(part).split("/"))


def environment():
    """The Jinja2 environment of the report's templates: autoescaping on, undefined names fail."""
    import jinja2

    return jinja2.Environment(loader=jinja2.PackageLoader("cnnaural_ext.report", "templates"),
                              autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True)


def _track_view(out_root: Path, folder: str, rows: list) -> dict:
    """What the template shows of one auralised track (its manifest rows)."""
    head = rows[0]
    layers = []
    for layer in sorted({r["layer"] for r in rows}, key=str):
        fig = f"layer{layer}_figure.png"
        items = [dict(feature=r["feature"], audio=asset_url(folder, r["audio"]),
                      image=asset_url(folder, r["image"]) if r.get("image") else None,
                      max=r["max"], mean=r["mean"], active=r["active"],
                      spectral_convergence=r.get("spectral_convergence"), clipped=r.get("clipped"),
                      inconsistent=bool(r.get("inconsistent"))) for r in rows if r["layer"] == layer]
        layers.append(dict(layer=layer, cards=items,
                           figure=asset_url(folder, fig) if (out_root / folder / fig).is_file() else None))
    return dict(name=Path(head["track"]).name, track=str(head["track"]), duration=head["duration"],
                offset=head["offset"], mode=head["mode"], phase=head["phase"], seed=head["seed"],
                original=asset_url(folder, head["original"]), layers=layers)


def _section_view(out_root: Path, sec: dict) -> dict:
    """A figures/analysis section with its missing files left out and its assets as URLs."""
    return dict(id=sec["id"], title=sec["title"], paragraphs=[str(p) for p in sec.get("paragraphs", [])],
                images=[dict(alt=im["alt"], src=asset_url(im["path"])) for im in sec.get("images", [])
                        if (out_root / im["path"]).is_file()],
                audio=[dict(label=a["label"], src=asset_url(a["path"])) for a in sec.get("audio", [])
                       if (out_root / a["path"]).is_file()],
                tables=[dict(caption=t.get("caption"), header=[str(h) for h in t["header"]],
                             rows=[[str(c) for c in row] for row in t.get("rows", [])]) for t in sec.get("tables", [])])


def write_gallery(out_root, entries, *, title: str = "cnnaural listening gallery", subtitle: str = "",
                  sections=()) -> Path:
    """Write out_root/index.html for tracks already auralised into out_root/<folder>/.

    Args:
        entries: [(folder name, manifest rows)] as `Auraliser.auralise_file` returns them.
        sections: figures and analysis tables shown after the tracks, each a dict with
            ``id`` and ``title``, and optionally ``paragraphs`` [str], ``images`` [{path, alt}],
            ``audio`` [{path, label}] (paths '/'-separated, relative to out_root; a missing file
            is left out) and ``tables`` [{caption, header [str], rows [[cell]]}]. Every string
            and cell is escaped.

    Returns:
        the path of index.html.
    """
    out_root = Path(out_root)
    page = environment().get_template("gallery.html").render(
        title=title, subtitle=subtitle, css=CSS,
        tracks=[_track_view(out_root, folder, rows) for folder, rows in entries if rows],
        sections=[_section_view(out_root, s) for s in sections])
    return write_text(out_root / "index.html", page)
