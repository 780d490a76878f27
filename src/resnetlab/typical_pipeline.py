"""The baseline every resnetlab speed figure is compared with: CIFAR training as most public code does it.

A ``torch.utils.data.DataLoader`` over a Dataset whose ``__getitem__`` crops and flips one image at a time in
Python (as torchvision's RandomCrop(32, padding=4) + RandomHorizontalFlip + Normalize would), fp32, NCHW,
eager mode, ``torch.optim.SGD`` with its defaults, batch 128, two loader workers (the PyTorch CIFAR-10
tutorial's setting). The network is the same resnetlab model, so only the pipeline differs.

Run alone: ``python -m resnetlab.typical_pipeline --model resnet20 --device cpu``; ``resnetlab bench`` runs it
in the same process as resnetlab's own numbers and prints the ratio. It is part of the package (not of the
benchmarks folder) so that ``resnetlab bench`` works from an installed wheel.
"""

from __future__ import annotations

import argparse
import random

import numpy as np
import torch
import torch.nn.functional as F

from resnetlab.bench import BenchResult, peak_memory_mib, reset_peak_memory, timed
from resnetlab.models import create_model

MEAN = torch.tensor([0.4914, 0.4822, 0.4465]).view(3, 1, 1)
STD = torch.tensor([0.2470, 0.2435, 0.2616]).view(3, 1, 1)


class PerImageCifar(torch.utils.data.Dataset):
    """One image at a time: to tensor, normalise, pad 4, random 32x32 crop, random flip."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, augment: bool = True) -> None:
        self.images, self.labels, self.augment = images, labels, augment

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = torch.from_numpy(self.images[index]).permute(2, 0, 1).float().div(255)
        image = (image - MEAN) / STD
        if self.augment:
            image = F.pad(image, (4, 4, 4, 4))
            top, left = random.randint(0, 8), random.randint(0, 8)
            image = image[:, top:top + 32, left:left + 32]
            if random.random() < 0.5:
                image = image.flip(2)
        return image, int(self.labels[index])


def synthetic_arrays(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, count)


def train_throughput(model_name: str = "resnet20", batch_size: int = 128, device: str = "cpu", steps: int = 20,
                     warmup: int = 5, workers: int = 2) -> BenchResult:
    device = torch.device(device)
    images, labels = synthetic_arrays(batch_size * (steps + warmup + 1))
    loader = torch.utils.data.DataLoader(PerImageCifar(images, labels), batch_size=batch_size, shuffle=True,
                                         num_workers=workers, drop_last=True,
                                         pin_memory=device.type == "cuda", persistent_workers=False)
    model = create_model(model_name).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    batches = iter(loader)
    reset_peak_memory(device)

    def run_step() -> None:
        x, y = next(batches)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    warm, seconds = timed(run_step, steps, warmup, device)
    return BenchResult("baseline", "train", model_name, batch_size, str(device), steps * batch_size / seconds,
                       steps * batch_size, seconds, warm, peak_memory_mib(device),
                       f"DataLoader workers={workers}, per-image crop/flip, fp32, NCHW, eager")


@torch.no_grad()
def inference_throughput(model_name: str = "resnet20", batch_size: int = 128, device: str = "cpu", steps: int = 20,
                         warmup: int = 5) -> BenchResult:
    device = torch.device(device)
    model = create_model(model_name).to(device).eval()
    images = torch.randn(batch_size, 3, 32, 32, device=device)
    reset_peak_memory(device)
    warm, seconds = timed(lambda: model(images), steps, warmup, device)
    return BenchResult("baseline", "infer", model_name, batch_size, str(device), steps * batch_size / seconds,
                       steps * batch_size, seconds, warm, peak_memory_mib(device), "fp32, NCHW, eager, no_grad")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    for result in (train_throughput(args.model, args.batch_size, args.device, args.steps, workers=args.workers),
                   inference_throughput(args.model, args.batch_size, args.device, args.steps)):
        print(f"{result.mode}: {result.images_per_sec:,.0f} img/s ({result.settings})")
