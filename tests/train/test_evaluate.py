"""Evaluation: the confusion matrix (rows: true label) and per-class accuracy, and flip test-time augmentation,
which averages what the model sees in an image and in its mirror."""

import pytest
import torch

from resnetlab.train.evaluate import evaluate


def test_confusion_rows_are_true_labels_and_per_class_accuracy_is_recall():
    """The model's logits are its input, so the predictions are set by hand: one-hot rows of ``predictions``."""
    labels = torch.tensor([0, 0, 0, 1, 1, 2])
    predictions = torch.tensor([0, 1, 1, 1, 1, 0])
    logits = torch.nn.functional.one_hot(predictions, 3).float() * 4
    result = evaluate(torch.nn.Identity(), [(logits[:4], labels[:4]), (logits[4:], labels[4:])], 3,
                      torch.device("cpu"))
    assert result.confusion.tolist() == [[1, 2, 0],
                                         [0, 2, 0],
                                         [1, 0, 0]]
    assert result.per_class_accuracy() == pytest.approx([1 / 3, 1.0, 0.0])
    assert result.count == 6 and result.accuracy == pytest.approx(3 / 6) and result.error == pytest.approx(3 / 6)
    assert result.loss == pytest.approx(torch.nn.functional.cross_entropy(logits, labels).item())


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
