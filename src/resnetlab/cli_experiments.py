"""The experiment commands of the CLI: ``resnetlab experiment degradation|shortcuts|preact|gradients|responses``
and ``resnetlab report``. Each is a thin layer over ``resnetlab.experiments``."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import Any

from resnetlab.cli_config import add_config_flags, add_set_flag, config_overrides, parse_depths, parse_seeds
from resnetlab.errors import UserError

GRADIENT_MODELS = "plain20,plain56,plain110,resnet20,resnet56,resnet110"
TRAINING_FIELDS = ("data", "batch_size", "lr", "val_split", "device", "deterministic", "epochs", "iterations")
SWEPT_FIELDS = {"model": "--depths", "seed": "--seeds"}  # what the sweep sets for each run itself


def parse_names(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected names separated by commas")
    return names


def command_line(args: argparse.Namespace) -> str:
    """The command exactly as it was typed (``cli.main`` keeps its arguments), for ``experiment.json``."""
    return shlex.join(["resnetlab", *args.argv])


def base_config(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """The sweep's shared TrainConfig (recipe <- --config <- flags) and the arguments to record."""
    from resnetlab.cli_checks import check_data_env
    from resnetlab.train.config import read_toml, resolve_config

    if args.epochs is not None and args.iterations is not None:
        raise UserError("give --epochs or --iterations, not both")
    overrides = config_overrides(args, TRAINING_FIELDS)
    for source, keys in (("--set", overrides), (f"--config {args.config}", read_toml(Path(args.config))
                                                 if args.config else {})):
        for key, flag in SWEPT_FIELDS.items():
            if key in keys:
                raise UserError(f"{key} is chosen by {flag} in this experiment; drop it from {source}")
    config = resolve_config(args.recipe, args.config, overrides)
    if not config.data:
        check_data_env()
    return config, {"command": command_line(args), "recipe": args.recipe, "config_file": args.config,
                    "overrides": overrides, "seeds": args.seeds}


def show(result: dict[str, Any], out: Path) -> None:
    for line in result["verdicts"]:
        print(f"  {line}")
    print(f"results: {out / 'results.md'} (table: results.csv, figure: {Path(result['figure']).name})")


def cmd_degradation(args: argparse.Namespace) -> None:
    from resnetlab.experiments.degradation import run_degradation

    config, arguments = base_config(args)
    show(run_degradation(args.depths, args.seeds, args.out, config, arguments,
                         show_progress=False if args.quiet else None, concurrent=args.concurrent), Path(args.out))


def cmd_shortcuts(args: argparse.Namespace) -> None:
    from resnetlab.experiments.variants import run_shortcuts

    config, arguments = base_config(args)
    show(run_shortcuts(args.depths, args.options, args.seeds, args.out, config, arguments,
                       show_progress=False if args.quiet else None, concurrent=args.concurrent), Path(args.out))


def cmd_preact(args: argparse.Namespace) -> None:
    from resnetlab.experiments.variants import run_preact

    config, arguments = base_config(args)
    show(run_preact(args.depths, args.seeds, args.out, config, arguments,
                    show_progress=False if args.quiet else None, concurrent=args.concurrent), Path(args.out))


def cmd_gradients(args: argparse.Namespace) -> None:
    from resnetlab.cli_checks import check_data_env
    from resnetlab.experiments.gradients import run_gradients

    if not args.data:
        check_data_env()

    show(run_gradients(args.models, args.out, data=args.data, steps=args.steps, batches=args.batches,
                       batch_size=args.batch_size, seed=args.seed, lr=args.lr, device=args.device,
                       arguments={"command": command_line(args)}), Path(args.out))


def cmd_responses(args: argparse.Namespace) -> None:
    from resnetlab.experiments.responses import run_responses, runs_from_experiment

    if bool(args.runs) == bool(args.source):
        raise UserError("give either --runs RUN_DIR... or --from EXP_DIR")
    runs = args.runs or runs_from_experiment(Path(args.source), args.seed)
    show(run_responses(runs, args.out, data=args.data, images=args.images,
                       arguments={"command": command_line(args), "from": args.source}), Path(args.out))


def cmd_report(args: argparse.Namespace) -> None:
    from resnetlab.experiments.report import build_report

    markdown, html = build_report(args.experiments, args.output, html=not args.no_html)
    print(f"wrote {markdown}" + (f" and {html}" if html else ""))


