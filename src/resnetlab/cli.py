"""The ``resnetlab`` command line: one subcommand per job, each a thin layer over the library.

Errors a user can fix (a bad model name, a corrupt file, a bad argument) print one line and exit with code 2.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Sequence

from resnetlab.errors import UserError
from resnetlab.train.loop import TrainingStopped

EXIT_USAGE = 2
EXIT_STOPPED = 130


def parse_input_shape(text: str) -> tuple[int, ...]:
    """``3x32x32`` -> ``(3, 32, 32)``."""
    try:
        shape = tuple(int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"input shape must look like 3x32x32, got {text!r}") from None
    if len(shape) != 3 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"input shape must be CxHxW with positive sizes, got {text!r}")
    return shape


def cmd_summary(args: argparse.Namespace) -> None:
    from resnetlab.models import create_model, model_info
    from resnetlab.models.summary import format_summary, summarize

    info = model_info(args.model)
    kwargs = {"num_classes": args.num_classes} if args.num_classes else {}
    if args.shortcut:
        kwargs["shortcut"] = args.shortcut
    model = create_model(args.model, **kwargs)
    input_shape = args.input or (3, info.input_size, info.input_size)
    summary = summarize(model, input_shape, args.model)
    if args.json:
        print(json.dumps({**summary.to_dict(), "paper_params": info.paper_params, "paper_error": info.paper_error,
                          "reference": info.reference}, indent=2))
    else:
        print(format_summary(summary))
        if info.paper_params or info.paper_error:
            print(f"Paper: {info.paper_params or '-'} params, {info.paper_error or '-'} % error ({info.reference})")


def cmd_list(args: argparse.Namespace) -> None:
    from resnetlab.models import list_models, model_info

    names = list_models(args.pattern)
    if args.json:
        fields = ("family", "depth", "residual", "twin", "input_size", "paper_params", "paper_error", "reference")
        print(json.dumps([{"name": n, **{key: getattr(model_info(n), key) for key in fields}} for n in names],
                         indent=2))
        return
    print(f"{'model':<20} {'family':<22} {'input':>5} {'paper params':>13} {'paper err %':>11}  reference")
    for name in names:
        info = model_info(name)
        params = f"{info.paper_params / 1e6:.2f}M" if info.paper_params else "-"
        error = f"{info.paper_error:.2f}" if info.paper_error else "-"
        print(f"{name:<20} {info.family:<22} {info.input_size:>5} {params:>13} {error:>11}  {info.reference}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="resnetlab", description="The ResNets of He et al. (2015, 2016) and their plain twins: build, "
        "train on CIFAR, evaluate, and reproduce the papers' experiments.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    summary = commands.add_parser("summary", help="layers, output shapes, parameters, MACs of a model")
    summary.add_argument("model", help="a registered name, e.g. resnet56 (see `resnetlab list`)")
    summary.add_argument("--input", type=parse_input_shape, help="CxHxW, default the model's (3x32x32 for CIFAR)")
    summary.add_argument("--num-classes", type=int)
    summary.add_argument("--shortcut", choices=["A", "B", "C"], help="shortcut option (v1 and v2 nets)")
    summary.add_argument("--json", action="store_true", help="machine-readable output")
    summary.set_defaults(func=cmd_summary)

    listing = commands.add_parser("list", help="registered models with the papers' numbers")
    listing.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'plain*'")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_list)

    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).add_commands(commands)
    return parser


# Modules that add their subcommands to the parser (each defines `add_commands(subparsers)`).
COMMAND_MODULES = ["resnetlab.cli_train", "resnetlab.cli_bench", "resnetlab.cli_tools", "resnetlab.cli_experiments",
                   "resnetlab.cli_weights"]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # the command as typed, for the records
    try:
        status = args.func(args)
    except UserError as error:
        print(f"resnetlab {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # output piped into `head` and the like: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except TrainingStopped as stopped:
        print(f"resnetlab {args.command}: {stopped}", file=sys.stderr)
        return EXIT_STOPPED
    except KeyboardInterrupt:
        print(f"resnetlab {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(status or 0)


if __name__ == "__main__":
    sys.exit(main())
