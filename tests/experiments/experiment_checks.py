"""Helpers shared by the experiment tests: the Markdown tables must carry exactly the CSV's numbers; tiny models
run on one thread."""

import csv
from contextlib import contextmanager
from pathlib import Path

import torch
from markdown_it import MarkdownIt


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@contextmanager
def one_thread():
    """Tiny models on a shared 2-core machine: one intra-op thread is many times faster than two busy-waiting
    ones (measured: a 4-step ResNet-14 run 0.6 s vs 13 s under load)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def parse_markdown_table(text: str) -> list[dict[str, str]]:
    """The first pipe table in ``text`` as rows of header -> cell, read by markdown-it-py (an independent parser)."""
    rows, row, inside = [], [], False
    for token in MarkdownIt("commonmark").enable("table").parse(text):
        if token.type == "table_close":
            break
        inside = inside or token.type == "table_open"
        if inside and token.type == "tr_open":
            row = []
        elif inside and token.type == "inline":
            row.append(token.content)
        elif inside and token.type == "tr_close":
            rows.append(row)
    header, *body = rows
    return [dict(zip(header, cells)) for cells in body]


def results_tables(exp_dir: Path) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(rows of the table under "## Results" in results.md, rows of results.csv)."""
    text = (exp_dir / "results.md").read_text()
    return parse_markdown_table(text.split("## Results", 1)[1]), read_csv(exp_dir / "results.csv")


def split_plus_minus(cell: str) -> tuple[str, str | None]:
    mean, _, std = cell.partition(" ± ")
    return mean, (std or None)


def assert_error_table_matches(exp_dir: Path) -> list[dict[str, str]]:
    """Every error cell of a training comparison's Markdown equals the CSV's strings (mean, and std if shown)."""
    markdown, rows = results_tables(exp_dir)
    assert len(markdown) == len(rows) > 0
    for shown, row in zip(markdown, rows):
        assert shown["model"] == row["label"] and shown["seeds"] == row["seeds"]
        for split in ("train", "test"):
            mean, std = split_plus_minus(shown[f"{split} error (%)"])
            assert mean == row[f"{split}_error_pct"]
            assert std == (row[f"{split}_error_std"] if int(row["seeds"]) > 1 else None)
            assert 0 <= float(mean) <= 100
        paper = shown["paper test error (%)"]
        assert paper == row["paper_test_error_pct"] or paper == f"— ({row['paper_source']})"
    return rows


def verdict_lines(exp_dir: Path) -> list[str]:
    text = (exp_dir / "results.md").read_text().split("## Verdicts", 1)[1].split("##", 1)[0]
    return [line[2:] for line in text.splitlines() if line.startswith("- ")]
