"""Whole pages: the patient page and the index, one HTML document each with its CSS inline (no script,
no external resource: a page opens the same from a USB stick or an e-mail attachment)."""

from __future__ import annotations

from typing import Any

from fusion.report.patient_pages.html import esc, nested

BANNER = (
    "Research use only — not for clinical decision-making. These are a research model's outputs, "
    "not a diagnosis or a treatment recommendation."
)
PRIVACY = (
    "This page holds patient data (ids, predictions, outcomes): share it as you share the outcomes "
    "themselves."
)

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0;color:#1c2430;
 background:#f4f6f9;line-height:1.45}
main{max-width:1080px;margin:0 auto;padding:0 20px 24px}
.banner{background:#fdecea;border-bottom:3px solid #c0392b;color:#7b1d14;font-weight:600;padding:10px 20px;
 text-align:center}
h1{font-size:1.6em;margin:18px 0 4px}
h2{font-size:1.2em;border-bottom:2px solid #d5dbe3;padding-bottom:4px;margin-top:28px}
h3{font-size:1.05em;margin:4px 0 8px}
h4{font-size:.95em;margin:10px 0 6px}
section{background:#fff;border:1px solid #dde3ea;border-radius:8px;padding:4px 18px 14px;margin-top:16px}
.card{border:1px solid #e3e8ee;border-radius:6px;padding:8px 12px;margin:10px 0;background:#fbfcfd}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(330px,1fr));gap:10px}
.grid.wide{grid-template-columns:repeat(auto-fill,minmax(460px,1fr))}
.grid .card{overflow-x:auto}
.grid .card table{width:100%}
.note{color:#5a6573;font-style:italic}
.small{color:#5a6573;font-size:.85em;margin:4px 0}
.sub{color:#5a6573;margin:0 0 8px}
table{border-collapse:collapse;margin:6px 0;font-size:.9em}
th,td{border-bottom:1px solid #e3e8ee;padding:3px 10px 3px 0;text-align:left;vertical-align:middle}
th{color:#44505e;font-weight:600}
.barrow{display:flex;align-items:center;gap:8px;margin:3px 0}
.cls{min-width:64px;font-weight:600}
.bar,.sbar{display:inline-block;position:relative;width:220px;height:14px;background:#e8ecf1;border-radius:3px;
 overflow:hidden;vertical-align:middle}
.bar .fill{position:absolute;left:0;top:0;bottom:0;background:#7a9cc6}
.bar.best .fill{background:#1f5fa8}
.sbar{width:90px}
.sbar:after{content:"";position:absolute;left:50%;top:0;bottom:0;border-left:1px solid #44505e}
.sbar .fill{position:absolute;top:0;bottom:0}
.sbar .pos{left:50%;background:#c0392b}
.sbar .neg{right:50%;background:#2f6fb5}
.barlabel{display:inline-block;min-width:52px;margin-left:6px;font-variant-numeric:tabular-nums;white-space:nowrap}
td{white-space:nowrap}
.tag{background:#1f5fa8;color:#fff;border-radius:3px;font-size:.75em;padding:1px 6px}
.chip{display:inline-block;border-radius:12px;padding:2px 10px;margin:3px 6px 3px 0;font-size:.9em}
.chip.present{background:#e3f4ea;color:#1e6b3a;border:1px solid #9fd4b3}
.chip.missing{background:#f1f1f1;color:#7a7a7a;border:1px dashed #b5b5b5}
img.plot{max-width:100%;height:auto;display:block;margin:8px 0}
.maps{display:flex;flex-wrap:wrap;gap:12px}
figure{margin:0}
img.map{width:100%;height:auto;border:1px solid #dde3ea}
.maps figure{flex:1 1 380px;max-width:520px}
figcaption{font-size:.8em;color:#5a6573}
footer{margin-top:24px;font-size:.85em;color:#44505e}
dl.nested{margin:0;display:grid;grid-template-columns:max-content auto;column-gap:12px}
dl.nested dt{font-weight:600}
dl.nested dd{margin:0;word-break:break-all}
a{color:#1f5fa8}
"""


def document(title: str, body: str) -> str:
    """A complete HTML page: the banner, then `body` (already HTML, its values escaped)."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f'<div class="banner" role="alert">{esc(BANNER)}</div><main>{body}</main></body></html>\n'
    )


def section(title: str, body: str, anchor: str) -> str:
    return f'<section id="{esc(anchor)}"><h2>{esc(title)}</h2>{body}</section>'


def footer(provenance: dict[str, Any] | None) -> str:
    """The provenance footer, and the privacy line."""
    recorded = nested(provenance) if provenance else '<p class="note">No provenance was recorded.</p>'
    return f'<footer><h2>Provenance</h2>{recorded}<p class="small">{esc(PRIVACY)}</p></footer>'
