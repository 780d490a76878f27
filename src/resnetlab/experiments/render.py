"""Markdown from the experiments' data. Each experiment keeps its results as data in ``experiment.json`` (under
``"report"``: the setup rows, the shown table, the verdicts, the notes, the figure and data files; the numbers
themselves are in its CSVs) and ``results.md`` is rendered from it; ``resnetlab report`` renders the same data
again, with the same template, as one section each of the combined report. Nothing is re-read from Markdown.

The template mechanism is Jinja2 rather than ``string.Template``: the pages are loops (setup rows, verdicts, notes,
sections) and a few conditionals, which ``string.Template`` cannot express, so it would leave the Markdown to be
assembled in Python again. Jinja2 is already installed with PyTorch (a dependency of ``torch``), so it costs nothing.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from resnetlab.experiments.markdown_html import Slugger
from resnetlab.experiments.tables import markdown_table
from resnetlab.files import atomic_write_text, write_json

TEMPLATES = Path(__file__).parent / "templates"
_HEADING = re.compile(r"^#{1,6} (.*)$", re.MULTILINE)


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=False, trim_blocks=True,
                             lstrip_blocks=True, keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    env.filters["markdown_table"] = markdown_table
    return env


def render_section(section: dict[str, Any], level: int = 1, link: Callable[[str], str] = str) -> str:
    """One experiment's results as Markdown, its title at heading ``level``; ``link`` maps the names of its files
    to link targets (relative to the document the section goes into)."""
    return environment().get_template("experiment.md.j2").render(s=section, h="#" * level, link=link)


def publish_results(exp_dir: Path, record: dict[str, Any], section: dict[str, Any]) -> Path:
    """Keep ``section`` in the experiment's record (``experiment.json``) and render ``results.md`` from it."""
    from resnetlab.experiments.records import EXPERIMENT_FILE

    record["report"] = section
    write_json(exp_dir / EXPERIMENT_FILE, record)
    return atomic_write_text(exp_dir / "results.md", render_section(section))


def relative_link(exp_dir: Path, output_dir: Path) -> Callable[[str], str]:
    """A file of ``exp_dir`` as a link from ``output_dir``."""
    return lambda name: Path(os.path.relpath((exp_dir / name).resolve(), output_dir.resolve())).as_posix()


def render_report(experiments: list[tuple[Path, dict[str, Any]]], output_dir: Path, overview: dict[str, list],
                  generated: str) -> str:
    """The combined report: overview, every verdict with a link to its section, then the sections."""
    slug = Slugger()
    for heading in ("resnetlab experiment report", "Overview", "Verdicts"):
        slug(heading)
    entries = []
    for exp_dir, record in experiments:
        section = record["report"]
        markdown = render_section(section, level=2, link=relative_link(exp_dir, output_dir)).rstrip()
        anchors = [slug(heading) for heading in _HEADING.findall(markdown)]  # GitHub numbers repeated headings
        entries.append({"title": record["title"], "anchor": anchors[0], "verdicts": section["verdicts"],
                        "markdown": markdown + "\n"})
    return environment().get_template("report.md.j2").render(experiments=entries, overview=overview,
                                                              generated=generated)
