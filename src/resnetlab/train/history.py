"""The run directory's human- and machine-readable records: history (CSV + JSON lines), config, results.

Every file is rewritten whole through a temporary file and a rename, so a reader (or a killed run) never sees a
half-written line. The history rows also live in each checkpoint, so a resumed run's history is exactly the
history of the checkpoint it resumed from.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from resnetlab.files import atomic_write_text

HISTORY_FIELDS = [
    "epoch", "step", "lr", "train_loss", "train_acc", "train_error", "val_loss", "val_acc", "val_error",
    "test_loss", "test_acc", "test_error", "val_acc_flip", "test_acc_flip", "epoch_seconds", "wall_seconds",
    "images_per_sec",
]


def _clean(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def write_history(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: ("" if _clean(row.get(key)) is None else row.get(key)) for key in HISTORY_FIELDS})
    atomic_write_text(run_dir / "history.csv", buffer.getvalue())
    atomic_write_text(run_dir / "history.jsonl",
                      "".join(json.dumps({k: _clean(v) for k, v in row.items()}) + "\n" for row in rows))


def read_history(run_dir: Path) -> list[dict[str, Any]]:
    """Rows of ``history.jsonl`` (or ``history.csv``), numbers as floats, missing values as None."""
    run_dir = Path(run_dir)
    if (run_dir / "history.jsonl").exists():
        return [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines() if line.strip()]
    if (run_dir / "history.csv").exists():
        with open(run_dir / "history.csv", newline="") as handle:
            return [{key: (float(value) if value not in ("", None) else None) for key, value in row.items()}
                    for row in csv.DictReader(handle)]
    return []


class TensorBoardMirror:
    """The history rows as TensorBoard scalars (``run_dir/tensorboard``), when the tensorboard package is there.

    On resume, events past the checkpoint's step are purged, so a resumed run draws one continuous curve.
    """

    def __init__(self, run_dir: Path, resumed_at_step: int) -> None:
        self.writer = None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # optional: the CSV/JSON history is the record
            return
        self.writer = SummaryWriter(str(Path(run_dir) / "tensorboard"), purge_step=resumed_at_step or None)

    def add(self, row: dict[str, Any]) -> None:
        if self.writer is None:
            return
        for key, value in row.items():
            if key not in ("epoch", "step") and isinstance(value, (int, float)) and math.isfinite(value):
                group = key.split("_", 1)[0] if key.startswith(("train_", "val_", "test_")) else "run"
                self.writer.add_scalar(f"{group}/{key}", value, global_step=row["step"])
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def format_row(row: dict[str, Any], epochs: int) -> str:
    """The log line of one history row."""
    epoch = row["epoch"] if isinstance(row["epoch"], int) else f"{row['epoch']:.2f}"
    parts = [f"epoch {epoch}/{epochs}", f"step {row['step']}", f"lr {row['lr']:.4g}",
             f"train loss {row['train_loss']:.4f} acc {100 * row['train_acc']:.2f}%"]
    for split in ("val", "test"):
        if f"{split}_acc" in row:
            parts.append(f"{split} loss {row[f'{split}_loss']:.4f} acc {100 * row[f'{split}_acc']:.2f}%"
                         + (f" (flip TTA {100 * row[f'{split}_acc_flip']:.2f}%)" if f"{split}_acc_flip" in row else ""))
    parts.append(f"{row['epoch_seconds']:.1f}s {row['images_per_sec']:,.0f} img/s")
    return " | ".join(parts)
