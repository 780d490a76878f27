"""The degradation experiment (DRL section 4.2, Figure 6, Table 6): plain nets get worse with depth, even on the
training set, while their residual twins get better.

Each depth trains ``plain{d}`` and ``resnet{d}`` with the same recipe and seed, hence the same data order and
augmentation; with option-A shortcuts (no parameters) the two even start from the same weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from resnetlab.errors import UserError
from resnetlab.experiments.comparison import Claim, Comparison, run_comparison
from resnetlab.experiments.records import length_text
from resnetlab.experiments.sweep import RunSpec
from resnetlab.models import model_info
from resnetlab.train.config import TrainConfig
from resnetlab.train.loop import Log

PAPER_ITERATIONS = 64_000
PAPER_EPOCHS = 180  # 64k iterations of batch 128 on 45k images: about 182 epochs


def check_depths(depths: list[int]) -> list[int]:
    """Distinct 6n+2 depths, in increasing order (each name is checked by the registry)."""
    if not depths:
        raise UserError("give at least one depth, e.g. --depths 20,56")
    for depth in depths:
        model_info(f"resnet{depth}")
        if model_info(f"resnet{depth}").family != "cifar_v1":
            raise UserError(f"depth {depth}: resnet{depth} is not a CIFAR ResNet (use 6n+2 depths: 20, 32, 44, 56...)")
    return sorted(set(depths))


def paper_table6(name: str) -> tuple[str, str]:
    """(test error as printed in DRL Table 6, source) of a CIFAR ResNet; ("", why not) where there is none."""
    info = model_info(name)
    if info.paper_error is None:
        return "", "not in DRL Table 6"
    return f"{info.paper_error:.2f}", "DRL Table 6"


def degradation_comparison(depths: list[int], seeds: list[int], base: TrainConfig) -> Comparison:
    depths = check_depths(depths)
    specs = [RunSpec(f"{family}{d}", seed, f"{family}{d}", f"{label}-{d}")
             for d in depths for family, label in (("plain", "plain"), ("resnet", "ResNet")) for seed in seeds]
    colours = {f"{family}{d}": i for i, d in enumerate(depths) for family in ("plain", "resnet")}
    paper = {f"plain{d}": ("", "Figure 6 only") for d in depths}
    paper.update({f"resnet{d}": paper_table6(f"resnet{d}") for d in depths})
    shallow, deep = depths[0], depths[-1]
    claims = []
    if deep != shallow:
        claims += [Claim(f"plain{deep}", "train", ">", f"plain{shallow}"),
                   Claim(f"plain{deep}", "test", ">", f"plain{shallow}"),
                   Claim(f"resnet{deep}", "train", "<", f"resnet{shallow}"),
                   Claim(f"resnet{deep}", "test", "<", f"resnet{shallow}")]
    claims += [Claim(f"resnet{d}", "test", "<", f"plain{d}") for d in depths]
    notes = [
        ("Claims (DRL section 4.2): the deeper plain net has the higher training and test error (the degradation "
        "problem, Figure 6 left); the deeper ResNet has the lower error (Figure 6 middle, Table 6); each ResNet "
        "beats its plain twin. Each verdict compares the deepest and the shallowest depth trained here."),
        ("The plain and residual net of a seed share the recipe, the data order and the augmentation (both derived "
        "from the seed) and, since option-A shortcuts have no parameters, the same initial weights."),
        "The paper's plain nets have no table of errors: their numbers are read off Figure 6 only.",
    ]
    if (base.iterations or 0) < PAPER_ITERATIONS if base.iterations else base.epochs < PAPER_EPOCHS:
        notes.append(f"These runs trained for {length_text(base.to_dict())}; the paper's for 64k iterations. A "
                     "shorter run shows the start of training only, and errors far above the paper's are expected.")
    return Comparison(
        kind="degradation", title="Degradation: plain nets vs ResNets (DRL section 4.2, Figure 6, Table 6)",
        short_title="Plain nets (left) vs ResNets (right)", specs=specs,
        panels=[("plain networks", [f"plain{d}" for d in depths]), ("ResNets", [f"resnet{d}" for d in depths])],
        colours=colours, paper=paper, claims=claims, notes=notes,
        setup_rows=[("models", ", ".join(f"plain-{d} / ResNet-{d}" for d in depths)), ("shortcuts", "option A")])


def run_degradation(depths: list[int], seeds: list[int], exp_dir: str | Path, base: TrainConfig,
                    arguments: dict[str, Any], *, log: Log = print, show_progress: bool | None = None,
                    concurrent: int | str = 1) -> dict[str, Any]:
    """Train (or finish) every plain/residual pair and write the Figure 6 plot, the table and the verdicts."""
    if base.shortcut not in ("", "A"):
        raise UserError("the degradation experiment uses the paper's option A shortcuts; drop --set shortcut")
    arguments = {**arguments, "depths": sorted(set(depths)), "seeds": seeds}
    return run_comparison(degradation_comparison(depths, seeds, base), exp_dir, base, arguments, log=log,
                          show_progress=show_progress, concurrent=concurrent)
