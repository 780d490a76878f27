"""Published weights in the CLI: ``resnetlab publish RUN_DIR`` and ``resnetlab weights``."""

from __future__ import annotations

import argparse
import json


def cmd_publish(args: argparse.Namespace) -> None:
    from resnetlab.train.environment import pick_device
    from resnetlab.train.publish import publish

    publish(args.run, args.tag, args.weights_dir, data=args.data, data_description=args.data_description or "",
            device=str(pick_device(args.device)), replace=args.replace)


def cmd_weights(args: argparse.Namespace) -> None:
    from resnetlab.models.registry import model_info
    from resnetlab.models.weights import get_weights, list_weights, weight_folders

    if args.model:
        model_info(args.model)  # an unknown name: the registry's did-you-mean error
    names = list_weights(args.model)
    records = [get_weights(*name.split(".", 1)) for name in names]
    if args.json:
        print(json.dumps([{"name": w.name, "file": str(w.path), "sha256": w.sha256, **w.record} for w in records],
                         indent=2))
        return
    if not records:
        published = list_weights()
        if args.model and published:
            print(f"no published weights for {args.model}; published: {', '.join(published)}")
        else:
            print(f"no published weights yet (searched: {', '.join(map(str, weight_folders()))})")
        return
    for weights in records:
        record = weights.record
        paper = model_info(weights.model).paper_error
        versus = f" (paper {100 - paper:.2f}%)" if paper is not None and record.get("tag") == "cifar10" else ""
        print(f"{weights.name:<22} test accuracy {100 * record['test_acc']:.2f}%{versus}  recipe {record['recipe']}  "
              f"data: {record['data']}  trained on: {record.get('trained_on') or 'not recorded'}"
              + (f", {record['precision']}" if record.get("precision") else ""))


def add_commands(commands: argparse._SubParsersAction) -> None:
    publish = commands.add_parser("publish", help="add a finished run's final weights to the published weights")
    publish.add_argument("run", help="finished run directory (its last checkpoint), checkpoint directory or "
                                     "model.safetensors")
    publish.add_argument("--tag", default="cifar10", help="the name after the model's: resnet56.<tag> (default "
                                                           "%(default)s)")
    publish.add_argument("--weights-dir", help="folder of the published files and index.json (default: the "
                                               "package's weights folder)")
    publish.add_argument("--data", help="dataset to measure the test accuracy on (default: the run's)")
    publish.add_argument("--data-description", help="what the data is, in words, for the record "
                                                    "(e.g. 'CIFAR-10, the JPEG copy')")
    publish.add_argument("--device", default="cpu", help="where the test accuracy is measured (default cpu, "
                                                         "which resnetlab eval reproduces exactly)")
    publish.add_argument("--replace", action="store_true", help="overwrite the weights already published under "
                                                                "this name (without it, publish refuses to)")
    publish.set_defaults(func=cmd_publish)

    weights = commands.add_parser("weights", help="list the published trained weights")
    weights.add_argument("model", nargs="?", help="only this model's")
    weights.add_argument("--json", action="store_true")
    weights.set_defaults(func=cmd_weights)
