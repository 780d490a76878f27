"""Training configuration: one typed dataclass, filled from recipe TOML files, a user's TOML file and flags.

Each field is declared once, here, with its help text (``metadata["help"]``, litgpt-style documentation where the
field is declared); the command-line flags of ``train``, ``experiment`` and ``bench`` are generated from these
declarations (``resnetlab.cli_config``), so a new field is a new flag with nothing else to edit. Whether a field may
change when a run is resumed is declared here too (``resume="fixed"``) and checked by ``resume_config``
(train/resume.py), which the training loop applies however it is called.

Precedence, lowest first: the dataclass defaults, the named recipe (``recipes/<name>.toml``), ``--config FILE``,
then command-line overrides. The resolved config is written to the run directory as ``config.toml``.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

import tomli_w

from resnetlab.data.augment import AUGMENTATIONS
from resnetlab.data.normalize import NORMALIZATIONS
from resnetlab.data.pipeline import PIPELINES, STREAM_AUGMENTATIONS
from resnetlab.errors import UserError
from resnetlab.models import model_info

RECIPES_DIR = Path(__file__).parent / "recipes"

# The sections of ``resnetlab train --help``: the first field of each.
SECTIONS = {"model": "model", "data": "data", "optimizer": "optimisation",
            "epochs": "schedule (the training length is iterations if positive, else epochs)",
            "eval_flip": "evaluation and selection", "seed": "runtime (seed, device, speed, records)"}


def setting(default: Any, help: str, **metadata: Any) -> Any:
    """A field with its documentation. ``metadata``: ``flag`` (when not ``--field-name``), ``metavar``,
    ``choices`` (shown in the help; ``validate`` checks them), ``resume="fixed"`` (a resumed run refuses a new
    value)."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help, **metadata})
    return field(default=default, metadata={"help": help, **metadata})


