"""A registry of named models, like timm's: ``create_model("resnet56")``, ``list_models("plain*")``.

Each entry carries the paper's reference numbers. ``paper_params`` is the count the paper reports (rounded as
printed there, in parameters); ``paper_error`` is the published top-1 test error in percent (CIFAR-10 for CIFAR
nets, ImageNet validation 10-crop for ImageNet nets), with ``reference`` saying which table it comes from.
Names of valid depths that are not registered (``resnet8``, ``plain14``, ``resnet47v2``...) are built on the fly.

Every entry says what it is (``family``, ``depth``, ``residual``, its plain/residual ``twin``, ``input_size``), and
code that needs those facts reads them here instead of parsing names. A CIFAR-style name whose depth is that of an
ImageNet ResNet of the papers (18, 34, 50, 101, 152, 200) means the ImageNet model where it is built here
(``resnet50``) and is refused otherwise (``resnet200``, ``plain50``), naming both choices; the prefix ``cifar_``
always means the CIFAR family: ``cifar_resnet200`` (6n+2), ``cifar_plain50``, ``cifar_resnet200v2`` (9n+2).
"""

from __future__ import annotations

import difflib
import fnmatch
import numbers
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
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
    depth: int = 0  # weight layers as the papers count them (ResNet-110: 110)
    residual: bool = True  # False: a plain net, the same layers without shortcuts (DRL section 4.1)
    twin: str = ""  # the same net with shortcuts removed (or added); "" when the papers have none

    def build(self, **kwargs: Any) -> nn.Module:
        if not self.residual and "shortcut" in kwargs:
            raise UserError(f"{self.name} is a plain net: it has no shortcuts, so it takes no shortcut option "
                            f"(got {kwargs['shortcut']!r})")
        kwargs.setdefault("num_classes", self.num_classes)
        classes = kwargs["num_classes"]
        if isinstance(classes, bool) or not isinstance(classes, numbers.Integral) or classes < 1:
            raise UserError(f"{self.name}: num_classes must be a positive integer, got {classes!r}")
        try:
            return self.builder(**kwargs)
        except TypeError as error:
            raise UserError(f"{self.name}: bad model option ({error})") from None


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(info: ModelInfo) -> ModelInfo:
    """Add a model; a name that is taken is refused rather than silently replaced."""
    if info.name in _REGISTRY:
        raise ValueError(f"model {info.name!r} is already registered")
    if info.depth < 1:
        raise ValueError(f"model {info.name!r} needs its depth")
    _REGISTRY[info.name] = info
    return info


