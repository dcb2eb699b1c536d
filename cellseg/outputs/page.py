"""HTML building blocks of ``report.html``: escaping, numbers, PNG ``data:`` URIs and
thumbnails, tables, and a page of anchored sections with a navigation bar.

Nothing here loads anything from outside the page: images are embedded, the style is
inline, there is no script, and links go to the page's own anchors.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

THUMB = 360  # px, longer side of an image thumbnail
CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:1200px;padding:0 16px 48px;
color:#222;line-height:1.4}
h1{font-size:1.6em;margin:16px 0 4px}h2{border-bottom:1px solid #ccc;padding-top:8px;margin-top:28px}
nav{position:sticky;top:0;background:#fff;padding:6px 0;border-bottom:1px solid #eee;z-index:1}
nav a{margin-right:14px;text-decoration:none;color:#0550ae}
table{border-collapse:collapse;margin:8px 0;font-size:.9em}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:middle}
th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
.gallery{display:flex;flex-wrap:wrap;gap:12px}figure{margin:0}
figcaption{font-size:.8em;color:#555;max-width:360px;overflow-wrap:anywhere}
img{max-width:100%;height:auto}img.pix{image-rendering:pixelated}td img{max-width:none}
.scroll{overflow-x:auto;max-width:100%}
.note{color:#555;font-size:.9em}.warn{color:#a40}code,pre{font-size:.85em}
pre{background:#f7f7f7;padding:8px;overflow:auto;max-height:420px}
.key{display:inline-block;width:.9em;height:.9em;margin:0 4px 0 10px;vertical-align:middle}
"""


def esc(value: Any) -> str:
    """Text for HTML (content or attribute value)."""
    return html.escape(str(value), quote=True)


def fmt(value: Any) -> str:
    """A value as the tables show it: whole numbers (counts, also when stored as floats) as
    such, other numbers to 4 decimals, missing ones as a dash."""
    if value is None or (isinstance(value, (float, np.floating)) and math.isnan(value)):
        return "–"
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return str(value)
    if isinstance(value, (int, np.integer)) or float(value).is_integer():
        return f"{value:.0f}"
    return f"{value:.4f}" if abs(value) < 1e4 else f"{value:.4g}"


def png_uri(image: np.ndarray | Image.Image) -> str:
    """A ``data:image/png;base64`` URI of an image."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(np.ascontiguousarray(image))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def shrink(rgb: np.ndarray, max_side: int = THUMB) -> np.ndarray:
    """Downscale an overlay by a whole factor so its longer side fits ``max_side``: in each
    block the most coloured pixel wins (so 1-px outlines stay visible), grey blocks average."""
    rgb = rgb[..., :3] if rgb.ndim == 3 else np.repeat(rgb[..., None], 3, axis=-1)
    factor = math.ceil(max(rgb.shape[:2]) / max_side)
    if factor <= 1:
        return rgb
    h, w = rgb.shape[0] // factor, rgb.shape[1] // factor
    blocks = rgb[: h * factor, : w * factor].reshape(h, factor, w, factor, 3).transpose(0, 2, 1, 3, 4)
    blocks = blocks.reshape(h, w, factor * factor, 3)
    colour = blocks.max(-1).astype(np.int16) - blocks.min(-1)
    pick = np.take_along_axis(blocks, colour.argmax(-1)[..., None, None], axis=2)[:, :, 0]
    return np.where((colour.max(-1) > 0)[..., None], pick, blocks.mean(2).astype(np.uint8))


def img(uri: str, alt: str, width: int, height: int, cls: str = "") -> str:
    """An ``<img>`` of a data URI, with its size (the page does not jump while it renders)."""
    klass = f' class="{cls}"' if cls else ""
    return f'<img src="{uri}" alt="{esc(alt)}" width="{width}" height="{height}"{klass}>'


def image_tag(rgb: np.ndarray, alt: str, max_side: int = THUMB) -> str:
    """An overlay (or any RGB array) as a thumbnail ``<img>``."""
    small = shrink(rgb, max_side)
    return img(png_uri(small), alt, small.shape[1], small.shape[0])


def picture_tag(path: Path, alt: str, max_width: int = 1000) -> str:
    """A plot PNG from the output folder, scaled smoothly to ``max_width`` at most."""
    with Image.open(path) as picture:
        picture = picture.convert("RGB")
        if picture.width > max_width:
            picture = picture.resize((max_width, round(picture.height * max_width / picture.width)), Image.LANCZOS)
        return img(png_uri(picture), alt, picture.width, picture.height)


def figure_tag(draw: Callable[[Figure], None], alt: str, size: tuple[float, float], dpi: int = 90) -> str:
    """A matplotlib figure drawn by ``draw(figure)`` (Agg, no display) as an ``<img>``."""
    figure = Figure(figsize=size, dpi=dpi, layout="constrained")
    draw(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    width, height = round(size[0] * dpi), round(size[1] * dpi)
    return img("data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"), alt, width, height)


def figure_box(content: str, caption: str) -> str:
    """An image with its caption, for a gallery."""
    return f"<figure>{content}<figcaption>{esc(caption)}</figcaption></figure>"


def table(
    header: Iterable[str], rows: Iterable[Iterable[Any]], table_id: str = "", row_attrs: Iterable[dict] | None = None
) -> str:
    """An HTML table; numbers right-aligned and formatted, cells given as ``("html", s)`` raw."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = []
    attrs_list = list(row_attrs) if row_attrs is not None else None
    for i, row in enumerate(rows):
        cells = []
        for value in row:
            if isinstance(value, tuple) and value and value[0] == "html":
                cells.append(f"<td>{value[1]}</td>")
            elif isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
                cells.append(f'<td class="num">{esc(fmt(value))}</td>')
            else:
                cells.append(f"<td>{esc(fmt(value))}</td>")
        attrs = "".join(f' {k}="{esc(v)}"' for k, v in (attrs_list[i] if attrs_list else {}).items())
        body.append(f"<tr{attrs}>{''.join(cells)}</tr>")
    ident = f' id="{esc(table_id)}"' if table_id else ""
    rows_html = "".join(body)
    return f'<div class="scroll"><table{ident}><thead><tr>{head}</tr></thead><tbody>{rows_html}</tbody></table></div>'


