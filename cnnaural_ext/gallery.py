"""A static HTML listening gallery: per track, layer and feature the deconvolved spectrogram, a
player for the auralised clip beside the original, and the feature's statistics; optionally
sections of figures and analysis tables (the paper's Figures 2 and 3, onset detectors, class
selectivity) that `cnnaural report --figures --data` adds.

Everything taken from user data (file names, paths, class names, table cells) is HTML-escaped,
and every asset is referenced by a URL-quoted relative path, so the folder can be opened from
disk or served as is.
"""
from __future__ import annotations

import html
from pathlib import Path
from urllib.parse import quote

from .audio import atomic_write

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 2em; border-bottom: 1px solid #ccc; }
h3 { font-size: 1em; color: #555; }
.grid { display: flex; flex-wrap: wrap; gap: 1em; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 0.6em; width: 360px; }
.card img, .figure img { width: 100%; }
.figure { max-width: 900px; }
.stats { font-size: 0.85em; color: #555; }
audio { width: 100%; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.6em 0 1.2em; }
th, td { border: 1px solid #ddd; padding: 0.2em 0.6em; text-align: right; }
th { background: #f4f4f4; } td:first-child, th:first-child { text-align: left; }
caption { text-align: left; font-weight: bold; padding-bottom: 0.3em; }
.scroll { max-height: 28em; overflow-y: auto; display: inline-block; }
nav { font-size: 0.9em; } nav a { margin-right: 1em; }
"""


def _src(*parts) -> str:
    return "/".join(quote(str(p)) for p in parts)


def _asset(path: str) -> str:
    """A URL for a '/'-separated path relative to the gallery folder."""
    return _src(*str(path).split("/"))


def _table(t: dict) -> list:
    e = html.escape
    rows = t.get("rows", [])
    out = ['<div class="scroll">' if len(rows) > 20 else "<div>", "<table>"]
    if t.get("caption"):
        out.append(f"<caption>{e(str(t['caption']))}</caption>")
    out.append("<thead><tr>" + "".join(f"<th scope=\"col\">{e(str(h))}</th>" for h in t["header"]) + "</tr></thead>")
    out.append("<tbody>")
    out += ["<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>" for row in rows]
    out += ["</tbody></table>", "</div>"]
    return out


def _section(out_root, sec: dict) -> list:
    """HTML of one figures/analysis section (see `write_gallery`); every string is escaped."""
    e = html.escape
    parts = [f"<section id=\"{e(sec['id'])}\"><h2>{e(sec['title'])}</h2>"]
    parts += [f"<p>{e(str(t))}</p>" for t in sec.get("paragraphs", [])]
    for im in sec.get("images", []):
        if (Path(out_root) / im["path"]).is_file():
            parts.append(f"<div class=\"figure\"><img alt=\"{e(im['alt'])}\" src=\"{_asset(im['path'])}\"></div>")
    for a in sec.get("audio", []):
        if (Path(out_root) / a["path"]).is_file():
            parts.append(f"<p>{e(a['label'])}: <audio controls preload=\"none\" src=\"{_asset(a['path'])}\"></audio></p>")
    for t in sec.get("tables", []):
        parts += _table(t)
    parts.append("</section>")
    return parts


def write_gallery(out_root, entries, *, title: str = "cnnaural listening gallery", subtitle: str = "",
                  sections=()) -> Path:
    """Write out_root/index.html for tracks already auralised into out_root/<folder>/.

    Args:
        entries: [(folder name, manifest dict)] as `cnnaural auralise` writes them (items with
            layer, feature, wav, png and statistics).
        sections: figures and analysis tables shown after the tracks, each a dict with
            ``id`` and ``title``, and optionally ``paragraphs`` [str], ``images`` [{path, alt}],
            ``audio`` [{path, label}] (paths '/'-separated, relative to out_root; a missing file
            is left out) and ``tables`` [{caption, header [str], rows [[cell]]}]. Every string
            and cell is escaped.
    Returns:
        the path of index.html.
    """
    e = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<link rel="icon" href="data:,">',  # no favicon request (a 404 in the console otherwise)
             f"<title>{e(title)}</title>",
             f"<style>{_CSS}</style></head><body>", f"<h1>{e(title)}</h1>"]
    if subtitle:
        parts.append(f"<p>{e(subtitle)}</p>")
    sections = list(sections)
    if sections:
        parts.append('<nav>' + "".join(f'<a href="#{quote(s["id"])}">{e(s["title"])}</a>' for s in sections) + "</nav>")
    for folder, m in entries:
        parts.append(f"<h2>{e(Path(m['track']).name)}</h2>")
        parts.append(f"<p class=\"stats\">{e(str(m['track']))} · {m['duration']:.1f} s from {m['offset']:g} s · "
                     f"mode {e(m['mode'])}, phase {e(m['phase'])}, seed {e(m['seed'])}</p>")
        parts.append(f"<p>original: <audio controls preload=\"none\" src=\"{_src(folder, 'original.wav')}\"></audio></p>")
        for layer in sorted({i["layer"] for i in m["items"]}, key=str):
            parts.append(f"<h3>layer {e(str(layer))}</h3>")
            fig = f"layer{layer}_figure.png"
            if (Path(out_root) / folder / fig).is_file():
                parts.append(f"<div class=\"figure\"><img alt=\"layer {e(str(layer))} waveforms and spectrograms\" "
                             f"src=\"{_src(folder, fig)}\"></div>")
            parts.append('<div class="grid">')
            for it in (i for i in m["items"] if i["layer"] == layer):
                parts.append(
                    f"<div class=\"card\"><b>feature {it['feature']}</b>"
                    f"<img alt=\"deconvolved spectrogram, layer {e(str(layer))}, feature {it['feature']}\" "
                    f"src=\"{_src(folder, it['png'])}\">"
                    f"<audio controls preload=\"none\" src=\"{_src(folder, it['wav'])}\"></audio>"
                    f"<div class=\"stats\">activation max {it['max']:.3g}, mean {it['mean']:.3g}, "
                    f"active {100 * it['active']:.0f}%</div></div>")
            parts.append("</div>")
    for sec in sections:
        parts += _section(out_root, sec)
    parts.append("</body></html>")
    path = Path(out_root) / "index.html"
    atomic_write(path, lambda tmp: Path(tmp).write_text("\n".join(parts), encoding="utf-8"))
    return path
