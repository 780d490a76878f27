"""Does fine-tuning pay? A ResNet-18 pre-trained on five CIFAR-10 classes, fine-tuned on the other five, against
the same net trained from scratch on them for the same number of steps.

    PYTHONPATH=src python benchmarks/finetune_vs_scratch.py --data cifar10-jpeg.tar.xz --out runs/finetune

1. Two image folders are written from the CIFAR archive (no download): `pretrain/` holds classes 0-4 (airplane,
   automobile, bird, cat, deer), every training image, upscaled to --pretrain-size; `target/` holds classes 5-9
   (dog, frog, horse, ship, truck), a few per class (a folder per --size) (--per-class training, --test-per-class test images from
   CIFAR's test split), upscaled to --size (224 by default, as ImageNet-sized photographs would be).
2. `resnetlab train --recipe imagenet` pre-trains ResNet-18 on `pretrain/`: a short cosine schedule, and crop+flip
   on the images held in memory instead of RandomResizedCrop on streamed files (at 64 px the faster path).
3. `resnetlab train --recipe finetune` trains on `target/` with the same settings, seed and steps, once from the
   pre-trained weights (`--init`: the classifier of 5 other classes is replaced) and once from scratch, at each
   learning rate of --lrs: the two arms want different rates, so each is compared at its best.
The commands are printed as they run; the table goes to OUT/results-<size>px.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

PRETRAIN_CLASSES = range(0, 5)
TARGET_CLASSES = range(5, 10)


def write_folder(root: Path, images: np.ndarray, labels: np.ndarray, classes: list[str], size: int) -> int:
    """JPEGs of `images` upscaled (bicubic) to size x size, in root/<class>/; returns how many."""
    for index, (image, label) in enumerate(zip(images, labels)):
        folder = root / classes[int(label)]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).resize((size, size), Image.Resampling.BICUBIC).save(folder / f"{index:05d}.jpg",
                                                                                   quality=95)
    return len(images)


def pick(labels: np.ndarray, wanted: range, per_class: int | None, rng: np.random.Generator) -> np.ndarray:
    """Indices of `per_class` images (all when None) of each class in `wanted`, in a shuffled order."""
    chosen = []
    for label in wanted:
        where = np.flatnonzero(labels == label)
        chosen.append(where if per_class is None else rng.choice(where, size=per_class, replace=False))
    return rng.permutation(np.concatenate(chosen))


def make_folders(data: str, out: Path, args: argparse.Namespace) -> tuple[Path, Path]:
    from resnetlab.data import load_dataset

    """The two folders, each written once (a second call with the same OUT reuses them and the pre-trained run)."""
    pretrain, target = out / "pretrain", out / f"target-{args.size}px"
    dataset = load_dataset(data)
    started = time.perf_counter()
    if not (pretrain / "test").exists():
        rng = np.random.default_rng(args.seed)
        for split, source, per_class in (("train", dataset.train, args.pretrain_per_class or None),
                                         ("test", dataset.test, args.pretrain_test_per_class)):
            chosen = pick(source.labels, PRETRAIN_CLASSES, per_class, rng)
            write_folder(pretrain / split, source.images[chosen], source.labels[chosen], dataset.classes,
                         args.pretrain_size)
    if not (target / "test").exists():
        rng = np.random.default_rng(args.seed + 1)
        for split, source, per_class in (("train", dataset.train, args.per_class),
                                         ("test", dataset.test, args.test_per_class)):
            chosen = pick(source.labels, TARGET_CLASSES, per_class, rng)
            write_folder(target / split, source.images[chosen], source.labels[chosen], dataset.classes, args.size)
    print(f"folders ready in {time.perf_counter() - started:.0f} s: {pretrain}, {target}", flush=True)
    return pretrain, target


def train(arguments: list[str]) -> dict:
    """Run `resnetlab train ARGUMENTS` (resuming a finished run is a no-op) and return its results.json."""
    command = [sys.executable, "-m", "resnetlab", "train", *arguments]
    print("$ resnetlab train " + shlex.join(arguments), flush=True)
    started = time.perf_counter()
    subprocess.run(command, check=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    out = Path(arguments[arguments.index("--out") + 1])
    results = json.loads((out / "results.json").read_text())
    results["command_seconds"] = time.perf_counter() - started
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="cifar10", help="a CIFAR-10 source resnetlab reads (the JPEG archive)")
    parser.add_argument("--out", type=Path, default=Path("runs/finetune-vs-scratch"))
    parser.add_argument("--size", type=int, default=224, help="side of the target images (fine-tuning)")
    parser.add_argument("--pretrain-size", type=int, default=64, help="side of the pre-training images")
    parser.add_argument("--pretrain-epochs", type=int, default=1)
    parser.add_argument("--pretrain-per-class", type=int, default=0, help="pre-training images per class (0: all)")
    parser.add_argument("--pretrain-test-per-class", type=int, default=200)
    parser.add_argument("--per-class", type=int, default=50, help="target training images per class")
    parser.add_argument("--test-per-class", type=int, default=50, help="target test images per class")
    parser.add_argument("--epochs", type=int, default=5, help="fine-tuning (and from-scratch) epochs")
    parser.add_argument("--batch-size", type=int, default=25)
    parser.add_argument("--lrs", type=lambda text: [float(v) for v in text.split(",")], default=[0.01, 0.064],
                        help="lrs per 64 images, each run for both arms (0.01 is the finetune recipe's)")
    parser.add_argument("--pretrain-lr", type=float, default=0.05)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    pretrain, target = make_folders(args.data, args.out, args)
    common = ["--model", "resnet18", "--device", args.device, "--seed", str(args.seed), "--quiet"]
    pretrained = train([*common, "--recipe", "imagenet", "--data", str(pretrain), "--image-size",
                        str(args.pretrain_size), "--augmentation", "crop_flip", "--epochs", str(args.pretrain_epochs),
                        "--batch-size", "64", "--lr", f"{args.pretrain_lr:g}", "--schedule", "cosine",
                        "--out", str(args.out / "pretrained")])
    target_settings = [*common, "--recipe", "finetune", "--data", str(target), "--image-size", str(args.size),
                       "--epochs", str(args.epochs), "--batch-size", str(args.batch_size)]
    rows = [("pre-trained on classes 0-4", args.pretrain_lr, pretrained)]
    for lr_per_64 in args.lrs:
        lr = lr_per_64 * args.batch_size / 64
        settings, tag = [*target_settings, "--lr", f"{lr:g}"], f"{args.size}px-lr{lr_per_64:g}"
        rows.append(("fine-tuned on classes 5-9", lr_per_64, train(
            [*settings, "--init", str(args.out / "pretrained"), "--out", str(args.out / f"finetuned-{tag}")])))
        rows.append(("from scratch on classes 5-9", lr_per_64, train(
            [*settings, "--out", str(args.out / f"scratch-{tag}")])))

    lines = [f"ResNet-18; target: {args.per_class} training and {args.test_per_class} test images per class at "
             f"{args.size} px; pre-training: {len(PRETRAIN_CLASSES) * (args.pretrain_per_class or 5000)} images at "
             f"{args.pretrain_size} px, {args.pretrain_epochs} epochs; fine-tuning and scratch: {args.epochs} "
             f"epochs of batch {args.batch_size}, the finetune recipe at each lr, seed {args.seed}.", "",
             "| run | lr per 64 images | steps | test accuracy | command time |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {name} | {lr:g} | {r['steps']} | {100 * r['final_test_acc']:.1f} % | {r['command_seconds']:.0f} s |"
              for name, lr, r in rows]
    best = {name: max(r["final_test_acc"] for n, _, r in rows if n == name) for name, _, _ in rows[1:]}
    gain = 100 * (best["fine-tuned on classes 5-9"] - best["from scratch on classes 5-9"])
    lines += ["", f"Best fine-tuned minus best from scratch: {gain:+.1f} points of test accuracy in the same "
              f"{rows[-1][2]['steps']} steps."]
    (args.out / f"results-{args.size}px.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
