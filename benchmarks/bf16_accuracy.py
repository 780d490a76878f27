"""Does bf16 autocast train like fp32 on the CPU? The same run (recipe, seed, initial weights, batches) once in
each precision: the per-step training losses side by side, the test accuracy at the end, and the img/s of each.

    PYTHONPATH=src python benchmarks/bf16_accuracy.py --data cifar10 --steps 300 --out bf16-vs-fp32.json

Short runs compare the curves (the loss difference is printed every ``--every`` steps); for the issue's question,
the same test accuracy within seed noise, run a whole short schedule with ``resnetlab train --amp bf16`` and
``--amp off`` over a few seeds. On a CPU without native bf16 (``resnetlab bench`` says which) bf16 is emulated,
so its img/s here shows why ``--amp auto`` stays fp32 there.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from resnetlab.train.config import resolve_config
from resnetlab.train.evaluate import evaluate
from resnetlab.train.loop import close_run, start_run
from resnetlab.train.precision import cpu_facts


def run(amp: str, args: argparse.Namespace, folder: Path) -> dict:
    overrides = {"model": args.model, "data": args.data, "iterations": args.steps, "epochs": 0, "amp": amp,
                 "seed": args.seed, "device": "cpu", "tensorboard": False}
    if args.val_split is not None:
        overrides["val_split"] = args.val_split
    config = resolve_config(args.recipe, overrides=overrides)
    session = start_run(config, folder / amp, resume=False, log=print, show_progress=False)
    step = session.step_fn
    losses: list[float] = []
    start = time.perf_counter()
    epoch = 0
    while len(losses) < args.steps:
        for images, labels in session.train_loader.epoch(epoch):
            loss, _ = step(images, labels)
            losses.append(float(loss))  # one host read per step: both precisions pay it alike
            if len(losses) == args.steps:
                break
        epoch += 1
    seconds = time.perf_counter() - start
    test = evaluate(session.model, session.eval_loaders["test"].epoch(0), len(session.classes), session.device,
                    session.amp)
    close_run(session)
    return {"amp": amp, "bf16": session.amp, "losses": losses, "test_acc": test.accuracy, "test_loss": test.loss,
            "train_images_per_sec": len(losses) * config.batch_size / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="cifar10, a folder or an archive")
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--recipe", default="paper")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--val-split", type=int, help="held-out training images (default: the recipe's)")
    parser.add_argument("--every", type=int, default=50, help="steps per row of the printed comparison")
    parser.add_argument("--out", help="JSON file for both runs' losses and results")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        runs = [run(amp, args, Path(folder)) for amp in ("off", "bf16")]
    fp32, bf16 = runs
    print(f"processor: {cpu_facts().describe()}")
    print(f"{'steps':>9} {'fp32 loss':>10} {'bf16 loss':>10} {'difference':>10}")
    for first in range(0, args.steps, args.every):
        a = sum(fp32["losses"][first:first + args.every]) / len(fp32["losses"][first:first + args.every])
        b = sum(bf16["losses"][first:first + args.every]) / len(bf16["losses"][first:first + args.every])
        print(f"{first + 1:>4}-{first + args.every:<4} {a:>10.4f} {b:>10.4f} {b - a:>+10.4f}")
    for result in runs:
        print(f"{'bf16' if result['bf16'] else 'fp32'}: test accuracy {100 * result['test_acc']:.2f} %, "
              f"test loss {result['test_loss']:.4f}, training {result['train_images_per_sec']:,.0f} img/s")
    if args.out:
        Path(args.out).write_text(json.dumps({"processor": cpu_facts().to_dict(), "args": vars(args), "runs": runs},
                                             indent=1))


if __name__ == "__main__":
    main()
