"""Every ResNet of He et al. 2015 and 2016, their plain twins and the Keras tutorial's models, by name."""

from resnetlab.models.blocks import BasicBlock, Bottleneck, PreActBasicBlock, PreActBottleneck, ZeroPadShortcut
from resnetlab.models.folding import conv_bn_pairs, fold_batchnorm
from resnetlab.models.keras import keras_resnet_v1, keras_resnet_v2
from resnetlab.models.preact import PreActResNet, preact_basic_resnet, preact_bottleneck_resnet
from resnetlab.models.registry import ModelInfo, create_model, list_models, model_info, register_model
from resnetlab.models.resnet import ResNet, cifar_resnet, imagenet_resnet

__all__ = [
    "BasicBlock", "Bottleneck", "PreActBasicBlock", "PreActBottleneck", "ZeroPadShortcut", "ResNet", "PreActResNet",
    "cifar_resnet", "imagenet_resnet", "preact_basic_resnet", "preact_bottleneck_resnet", "keras_resnet_v1",
    "keras_resnet_v2", "conv_bn_pairs", "fold_batchnorm", "ModelInfo", "create_model", "list_models", "model_info", "register_model",
]