def value_table(values: dict, table_id: str) -> str:
    """Name / value rows; each value cell carries its exact JSON value in ``data-value``."""
    rows = []
    for key, value in values.items():
        exact = esc(json.dumps(value, default=str))
        shown = esc(fmt(value) if not isinstance(value, (list, dict)) else _short(value))
        klass = ' class="num"' if isinstance(value, (int, float)) and not isinstance(value, bool) else ""
        rows.append(f'<tr><th>{esc(key)}</th><td{klass} data-key="{esc(key)}" data-value="{exact}">{shown}</td></tr>')
    return f'<div class="scroll"><table id="{esc(table_id)}"><tbody>{"".join(rows)}</tbody></table></div>'


def _short(value: list | dict, limit: int = 12) -> str:
    items = [f"{k}: {v}" for k, v in value.items()] if isinstance(value, dict) else [str(v) for v in value]
    return ", ".join(items[:limit]) + (f" … ({len(items)} in all)" if len(items) > limit else "")


def table_html(header: list[str], rows: list, total: int, table_id: str = "") -> str:
    """A table of the first rows of ``total``, saying so when some are left out."""
    shown = table(header, rows, table_id)
    if total <= len(rows):
        return shown
    return shown + f'<p class="note">First {len(rows)} of {total} rows (all are in the output files).</p>'


class Page:
    """Sections with anchors, a navigation bar that links to each, and the HTML around them."""

    def __init__(self, title: str, subtitle: str):
        self.title, self.subtitle = title, subtitle
        self.sections: list[tuple[str, str, str]] = []

    def add(self, anchor: str, heading: str, body: str) -> None:
        """A section ``#anchor`` with its heading (text) and body (HTML)."""
        self.sections.append((anchor, heading, body))

    def render(self) -> str:
        """The whole document."""
        nav = "".join(f'<a href="#{esc(a)}">{esc(h)}</a>' for a, h, _ in self.sections)
        parts = "".join(f'<section id="{esc(a)}"><h2>{esc(h)}</h2>{b}</section>' for a, h, b in self.sections)
        return (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(self.title)}</title><style>{CSS}</style></head><body>"
            f'<h1 id="top">{esc(self.title)}</h1><p class="note">{esc(self.subtitle)}</p>'
            f"<nav>{nav}</nav>{parts}</body></html>\n"
        )
