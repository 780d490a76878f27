"""Shared by the reliability tests: the tiny training arguments and the one-line error check."""

# resnet8 on 8x8 images: 60 training images, 3 steps of 16 per epoch. Checkpoints of 2 epochs: step-3, step-6.
TINY = ["--model", "resnet8", "--batch-size", "16", "--val-split", "12", "--image-size", "8", "--quiet"]


def single_error_line(err: str) -> str:
    """The CLI's error output, checked to be one line without a traceback."""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]
