"""Evaluation: flip test-time augmentation averages what the model sees in an image and in its mirror."""

import pytest
import torch

from resnetlab.train.evaluate import evaluate


def test_flip_evaluation_averages_the_logits_of_each_image_and_its_mirror():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 3))
    images, labels = torch.randn(64, 3, 4, 4), torch.randint(0, 3, (64,))
    with torch.no_grad():
        expected = ((model(images) + model(images.flip(-1))) / 2).argmax(1)
        plain = model(images).argmax(1)
    result = evaluate(model, [(images, labels)], 3, torch.device("cpu"), flip=True)
    assert result.flip_accuracy == pytest.approx((expected == labels).float().mean().item())
    assert result.accuracy == pytest.approx((plain == labels).float().mean().item())  # the plain figure, alongside
    assert result.flip_accuracy != result.accuracy
    assert evaluate(model, [(images, labels)], 3, torch.device("cpu")).flip_accuracy is None
