"""``resnetlab report``: every experiment directory's ``results.md`` gathered into one document a person reads top
to bottom (overview, verdicts, then each experiment's setup, results and notes), as Markdown with relative image
links and as one self-contained HTML page."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from resnetlab.errors import UserError
from resnetlab.experiments.markdown_html import Slugger, markdown_to_html
from resnetlab.experiments.records import data_text, length_text, measured_seconds, read_experiment, record_data
from resnetlab.experiments.tables import DASH
from resnetlab.files import atomic_write_text

KIND_ORDER = ("degradation", "shortcuts", "preact", "gradients", "responses")
_TARGET = re.compile(r"(!?\[[^\]]*\])\(([^)\s]+)\)")


def section_lines(text: str, name: str) -> list[str]:
    """The lines under the ``## name`` heading of a results.md, up to the next heading."""
    lines, inside = [], False
    for line in text.splitlines():
        if line.startswith("#"):
            inside = line.strip() == f"## {name}"
            continue
        if inside and line.strip():
            lines.append(line)
    return lines


def relink(text: str, source_dir: Path, output_dir: Path) -> str:
    """Rewrite relative link and image targets of a results.md so they resolve from the report's folder."""
    def fix(match: re.Match) -> str:
        target = match.group(2)
        if re.match(r"^[a-z]+:|^#|^/", target):
            return match.group(0)
        moved = os.path.relpath((source_dir / target).resolve(), output_dir.resolve())
        return f"{match.group(1)}({Path(moved).as_posix()})"
    return _TARGET.sub(fix, text)


def demote(text: str) -> str:
    return "\n".join("#" + line if re.match(r"#{1,5} ", line) else line for line in text.splitlines())


def overview_row(exp_dir: Path, record: dict) -> str:
    config, arguments = record.get("config") or {}, record.get("arguments", {})
    recipe = f"{arguments.get('recipe', DASH)}, {length_text(config)}" if config else DASH
    runs = len(record.get("runs") or []) or DASH
    wall = measured_seconds(record)
    data = data_text(record_data(record))
    return (f"| {record['title']} | `{exp_dir}` | {data} | {recipe} | {runs} | {wall:,.0f} s | "
            f"{record.get('status', '?')} |")


def build_report(exp_dirs: list[str | Path], output: str | Path = "report.md", html: bool = True
                 ) -> tuple[Path, Path | None]:
    """Write ``output`` (Markdown) and, with ``html``, the same report as ``.html`` with images embedded."""
    if not exp_dirs:
        raise UserError("give at least one experiment directory")
    output = Path(output)
    found = []
    for exp_dir in map(Path, exp_dirs):
        record = read_experiment(exp_dir)
        if not (exp_dir / "results.md").exists():
            raise UserError(f"{exp_dir}: no results.md yet (the experiment has not finished once)")
        found.append((exp_dir, record, (exp_dir / "results.md").read_text()))
    found.sort(key=lambda item: KIND_ORDER.index(item[1]["kind"]) if item[1]["kind"] in KIND_ORDER else 99)

    slug = Slugger()
    for heading in ("resnetlab experiment report", "Overview", "Verdicts"):
        slug(heading)
    lines = ["# resnetlab experiment report", "",
             (f"Generated {time.strftime('%Y-%m-%d %H:%M')} from {len(found)} experiment director"
             f"{'y' if len(found) == 1 else 'ies'}. Each section below gives the setup (hardware, data, recipe, "
             "seeds, wall time), the results next to the paper's numbers, the verdict on each of the paper's "
             "claims and notes on what was measured. DRL = He et al. 2015, \"Deep Residual Learning for Image "
             "Recognition\"; IM = He et al. 2016, \"Identity Mappings in Deep Residual Networks\"."), "",
             "## Overview", "", "| experiment | directory | data | recipe | runs | time | status |",
             "|---|---|---|---|---|---|---|", *(overview_row(d, r) for d, r, _ in found), "", "## Verdicts", ""]
    anchors = []
    for exp_dir, record, text in found:
        anchor = None
        for line in demote(text).splitlines():
            heading = re.match(r"#{1,6} (.*)", line)
            if heading:
                name = slug(heading.group(1).strip())
                anchor = anchor or name
        anchors.append(anchor)
        verdicts = section_lines(text, "Verdicts")
        lines += [f"**[{record['title']}](#{anchor})**", "", *(verdicts or ["- (no verdicts)"]), ""]
    for exp_dir, _, text in found:
        lines += [demote(relink(text, exp_dir, output.parent)).rstrip(), ""]
    markdown = "\n".join(lines)
    atomic_write_text(output, markdown)
    html_path = None
    if html:
        html_path = output.with_suffix(".html")
        atomic_write_text(html_path, markdown_to_html(markdown, output.parent, title="resnetlab experiment report"))
    return output, html_path
