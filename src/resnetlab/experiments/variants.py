"""Two architecture comparisons laid out like the degradation experiment (table, curves, verdicts):

- shortcut options A, B and C (DRL section 3.3 and Table 3) on CIFAR ResNets;
- the original ResNet (DRL) against full pre-activation (IM section 4, Table 2), basic blocks, same depth.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from resnetlab.errors import UserError
from resnetlab.experiments.comparison import Claim, Comparison, run_comparison
from resnetlab.experiments.degradation import check_depths, paper_table6
from resnetlab.experiments.sweep import RunSpec
from resnetlab.models import model_info
from resnetlab.train.config import TrainConfig
from resnetlab.train.loop import Log

OPTIONS = ("A", "B", "C")
DRL_TABLE3 = {"A": 25.03, "B": 24.52, "C": 24.19}  # ImageNet ResNet-34, top-1 % (10-crop)


def shortcuts_comparison(depths: list[int], options: list[str], seeds: list[int]) -> Comparison:
    depths = check_depths(depths)
    bad = [o for o in options if o not in OPTIONS]
    if bad or not options:
        raise UserError(f"shortcut options are A, B and C, got {', '.join(options) or 'none'}")
    options = [o for o in OPTIONS if o in options]
    specs = [RunSpec(f"resnet{d}", seed, f"resnet{d}-{o}", f"ResNet-{d} ({o})", (("shortcut", o),))
             for d in depths for o in options for seed in seeds]
    paper = {}
    for d in depths:
        value, source = paper_table6(f"resnet{d}")
        paper[f"resnet{d}-A"] = (value, f"{source} (option A)" if value else source)
        paper.update({f"resnet{d}-{o}": ("", "none on CIFAR: DRL Table 3 is ImageNet") for o in "BC"})
    claims = [Claim(f"resnet{d}-{better}", "test", "<", f"resnet{d}-{worse}")
              for d in depths for worse, better in (("A", "B"), ("B", "C")) if worse in options and better in options]
    table3 = ", ".join(f"{o} {e:.2f} %" for o, e in DRL_TABLE3.items())
    notes = [
        ("A: identity shortcuts, zero-padded where the shape changes (no parameters); B: 1x1 projections only where "
        "the shape changes; C: projections on every shortcut (DRL section 3.3)."),
        (f"The paper compares the options on ImageNet only (DRL Table 3, ResNet-34 top-1 error, 10-crop: {table3}): "
        "B is slightly better than A, C marginally better than B, and the paper concludes that projections are not "
        "essential to the degradation problem. The claims below test the same ordering on CIFAR."),
    ]
    return Comparison(
        kind="shortcuts", title="Shortcut options A, B, C (DRL section 3.3, Table 3)",
        short_title="Shortcut options A / B / C", specs=specs,
        panels=[(f"ResNet-{d}", [f"resnet{d}-{o}" for o in options]) for d in depths],
        colours={f"resnet{d}-{o}": OPTIONS.index(o) for d in depths for o in options}, paper=paper, claims=claims,
        notes=notes, setup_rows=[("models", ", ".join(f"ResNet-{d}" for d in depths)),
                                 ("shortcut options", ", ".join(options))])


def preact_comparison(depths: list[int], seeds: list[int]) -> Comparison:
    depths = check_depths(depths)
    specs = [RunSpec(name, seed, name, label)
             for d in depths for name, label in ((f"resnet{d}", f"ResNet-{d} (v1)"),
                                                 (f"preact_resnet{d}", f"pre-act ResNet-{d}"))
             for seed in seeds]
    paper = {}
    for d in depths:
        paper[f"resnet{d}"] = paper_table6(f"resnet{d}")
        info = model_info(f"preact_resnet{d}")
        paper[f"preact_resnet{d}"] = ((f"{info.paper_error:.2f}", "IM Table 2") if info.paper_error is not None
                                      else ("", "not in IM"))
    notes = [
        ("v1 (DRL): conv-BN-ReLU-conv-BN, addition, ReLU, option-A shortcuts. Full pre-activation (IM Figure 4e): "
        "BN-ReLU-conv-BN-ReLU-conv, addition, nothing after it; projection shortcuts where the shape changes, as "
        "in the authors' code. Both use two-layer basic blocks and the same 6n+2 depth."),
        ("IM Table 2 trains ResNet-110 on CIFAR-10: the original unit 6.61 % (the IM authors' own rerun; DRL "
        "Table 6 prints 6.43 %), full pre-activation 6.37 %. The claim below is IM's: pre-activation lowers the "
        "test error."),
    ]
    return Comparison(
        kind="preact", title="Original vs full pre-activation ResNets (IM section 4, Table 2)",
        short_title="ResNet v1 vs pre-activation", specs=specs,
        panels=[(f"depth {d}", [f"resnet{d}", f"preact_resnet{d}"]) for d in depths],
        colours={name: index for d in depths for index, name in enumerate((f"resnet{d}", f"preact_resnet{d}"))},
        paper=paper, claims=[Claim(f"preact_resnet{d}", "test", "<", f"resnet{d}") for d in depths], notes=notes,
        setup_rows=[("models", ", ".join(f"ResNet-{d} v1 / pre-act" for d in depths))])


def run_shortcuts(depths: list[int], options: list[str], seeds: list[int], exp_dir: str | Path, base: TrainConfig,
                  arguments: dict[str, Any], *, log: Log = print, show_progress: bool | None = None,
                  concurrent: int | str = 1) -> dict[str, Any]:
    """Train ResNets of each depth with each shortcut option; table, curves and verdicts."""
    if base.shortcut:
        raise UserError("the shortcut experiment sets the shortcut of each run itself; drop --set shortcut")
    arguments = {**arguments, "depths": sorted(set(depths)), "options": options, "seeds": seeds}
    return run_comparison(shortcuts_comparison(depths, options, seeds), exp_dir, base, arguments, log=log,
                          show_progress=show_progress, concurrent=concurrent)


def run_preact(depths: list[int], seeds: list[int], exp_dir: str | Path, base: TrainConfig,
               arguments: dict[str, Any], *, log: Log = print, show_progress: bool | None = None,
               concurrent: int | str = 1) -> dict[str, Any]:
    """Train v1 and pre-activation ResNets of each depth; table, curves and verdicts."""
    if base.shortcut:
        raise UserError("the pre-activation experiment keeps each model's own shortcut; drop --set shortcut")
    arguments = {**arguments, "depths": sorted(set(depths)), "seeds": seeds}
    return run_comparison(preact_comparison(depths, seeds), exp_dir, base, arguments, log=log,
                          show_progress=show_progress, concurrent=concurrent)
