"""Result tables written twice from the same rounded strings: a CSV for checking and Markdown for reading, so the
numbers in a report are, character for character, the numbers in its data file."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from resnetlab.files import atomic_write_text

DASH = "—"


def fixed(value: float | None, digits: int = 2, scale: float = 1.0) -> str:
    """``value * scale`` with a fixed number of decimals; "" for a missing value."""
    return "" if value is None or not math.isfinite(value) else f"{value * scale:.{digits}f}"


def sci(value: float | None, digits: int = 3) -> str:
    """Scientific notation for numbers spanning orders of magnitude (gradient norms)."""
    return "" if value is None or not math.isfinite(value) else f"{value:.{digits - 1}e}"


def plus_minus(mean: str, std: str, n: int | str) -> str:
    """Markdown cell ``mean ± std`` (only the mean for a single seed; a dash when missing)."""
    if not mean:
        return DASH
    return f"{mean} ± {std}" if int(n) > 1 and std else mean


@dataclass
class Table:
    """Rows of string cells. ``columns`` are the CSV header; ``view`` says how Markdown shows them: each entry is
    (title, function of the row's cells), so a Markdown cell can only be made of the CSV's own strings."""

    columns: Sequence[str]
    view: Sequence[tuple[str, Callable[[dict[str, str]], str]]] = ()
    rows: list[dict[str, str]] = field(default_factory=list)

    def add(self, **cells: object) -> None:
        unknown = set(cells) - set(self.columns)
        if unknown:
            raise KeyError(f"not a column of this table: {sorted(unknown)}")
        self.rows.append({key: "" if cells.get(key) is None else str(cells.get(key)) for key in self.columns})

    def to_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(self.columns), lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        return buffer.getvalue()

    def shown(self) -> dict[str, list]:
        """The Markdown view as data (column titles, rows of cells), as ``experiment.json`` keeps it."""
        view = self.view or [(key, (lambda row, key=key: row[key])) for key in self.columns]
        return {"columns": [title for title, _ in view], "rows": [[make(row) for _, make in view] for row in self.rows]}

    def to_markdown(self) -> str:
        return markdown_table(self.shown())

    def write_csv(self, path: Path) -> Path:
        atomic_write_text(path, self.to_csv())
        return path


def markdown_table(shown: dict[str, list]) -> str:
    """A pipe table of ``{"columns": [...], "rows": [[...], ...]}``; an empty cell shows a dash."""
    lines = ["| " + " | ".join(shown["columns"]) + " |", "|" + "|".join("---" for _ in shown["columns"]) + "|"]
    lines += ["| " + " | ".join(_cell(str(cell)) for cell in row) + " |" for row in shown["rows"]]
    return "\n".join(lines)


def _cell(text: str) -> str:
    return (text or DASH).replace("|", "\\|").replace("\n", " ")
