"""Datasets as uint8 arrays (CIFAR-10/100, image folders, archives, synthetic), cached on disk, then served
from device memory with normalization and augmentation done there; or, for folders too large for that, image
files decoded as they are needed (the streaming path: stream.py, transforms.py, pipeline.py)."""

from resnetlab.data.arrays import Dataset, ImageArrays, split_validation
from resnetlab.data.augment import AUGMENTATIONS, KerasAugment, augment
from resnetlab.data.loader import DeviceLoader
from resnetlab.data.normalize import NORMALIZATIONS, Normalizer, fit_normalizer
from resnetlab.data.sources import load_dataset
from resnetlab.data.stream import ImageFiles, StreamLoader
from resnetlab.data.transforms import ImageTransform

__all__ = [
    "AUGMENTATIONS",
    "NORMALIZATIONS",
    "Dataset",
    "DeviceLoader",
    "ImageArrays",
    "ImageFiles",
    "ImageTransform",
    "KerasAugment",
    "Normalizer",
    "StreamLoader",
    "augment",
    "fit_normalizer",
    "load_dataset",
    "split_validation",
]
