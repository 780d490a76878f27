"""The small Markdown subset the experiment reports use (headings, paragraphs, lists, pipe tables, images, links,
``code``, **bold**) as one self-contained HTML page with the PNGs embedded, so the report travels as one file."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from resnetlab.experiments.tables import split_row

STYLE = """body{font-family:system-ui,sans-serif;max-width:1400px;margin:2em auto;padding:0 1em;line-height:1.45}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee}code{background:#f5f5f5;padding:0 3px}
h1{border-bottom:2px solid #ddd}h2{border-bottom:1px solid #eee;margin-top:2em}"""

_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*([^*]+)\*\*")


class Slugger:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, repeats numbered -1, -2..."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}

    def __call__(self, text: str) -> str:
        slug = re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")
        count = self.seen.get(slug, 0)
        self.seen[slug] = count + 1
        return slug if count == 0 else f"{slug}-{count}"


def image_source(target: str, base_dir: Path) -> str:
    """A data: URI of a local PNG (other targets are kept as links)."""
    path = base_dir / target
    if target.startswith(("http:", "https:", "data:")) or not path.is_file():
        return html.escape(target)
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def inline(text: str, base_dir: Path) -> str:
    codes: list[str] = []

    def keep_code(match: re.Match) -> str:
        codes.append(f"<code>{html.escape(match.group(1))}</code>")
        return f"\x00{len(codes) - 1}\x00"

    text = _CODE.sub(keep_code, text)
    text = html.escape(text, quote=False)
    text = _IMAGE.sub(lambda m: f'<img alt="{m.group(1)}" src="{image_source(m.group(2), base_dir)}">', text)
    text = _LINK.sub(lambda m: f'<a href="{m.group(2)}">{m.group(1)}</a>', text)
    text = _BOLD.sub(r"<strong>\1</strong>", text)
    return re.sub("\x00(\\d+)\x00", lambda m: codes[int(m.group(1))], text)


def table_html(rows: list[str], base_dir: Path) -> str:
    cells = [[cell.strip().replace("\\|", "|") for cell in split_row(row)] for row in rows]
    head = "".join(f"<th>{inline(c, base_dir)}</th>" for c in cells[0])
    body = "".join("<tr>" + "".join(f"<td>{inline(c, base_dir)}</td>" for c in row) + "</tr>" for row in cells[2:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def markdown_to_html(text: str, base_dir: Path, title: str = "report") -> str:
    """HTML page of ``text``; images are read relative to ``base_dir`` and embedded."""
    out, paragraph, items, table = [], [], [], []
    slug = Slugger()

    def flush() -> None:
        if paragraph:
            out.append(f"<p>{inline(' '.join(paragraph), base_dir)}</p>")
            paragraph.clear()
        if items:
            out.append("<ul>" + "".join(f"<li>{inline(i, base_dir)}</li>" for i in items) + "</ul>")
            items.clear()
        if table:
            out.append(table_html(table, base_dir))
            table.clear()

    for line in text.splitlines():
        stripped = line.strip()
        heading = re.match(r"(#{1,6}) (.*)", stripped)
        if not stripped:
            flush()
        elif heading:
            flush()
            level, words = len(heading.group(1)), heading.group(2)
            out.append(f'<h{level} id="{slug(words)}">{inline(words, base_dir)}</h{level}>')
        elif stripped.startswith("|"):
            if not table:
                flush()
            table.append(stripped)
        elif stripped.startswith("- "):
            if paragraph or table:
                flush()
            items.append(stripped[2:])
        elif items and line.startswith("  "):
            items[-1] += " " + stripped
        else:
            if items or table:
                flush()
            paragraph.append(stripped)
    flush()
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>\n" + "\n".join(out) + "\n</body></html>\n")
