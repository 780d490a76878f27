"""Training configuration: one typed dataclass, filled from recipe TOML files, a user's TOML file and flags.

Precedence, lowest first: the dataclass defaults, the named recipe (``recipes/<name>.toml``), ``--config FILE``,
then command-line overrides. The resolved config is written to the run directory as ``config.toml``.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

import tomli_w

from resnetlab.errors import UserError

RECIPES_DIR = Path(__file__).parent / "recipes"


@dataclass
class TrainConfig:
    """Everything that decides a training run. Units are in the field comments."""

    # model
    model: str = "resnet20"
    shortcut: str = ""  # "" = the model's default (A for CIFAR v1), else A, B or C
    zero_init_residual: bool = False
    # data
    data: str = ""  # path, cifar10, cifar100, synthetic; "" = $RESNETLAB_DATA, then cifar10
    image_size: int = 32
    strict_image_size: bool = False  # refuse images of another size instead of resizing them
    val_split: int = 5000  # training images held out for validation (the paper's 45k/5k)
    normalization: str = "pixel_mean"  # pixel_mean | channel | none
    augmentation: str = "crop_flip"  # crop_flip | keras | none
    rotation_range: float = 20.0  # keras: ImageDataGenerator's rotation_range (degrees)
    width_shift_range: float = 0.2  # keras: ImageDataGenerator's width_shift_range (fraction of the width)
    height_shift_range: float = 0.2  # keras: ImageDataGenerator's height_shift_range (fraction of the height)
    # optimisation
    optimizer: str = "sgd"  # sgd | adam | adamw
    lr: float = 0.1  # peak learning rate
    momentum: float = 0.9
    nesterov: bool = False
    adam_betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    adam_eps: float = 1e-8
    weight_decay: float = 1e-4  # decoupled from the loss, SGD-style (added to the gradient)
    wd_exclude_norm_bias: bool = False  # no weight decay on BN parameters and biases
    l2: float = 0.0  # Keras-style kernel_regularizer: l2 * sum(w^2) of conv kernels added to the loss
    label_smoothing: float = 0.0
    batch_size: int = 128
    drop_last: bool = True  # drop the last partial training batch of each epoch
    steps_per_epoch: int = 0  # batches per epoch, the first ones of each epoch's shuffle (Keras' fit); 0 = one pass
    # schedule: training length is `iterations` if positive, else `epochs` full passes
    epochs: int = 0
    iterations: int = 64000
    schedule: str = "step"  # step | keras | cosine | onecycle | constant
    milestones: list[float] = field(default_factory=lambda: [0.5, 0.75])  # fractions of training where lr *= gamma
    gamma: float = 0.1
    warmup_iterations: int = 0  # linear warm-up from 0 (cosine / onecycle / step)
    warmup_lr: float = 0.0  # paper's deep-net warm-up: this lr until train error < warmup_error
    warmup_error: float = 0.8
    warmup_max_iterations: int = 2000
    warmup_min_depth: int = 0  # the warm-up applies to models at least this deep (paper: ResNet-110 and deeper)
    warmup_check_every: int = 50  # steps between warm-up checks, each on the training error of those steps
    onecycle_peak: float = 0.25  # fraction of training spent rising to the peak (onecycle)
    final_lr_fraction: float = 0.0  # lr at the end of cosine / onecycle, relative to the peak
    plateau_factor: float = 0.0  # ReduceLROnPlateau factor; 0 = off
    plateau_patience: int = 5
    plateau_min_lr: float = 0.0
    plateau_monitor: str = "val_loss"  # val_loss | val_acc
    plateau_reset_by_schedule: bool = False  # Keras: LearningRateScheduler resets lr each epoch (see keras.toml)
    # evaluation and selection
    eval_flip: bool = False  # also report val/test accuracy with left-right flip test-time augmentation
    select_on: str = "val"  # split that picks the "best" checkpoint: val, or test (the tutorial's practice)
    # runtime
    seed: int = 0
    deterministic: bool = False
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | bf16 | off
    channels_last: str = "auto"  # auto (= on: faster on CUDA and on CPU with oneDNN) | on | off
    compile: bool = False
    cuda_graphs: str = "auto"  # auto (on where supported: CUDA, fused SGD, one process) | on | off; train/graphs.py
    sync_bn: bool = False  # multi-process: BatchNorm statistics over the global batch (SyncBatchNorm)
    activation_checkpointing: int = 0  # 0 off; k: keep only every k-th block's input; -1: one segment per stage
    log_every: int = 50  # steps between progress updates (and host synchronisations)
    eval_every: int = 0  # steps between extra history rows (evaluation) inside epochs; 0 = at epoch ends only
    checkpoint_every: int = 1  # epochs between checkpoints
    keep_checkpoints: int = 2
    tensorboard: bool = True

    def total_steps(self, steps_per_epoch: int) -> int:
        return self.iterations if self.iterations > 0 else self.epochs * steps_per_epoch

    def num_epochs(self, steps_per_epoch: int) -> int:
        return math.ceil(self.total_steps(steps_per_epoch) / steps_per_epoch)

    def validate(self) -> TrainConfig:
        """Refuse values no run can use, with one line that names the field."""
        checks = [
            (self.lr > 0, f"lr must be positive, got {self.lr}"),
            (self.batch_size > 0, f"batch size must be positive, got {self.batch_size}"),
            (self.epochs >= 0 and self.iterations >= 0, "epochs and iterations cannot be negative"),
            (self.epochs > 0 or self.iterations > 0, "set a positive number of epochs or iterations"),
            (self.weight_decay >= 0 and self.l2 >= 0, "weight decay and l2 cannot be negative"),
            (0 <= self.label_smoothing < 1, f"label smoothing must be in [0, 1), got {self.label_smoothing}"),
            (all(0 < m < 1 for m in self.milestones), "milestones are fractions of training, each in (0, 1)"),
            (self.val_split >= 0, f"val split cannot be negative, got {self.val_split}"),
            (self.steps_per_epoch >= 0, f"steps_per_epoch cannot be negative, got {self.steps_per_epoch}"),
            (self.warmup_check_every > 0, f"warmup_check_every must be positive, got {self.warmup_check_every}"),
            (self.optimizer in ("sgd", "adam", "adamw"), f"unknown optimizer {self.optimizer!r}: sgd, adam, adamw"),
            (self.schedule in ("step", "keras", "cosine", "onecycle", "constant"),
             f"unknown schedule {self.schedule!r}: step, keras, cosine, onecycle, constant"),
            (self.select_on in ("val", "test"), f"select_on must be val or test, got {self.select_on!r}"),
            (self.select_on == "test" or self.val_split > 0 or self.plateau_factor == 0,
             "a plateau schedule needs a validation split (--val-split N) or select_on = \"test\""),
            (self.amp in ("auto", "bf16", "off"), f"amp must be auto, bf16 or off, got {self.amp!r}"),
            (self.channels_last in ("auto", "on", "off"), "channels_last must be auto, on or off"),
            (self.cuda_graphs in ("auto", "on", "off"), "cuda_graphs must be auto, on or off"),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(message)
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def apply_overrides(config: TrainConfig, overrides: dict[str, Any], log: Callable[[str], None]) -> TrainConfig:
    """On resume the stored config rules; explicit overrides (e.g. more epochs) are applied and logged."""
    values = config.to_dict()
    for key, value in overrides.items():
        value = coerce(key, value)
        if values.get(key) != value:
            log(f"resume: overriding {key} = {values.get(key)!r} -> {value!r}")
            values[key] = value
    return TrainConfig(**values).validate()


def field_types() -> dict[str, type]:
    hints = get_type_hints(TrainConfig)
    return {f.name: hints[f.name] for f in fields(TrainConfig)}


def coerce(name: str, value: Any) -> Any:
    """Check a TOML or flag value against the field's type; ints are accepted where floats are expected."""
    types = field_types()
    if name not in types:
        raise UserError(f"unknown config key {name!r}")
    expected = types[name]
    origin = getattr(expected, "__origin__", expected)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if origin is list and isinstance(value, list):
        return list(value)
    if not isinstance(value, origin) or (expected is int and isinstance(value, bool)):
        raise UserError(f"config key {name!r} must be {getattr(expected, '__name__', expected)}, got {value!r}")
    return value


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            table = tomllib.load(handle)
    except FileNotFoundError:
        raise UserError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as error:
        raise UserError(f"{path}: not valid TOML ({error})") from None
    table.pop("description", None)
    return table


