"""What a run says at its start and after its first seconds: the data, the model, the device, the length of the
run and when it should end. Observation only: nothing here changes what is trained."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from resnetlab.errors import UserError
from resnetlab.models import model_info
from resnetlab.train.schedule import progressive_segments, side_segments

if TYPE_CHECKING:
    from resnetlab.train.config import TrainConfig
    from resnetlab.train.run import Run

# A 7x7 stride-2 stem and a max-pool divide the side by 4 before the first stage, and the stages by 8 more:
# below 64 px the last stage sees 1x1 maps (DRL Table 1 is designed for 224x224).
SMALL_FOR_IMAGENET_STEM = 64
FIRST_ESTIMATE_AFTER_S = 10.0
# Evaluation runs forward only, in eval mode: about 2.3x the training rate per image on a 2-core CPU
# (14 s for the 10k test images against ~310 img/s of training), a little more on a GPU.
EVAL_SPEEDUP = 2.3
# A step's cost against the side of its batch: ResNet-20 at batch 64 on 2 CPU cores trains 957, 520 and 275 img/s
# at 16, 24 and 32 px, which side^1.8 fits (the pixel count alone, side^2, leaves out per-step work that does
# not shrink with the images).
STEP_COST_EXPONENT = 1.8


def small_image_warning(model: str, image_size: int) -> str | None:
    """A warning (not a refusal) for an ImageNet-stem net on small images, naming the nets made for them."""
    try:
        family = model_info(model).family
    except UserError:  # an unknown name is refused elsewhere, with its own message
        return None
    if family not in ("imagenet", "imagenet_plain") or image_size >= SMALL_FOR_IMAGENET_STEM:
        return None
    side = max(1, -(-image_size // 32))  # the stem and max-pool divide by 4, the stages by 8 more
    suggestion = f"{model}_cifar" if family == "imagenet" and model in ("resnet18", "resnet34") else "resnet18_cifar"
    return (f"warning: {model} has the ImageNet stem (7x7 stride-2 conv + max-pool), made for 224x224 images; "
            f"on {image_size}x{image_size} images its last stage sees {side}x{side} feature maps. For small images use "
            f"{suggestion} (the same blocks with a CIFAR stem) or a CIFAR net of the papers (resnet20 ... "
            "resnet110, resnet164v2). Training goes on.")


def duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def plural(count: int, word: str) -> str:
    return f"{count:,} {word}" + ("" if count == 1 else "s")


def startup_lines(run: Run) -> list[str]:
    """Model and parameter count, device and precision, data split sizes, steps and epochs."""
    config, progress = run.config, run.progress
    params = sum(p.numel() for p in run.model.parameters())
    device = run.device
    where = (f"{device} ({torch.cuda.get_device_name(device)})" if device.type == "cuda"
             else f"cpu ({plural(torch.get_num_threads(), 'thread')})")
    precision = "bf16 autocast" if run.amp else "fp32"
    layout = "channels_last" if run.train_loader.channels_last else "NCHW"
    sizes = [f"{len(run.train_loader.labels):,} training"] + [
        f"{len(loader.labels):,} {split}" for split, loader in run.eval_loaders.items()]
    total, per_epoch = run.total_steps, run.steps_per_epoch
    lines = [f"model: {config.model}, {params:,} parameters, {len(run.classes)} classes",
             f"device: {where}, {precision}, {layout}",
             f"data: {', '.join(sizes)} images of {config.image_size}x{config.image_size}",
             f"length: {plural(total, 'step')} of batch {config.batch_size} = "
             f"{plural(config.num_epochs(per_epoch), 'epoch')} ({plural(per_epoch, 'step')} each), "
             f"evaluated after each epoch{progressive_phrase(config, total, per_epoch)}"]
    if progress.step >= total:
        lines.append(f"already finished: all {plural(total, 'step')} done, nothing to train (its results are "
                     "written again); a larger --epochs trains it longer, another --out starts a new run")
    elif progress.step:
        lines.append(f"resuming at step {progress.step:,} (epoch {progress.epoch + 1})")
    warning = small_image_warning(config.model, config.image_size)
    if warning:
        lines.append(warning)
    return lines


class EtaClock:
    """Prints when the run should end: once after its first seconds of steps, and again after its first
    epoch (then with the measured evaluation time)."""

    def __init__(self, run: Run, log: Callable[[str], None]) -> None:
        self.run, self.log = run, log
        self.start_step = run.progress.step
        self.started = time.perf_counter()
        self.early_done = self.epoch_done = False

    def _eval_images(self) -> int:
        flips = 2 if self.run.config.eval_flip else 1
        return flips * sum(len(loader.labels) for loader in self.run.eval_loaders.values())

    def tick(self, step: int) -> None:
        """After a progress update: the first estimate, from the steps so far."""
        elapsed = time.perf_counter() - self.started
        if self.early_done or elapsed < FIRST_ESTIMATE_AFTER_S or step <= self.start_step:
            return
        self.early_done = True
        run = self.run
        if step >= run.total_steps:
            return
        step_s = elapsed / (step - self.start_step)
        remaining_steps = run.total_steps - step
        images_s = run.config.batch_size / step_s
        config, total = run.config, run.total_steps
        train_s = step_s * step_costs(config, total, step, total) / step_costs(config, total, step - 1, step)
        epochs_left = run.config.num_epochs(run.steps_per_epoch) - run.progress.epoch
        full_size_images_s = images_s * step_costs(config, total, step - 1, step)  # evaluation is at the full size
        eval_s = epochs_left * self._eval_images() / (EVAL_SPEEDUP * full_size_images_s)
        self.log(f"speed: {images_s:,.0f} img/s after {elapsed:.0f} s; the rest of the run "
                 f"({remaining_steps:,} steps, {plural(epochs_left, 'evaluation')}) should take about "
                 f"{duration(train_s + eval_s)}: done around {_clock(train_s + eval_s)}")

    def epoch_end(self, epoch_wall_s: float, training_s: float) -> None:
        """After the first complete epoch of this process: the estimate from a whole epoch, evaluation included."""
        if self.epoch_done:
            return
        self.epoch_done = True
        run = self.run
        epochs_left = run.config.num_epochs(run.steps_per_epoch) - run.progress.epoch
        if epochs_left > 0:
            per_epoch, total = run.steps_per_epoch, run.total_steps
            measured = step_costs(run.config, total, (run.progress.epoch - 1) * per_epoch, run.progress.epoch * per_epoch)
            fixed_s = max(0.0, epoch_wall_s - training_s)  # evaluation and checkpoint: at the full size always
            walls = [fixed_s + training_s * step_costs(run.config, total, epoch * per_epoch, (epoch + 1) * per_epoch)
                     / measured for epoch in range(run.progress.epoch, run.progress.epoch + epochs_left)]
            each = (f"of about {duration(walls[0])} each" if max(walls) - min(walls) < 0.05 * max(walls)
                    else f"of about {duration(min(walls))} to {duration(max(walls))}")
            self.log(f"eta: {epochs_left} more epoch{'' if epochs_left == 1 else 's'} {each} (evaluation included): "
                     f"done around {_clock(sum(walls))} ({duration(sum(walls))})")


def progressive_phrase(config: TrainConfig, total_steps: int, per_epoch: int) -> str:
    """"; progressive resizing: epochs 1-2 on 16x16, epochs 3-6 on 24x24 batches, then 32x32" (steps where a
    size does not start and end with an epoch), or ""."""
    parts, segments = [], progressive_segments(config, total_steps)
    for start, end, side in segments:
        first, last = start // per_epoch + 1, -(-end // per_epoch)
        if start % per_epoch or (end % per_epoch and end != total_steps):
            parts.append(f"steps {start + 1:,}-{end:,} on {side}x{side}")
        else:
            parts.append(f"epoch{'s' if last > first else ''} {first}{f'-{last}' if last > first else ''} on {side}x{side}")
    if not parts:
        return ""
    tail = f", then {config.image_size}x{config.image_size}" if segments[-1][1] < total_steps else ""
    return f"; progressive resizing: {', '.join(parts)} batches{tail}"


def step_costs(config: TrainConfig, total_steps: int, start: int, end: int) -> float:
    """Steps start..end-1 in full-size steps: a step on a smaller batch (progressive resizing) costs about
    (side / image_size)^STEP_COST_EXPONENT of one."""
    return sum((min(end, b) - max(start, a)) * (side / config.image_size) ** STEP_COST_EXPONENT
               for a, b, side in side_segments(config, total_steps) if min(end, b) > max(start, a))


def _clock(seconds_from_now: float) -> str:
    return time.strftime("%H:%M", time.localtime(time.time() + seconds_from_now))
