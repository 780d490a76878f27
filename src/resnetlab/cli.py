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
    kwargs = {"num_classes": args.num_classes} if args.num_classes is not None else {}
    if args.shortcut:
        kwargs["shortcut"] = args.shortcut
    model = create_model(args.model, **kwargs)
    default_shape = (3, info.input_size, info.input_size)
    input_shape = args.input or default_shape
    shape_text, default_text = ("x".join(map(str, shape)) for shape in (input_shape, default_shape))
    if input_shape[0] != default_shape[0]:
        raise UserError(f"{args.model} takes {default_shape[0]}-channel (RGB) images, not {input_shape[0]}: give "
                        f"--input {default_shape[0]}x{input_shape[1]}x{input_shape[2]}")
    try:
        summary = summarize(model, input_shape, args.model)
    except RuntimeError as error:
        first_line = str(error).strip().splitlines()[0]
        raise UserError(f"{args.model} cannot take {shape_text} input ({first_line}); its own size is "
                        f"--input {default_text}") from None
    if args.json:
        print(json.dumps({**summary.to_dict(), "paper_params": info.paper_params, "paper_error": info.paper_error,
                          "reference": info.reference}, indent=2))
    else:
        channels_last = args.channels_last if args.channels_last is not None else args.model.startswith("keras_")
        print(format_summary(summary, channels_last=channels_last))
        footer = paper_footer(info, summary.trainable_params)
        if footer:
            print(footer)


def paper_footer(info, params: int) -> str:
    """``In the paper (reference): 0.27M parameters (this model: 269,722), 8.75 % test error on CIFAR-10.``"""
    if not (info.paper_params or info.paper_error):
        return ""
    parts = []
    if info.paper_params:
        parts.append(f"{info.paper_params / 1e6:.2f}M parameters (this model: {params:,})")
    if info.paper_error:
        parts.append(f"{info.paper_error:.2f} % {'top-1 error on ImageNet' if info.input_size >= 224 else 'test error on CIFAR-10'}")
    return f"In the paper ({info.reference}): {', '.join(parts)}."


def own_params(name: str) -> int:
    """The parameter count of the model as resnetlab builds it: on the meta device (no memory) and with the
    weight initialisers skipped (random init of meta tensors is slow, and the values are never read)."""
    from unittest import mock

    import torch

    from resnetlab.models import create_model

    skipped = {fn: (lambda tensor, *args, **kwargs: tensor) for fn in dir(torch.nn.init)
               if fn.endswith("_") and not fn.startswith("_")}
    with torch.device("meta"), mock.patch.multiple(torch.nn.init, **skipped):
        return sum(p.numel() for p in create_model(name).parameters())


def matching_models(pattern: str) -> list[str]:
    """The registered names matching ``pattern``; a plain name that is not registered but can be built (a valid
    depth, such as resnet8) is its own match, and one that cannot gets the registry's own error."""
    from resnetlab.models import list_models, model_info

    names = list_models(pattern)
    if names:
        return names
    if not any(wildcard in pattern for wildcard in "*?["):
        return [model_info(pattern).name]
    raise UserError(f"no model matches {pattern!r}; patterns are shell-style (e.g. 'plain*', 'resnet?0'), and "
                    "`resnetlab list` shows them all")


def cmd_list(args: argparse.Namespace) -> None:
    from resnetlab.models import model_info

    names = matching_models(args.pattern)
    if args.json:
        fields = ("family", "depth", "residual", "twin", "input_size", "paper_params", "paper_error", "reference")
        print(json.dumps([{"name": n, "params": own_params(n), **{key: getattr(model_info(n), key) for key in fields}}
                          for n in names], indent=2))
        return
    print(f"{'model':<20} {'family':<22} {'input':>5} {'params':>11} {'paper params':>13} {'paper err %':>11}  "
          "reference")
    for name in names:
        info = model_info(name)
        paper = f"{info.paper_params / 1e6:.2f}M" if info.paper_params else "-"
        error = f"{info.paper_error:.2f}" if info.paper_error else "-"
        print(f"{name:<20} {info.family:<22} {info.input_size:>5} {own_params(name) / 1e6:>10.2f}M {paper:>13} "
              f"{error:>11}  {info.reference}", flush=True)


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
    summary.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                         help="print shapes as (None, 32, 32, 16), Keras' order (default for keras_* models)")
    summary.add_argument("--json", action="store_true", help="machine-readable output")
    summary.set_defaults(func=cmd_summary)

    listing = commands.add_parser("list", help="registered models with the papers' numbers")
    listing.add_argument("pattern", nargs="?", default="*",
                         help="shell-style filter, e.g. 'plain*', or a model's name (resnet8: valid depths that are "
                         "not registered are built too)")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_list)

    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).add_commands(commands)
    parser.commands = commands.choices  # name -> the command's parser, for its own usage in error messages
    return parser


# Modules that add their subcommands to the parser (each defines `add_commands(subparsers)`).
COMMAND_MODULES = ["resnetlab.cli_train", "resnetlab.cli_bench", "resnetlab.cli_tools", "resnetlab.cli_experiments",
                   "resnetlab.cli_weights"]


def main(argv: Sequence[str] | None = None) -> int:
    from resnetlab.cli_checks import pasteable, unrecognized

    if hasattr(sys.stdout, "reconfigure"):  # one line at a time into pipes and log files too, as on a terminal
        sys.stdout.reconfigure(line_buffering=True)
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if extras:  # the command's own usage, and the flag that was probably meant
        command = parser.commands[args.command]
        command.error(unrecognized(command, extras))
    args.argv = list(sys.argv[1:] if argv is None else argv)  # the command as typed, for the records
    try:
        status = args.func(args)
    except UserError as error:
        print(f"resnetlab {args.command}: error: {pasteable(str(error))}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # output piped into `head` and the like: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except TrainingStopped as stopped:
        print(f"resnetlab {args.command}: {pasteable(str(stopped))}", file=sys.stderr)
        return EXIT_STOPPED
    except KeyboardInterrupt:
        print(f"resnetlab {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(status or 0)


if __name__ == "__main__":
    sys.exit(main())
