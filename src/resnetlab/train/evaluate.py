"""Evaluation: loss, accuracy, per-class accuracy and the confusion matrix, with one host sync per pass."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from resnetlab.train.precision import autocast_context


@dataclass
class Evaluation:
    loss: float
    accuracy: float
    count: int
    confusion: torch.Tensor  # (classes, classes) counts, rows = true label, columns = prediction
    flip_accuracy: float | None = None  # with flip test-time augmentation, when asked for

    @property
    def error(self) -> float:
        return 1.0 - self.accuracy

    def per_class_accuracy(self) -> list[float]:
        totals = self.confusion.sum(dim=1).clamp(min=1)
        return (self.confusion.diag() / totals).tolist()


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], num_classes: int,
             device: torch.device, amp: bool = False, flip: bool = False) -> Evaluation:
    """Mean cross-entropy and accuracy over all batches, in eval mode (BN running statistics).

    ``flip``: also the accuracy with test-time augmentation, the mean of the logits of each image and its mirror
    image (left-right flips are part of training's augmentation, so the mirror is an equally likely view of the
    same picture), from the same pass: the plain logits are computed once.
    """
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    confusion = torch.zeros(num_classes * num_classes, device=device, dtype=torch.int64)
    flip_correct = torch.zeros((), device=device, dtype=torch.int64)
    try:
        for images, labels in batches:
            with autocast_context(device, amp):
                logits = model(images)
                if flip:
                    mirrored = (logits.float() + model(images.flip(-1)).float()) / 2
                    flip_correct += (mirrored.argmax(dim=1) == labels).sum()
            loss_sum += F.cross_entropy(logits.float(), labels, reduction="sum").double()
            confusion += torch.bincount(labels * num_classes + logits.argmax(dim=1), minlength=num_classes ** 2)
    finally:
        model.train(was_training)
    confusion = confusion.view(num_classes, num_classes).cpu()
    count = int(confusion.sum())
    if count == 0:
        return Evaluation(float("nan"), float("nan"), 0, confusion)
    flip_accuracy = int(flip_correct) / count if flip else None
    return Evaluation(float(loss_sum) / count, float(confusion.diag().sum()) / count, count, confusion,
                      flip_accuracy)
