"""Model construction shared by train.py, evaluate.py and inference.py.

The served module is `CountingModel`: it takes uint8 images [N, 224, 224, 3] (the wire format), does the
preprocessing spec's normalisation (and an optional internal downsampling) itself, and returns logits
over the classes. Callers never normalise.
"""

from __future__ import annotations

from pathlib import Path

import preprocessing_spec
import torch
import torch.nn.functional as F
from torch import nn
from torchvision_compat import import_torchvision

ARCHITECTURES = ("resnet18", "resnet34", "resnet50", "efficientnet_b0", "mobilenet_v3_small", "mobilenet_v3_large")
HEADS = ("linear", "classic")


def _classic_head(features: int, num_classes: int) -> nn.Module:
    # The reference projects' head: Linear 254 -> ReLU -> Linear 128 -> ReLU -> Linear classes.
    return nn.Sequential(
        nn.Linear(features, 254), nn.ReLU(inplace=True), nn.Linear(254, 128), nn.ReLU(inplace=True), nn.Linear(128, num_classes)
    )


def _head(features: int, num_classes: int, head: str) -> nn.Module:
    return _classic_head(features, num_classes) if head == "classic" else nn.Linear(features, num_classes)


def build_backbone(architecture: str, num_classes: int, head: str = "linear", pretrained_weights: str | Path | None = None) -> nn.Module:
    """A torchvision classifier with its last layer replaced by `head`; optionally ImageNet weights from a local file."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"model {architecture!r} is not supported: choose one of {', '.join(ARCHITECTURES)}")
    if head not in HEADS:
        raise ValueError(f"head {head!r} is not supported: choose one of {', '.join(HEADS)}")
    tv = import_torchvision()
    net = getattr(tv.models, architecture)(weights=None)
    if pretrained_weights:
        _load_pretrained(net, Path(pretrained_weights), architecture)
    if architecture.startswith("resnet"):
        net.fc = _head(net.fc.in_features, num_classes, head)
    else:  # efficientnet / mobilenet_v3: classifier is a Sequential ending in a Linear
        last = net.classifier[-1]
        net.classifier[-1] = _head(last.in_features, num_classes, head)
    # torchvision gives MobileNetV3/EfficientNet BatchNorm momentum 0.01 (long ImageNet schedules); with a
    # few hundred steps the running statistics lag far behind and evaluation collapses to one class.
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = 0.1
    return net


def _load_pretrained(net: nn.Module, path: Path, architecture: str) -> None:
    if not path.is_file():
        raise ValueError(f"--pretrained-weights {path} does not exist: give a torchvision {architecture} state_dict (.pth) file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a pickle with objects, or not a torch file at all
        raise ValueError(
            f"--pretrained-weights {path} is not a loadable state_dict ({error}): save it with torch.save(model.state_dict())"
        ) from None
    # Keep only the tensors whose name and shape match: the ImageNet classifier is replaced anyway.
    own = net.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if len(usable) < len(own) // 2:
        raise ValueError(
            f"--pretrained-weights {path} matches only {len(usable)} of {len(own)} tensors of {architecture}: is it for another architecture?"
        )
    net.load_state_dict(usable, strict=False)


class CountingModel(nn.Module):
    """uint8 [N, H, W, 3] (or float in 0..255) -> logits [N, classes]; normalisation inside."""

    def __init__(self, net: nn.Module, image_size: int = preprocessing_spec.IMAGE_SIZE) -> None:
        super().__init__()
        self.net = net
        self.image_size = image_size
        # Non-persistent: the spec's constants are code, not weights, so state_dict holds only `net`.
        self.register_buffer("mean", torch.tensor(preprocessing_spec.MEAN).view(1, 3, 1, 1) * 255.0, persistent=False)
        self.register_buffer("std", torch.tensor(preprocessing_spec.STD).view(1, 3, 1, 1) * 255.0, persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = to_model_size(images, self.image_size)
        return self.net((x - self.mean) / self.std)


def to_model_size(images: torch.Tensor, image_size: int) -> torch.Tensor:
    """uint8/float NHWC -> float NCHW (0..255) at image_size; training augments after this same step."""
    # NHWC -> NCHW as a view: the result is already channels_last in memory.
    x = images.permute(0, 3, 1, 2).float()
    if x.shape[-1] != image_size or x.shape[-2] != image_size:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False)
    return x


def build_model(
    architecture: str,
    num_classes: int,
    head: str = "linear",
    image_size: int = preprocessing_spec.IMAGE_SIZE,
    pretrained_weights: str | Path | None = None,
) -> CountingModel:
    if not 32 <= image_size <= preprocessing_spec.IMAGE_SIZE:
        raise ValueError(
            f"image size {image_size} is invalid: expected 32..{preprocessing_spec.IMAGE_SIZE} (the model downsamples the 224 px input)"
        )
    return CountingModel(build_backbone(architecture, num_classes, head, pretrained_weights), image_size)
