"""The evidence plan's stages: the runs each experiment of the papers needs, at the ``paper`` recipe's full length,
and how its results are written once they are finished (by resnetlab's own experiment code). ``--smoke`` maps the
depths to tiny nets and keeps the layout, so the whole plan runs on a CPU in seconds."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from evidence_pack import MiB

from resnetlab.experiments.comparison import Claim, Comparison, run_comparison
from resnetlab.experiments.degradation import degradation_comparison, run_degradation
from resnetlab.experiments.responses import run_responses
from resnetlab.experiments.sweep import RunSpec
from resnetlab.models import create_model, model_info
from resnetlab.train.config import TrainConfig, resolve_config

Log = Callable[[str], None]


@dataclass
class Stage:
    """One experiment of the plan: the runs it needs, and how its results are written once they are finished."""

    name: str
    specs: list[RunSpec]
    write: Callable[[Path, TrainConfig, dict, Log], object]
    needs: list[str] = field(default_factory=list)  # runs of other stages it reads (Figure 7)
    alone: bool = False  # its runs train in waves of their own: the tutorial's figure, whose wall time is a goal


def plan_stages(smoke: bool) -> list[Stage]:
    """The five stages; ``smoke`` maps the depths to tiny ones (20 -> 8, 56 -> 14, ...) and keeps the layout."""
    d = {20: 8, 32: 8, 44: 14, 56: 14, 110: 20, 164: 11} if smoke else {k: k for k in (20, 32, 44, 56, 110, 164)}
    fig6 = sorted({d[20], d[56]})
    table6 = sorted({d[k] for k in (20, 32, 44, 56, 110)})
    v2 = f"resnet{d[164]}v2"

    def degradation(depths: list[int], seeds: list[int]):
        def write(exp_dir: Path, base: TrainConfig, arguments: dict, log: Log):
            return run_degradation(depths, seeds, exp_dir, base, {**arguments, "recipe": "paper"}, log=log)
        return write

    def im_comparison(base: TrainConfig) -> Comparison:
        deep = f"resnet{d[110]}"
        paper = {name: ((f"{model_info(name).paper_error:.2f}", model_info(name).reference)
                        if model_info(name).paper_error is not None else ("", "not in the paper"))
                 for name in (deep, v2)}
        return Comparison(
            kind="preact", title="ResNet-164 with full pre-activation beside ResNet-110 (IM section 4, Table 3)",
            short_title="ResNet v1 vs pre-activation bottleneck", specs=im_specs,
            panels=[("v1 (DRL) vs pre-activation (IM)", [deep, v2])], colours={deep: 0, v2: 1}, paper=paper,
            claims=[Claim(v2, "test", "<", deep)],
            notes=[("ResNet-110: DRL's basic blocks, option-A shortcuts. ResNet-164: IM's pre-activation bottleneck "
                    "blocks, projection shortcuts where the shape changes. Same recipe, seed and data order.")],
            setup_rows=[("models", f"{deep} (v1), {v2} (pre-activation)")])

    im_specs = [RunSpec(f"resnet{d[110]}", 0, f"resnet{d[110]}", f"ResNet-{d[110]}"),
                RunSpec(v2, 0, v2, f"ResNet-{d[164]} (pre-act)")]

    def write_im(exp_dir: Path, base: TrainConfig, arguments: dict, log: Log):
        return run_comparison(im_comparison(base), exp_dir, base, {**arguments, "recipe": "paper", "seeds": [0]},
                              log=log)

    seeds = degradation_comparison(fig6, [0, 1, 2], resolve_config("paper"))
    seed_specs = [spec for spec in seeds.specs if spec.model.startswith("resnet")]

    def write_seeds(exp_dir: Path, base: TrainConfig, arguments: dict, log: Log):
        comparison = degradation_comparison(fig6, [0, 1, 2], base)
        comparison = dataclasses.replace(
            comparison, specs=seed_specs, panels=[p for p in comparison.panels if p[0] == "ResNets"],
            claims=[c for c in comparison.claims if c.left.startswith("resnet") and c.right.startswith("resnet")],
            title="ResNet-20 and ResNet-56 over 3 seeds (DRL Table 6)", setup_rows=[("models", "ResNet-20 / 56")])
        return run_comparison(comparison, exp_dir, base, {**arguments, "recipe": "paper", "seeds": [0, 1, 2]},
                              log=log)

    fig7_runs = [f"plain{d[20]}", f"plain{d[56]}", f"resnet{d[20]}", f"resnet{d[56]}", f"resnet{d[110]}"]

    def write_fig7(exp_dir: Path, base: TrainConfig, arguments: dict, log: Log):
        runs = [exp_dir.parent / "runs" / f"{name}-seed0" for name in dict.fromkeys(fig7_runs)]
        return run_responses(runs, exp_dir, images=64 if smoke else 1000, arguments=arguments, log=log)

    return [
        Stage("fig6", degradation_comparison(fig6, [0], resolve_config("paper")).specs, degradation(fig6, [0]),
              alone=True),
        Stage("table6", degradation_comparison(table6, [0], resolve_config("paper")).specs, degradation(table6, [0])),
        Stage("fig7", [], write_fig7, needs=[f"{name}-seed0" for name in dict.fromkeys(fig7_runs)]),
        Stage("im", im_specs, write_im),
        Stage("seeds", seed_specs, write_seeds),
    ]


def base_config(data: str, smoke: bool) -> TrainConfig:
    changes = {"data": data, "tensorboard": False, "keep_checkpoints": 1, "log_every": 100}
    if smoke:
        changes.update(iterations=6, batch_size=16, val_split=12, log_every=2)
    return resolve_config("paper", overrides=changes)


def state_bytes(model: str, with_optimizer: bool = True) -> int:
    """What one run's checkpoint weighs: fp32 weights (+ the momentum buffers while it trains), plus records."""
    params = sum(t.numel() for t in create_model(model).state_dict().values())
    return params * 4 * (2 if with_optimizer else 1) + MiB // 4
