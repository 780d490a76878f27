"""resnetlab: the ResNets of He et al. (2015, 2016) and their plain twins, trained on CIFAR fast and reproducibly."""

from resnetlab.models import create_model, list_models, model_info

__version__ = "0.1.0"
__all__ = ["create_model", "list_models", "model_info", "__version__"]
