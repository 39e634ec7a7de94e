"""Tiny HTML building blocks for a self-contained page: escaped text, tables, images as data URIs.

No templates, no scripts, no external resources: the page renders from the file alone, offline.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1400px;
       color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; border-bottom: 1px solid #ccc; padding-bottom: .2em;
       margin-top: 2em; }
table { border-collapse: collapse; margin: .6em 0; font-size: .85em; }
th, td { border: 1px solid #ddd; padding: .25em .55em; text-align: right; }
th { background: #f3f3f3; } td.text, th.text { text-align: left; }
.warning { background: #fff3cd; border: 1px solid #e0b000; padding: .6em 1em; border-radius: 4px; }
.note { color: #555; font-size: .9em; }
img { max-width: 100%; image-rendering: pixelated; }
pre { background: #f7f7f7; padding: .6em; overflow-x: auto; font-size: .8em; }
nav a { margin-right: 1em; }
.scroll { overflow-x: auto; } .fig { margin: .6em 0; }
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def fmt(value: Any) -> str:
    """Numbers as a reader wants them: 4 significant digits, integers as they are."""
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        return "–" if not np.isfinite(value) else f"{float(value):.4g}"
    return esc(value)


def png_img(png: bytes, alt: str, width: int | None = None) -> str:
    """An <img> carrying the PNG inline (data URI), so the file needs nothing else to show it."""
    data = base64.b64encode(png).decode("ascii")
    size = f' width="{width}"' if width else ""
    return f'<div class="fig"><img src="data:image/png;base64,{data}" alt="{esc(alt)}"{size}></div>'


def frame_table(frame: pd.DataFrame, index: bool = True) -> str:
    """A pandas frame as an HTML table; numbers right-aligned and shortened, text left-aligned."""
    if frame.empty:
        return '<p class="note">(empty)</p>'
    head = ([f'<th class="text">{esc(frame.index.name or "")}</th>'] if index else []) + [
        f"<th>{esc(c)}</th>" for c in frame.columns
    ]
    rows = []
    for idx, row in frame.iterrows():
        cells = [f'<td class="text">{esc(idx)}</td>'] if index else []
        for v in row:
            cls = "" if isinstance(v, int | float | np.number | bool | np.bool_) else ' class="text"'
            cells.append(f"<td{cls}>{fmt(v)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    table = f"<table><thead><tr>{''.join(head)}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    return f'<div class="scroll">{table}</div>'


def key_values(items: Iterable[tuple[str, Any]]) -> str:
    """A two-column table of named values."""
    rows = "".join(f'<tr><th class="text">{esc(k)}</th><td class="text">{fmt(v)}</td></tr>' for k, v in items)
    return f"<table>{rows}</table>"


def section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{esc(anchor)}"><h2>{esc(title)}</h2>\n{body}\n</section>'


def page(title: str, sections: list[tuple[str, str, str]], intro: str = "") -> str:
    """The whole document: a navigation line and the (anchor, title, body) sections in order."""
    nav = " ".join(f'<a href="#{esc(a)}">{esc(t)}</a>' for a, t, _ in sections)
    body = "\n".join(section(a, t, b) for a, t, b in sections)
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<style>{STYLE}</style></head>\n<body>\n<h1>{esc(title)}</h1>\n{intro}\n<nav>{nav}</nav>\n{body}\n"
        "</body></html>\n"
    )