@dataclass
class TrainConfig:
    """Everything that decides a training run."""

    model: str = setting("resnet20", "model name, e.g. resnet56 (see `resnetlab list`)", resume="fixed",
                            metavar="MODEL")
    shortcut: str = setting("", "shortcut option A, B or C (default: the model's own, A for CIFAR v1)",
                            resume="fixed")
    zero_init_residual: bool = setting(False, "zero the last BN of each block, so each block starts as the "
                                       "identity (Goyal et al. 2017)", resume="fixed")

    data: str = setting("", "PATH (folder or archive), cifar10, cifar100 or synthetic (default: $RESNETLAB_DATA, "
                        "else cifar10)", resume="fixed", metavar="SOURCE")
    image_size: int = setting(32, "side length images are resized to", resume="fixed")
    strict_image_size: bool = setting(False, "refuse images of another size instead of resizing them",
                                      flag="--strict-size")
    val_split: int = setting(5000, "training images held out for validation (0: none; the paper's 45k/5k)",
                             resume="fixed")
    normalization: str = setting("pixel_mean", "input normalisation", choices=NORMALIZATIONS,
                                 resume="fixed")
    augmentation: str = setting("crop_flip", "training augmentation (random_resized_crop: per image, streamed "
                                "folders only; the others on the device)",
                                choices=(*AUGMENTATIONS, *STREAM_AUGMENTATIONS))
    progressive_sizes: list[int] = setting([], "progressive resizing: sides of the training batches before the full "
                                           "image_size, e.g. 16,24 (resized on the device; evaluation stays at "
                                           "image_size)")
    progressive_until: list[float] = setting([], "progressive resizing: the fraction of training where each of "
                                             "progressive_sizes ends, e.g. 0.18,0.55 (fractions, as milestones)")
    rotation_range: float = setting(20.0, "keras augmentation: ImageDataGenerator's rotation_range (degrees)")
    width_shift_range: float = setting(0.2, "keras augmentation: ImageDataGenerator's width_shift_range "
                                       "(fraction of the width)")
    height_shift_range: float = setting(0.2, "keras augmentation: ImageDataGenerator's height_shift_range "
                                        "(fraction of the height)")
    data_pipeline: str = setting("auto", "memory (decoded once, held on the device) or stream (files decoded per "
                                 "batch in worker processes); auto: the rule in data/pipeline.py",
                                 choices=PIPELINES, resume="fixed")
    data_workers: int = setting(-1, "streaming: DataLoader worker processes per training process (-1: this "
                                "machine's CPUs shared by its training processes)")
    init: str = setting("", "initial weights (fine-tuning): a torchvision-format state dict or a resnetlab "
                        "checkpoint; a classifier of another class count is replaced", metavar="PATH")
    freeze: str = setting("", "parts kept fixed while training, e.g. stem,layer1 (stem, layer1 ... layer4, fc)",
                          resume="fixed", metavar="PARTS")

    optimizer: str = setting("sgd", "optimizer", choices=("sgd", "adam", "adamw"))
    lr: float = setting(0.1, "peak learning rate")
    momentum: float = setting(0.9, "SGD momentum")
    nesterov: bool = setting(False, "Nesterov momentum (SGD)")
    adam_betas: list[float] = setting([0.9, 0.999], "Adam's (beta1, beta2)")
    adam_eps: float = setting(1e-8, "Adam's epsilon")
    weight_decay: float = setting(1e-4, "SGD-style weight decay, added to the gradient by the optimizer", flag="--wd")
    wd_exclude_norm_bias: bool = setting(False, "no weight decay on BN parameters and biases")
    l2: float = setting(0.0, "Keras-style kernel_regularizer: l2 * sum(w^2) of the conv kernels added to the loss")
    label_smoothing: float = setting(0.0, "label smoothing of the cross-entropy")
    batch_size: int = setting(128, "training batch size (all processes together)", resume="fixed")
    drop_last: bool = setting(True, "drop the last partial training batch of each epoch")
    steps_per_epoch: int = setting(0, "batches per epoch, the first ones of each epoch's shuffle, as Keras' fit "
                                   "takes steps_per_epoch (0: one pass over the training split)")

    epochs: int = setting(0, "train for this many epochs (replaces the recipe's length)")
    iterations: int = setting(64000, "train for this many steps (replaces the recipe's length)")
    schedule: str = setting("step", "learning-rate schedule", choices=("step", "keras", "cosine", "onecycle",
                                                                       "constant"))
    milestones: list[float] = setting([0.5, 0.75], "fractions of training where the step schedule multiplies the "
                                      "lr by gamma")
    gamma: float = setting(0.1, "the step schedule's factor")
    warmup_iterations: int = setting(0, "linear warm-up from 0 over this many steps (cosine, onecycle, step)")
    warmup_lr: float = setting(0.0, "the paper's deep-net warm-up: this lr until the training error < warmup_error")
    warmup_error: float = setting(0.8, "training error that ends the paper's warm-up")
    warmup_max_iterations: int = setting(2000, "the paper's warm-up ends after this many steps at the latest")
    warmup_min_depth: int = setting(0, "the paper's warm-up applies to models at least this deep (ResNet-110+)")
    warmup_check_every: int = setting(50, "steps between the warm-up's checks, each on the training error of "
                                      "those steps (a recipe value: no logging setting moves it)")
    onecycle_peak: float = setting(0.25, "fraction of training spent rising to the peak (onecycle)")
    final_lr_fraction: float = setting(0.0, "lr at the end of cosine / onecycle, relative to the peak")
    plateau_factor: float = setting(0.0, "ReduceLROnPlateau factor (0: off)")
    plateau_patience: int = setting(5, "ReduceLROnPlateau: epochs without improvement before a reduction")
    plateau_min_lr: float = setting(0.0, "ReduceLROnPlateau: the lowest lr")
    plateau_monitor: str = setting("val_loss", "ReduceLROnPlateau: the value watched", choices=("val_loss",
                                                                                                  "val_acc"))
    plateau_reset_by_schedule: bool = setting(False, "Keras: the LearningRateScheduler resets the lr every epoch, "
                                              "undoing plateau reductions (see keras.toml)")

    eval_flip: bool = setting(False, "also report val/test accuracy with left-right flip test-time augmentation")
    select_on: str = setting("val", "split that picks the best checkpoint (test: the tutorial's practice)",
                             choices=("val", "test"))

    seed: int = setting(0, "random seed (weights, data order, augmentation)", resume="fixed")
    deterministic: bool = setting(False, "deterministic kernels (slower): bit-exact resume on CPU")
    device: str = setting("auto", "auto, cpu, cuda or cuda:N", metavar="DEVICE")
    amp: str = setting("auto", "bf16 autocast (auto: where the GPU or CPU computes bf16 natively, else fp32; "
                       "train/precision.py)", choices=("auto", "bf16", "off"))
    channels_last: str = setting("auto", "channels_last memory format (auto = on: faster on CUDA and on CPU with "
                                 "oneDNN)", choices=("auto", "on", "off"))
    compile: bool = setting(False, "torch.compile the model")
    cuda_graphs: str = setting("auto", "replay the step as a CUDA graph (auto: where supported: CUDA, fused SGD, "
                               "one process; train/graphs.py)", choices=("auto", "on", "off"))
    sync_bn: bool = setting(False, "several processes: BatchNorm statistics over the global batch (SyncBatchNorm)")
    activation_checkpointing: int = setting(0, "keep only every K-th block's input and recompute the rest (-1: one "
                                            "segment per stage; 0: off)")
    log_every: int = setting(50, "steps between progress updates (and host synchronisations)")
    eval_every: int = setting(0, "steps between extra history rows (evaluation) inside epochs (0: epoch ends only)")
    checkpoint_every: int = setting(1, "epochs between checkpoints")
    keep_checkpoints: int = setting(2, "step checkpoints kept, at least 1 (the best one is kept besides)")
    tensorboard: bool = setting(True, "mirror the history to TensorBoard (when the tensorboard package is there)")

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
            (all(side >= 8 for side in self.progressive_sizes),
             f"progressive sizes are sides of at least 8 pixels, got {self.progressive_sizes}"),
            (len(self.progressive_until) == len(self.progressive_sizes)
             and all(a < b <= 1 for a, b in zip([0.0, *self.progressive_until], self.progressive_until)),
             "progressive_until gives, for each of progressive_sizes, the fraction of training where it ends: "
             f"increasing, in (0, 1], one per size (got sizes {self.progressive_sizes}, until "
             f"{self.progressive_until})"),
            (self.warmup_check_every > 0, f"warmup_check_every must be positive, got {self.warmup_check_every}"),
            (self.keep_checkpoints >= 1, "keep_checkpoints must be at least 1 (eval, resume and publish read the "
             f"newest step checkpoint), got {self.keep_checkpoints}"),
            (self.select_on == "test" or self.val_split > 0 or self.plateau_factor == 0,
             "a plateau schedule needs a validation split (--val-split N) or select_on = \"test\""),
        ]
        checks += [(getattr(self, f.name) in f.metadata["choices"],
                    f"unknown {f.name} {getattr(self, f.name)!r}; choose one of {', '.join(f.metadata['choices'])}")
                   for f in fields(self) if "choices" in f.metadata]
        for ok, message in checks:
            if not ok:
                raise UserError(message)
        if self.progressive_sizes and model_info(self.model).family.startswith("keras"):
            raise UserError(f"{self.model} ends in the tutorial's fixed 8x8 average pooling, so it trains only on "
                            f"{self.image_size}x{self.image_size} batches: drop progressive_sizes")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@functools.cache
