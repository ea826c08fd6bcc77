"""A self-contained HTML report: headings, paragraphs, tables and the run's PNG plots.

Plots are referenced by relative path, so a run directory can be copied or zipped whole.
"""

from __future__ import annotations

import contextlib
import html
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from proxygap.fileio import write_text_atomic

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
th { background: #f3f3f3; } td.l, th.l { text-align: left; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
code, pre { background: #f6f6f6; padding: 2px 4px; } pre { padding: 8px; overflow-x: auto; }
.note { color: #555; font-size: 14px; }
details { margin: 0.5em 0; } summary { cursor: pointer; color: #333; }
"""


def first_seed(res: dict) -> int:
    """The seed a report's examples come from: the run's first (``--seed-offset`` moves it from 0)."""
    return (res.get("seeds") or [0])[0]


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value != value:
            return "–"
        return f"{value:.{digits}f}" if abs(value) < 1e4 else f"{value:.3g}"
    return str(value)


class Report:
    """Accumulates sections, then writes ``report.html``."""

    def __init__(self, title: str):
        self.title = title
        self.parts: list[str] = []

    def heading(self, text: str, level: int = 2) -> None:
        self.parts.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def paragraph(self, text: str, note: bool = False) -> None:
        cls = ' class="note"' if note else ""
        self.parts.append(f"<p{cls}>{html.escape(text)}</p>")

    def table(self, header: Sequence[str], rows: Sequence[Sequence[Any]], left_columns: int = 1) -> None:
        def cell(tag: str, i: int, value: Any) -> str:
            cls = ' class="l"' if i < left_columns else ""
            return f"<{tag}{cls}>{html.escape(fmt(value))}</{tag}>"

        head = "".join(cell("th", i, h) for i, h in enumerate(header))
        body = "".join("<tr>" + "".join(cell("td", i, v) for i, v in enumerate(row)) + "</tr>" for row in rows)
        self.parts.append(f"<table><tr>{head}</tr>{body}</table>")

    def image(self, filename: str, caption: str = "") -> None:
        self.parts.append(f'<figure><img src="{html.escape(filename)}" alt="{html.escape(caption)}">'
                          f"<figcaption class=\"note\">{html.escape(caption)}</figcaption></figure>")

    @contextlib.contextmanager
    def fold(self, summary: str) -> Iterator[None]:
        """Everything added inside the ``with`` block goes under a collapsed ``<details>``."""
        self.parts.append(f"<details><summary>{html.escape(summary)}</summary>")
        try:
            yield
        finally:
            self.parts.append("</details>")

    def code(self, text: str) -> None:
        self.parts.append(f"<pre>{html.escape(text)}</pre>")

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        page = (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{html.escape(self.title)}</title>"
                f"<style>{_STYLE}</style></head><body><h1>{html.escape(self.title)}</h1>"
                + "\n".join(self.parts) + "</body></html>\n")
        return write_text_atomic(path, page)