def recipe_names() -> list[str]:
    return sorted(p.stem for p in RECIPES_DIR.glob("*.toml"))


def recipe_values(name: str) -> dict[str, Any]:
    path = RECIPES_DIR / f"{name}.toml"
    if not path.exists():
        raise UserError(f"unknown recipe {name!r}: choose one of {', '.join(recipe_names())}")
    return read_toml(path)


def recipe_description(name: str) -> str:
    with open(RECIPES_DIR / f"{name}.toml", "rb") as handle:
        return tomllib.load(handle).get("description", "")


def resolve_config(recipe: str = "paper", config_file: str | Path | None = None,
                   overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Defaults <- recipe <- config file <- overrides, each key checked by name and type."""
    values: dict[str, Any] = {}
    layers = [(f"recipe {recipe}", recipe_values(recipe))]
    if config_file:
        layers.append((str(config_file), read_toml(Path(config_file))))
    layers.append(("command line", overrides or {}))
    for source, table in layers:
        for key, value in table.items():
            try:
                values[key] = coerce(key, value)
            except UserError as error:
                raise UserError(f"{source}: {error}") from None
    return TrainConfig(**values).validate()


def to_toml(values: dict[str, Any]) -> str:
    """A flat table as TOML text (tomli-w: the standard library only reads TOML)."""
    return tomli_w.dumps(values)