def _natural_key(name: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def list_models(pattern: str = "*") -> list[str]:
    """Registered names matching a shell-style pattern, in natural order (resnet20 before resnet110)."""
    return sorted((name for name in _REGISTRY if fnmatch.fnmatch(name, pattern)), key=_natural_key)


# Unregistered names of valid depths: (pattern, family, builder of depth, residual, twin pattern).
_DEPTH_PATTERNS: list[tuple[str, str, Callable[[int], Callable[..., nn.Module]], bool, str]] = [
    (r"resnet(\d+)", "cifar_v1", lambda d: partial(cifar_resnet, d), True, "plain{}"),
    (r"plain(\d+)", "cifar_plain", lambda d: partial(cifar_resnet, d, residual=False), False, "resnet{}"),
    (r"resnet(\d+)v2", "cifar_v2", lambda d: partial(preact_bottleneck_resnet, d), True, ""),
    (r"preact_resnet(\d+)", "cifar_v2_basic", lambda d: partial(preact_basic_resnet, d), True, ""),
    (r"keras_resnet(\d+)v1", "keras_v1", lambda d: partial(keras_resnet_v1, d), True, ""),
    (r"keras_resnet(\d+)v2", "keras_v2", lambda d: partial(keras_resnet_v2, d), True, ""),
]
CIFAR_FAMILIES = ("cifar_v1", "cifar_plain", "cifar_v2", "cifar_v2_basic")
CIFAR_PREFIX = "cifar_"
# Depths of the papers' ImageNet ResNets (DRL Table 1; IM section 5: ResNet-152 and ResNet-200, pre-activation).
IMAGENET_PAPER_DEPTHS = {18: "DRL", 34: "DRL", 50: "DRL", 101: "DRL", 152: "DRL", 200: "IM"}
_KIND = {"cifar_v1": "ResNet (6n+2)", "cifar_plain": "plain net (6n+2)",
         "cifar_v2": "pre-activation bottleneck ResNet (9n+2)", "cifar_v2_basic": "pre-activation ResNet (6n+2)"}


def model_info(name: str) -> ModelInfo:
    """The registry entry of ``name``, or one made on the fly for a valid unregistered depth."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    explicit = name.startswith(CIFAR_PREFIX) and not name.endswith("_cifar")
    base = name[len(CIFAR_PREFIX):] if explicit else name
    if explicit and base in _REGISTRY and _REGISTRY[base].family in CIFAR_FAMILIES:
        info = _REGISTRY[base]
        return replace(info, name=name, twin=CIFAR_PREFIX + info.twin if info.twin else "")
    for pattern, family, make_builder, residual, twin in _DEPTH_PATTERNS:
        match = re.fullmatch(pattern, base)
        if match and (family in CIFAR_FAMILIES or not explicit):
            depth = int(match.group(1))
            if family in CIFAR_FAMILIES and not explicit and depth in IMAGENET_PAPER_DEPTHS:
                _refuse_ambiguous(name, family, depth)
            twin_name = (CIFAR_PREFIX if explicit else "") + twin.format(depth) if twin else ""
            info = ModelInfo(name, family, make_builder(depth), 32, 10, depth=depth, residual=residual,
                             twin=twin_name)
            _check_depth(info)
            return info
    close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else "; `resnetlab list` shows them all"
    raise UserError(f"unknown model {name!r}{hint}")


def _refuse_ambiguous(name: str, family: str, depth: int) -> None:
    """A CIFAR-style name at an ImageNet depth of the papers that is not registered as that ImageNet model."""
    built = f"resnet{depth}" in _REGISTRY
    imagenet = (f"the {IMAGENET_PAPER_DEPTHS[depth]} paper's ResNet-{depth} is an ImageNet model ("
                + (f"resnet{depth}, 224x224" + (", with no plain twin in the paper" if family == "cifar_plain"
                                                else "") if built else "not built here") + ")")
    raise UserError(f"{name} is ambiguous: {imagenet}; for a CIFAR {_KIND[family]} of depth {depth} use "
                    f"{CIFAR_PREFIX}{name}")


def _check_depth(info: ModelInfo) -> None:
    """Fail on a depth the family cannot have before anything is built."""
    per_block = 3 if info.family in ("cifar_v2", "keras_v2") else 2
    cifar_depth_to_blocks(info.depth, per_block, info.name)


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
                                 f"{DRL}, Table 6 (option A)", depth=depth, residual=True, twin=f"plain{depth}"))
    for depth in (20, 32, 44, 56, 110):
        register_model(ModelInfo(f"plain{depth}", "cifar_plain", partial(cifar_resnet, depth, residual=False),
                                 32, 10, reference=f"{DRL}, Figure 6 left (no table of errors)", depth=depth,
                                 residual=False, twin=f"resnet{depth}"))
    register_model(ModelInfo("preact_resnet110", "cifar_v2_basic", partial(preact_basic_resnet, 110), 32, 10,
                             1.7e6, 6.37, f"{IM}, Table 2 (full pre-activation)", depth=110, residual=True, twin=""))
    # ResNet-1001: IM Table 3 prints 10.2M, but the design that gives ResNet-164 its 1.7M gives 10,327,706.
    cifar_v2 = {29: (None, None), 56: (None, None), 110: (None, None), 164: (1.7e6, 5.46), 1001: (10.2e6, 4.92)}
    for depth, (params, error) in cifar_v2.items():
        register_model(ModelInfo(f"resnet{depth}v2", "cifar_v2", partial(preact_bottleneck_resnet, depth), 32, 10,
                                 params, error, f"{IM}, Table 3" if params else IM, depth=depth, residual=True,
                                 twin=""))
    keras_v1 = {20: 8.75, 32: 7.51, 44: 7.17, 56: 6.97, 110: 6.43}
    for depth, error in keras_v1.items():
        register_model(ModelInfo(f"keras_resnet{depth}v1", "keras_v1", partial(keras_resnet_v1, depth), 32, 10,
                                 None, error, f"{KERAS} (error column: the paper's, as the tutorial quotes)",
                                 depth=depth, residual=True, twin=""))
    for depth in (20, 29, 56, 110, 164):
        register_model(ModelInfo(f"keras_resnet{depth}v2", "keras_v2", partial(keras_resnet_v2, depth), 32, 10,
                                 reference=KERAS, depth=depth, residual=True, twin=""))
    imagenet = {18: (11.7e6, 27.88), 34: (21.8e6, 24.52), 50: (25.6e6, 22.85), 101: (44.5e6, 21.75),
                152: (60.2e6, 21.43)}
    for depth, (params, error) in imagenet.items():
        register_model(ModelInfo(f"resnet{depth}", "imagenet", partial(imagenet_resnet, depth), 224, 1000, params,
                                 error, f"{DRL}, Tables 2-3 (top-1, 10-crop)", depth=depth, residual=True,
                                 twin=f"plain{depth}" if depth in (18, 34) else ""))
    for depth, error in ((18, 27.94), (34, 28.54)):
        register_model(ModelInfo(f"plain{depth}", "imagenet_plain", partial(imagenet_resnet, depth, residual=False),
                                 224, 1000, None, error, f"{DRL}, Table 2 (top-1, 10-crop)", depth=depth,
                                 residual=False, twin=f"resnet{depth}"))
    for depth in (18, 34):
        register_model(ModelInfo(f"resnet{depth}_cifar", "imagenet_cifar_stem",
                                 partial(imagenet_resnet, depth, stem="cifar"), 32, 10,
                                 reference="ImageNet layout with a 3x3 stride-1 stem, no max-pool (kuangliu-style)",
                                 depth=depth, residual=True, twin=""))


_register_all()
