"""The Keras tutorial's models: Keras' own parameter counts and its "same" padding."""

import pytest
import torch

from resnetlab.models import create_model
from resnetlab.models.keras import KerasConv2d

# Measured with TensorFlow 2.21 / Keras 3.15 model.summary(): (total, trainable).
KERAS_COUNTS = {
    "keras_resnet20v1": (274_442, 273_066),
    "keras_resnet56v1": (861_770, 857_706),
    "keras_resnet110v1": (1_742_762, 1_734_666),
    "keras_resnet29v2": (849_002, 843_786),
    "keras_resnet56v2": (1_673_738, 1_663_338),
    "keras_resnet164v2": (4_972_682, 4_941_546),
}


@pytest.mark.parametrize("name", sorted(KERAS_COUNTS))
def test_parameter_counts_equal_keras_summary(name):
    model = create_model(name)
    trainable = sum(p.numel() for p in model.parameters())
    moving = sum(b.numel() for key, b in model.named_buffers() if key.endswith(("running_mean", "running_var")))
    assert (trainable + moving, trainable) == KERAS_COUNTS[name]


def test_same_padding_pads_bottom_right_for_stride_2():
    conv = KerasConv2d(1, 1, kernel_size=3, stride=2)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 0, 0] = 1.0  # picks the top-left tap of each window
        conv.bias.zero_()
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    out = conv(x)
    assert out.shape == (1, 1, 2, 2)
    # TensorFlow pads 0 rows/cols on top/left (total 1 goes bottom/right), so windows start at 0 and 2.
    torch.testing.assert_close(out[0, 0], torch.tensor([[0.0, 2.0], [8.0, 10.0]]))


def test_bn_uses_keras_epsilon_and_momentum():
    bn = next(m for m in create_model("keras_resnet20v1").modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert bn.eps == 1e-3 and bn.momentum == pytest.approx(0.01)
