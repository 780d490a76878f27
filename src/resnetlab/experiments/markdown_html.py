"""A report's Markdown as one self-contained HTML page, the PNGs embedded so that it travels as one file.

The Markdown is rendered by markdown-it-py (CommonMark plus pipe tables); this module only adds what a report page
needs on top: GitHub's heading anchors, so that the report's ``[...](#anchor)`` links work in the page as they do on
GitHub, and local images as ``data:`` URIs.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from markdown_it import MarkdownIt

STYLE = """body{font-family:system-ui,sans-serif;max-width:1400px;margin:2em auto;padding:0 1em;line-height:1.45}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee}code{background:#f5f5f5;padding:0 3px}
h1{border-bottom:2px solid #ddd}h2{border-bottom:1px solid #eee;margin-top:2em}"""


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
    """A data: URI of a local PNG; other targets are kept as they are."""
    path = base_dir / target
    if target.startswith(("http:", "https:", "data:")) or not path.is_file():
        return target
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def markdown_to_html(text: str, base_dir: Path, title: str = "report") -> str:
    """HTML page of ``text``; images are read relative to ``base_dir`` and embedded."""
    parser = MarkdownIt("commonmark").enable("table")
    tokens = parser.parse(text)
    slug = Slugger()
    for index, token in enumerate(tokens):
        if token.type == "heading_open":
            token.attrSet("id", slug(tokens[index + 1].content))  # the source text, as report.py's links use
        for child in token.children or []:
            if child.type == "image":
                child.attrSet("src", image_source(str(child.attrGet("src")), base_dir))
    body = parser.renderer.render(tokens, parser.options, {})
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>\n{body}</body></html>\n")
