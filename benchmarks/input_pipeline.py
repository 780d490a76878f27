"""Input-pipeline throughput: resnetlab's streaming path against torchvision's reference pipeline.

    python benchmarks/make_jpeg_folder.py jpegs --source cifar10-jpeg.tar.xz      # 3000 + 500 JPEGs, 300-500 px
    python benchmarks/input_pipeline.py jpegs --python /path/to/venv-with-torchvision/bin/python

The reference is what torchvision's `references/classification/train.py` builds with its defaults
(`presets.ClassificationPresetTrain` / `ClassificationPresetEval`, PIL backend, transforms v1):
`ImageFolder` + RandomResizedCrop(224, bilinear, antialias) + RandomHorizontalFlip + PILToTensor +
ConvertImageDtype(float) + Normalize(ImageNet mean/std) in DataLoader workers, for evaluation Resize(256) +
CenterCrop(224) instead of the crop and flip; batches then go to the device. resnetlab's path
(`resnetlab.data.stream.StreamLoader`) computes the same transforms and hands over uint8 batches that it
normalises on the device (here the CPU, in the timed loop). Both produce float32 (B, 3, 224, 224) batches,
normalised with the same statistics, from the same folder, with the same number of workers and batch size.

Each measurement is a fresh process (``--run``), alternating reference and resnetlab; the first batches
(worker start-up) are not timed. Reported: images/s, the peak resident memory of the main process (VmHWM) and
of the largest worker (ru_maxrss of the children), and, once, how far resnetlab's evaluation crops are from the
reference's (``--run compare``: mean and maximum absolute difference in 0..255 levels). With ``--train-steps N``
each run also times N ResNet-50 training steps fed by its pipeline (torchvision's resnet50 for both).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def status_mb(field: str) -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field)) / 1024


def reference_loader(folder: Path, split: str, batch_size: int, workers: int):
    import torch
    from torchvision import datasets
    from torchvision import transforms as T
    from torchvision.transforms import InterpolationMode

    bilinear = InterpolationMode.BILINEAR
    if split == "train":
        steps = [T.RandomResizedCrop(224, interpolation=bilinear, antialias=True), T.RandomHorizontalFlip(0.5)]
    else:
        steps = [T.Resize(256, interpolation=bilinear, antialias=True), T.CenterCrop(224)]
    transform = T.Compose([*steps, T.PILToTensor(), T.ConvertImageDtype(torch.float),
                           T.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD)])
    dataset = datasets.ImageFolder(str(folder / split), transform)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                                         pin_memory=torch.cuda.is_available(), drop_last=True)

    def batches():  # epoch after epoch, each with fresh workers (as in resnetlab's loader)
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        while True:
            for x, y in loader:
                yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)

    return batches()


def resnetlab_loader(folder: Path, split: str, batch_size: int, workers: int, draft: bool):
    import dataclasses

    import numpy as np
    import torch

    from resnetlab.data.normalize import fit_normalizer
    from resnetlab.data.pipeline import stream_splits
    from resnetlab.data.stream import StreamLoader
    from resnetlab.train.environment import keep_freed_memory_for_reuse

    if not torch.cuda.is_available():
        keep_freed_memory_for_reuse()  # as `resnetlab train` on a CPU (train/loop.py: start_run)

    splits = stream_splits(str(folder), 224, "random_resized_crop" if split == "train" else "none")
    files = splits.train if split == "train" else splits.test
    files.transform = dataclasses.replace(files.transform, draft=draft)
    normalizer = fit_normalizer("imagenet", np.zeros((1, 1, 1, 3), dtype=np.uint8))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    loader = StreamLoader(files, batch_size, device=device, normalizer=normalizer, num_workers=workers,
                          channels_last=True)
    def batches():
        for epoch in itertools.count():
            yield from loader.epoch(epoch)

    return batches()


def run_once(args: argparse.Namespace) -> dict:
    """One measurement in this process: images/s over --batches batches after --warmup, and peak memory."""
    import resource

    import torch

    torch.set_num_threads(1 if args.train_steps == 0 else max(1, (os.cpu_count() or 2) - args.workers))
    if args.run == "reference":
        batches = reference_loader(args.folder, args.split, args.batch_size, args.workers)
    else:
        batches = resnetlab_loader(args.folder, args.split, args.batch_size, args.workers, not args.no_draft)
    for _ in range(args.warmup):
        x, _ = next(batches)
    started, images = time.perf_counter(), 0
    for _ in range(args.batches):
        x, y = next(batches)
        images += len(y)
    seconds = time.perf_counter() - started
    result = {"pipeline": args.run, "split": args.split, "images_per_s": images / seconds, "images": images,
              "shape": list(x.shape), "dtype": str(x.dtype), "channels_last": x.is_contiguous(
                  memory_format=torch.channels_last), "mean": float(x.mean()), "std": float(x.std()),
              "peak_main_mb": status_mb("VmHWM"),
              "peak_worker_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}
    if args.train_steps:
        result["train_images_per_s"] = train_throughput(batches, args.train_steps)
    return result


def train_throughput(batches, steps: int) -> float:
    """ResNet-50 SGD steps (fp32, channels_last) fed by the pipeline; the first step is not timed."""
    import torch
    from torchvision.models import resnet50

    model = resnet50().to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)

    def step(x, y):
        loss = torch.nn.functional.cross_entropy(model(x.contiguous(memory_format=torch.channels_last)), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step(*next(batches))
    started, images = time.perf_counter(), 0
    for _ in range(steps):
        x, y = next(batches)
        step(x, y)
        images += len(y)
    return images / (time.perf_counter() - started)


def compare(args: argparse.Namespace) -> dict:
    """How far resnetlab's evaluation crops are from the reference's, in 0..255 levels, on the first test images."""
    import numpy as np
    from PIL import Image
    from torchvision import transforms as T
    from torchvision.transforms import InterpolationMode

    from resnetlab.data.transforms import ImageTransform

    reference = T.Compose([T.Resize(256, interpolation=InterpolationMode.BILINEAR, antialias=True),
                           T.CenterCrop(224)])
    ours = ImageTransform.for_eval(224)
    diffs = []
    for path in sorted((args.folder / "test").rglob("*.jpg"))[:64]:
        with Image.open(path) as image:
            expected = np.asarray(reference(image.convert("RGB")), dtype=np.int16)
        with Image.open(path) as image:
            diffs.append(np.abs(ours(image).astype(np.int16) - expected))
    stacked = np.stack(diffs)
    return {"compared_images": len(diffs), "mean_abs_levels": float(stacked.mean()), "max_abs_levels": int(stacked.max())}


def drive(args: argparse.Namespace) -> None:
    """Alternate fresh processes of both pipelines and print the medians."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1] / "src"),
                                                        os.environ.get("PYTHONPATH", "")])}
    common = [str(args.folder), "--split", args.split, "--batch-size", str(args.batch_size), "--workers",
              str(args.workers), "--batches", str(args.batches), "--warmup", str(args.warmup), "--train-steps",
              str(args.train_steps)] + (["--no-draft"] if args.no_draft else [])

    def child(kind: str) -> dict:
        output = subprocess.run([args.python, __file__, "--run", kind, *common], env=env, check=True,
                                capture_output=True, text=True).stdout
        return json.loads(output.strip().splitlines()[-1])

    results: dict[str, list[dict]] = {"reference": [], "resnetlab": []}
    for round_index in range(args.rounds):
        for kind in ("reference", "resnetlab") if round_index % 2 == 0 else ("resnetlab", "reference"):
            results[kind].append(child(kind))
            print(json.dumps(results[kind][-1]), flush=True)
    summary = {"load_before": os.getloadavg(), "split": args.split, "batch_size": args.batch_size,
               "workers": args.workers, "rounds": args.rounds}
    for kind, runs in results.items():
        summary[kind] = {key: statistics.median(run[key] for run in runs)
                         for key in ("images_per_s", "peak_main_mb", "peak_worker_mb", "train_images_per_s")
                         if key in runs[0]}
    summary["speedup"] = summary["resnetlab"]["images_per_s"] / summary["reference"]["images_per_s"]
    summary["per_round_speedups"] = [ours["images_per_s"] / ref["images_per_s"]
                                     for ours, ref in zip(results["resnetlab"], results["reference"])]
    if args.split == "test":
        summary["output_difference"] = child("compare")
    print(json.dumps(summary, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="<folder>/{train,test}/<class>/<image>.jpg")
    parser.add_argument("--python", default=sys.executable, help="interpreter with torch, torchvision, Pillow")
    parser.add_argument("--split", choices=["train", "test"], default="train",
                        help="train: RandomResizedCrop + flip; test: resize 256 + centre crop 224")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    parser.add_argument("--batches", type=int, default=40, help="timed batches per run")
    parser.add_argument("--warmup", type=int, default=3, help="untimed batches first (worker start-up)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each pipeline, alternating")
    parser.add_argument("--train-steps", type=int, default=0, help="also time this many ResNet-50 steps")
    parser.add_argument("--no-draft", action="store_true", help="resnetlab: always decode JPEGs in full")
    parser.add_argument("--run", choices=["reference", "resnetlab", "compare"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run == "compare":
        print(json.dumps(compare(args)))
    elif args.run:
        print(json.dumps(run_once(args)))
    else:
        drive(args)


if __name__ == "__main__":
    main()
