"""Compiled inference (inductor with freezing) gives the eager model's outputs."""

import pytest
import torch

from resnetlab.models import create_model
from resnetlab.train.compiled import compile_for_inference


@pytest.mark.slow  # compiling takes 15-60 s on two cores
def test_compiled_inference_matches_eager():
    torch.manual_seed(0)
    model = create_model("resnet8", num_classes=3).eval()
    images = torch.randn(4, 3, 16, 16).contiguous(memory_format=torch.channels_last)
    model = model.to(memory_format=torch.channels_last)
    compiled = compile_for_inference(model)
    with torch.inference_mode():
        expected, got = model(images), compiled(images)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_a_model_in_training_mode_is_refused():
    with pytest.raises(ValueError, match="eval mode"):
        compile_for_inference(create_model("resnet8").train())
