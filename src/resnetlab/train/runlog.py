"""What a run shows and records as it trains, fed by the loop and never deciding anything in it: log lines, the
progress bar, the history files, TensorBoard and the time-to-finish estimates. Settings that only observe never
change what is trained; keeping them here keeps them out of the loop's way."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from resnetlab.train.announce import EtaClock, startup_lines
from resnetlab.train.history import TensorBoardMirror, format_row, write_history

if TYPE_CHECKING:
    from resnetlab.train.run import Run

Log = Callable[[str], None]


def _silent(message: str) -> None:
    """Processes other than rank 0 keep quiet."""


class RunLog:
    """One run's output. Only the main process (rank 0) prints and writes; ``show_progress``: None shows a bar
    only on a terminal, False never, True always."""

    def __init__(self, run_dir: Path, log: Log = print, *, is_main: bool = True, show_progress: bool | None = None,
                 tensorboard: bool = False) -> None:
        self.run_dir, self.is_main = Path(run_dir), is_main
        self.line: Log = log if is_main else _silent
        self.show_progress = show_progress
        self.tensorboard_wanted = tensorboard and is_main
        self.tensorboard: TensorBoardMirror | None = None
        self.clock: EtaClock | None = None
        self.bar: tqdm | None = None

    def start(self, run: Run) -> None:
        """The start-up lines (model, device, data, length), TensorBoard from the resumed step, the ETA clock."""
        for text in startup_lines(run):
            self.line(text)
        if self.tensorboard_wanted:
            self.tensorboard = TensorBoardMirror(self.run_dir, run.progress.step)
        self.clock = EtaClock(run, self.line)

    def begin_epoch(self, epoch: int, steps: int, done: int) -> None:
        disabled = not self.is_main or (None if self.show_progress is None else not self.show_progress)
        self.bar = tqdm(total=steps, initial=done, desc=f"epoch {epoch + 1}", leave=False, disable=disabled,
                        dynamic_ncols=True)

    def window(self, step: int, steps: int, loss_sum: float, correct: int, images: int, lr: float,
               seconds: float) -> None:
        """A flushed window of ``steps`` steps: the bar's numbers and, once, the first estimate of the end."""
        if self.bar is not None:
            self.bar.update(steps)
            self.bar.set_postfix(loss=f"{loss_sum / max(1, images):.3f}", acc=f"{correct / max(1, images):.3f}",
                                 lr=f"{lr:.3g}", img_s=f"{images / max(seconds, 1e-9):,.0f}", refresh=False)
        if self.clock is not None:
            self.clock.tick(step)

    def end_epoch_steps(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def row(self, history: list[dict[str, Any]], row: dict[str, Any], epochs: int) -> None:
        """The newest history row: the history files (whole, rank 0), TensorBoard, the log line."""
        if self.is_main:
            write_history(self.run_dir, history)
        if self.tensorboard is not None:
            self.tensorboard.add(row)
        self.line(format_row(row, epochs))

    def epoch_time(self, seconds: float, training_seconds: float) -> None:
        """A whole epoch's wall time (evaluation included) and its training steps' part: the second estimate."""
        if self.clock is not None:
            self.clock.epoch_end(seconds, training_seconds)

    def close(self) -> None:
        self.end_epoch_steps()
        if self.tensorboard is not None:
            self.tensorboard.close()
