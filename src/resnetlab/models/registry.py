"""A registry of named models, like timm's: ``create_model("resnet56")``, ``list_models("plain*")``.

Each entry carries the paper's reference numbers. ``paper_params`` is the count the paper reports (rounded as
printed there, in parameters); ``paper_error`` is the published top-1 test error in percent (CIFAR-10 for CIFAR
nets, ImageNet validation 10-crop for ImageNet nets), with ``reference`` saying which table it comes from.
Names of valid depths that are not registered (``resnet8``, ``plain14``, ``resnet47v2``...) are built on the fly.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from torch import nn

from resnetlab.errors import UserError
from resnetlab.models.keras import keras_resnet_v1, keras_resnet_v2
from resnetlab.models.preact import preact_basic_resnet, preact_bottleneck_resnet
from resnetlab.models.resnet import cifar_depth_to_blocks, cifar_resnet, imagenet_resnet

DRL = "He et al. 2015, Deep Residual Learning"
IM = "He et al. 2016, Identity Mappings"
KERAS = "Keras example cifar10_resnet.py"


@dataclass(frozen=True)
class ModelInfo:
    """What a registered model is, and what the literature says about it."""

    name: str
    family: str
    builder: Callable[..., nn.Module] = field(repr=False)
    input_size: int
    num_classes: int
    paper_params: float | None = None
    paper_error: float | None = None
    reference: str = ""

    def build(self, **kwargs: Any) -> nn.Module:
        kwargs.setdefault("num_classes", self.num_classes)
        try:
            return self.builder(**kwargs)
        except TypeError as error:
            raise UserError(f"{self.name}: bad model option ({error})") from None


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(info: ModelInfo) -> ModelInfo:
    """Add a model; a name that is taken is refused rather than silently replaced."""
    if info.name in _REGISTRY:
        raise ValueError(f"model {info.name!r} is already registered")
    _REGISTRY[info.name] = info
    return info


def _natural_key(name: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def list_models(pattern: str = "*") -> list[str]:
    """Registered names matching a shell-style pattern, in natural order (resnet20 before resnet110)."""
    return sorted((name for name in _REGISTRY if fnmatch.fnmatch(name, pattern)), key=_natural_key)


# Unregistered names of valid depths: (pattern, family, builder of depth, input size, classes).
_DEPTH_PATTERNS: list[tuple[str, str, Callable[[int], Callable[..., nn.Module]], int, int]] = [
    (r"resnet(\d+)", "cifar_v1", lambda d: partial(cifar_resnet, d), 32, 10),
    (r"plain(\d+)", "cifar_plain", lambda d: partial(cifar_resnet, d, residual=False), 32, 10),
    (r"resnet(\d+)v2", "cifar_v2", lambda d: partial(preact_bottleneck_resnet, d), 32, 10),
    (r"preact_resnet(\d+)", "cifar_v2_basic", lambda d: partial(preact_basic_resnet, d), 32, 10),
    (r"keras_resnet(\d+)v1", "keras_v1", lambda d: partial(keras_resnet_v1, d), 32, 10),
    (r"keras_resnet(\d+)v2", "keras_v2", lambda d: partial(keras_resnet_v2, d), 32, 10),
]


def model_info(name: str) -> ModelInfo:
    """The registry entry of ``name``, or one made on the fly for a valid unregistered depth."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    for pattern, family, make_builder, input_size, num_classes in _DEPTH_PATTERNS:
        match = re.fullmatch(pattern, name)
        if match:
            builder = make_builder(int(match.group(1)))
            info = ModelInfo(name, family, builder, input_size, num_classes)
            _check_depth(info)
            return info
    close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else "; `resnetlab list` shows them all"
    raise UserError(f"unknown model {name!r}{hint}")


def _check_depth(info: ModelInfo) -> None:
    """Fail on a depth the family cannot have before anything is built."""
    depth = int(re.search(r"(\d+)", info.name).group(1))
    per_block = 3 if info.family in ("cifar_v2", "keras_v2") else 2
    cifar_depth_to_blocks(depth, per_block, info.name)


