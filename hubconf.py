"""torch.hub entry points: every registered resnetlab model, with its published weights where there are some.

    model = torch.hub.load("PATH/TO/resnetlab", "resnet20", weights="cifar10", source="local")
    model = torch.hub.load("OWNER/resnetlab", "resnet20", weights="cifar10")   # from GitHub

``weights=None`` (the default) gives an untrained model; other keyword arguments go to ``create_model``.
``torch.hub.list(...)`` names the models, ``resnetlab weights`` (or ``resnetlab.models.weights.list_weights()``)
the published weights. The published nets were trained on the JPEG copy of CIFAR-10 (see README.md).
"""

import os
import sys

dependencies = ["torch", "safetensors"]

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "src"))

from resnetlab.models import create_model, list_models  # noqa: E402


def _entry_point(name):
    def entry(weights=None, **kwargs):
        return create_model(name, weights=weights, **kwargs)

    entry.__name__ = entry.__qualname__ = name
    entry.__doc__ = f"resnetlab's {name}; weights='cifar10' loads its published trained weights (sha256 checked)."
    return entry


for _name in list_models():
    globals()[_name] = _entry_point(_name)
del _name