def field_types() -> dict[str, type]:
    hints = get_type_hints(TrainConfig)
    return {f.name: hints[f.name] for f in fields(TrainConfig)}


def coerce(name: str, value: Any) -> Any:
    """Check a TOML or flag value against the field's type; ints are accepted where floats are expected."""
    types = field_types()
    if name not in types:
        raise UserError(f"unknown config key {name!r}{key_hint(name)}")
    expected = types[name]
    origin = getattr(expected, "__origin__", expected)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if origin is list and isinstance(value, list):
        element = getattr(expected, "__args__", (Any,))[0]
        if element is float and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            return [float(v) for v in value]
        if element is int and not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise UserError(f"config key {name!r} must be a list of integers, got {value!r}")
        return list(value)
    if not isinstance(value, origin) or (expected is int and isinstance(value, bool)):
        raise UserError(f"config key {name!r} must be {getattr(expected, '__name__', expected)}, got {value!r}")
    return value


def key_hint(name: str) -> str:
    """What an unknown key probably meant (``batch-size``: batch_size; a flag's name, ``wd``: its key)."""
    keys = {**{f.metadata["flag"][2:].replace("-", "_"): f.name for f in fields(TrainConfig) if "flag" in f.metadata},
            "learning_rate": "lr", **{key: key for key in field_types()}}
    meant = dict.fromkeys(keys[key] for key in difflib.get_close_matches(name.lower().replace("-", "_"), keys, 3, 0.7))
    guess = f"; did you mean {' or '.join(map(repr, meant))}?" if meant else ""
    return f"{guess} (`resnetlab train --help` lists every key as a flag: --batch-size sets batch_size)"


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            table = tomllib.load(handle)
    except FileNotFoundError:
        raise UserError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise UserError(f"config file {path} is a folder; give a .toml file") from None
    except OSError as error:
        raise UserError(f"cannot read config file {path}: {error.strerror or error}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
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