def create_model(name: str, weights: str | None = None, **kwargs: Any) -> nn.Module:
    """Build a registered model by name; keyword arguments go to its builder (``num_classes``, ``shortcut``...).

    ``weights``: the tag of published trained weights to load (``"cifar10"``: ``models/weights.py``), checked
    against their sha256; the model is then built with the options they were trained with.
    """
    if weights is None:
        return model_info(name).build(**kwargs)
    from resnetlab.models.weights import get_weights, load_published

    published = get_weights(name, weights)
    model = model_info(name).build(**{**published.record.get("model_kwargs", {}), **kwargs})
    load_published(model, published, kwargs)
    return model


def _register_all() -> None:
    cifar_v1 = {20: (0.27e6, 8.75), 32: (0.46e6, 7.51), 44: (0.66e6, 7.17), 56: (0.85e6, 6.97),
                110: (1.7e6, 6.43), 1202: (19.4e6, 7.93)}
    for depth, (params, error) in cifar_v1.items():
        register_model(ModelInfo(f"resnet{depth}", "cifar_v1", partial(cifar_resnet, depth), 32, 10, params, error,
                                 f"{DRL}, Table 6 (option A)"))
    for depth in (20, 32, 44, 56, 110):
        register_model(ModelInfo(f"plain{depth}", "cifar_plain", partial(cifar_resnet, depth, residual=False),
                                 32, 10, reference=f"{DRL}, Figure 6 left (no table of errors)"))
    register_model(ModelInfo("preact_resnet110", "cifar_v2_basic", partial(preact_basic_resnet, 110), 32, 10,
                             1.7e6, 6.37, f"{IM}, Table 2 (full pre-activation)"))
    # ResNet-1001: IM Table 3 prints 10.2M, but the design that gives ResNet-164 its 1.7M gives 10,327,706.
    cifar_v2 = {29: (None, None), 56: (None, None), 110: (None, None), 164: (1.7e6, 5.46), 1001: (10.2e6, 4.92)}
    for depth, (params, error) in cifar_v2.items():
        register_model(ModelInfo(f"resnet{depth}v2", "cifar_v2", partial(preact_bottleneck_resnet, depth), 32, 10,
                                 params, error, f"{IM}, Table 3" if params else IM))
    keras_v1 = {20: 8.75, 32: 7.51, 44: 7.17, 56: 6.97, 110: 6.43}
    for depth, error in keras_v1.items():
        register_model(ModelInfo(f"keras_resnet{depth}v1", "keras_v1", partial(keras_resnet_v1, depth), 32, 10,
                                 None, error, f"{KERAS} (error column: the paper's, as the tutorial quotes)"))
    for depth in (20, 29, 56, 110, 164):
        register_model(ModelInfo(f"keras_resnet{depth}v2", "keras_v2", partial(keras_resnet_v2, depth), 32, 10,
                                 reference=KERAS))
    imagenet = {18: (11.7e6, 27.88), 34: (21.8e6, 24.52), 50: (25.6e6, 22.85), 101: (44.5e6, 21.75),
                152: (60.2e6, 21.43)}
    for depth, (params, error) in imagenet.items():
        register_model(ModelInfo(f"resnet{depth}", "imagenet", partial(imagenet_resnet, depth), 224, 1000, params,
                                 error, f"{DRL}, Tables 2-3 (top-1, 10-crop)"))
    for depth, error in ((18, 27.94), (34, 28.54)):
        register_model(ModelInfo(f"plain{depth}", "imagenet_plain", partial(imagenet_resnet, depth, residual=False),
                                 224, 1000, None, error, f"{DRL}, Table 2 (top-1, 10-crop)"))
    for depth in (18, 34):
        register_model(ModelInfo(f"resnet{depth}_cifar", "imagenet_cifar_stem",
                                 partial(imagenet_resnet, depth, stem="cifar"), 32, 10,
                                 reference="ImageNet layout with a 3x3 stride-1 stem, no max-pool (kuangliu-style)"))


_register_all()
