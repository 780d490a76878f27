"""The training-side commands of the CLI: train, eval, predict, plot, recipes."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resnetlab.cli_config import add_config_flags, add_set_flag, config_overrides, parse_seeds
from resnetlab.errors import UserError

if TYPE_CHECKING:
    from resnetlab.train.precision import Precision


def cmd_train(args: argparse.Namespace) -> None:
    from resnetlab import cli_checks as checks
    from resnetlab.train.checkpoint import list_checkpoints, load_latest
    from resnetlab.train.config import resolve_config
    from resnetlab.train.loop import fit
    from resnetlab.train.seeds import fit_seeds

    check_train_flags(args)
    flags = config_overrides(args)
    if "data" in flags:
        flags["data"] = checks.absolute_data(flags["data"])
    recipe = args.recipe or "paper"
    run_dir = Path(args.resume or args.out or f"runs/{flags.get('model', recipe)}-{recipe}")
    if args.resume:
        checks.check_resume_folder(run_dir)
    if args.resume and not list_checkpoints(run_dir):
        raise UserError(f"--resume {run_dir}: no checkpoint there to resume from")
    if args.seeds and list_checkpoints(run_dir):
        raise UserError(f"{run_dir} holds a single run; --seeds trains one run per seed into DIR/seed-<s>: choose "
                        "another --out")
    runs = [run_dir / f"seed-{seed}" for seed in args.seeds] if args.seeds else [run_dir]
    existing = [run for run in runs if list_checkpoints(run)]
    if args.no_resume and existing:
        raise UserError(f"{existing[0]} already holds a run; choose another --out or drop --no-resume to continue it")
    config = resolve_config(recipe, args.config, flags)
    layered = checks.layered_values(args.recipe, args.config) if existing else {}
    overrides = {**{key: value for key, (value, _) in layered.items() if key not in flags}, **flags}
    for run in existing:
        stored = load_latest(run, report=lambda _: None)  # fit reports what it skips
        if stored is None:
            continue  # all corrupt: fit refuses it
        if "data" not in overrides:
            checks.check_stored_data(stored.state["config"]["data"], run)
        checks.check_layers_on_resume(run, stored.state["config"], layered, flags)
        checks.check_not_shorter(run, stored.state, overrides)
    if len(existing) < len(runs):  # a new run records its data absolute, so that eval and resume work from anywhere
        config.data = checks.absolute_data(config.data) or checks.default_data()
    show = False if args.quiet else None
    if args.seeds:
        summary = fit_seeds(config, run_dir, args.seeds, show_progress=show, overrides=overrides,
                            concurrent=args.concurrent or "auto", resume=not args.no_resume)
        print(f"summary: {run_dir / 'summary.md'}")
        for key in ("final_test_acc", "selected_test_acc"):
            if summary[key]["n"]:
                print(f"{key}: {100 * summary[key]['mean']:.2f} +- {100 * summary[key]['std']:.2f} %")
        return
    results = fit(config, run_dir, resume=not args.no_resume, overrides=overrides, show_progress=show)
    print(f"done: {run_dir}  final test accuracy {100 * (results['final_test_acc'] or 0):.2f}%"
          + (f", {results['selected_on']}-selected (epoch {results['selected_epoch']}) test accuracy "
             f"{100 * results['selected_test_acc']:.2f}%" if results["selected_test_acc"] is not None else "")
          + f", {results['wall_seconds']:.0f} s")


def check_train_flags(args: argparse.Namespace) -> None:
    """Flags that contradict each other, refused before anything is read or written."""
    if args.resume and args.out:
        raise UserError("give --out or --resume, not both (--resume RUN_DIR continues that run where it is)")
    if args.seeds and args.resume:
        raise UserError("--seeds starts new runs; it cannot be combined with --resume (give --out DIR for a seed "
                        "sweep; rerunning that command continues it)")
    if args.concurrent is not None and not args.seeds:
        raise UserError("--concurrent trains the runs of --seeds side by side; give --seeds S,... or drop "
                        "--concurrent")


def chosen_precision(requested: str, device: Any) -> Precision:
    """The precision ``--amp`` gives on ``device`` (train/precision.py)."""
    from resnetlab.train.precision import choose_precision

    return choose_precision(requested, device)


def say_precision(precision: Precision) -> None:
    """On stderr, so that --json output stays clean; once the command has succeeded, so that a refusal stays one
    line."""
    print(precision.line(), file=sys.stderr)


def add_runtime_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runtime", choices=["auto", "torch", "onnxruntime"], default="auto",
                        help="auto: ONNX Runtime for an fp32 CPU pass of 5,000 images or more where resnetlab[export] "
                             "is installed (1.3-3x faster there), else PyTorch (runtime.py)")


def cmd_eval(args: argparse.Namespace) -> None:
    from resnetlab import cli_checks as checks
    from resnetlab.train.environment import pick_device
    from resnetlab.runtime import choose_runtime, prepare
    from resnetlab.train.evaluate import evaluate
    from resnetlab.train.inference import eval_batches, load_trained, run_config

    device = pick_device(args.device)
    precision = chosen_precision(args.amp, device)
    trained = load_trained(args.checkpoint, device, fold_bn=True)
    published = trained.metadata.get("published")
    data = checks.absolute_data(args.data)
    if data is None:
        data = trained.metadata.get("data") or None
        if published and not (data and Path(data).exists()) and data not in ("cifar10", "cifar100"):
            raise UserError(f"{args.checkpoint} was trained and measured on {published['data']}; give that data "
                            "with --data PATH")
        checks.check_stored_data(data or "", Path(args.checkpoint))
    val_split, seed = 0, 0
    if args.split != "test":  # the run's validation split, chosen as training chose it
        stored = run_config(trained.source)
        val_split, seed = int(stored.get("val_split", 0)), int(stored.get("seed", 0))
    batches = eval_batches(trained, data, args.split, device, val_split=val_split, seed=seed)
    runtime = choose_runtime(args.runtime, device, precision.bf16, batches.per_rank)
    model, runtime = prepare(runtime, trained.model, trained.image_size)
    result = evaluate(model, batches.epoch(0), len(trained.classes), device, precision.bf16, flip=args.flip)
    report = {"checkpoint": str(trained.source), "split": args.split, "images": result.count,
              "accuracy": result.accuracy, "error": result.error, "loss": result.loss,
              "per_class_accuracy": dict(zip(trained.classes, result.per_class_accuracy())),
              "confusion_matrix": result.confusion.tolist(), "classes": trained.classes}
    if result.flip_accuracy is not None:
        report["flip_accuracy"] = result.flip_accuracy
    report["runtime"] = runtime.name
    if published:
        report["recorded"] = {key: published.get(key) for key in ("test_acc", "test_images", "eval_device", "data")}
    say_precision(precision)
    print(runtime.line(), file=sys.stderr)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{trained.source}: {args.split} accuracy {100 * result.accuracy:.2f}% "
          f"(error {100 * result.error:.2f}%), loss {result.loss:.4f}, {result.count} images"
          + (f"; with flip test-time augmentation {100 * result.flip_accuracy:.2f}%"
             if result.flip_accuracy is not None else ""))
    if published and args.split == "test":
        print(f"recorded when published: {100 * published['test_acc']:.2f}% on {published['test_images']} images "
              f"({published['eval_device']}); data: {published['data']}")
    width = max(len(name) for name in trained.classes)
    print("\nper-class accuracy:")
    for name, accuracy in report["per_class_accuracy"].items():
        print(f"  {name:<{width}} {100 * accuracy:6.2f}%")
    print("\nconfusion matrix (rows: true class, columns: predicted):")
    print(" " * (width + 2) + " ".join(f"{name[:5]:>5}" for name in trained.classes))
    for name, row in zip(trained.classes, report["confusion_matrix"]):
        print(f"  {name:<{width}}" + " ".join(f"{count:>5}" for count in row))


def cmd_predict(args: argparse.Namespace) -> None:
    from dataclasses import replace

    from resnetlab.runtime import choose_runtime, prepare
    from resnetlab.train.environment import pick_device
    from resnetlab.train.inference import load_trained, predict_files

    if args.top_k < 1:
        raise UserError(f"--top-k must be at least 1, got {args.top_k}")
    device = pick_device(args.device)
    precision = chosen_precision(args.amp, device)
    runtime = choose_runtime(args.runtime, device, precision.bf16, len(args.images))
    trained = load_trained(args.checkpoint, device, fold_bn=True)
    model, runtime = prepare(runtime, trained.model, trained.image_size)
    predictions = predict_files(replace(trained, model=model), args.images, args.top_k, amp=precision.bf16)
    say_precision(precision)
    print(runtime.line(), file=sys.stderr)
    if args.json:
        print(json.dumps(predictions, indent=2))
        return
    for prediction in predictions:
        ranked = ", ".join(f"{p['class']} {100 * p['probability']:.1f}%" for p in prediction["top"])
        print(f"{prediction['file']}: {ranked}")


def cmd_plot(args: argparse.Namespace) -> None:
    from resnetlab.plots import plot_runs

    path = plot_runs(args.runs, args.output, x_axis=args.x, title=args.title or "")
    print(f"wrote {path} and {path.with_suffix('.csv')}")


def cmd_recipes(args: argparse.Namespace) -> None:
    from resnetlab.train.config import recipe_description, recipe_names, recipe_values

    for name in recipe_names():
        print(f"{name}: {recipe_description(name)}")
        if args.verbose:
            for key, value in recipe_values(name).items():
                print(f"    {key} = {value!r}")
        print()


def add_commands(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser("train", help="train a model (resumes an existing run directory)",
                                usage="%(prog)s [--recipe NAME] [--config FILE] [--out DIR | --resume DIR] "
                                      "[--seeds S,...] [--set KEY=VALUE] [config flags, see below]")
    train.add_argument("--recipe", help="a named recipe (default paper; `resnetlab recipes` lists them); on an "
                                        "existing run its values apply as flags do")
    train.add_argument("--config", help="TOML file of config values, applied over the recipe (on an existing run, "
                                        "as flags are)")
    train.add_argument("--out", help="run directory (default runs/<model>-<recipe>)")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue this run with its stored config")
    train.add_argument("--no-resume", action="store_true", help="refuse to continue an existing run directory")
    train.add_argument("--seeds", type=parse_seeds, help="several runs into --out DIR/seed-<s>, e.g. 0,1,2: "
                                                          "writes mean +- std")
    add_set_flag(train)
    train.add_argument("--concurrent", metavar="auto|N",
                       help="with --seeds: seeds trained side by side in one process (auto, the default: all on "
                            "CUDA, one after another on a CPU)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_flags(train)
    train.set_defaults(func=cmd_train)

    evaluation = commands.add_parser("eval", help="accuracy, loss, per-class accuracy, confusion matrix")
    evaluation.add_argument("checkpoint", help="run directory (its best, else last checkpoint), checkpoint "
                                               "directory, model.safetensors, or published weights (resnet20.cifar10)")
    evaluation.add_argument("--data", help="dataset (default: the one the model was trained on)")
    evaluation.add_argument("--split", choices=["test", "val", "train"], default="test",
                            help="test (default); val: the run's validation split; train: the rest")
    evaluation.add_argument("--device", default="auto")
    evaluation.add_argument("--amp", choices=["auto", "bf16", "off"], default="auto",
                            help="auto: bf16 autocast where the device computes bf16 natively, else fp32")
    add_runtime_flag(evaluation)
    evaluation.add_argument("--flip", action="store_true",
                            help="also the accuracy with left-right flip test-time augmentation")
    evaluation.add_argument("--json", action="store_true")
    evaluation.set_defaults(func=cmd_eval)

    predict = commands.add_parser("predict", help="top-k classes of image files")
    predict.add_argument("checkpoint")
    predict.add_argument("images", nargs="+", help="image files of any size (prepared as the run's evaluation was)")
    predict.add_argument("--top-k", type=int, default=3, help="classes shown per image (default 3)")
    predict.add_argument("--device", default="cpu", help="cpu (default: a few images need no GPU), auto, cuda or "
                                                         "cuda:N")
    predict.add_argument("--amp", choices=["auto", "bf16", "off"], default="auto",
                         help="auto: bf16 autocast where the device computes bf16 natively, else fp32")
    add_runtime_flag(predict)
    predict.add_argument("--json", action="store_true")
    predict.set_defaults(func=cmd_predict)

    plot = commands.add_parser("plot", help="learning curves of one or more runs")
    plot.add_argument("runs", nargs="+", help="run directories")
    plot.add_argument("-o", "--output", default="curves.png", help="PNG to write (a CSV is written beside it)")
    plot.add_argument("--x", choices=["epoch", "step"], default="epoch", help="x axis: epochs or iterations")
    plot.add_argument("--title")
    plot.set_defaults(func=cmd_plot)

    recipes = commands.add_parser("recipes", help="the named training recipes")
    recipes.add_argument("-v", "--verbose", action="store_true", help="show every value")
    recipes.set_defaults(func=cmd_recipes)


