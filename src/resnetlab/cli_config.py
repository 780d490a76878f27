"""Command-line flags generated from ``TrainConfig``'s declarations (``train/config.py``): each field's flag, type,
choices and help come from the field itself, so ``train``, ``experiment`` and ``bench`` cannot drift from the
config or from each other.

Why a small generator over ``dataclasses.fields`` rather than jsonargparse or tyro: the CLI is plain argparse with
subcommand modules that register themselves, and it promises one line and exit code 2 for every bad input; both
libraries would take over the whole parser (their own error output, help layout and config-file handling, which
``--config`` and the recipes already do). The generator also gives directly what resuming needs: every flag
defaults to None, so "what the user typed" is exactly the flags that are not None. It is about sixty lines and
adds no dependency.
"""

from __future__ import annotations

import argparse
import tomllib
import typing
from collections.abc import Iterable
from dataclasses import Field, fields
from typing import Any

from resnetlab.errors import UserError
from resnetlab.train.config import SECTIONS, TrainConfig, field_types

METAVARS = {int: "N", float: "X", str: "NAME"}
LENGTH_FIELDS = {"epochs": "iterations", "iterations": "epochs"}  # each replaces the other


def parse_set(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE read as TOML (``lr=0.05``, ``milestones=[0.5, 0.75]``, ``schedule="cosine"``)."""
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"--set takes KEY=VALUE, got {text!r}")
    try:
        return key.strip(), tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        return key.strip(), value  # a bare word is a string


def parse_ints(text: str) -> list[int]:
    """``0,1,2`` -> ``[0, 1, 2]`` (seeds, depths)."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return values


def parse_seeds(text: str) -> list[int]:
    """``0,1,2`` -> ``[0, 1, 2]``, each seed once (train/seeds.py)."""
    from resnetlab.train.seeds import check_distinct_seeds

    seeds = parse_ints(text)
    try:
        check_distinct_seeds(seeds)
    except UserError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return seeds


def parse_depths(text: str) -> list[int]:
    """``20,56`` -> ``[20, 56]``, each a positive depth (the registry then checks that it is 6n+2)."""
    depths = parse_ints(text)
    bad = [depth for depth in depths if depth < 1]
    if bad:
        raise argparse.ArgumentTypeError(f"depths are positive 6n+2 numbers (20, 32, 44, 56...), got {bad[0]}")
    return depths


def parse_floats(text: str) -> list[float]:
    """``0.5,0.75`` -> ``[0.5, 0.75]`` (milestones, Adam's betas)."""
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None


def flag_name(spec: Field) -> str:
    return spec.metadata.get("flag", "--" + spec.name.replace("_", "-"))


def config_fields(names: Iterable[str] | None = None) -> list[Field]:
    """The fields with flags: ``names`` (in declaration order), or all of them."""
    chosen = None if names is None else set(names)
    return [spec for spec in fields(TrainConfig) if chosen is None or spec.name in chosen]


def add_config_flags(parser: argparse.ArgumentParser, names: Iterable[str] | None = None, *,
                     title: str | None = None) -> None:
    """One flag per config field (all, or ``names``), each defaulting to None ("not given"). Without ``title``
    the flags are grouped by the config's sections; with it, they form one group of that title."""
    types = field_types()
    group: Any = parser.add_argument_group(title) if title else parser
    for spec in config_fields(names):
        if not title and spec.name in SECTIONS:
            group = parser.add_argument_group(f"config: {SECTIONS[spec.name]}")
        kind = types[spec.name]
        text = spec.metadata["help"].replace("%", "%%")
        options: dict[str, Any] = {"dest": spec.name, "default": None, "help": text}
        if kind is bool:
            options["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(kind) is list:
            ints = typing.get_args(kind) == (int,)
            options.update(type=parse_ints if ints else parse_floats, metavar="N,M" if ints else "X,Y")
        else:
            choices = spec.metadata.get("choices")
            options.update(type=kind, metavar="{" + ",".join(choices) + "}" if choices
                           else spec.metadata.get("metavar", METAVARS[kind]))
        group.add_argument(flag_name(spec), **options)


def config_overrides(args: argparse.Namespace, names: Iterable[str] | None = None) -> dict[str, Any]:
    """Only what the user typed, ``--set KEY=VALUE`` last: on resume these, and nothing else, change the stored
    config. ``--epochs`` and ``--iterations`` each replace the other (the training length is one of the two)."""
    given = vars(args)
    if all(given.get(name) is not None for name in LENGTH_FIELDS):
        raise UserError("give --epochs or --iterations, not both (each replaces the recipe's length)")
    overrides: dict[str, Any] = {}
    for spec in config_fields(names):
        if given.get(spec.name) is not None:
            overrides[spec.name] = given[spec.name]
            if spec.name in LENGTH_FIELDS:
                overrides[LENGTH_FIELDS[spec.name]] = 0
    for key, value in given.get("set") or []:
        overrides[key] = value
    return overrides




def add_set_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", type=parse_set, action="append", metavar="KEY=VALUE",
                        help="any config field, e.g. --set milestones=[0.5,0.75] (repeatable)")
