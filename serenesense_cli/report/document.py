"""A tiny document model rendered twice: Markdown and self-contained HTML.

Why: ``report.md`` and ``report.html`` must hold the same numbers; building
one list of blocks and rendering it two ways guarantees that. Every string is
escaped by the renderer (HTML entities, Markdown punctuation), so user
strings such as class names and paths can never inject markup.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Para:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Image:
    path: Path
    """The PNG file; Markdown links it relative to the report, HTML embeds it."""
    alt: str


Block = Heading | Para | Bullets | Table | Image

_MD_SPECIAL = re.compile(r"([\\`*\[\]|#$])")
_MD_EDGE_UNDERSCORE = re.compile(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")


def md_escape(text: str) -> str:
    """Plain text for Markdown: HTML entities plus backslash-escaped punctuation."""
    text = html.escape(str(text), quote=False)
    text = _MD_SPECIAL.sub(r"\\\1", text)
    text = _MD_EDGE_UNDERSCORE.sub(r"\\_", text)
    return text.replace("\n", " ")


def to_markdown(blocks: Sequence[Block], *, base: Path) -> str:
    """Markdown; images are linked relative to ``base`` (the report's folder)."""
    out: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            out.append(f"{'#' * block.level} {md_escape(block.text)}\n")
        elif isinstance(block, Para):
            out.append(md_escape(block.text) + "\n")
        elif isinstance(block, Bullets):
            out.append("\n".join(f"- {md_escape(item)}" for item in block.items) + "\n")
        elif isinstance(block, Table):
            out.append(_md_table(block))
        elif isinstance(block, Image):
            rel = block.path.relative_to(base).as_posix()
            out.append(f"![{md_escape(block.alt)}]({rel})\n")
    return "\n".join(out)


def _md_table(table: Table) -> str:
    lines = [
        "| " + " | ".join(md_escape(h) for h in table.headers) + " |",
        "|" + "|".join("---" for _ in table.headers) + "|",
    ]
    lines += ["| " + " | ".join(md_escape(c) for c in row) + " |" for row in table.rows]
    return "\n".join(lines) + "\n"


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto;
       max-width: 1320px; padding: 0 1rem; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .3rem; }
h2 { border-bottom: 1px solid #eee; padding-bottom: .2rem; margin-top: 2.2rem; }
.scroll { overflow-x: auto; margin: .8rem 0; }
table { border-collapse: collapse; font-size: .84rem; }
th, td { border: 1px solid #ddd; padding: .3rem .55rem; text-align: left; vertical-align: top; }
th { background: #f4f6f8; }
tr:nth-child(even) td { background: #fafbfc; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.missing { color: #999; font-style: italic; white-space: nowrap; }
figure { margin: 1rem 0; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #666; font-size: .85rem; }
"""

_NUMERIC = re.compile(r"^([-+]?[\d,]*\.?\d+( ?(%|ms|MB|s|h|min|pts))?|\d+ (h|min) \d+ (min|s))$")


def to_html(blocks: Sequence[Block], *, title: str) -> str:
    """A self-contained HTML page (CSS inline, PNGs as data URIs, no scripts)."""
    body: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            level = min(max(block.level, 1), 6)
            body.append(f"<h{level}>{html.escape(block.text)}</h{level}>")
        elif isinstance(block, Para):
            body.append(f"<p>{html.escape(block.text)}</p>")
        elif isinstance(block, Bullets):
            items = "".join(f"<li>{html.escape(i)}</li>" for i in block.items)
            body.append(f"<ul>{items}</ul>")
        elif isinstance(block, Table):
            body.append(_html_table(block))
        elif isinstance(block, Image):
            data = base64.b64encode(block.path.read_bytes()).decode("ascii")
            alt = html.escape(block.alt)
            body.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{alt}">'
                f"<figcaption>{alt}</figcaption></figure>"
            )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def _html_table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.headers)
    rows = []
    for row in table.rows:
        cells = []
        for cell in row:
            css = "missing" if cell == "missing" else ("num" if _NUMERIC.match(cell) else "")
            attr = f' class="{css}"' if css else ""
            cells.append(f"<td{attr}>{html.escape(cell)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )
