"""HTML building blocks. Every value reaches the page through `esc` (or `cell`, which calls it)."""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

#: what an empty cell shows
EMPTY = "–"


def esc(value: Any) -> str:
    """`value` as text, HTML-escaped (quotes included, so it is safe inside attributes too)."""
    return html.escape(str(value), quote=True)


def is_missing(value: Any) -> bool:
    """None, NaN, pd.NA, NaT and the empty string: a cell with nothing in it."""
    if value is None:
        return True
    if isinstance(value, str):
        return value.strip() == ""
    return bool(pd.api.types.is_scalar(value) and pd.isna(value))


def number(value: Any) -> float | None:
    """A cell as a float; None when it is missing or not a number."""
    if is_missing(value):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def text(value: Any, digits: int = 3) -> str:
    """A readable cell, not yet escaped: floats rounded to `digits` significant decimals, bools yes/no."""
    if is_missing(value):
        return EMPTY
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) or type(value).__name__.startswith("float"):
        number = float(value)
        return str(int(number)) if number.is_integer() and abs(number) < 1e15 else f"{number:.{digits}g}"
    return str(value)


def cell(value: Any, digits: int = 3) -> str:
    """`text`, escaped."""
    return esc(text(value, digits))


def table(columns: Sequence[str], rows: Sequence[Sequence[Any]], css: str = "") -> str:
    """A table: escaped headers and cells (cells already rendered as HTML are passed as `Markup`)."""
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_html(v)}</td>" for v in row) + "</tr>" for row in rows)
    klass = f' class="{esc(css)}"' if css else ""
    return f"<table{klass}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class Markup(str):
    """A string that already is safe HTML (built here from escaped parts)."""


def _html(value: Any) -> str:
    return value if isinstance(value, Markup) else cell(value)


def nested(value: Any) -> str:
    """Any JSON-like value (dicts within dicts, lists) as nested definition lists, every leaf escaped."""
    if isinstance(value, Mapping):
        if not value:
            return esc(EMPTY)
        items = "".join(f"<dt>{esc(k)}</dt><dd>{nested(v)}</dd>" for k, v in value.items())
        return f'<dl class="nested">{items}</dl>'
    if isinstance(value, list | tuple):
        if all(not isinstance(v, Mapping | list | tuple) for v in value):
            return esc(", ".join(text(v, 6) for v in value)) if value else esc(EMPTY)
        return "<ol>" + "".join(f"<li>{nested(v)}</li>" for v in value) + "</ol>"
    return cell(value, 6)


def png_img(png: bytes, alt: str, css: str = "") -> str:
    """An <img> with the PNG inline as a data: URI (the page needs no other file)."""
    data = base64.b64encode(png).decode("ascii")
    klass = f' class="{esc(css)}"' if css else ""
    return f'<img{klass} src="data:image/png;base64,{data}" alt="{esc(alt)}">'


def bar(fraction: Any, label: str, css: str = "") -> str:
    """A horizontal bar filled to `fraction` (0..1, clipped; empty when not a number) with its `label`."""
    value = number(fraction)
    width = 0.0 if value is None else min(max(value, 0.0), 1.0) * 100
    klass = f" {esc(css)}" if css else ""
    return (
        f'<span class="bar{klass}"><span class="fill" style="width:{width:.1f}%"></span></span>'
        f'<span class="barlabel">{esc(label)}</span>'
    )


def signed_bar(value: Any, scale: float, label: str) -> str:
    """A bar from a centre line: right (red) for a positive value, left (blue) for a negative one; its
    length is |value| / `scale` of half the width."""
    known = number(value)
    share = 0.0 if known is None or scale <= 0 else min(abs(known) / scale, 1.0) * 50
    side = "pos" if known is not None and known >= 0 else "neg"
    return (
        f'<span class="sbar"><span class="fill {side}" style="width:{share:.1f}%"></span></span>'
        f'<span class="barlabel">{esc(label)}</span>'
    )
