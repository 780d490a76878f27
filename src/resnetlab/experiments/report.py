"""``resnetlab report``: experiment directories gathered into one document a person reads top to bottom
(overview, verdicts, then each experiment's setup, results and notes), as Markdown with relative links and as one
self-contained HTML page. Each section is rendered from the experiment's data (``experiment.json``), with the
template its own ``results.md`` was rendered with (render.py)."""

from __future__ import annotations

import time
from pathlib import Path

from resnetlab.errors import UserError
from resnetlab.experiments.markdown_html import markdown_to_html
from resnetlab.experiments.records import data_text, length_text, measured_seconds, read_experiment, record_data
from resnetlab.experiments.render import render_report
from resnetlab.experiments.tables import DASH
from resnetlab.files import atomic_write_text

KIND_ORDER = ("degradation", "shortcuts", "preact", "gradients", "responses")
OVERVIEW_COLUMNS = ["experiment", "directory", "data", "recipe", "runs", "time", "status"]


def overview_row(exp_dir: Path, record: dict) -> list[str]:
    config, arguments = record.get("config") or {}, record.get("arguments", {})
    recipe = f"{arguments.get('recipe', DASH)}, {length_text(config)}" if config else DASH
    return [record["title"], f"`{exp_dir}`", data_text(record_data(record)), recipe,
            str(len(record.get("runs") or []) or DASH), f"{measured_seconds(record):,.0f} s",
            record.get("status", "?")]


def build_report(exp_dirs: list[str | Path], output: str | Path = "report.md", html: bool = True
                 ) -> tuple[Path, Path | None]:
    """Write ``output`` (Markdown) and, with ``html``, the same report as ``.html`` with images embedded."""
    if not exp_dirs:
        raise UserError("give at least one experiment directory")
    output = Path(output)
    found, seen = [], set()
    for exp_dir in map(Path, exp_dirs):
        if exp_dir.resolve() in seen:
            raise UserError(f"{exp_dir} is given twice; give each experiment directory once")
        seen.add(exp_dir.resolve())
        record = read_experiment(exp_dir)
        if "report" not in record and record.get("status") == "finished":
            raise UserError(f"{exp_dir}: its results were written by an older resnetlab that did not keep them as "
                            f"data; rerun its command to rewrite them: {record.get('arguments', {}).get('command')}")
        if "report" not in record:
            raise UserError(f"{exp_dir}: no results yet (the experiment has not finished once; rerunning its command "
                            "writes them without retraining finished runs)")
        found.append((exp_dir, record))
    found.sort(key=lambda item: KIND_ORDER.index(item[1]["kind"]) if item[1]["kind"] in KIND_ORDER else 99)
    overview = {"columns": OVERVIEW_COLUMNS, "rows": [overview_row(exp_dir, record) for exp_dir, record in found]}
    markdown = render_report(found, output.parent, overview, time.strftime("%Y-%m-%d %H:%M"))
    atomic_write_text(output, markdown)
    html_path = None
    if html:
        html_path = output.with_suffix(".html")
        atomic_write_text(html_path, markdown_to_html(markdown, output.parent, title="resnetlab experiment report"))
    return output, html_path