def add_training_flags(parser: argparse.ArgumentParser, kind: str) -> None:
    depths = "20,32,44,56" if kind == "degradation" else "20,56"
    parser.add_argument("--depths", type=parse_depths, default=parse_depths(depths),
                        help=f"6n+2 depths, comma-separated (default: {depths})")
    parser.add_argument("--seeds", type=parse_seeds, default=[0], help="seeds, e.g. 0,1,2: mean ± std (default 0)")
    parser.add_argument("--recipe", default="paper", help="a named recipe (`resnetlab recipes` lists them)")
    parser.add_argument("--config", help="TOML file of config values, applied over the recipe")
    parser.add_argument("--out", default=f"exp/{kind}", help="experiment directory (default: %(default)s)")
    add_set_flag(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_flags(parser, TRAINING_FIELDS, title="training settings shared by every run (more with --set)")
    parser.add_argument("--concurrent", default="auto", metavar="auto|N",
                        help="runs trained side by side in one process: auto = all of them on CUDA, one after "
                             "another on a CPU (default)")


def add_commands(commands: argparse._SubParsersAction) -> None:
    experiment = commands.add_parser("experiment", help="test a claim of the papers: train, measure, table, plot")
    kinds = experiment.add_subparsers(dest="experiment", required=True, metavar="EXPERIMENT")

    degradation = kinds.add_parser("degradation", help="plain nets vs ResNets by depth (DRL Figure 6, Table 6)")
    add_training_flags(degradation, "degradation")
    degradation.set_defaults(func=cmd_degradation)

    shortcuts = kinds.add_parser("shortcuts", help="shortcut options A, B, C (DRL section 3.3, Table 3)")
    add_training_flags(shortcuts, "shortcuts")
    shortcuts.add_argument("--options", type=parse_names, default=["A", "B", "C"], help="default: A,B,C")
    shortcuts.set_defaults(func=cmd_shortcuts)

    preact = kinds.add_parser("preact", help="original vs full pre-activation ResNets (IM Table 2)")
    add_training_flags(preact, "preact")
    preact.set_defaults(func=cmd_preact)

    gradients = kinds.add_parser("gradients", help="per-layer gradient norms at init and after k steps (DRL 4.1)")
    gradients.add_argument("--models", type=parse_names, default=parse_names(GRADIENT_MODELS),
                           help=f"comma-separated model names (default: {GRADIENT_MODELS})")
    gradients.add_argument("--steps", type=int, default=100, help="SGD steps before the second probe (default 100)")
    gradients.add_argument("--batches", type=int, default=8, help="batches the norms are averaged over (default 8)")
    gradients.add_argument("--batch-size", type=int, default=128)
    gradients.add_argument("--lr", type=float, default=0.1, help="SGD learning rate (paper: 0.1)")
    gradients.add_argument("--seed", type=int, default=0)
    gradients.add_argument("--data", help="dataset (default: resnetlab's)")
    gradients.add_argument("--device", default="auto")
    gradients.add_argument("--out", default="exp/gradients")
    gradients.set_defaults(func=cmd_gradients)

    responses = kinds.add_parser("responses", help="std of each 3x3 layer's response of trained nets (DRL Fig. 7)")
    responses.add_argument("--runs", nargs="+", metavar="RUN_DIR", help="trained run directories")
    responses.add_argument("--from", dest="source", metavar="EXP_DIR",
                           help="use the runs of a degradation/shortcuts/preact experiment")
    responses.add_argument("--seed", type=int, help="with --from: the seed whose runs to use (default: smallest)")
    responses.add_argument("--images", type=int, default=500, help="test images measured (default 500)")
    responses.add_argument("--data", help="dataset (default: the one each run was trained on)")
    responses.add_argument("--out", default="exp/responses")
    responses.set_defaults(func=cmd_responses)

    report = commands.add_parser("report", help="gather experiment directories into report.md and report.html")
    report.add_argument("experiments", nargs="+", metavar="EXP_DIR", help="experiment directories")
    report.add_argument("-o", "--output", default="report.md", help="Markdown file to write (default report.md)")
    report.add_argument("--no-html", action="store_true", help="skip the HTML version")
    report.set_defaults(func=cmd_report)
