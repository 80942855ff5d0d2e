"""Turn ImageNet weights into what the pipeline's `pretrained` channel expects: `<architecture>.pth`
(a plain state_dict of tensors) in a folder or under an S3 prefix.

    python convert_weights.py --architecture resnet18 --source torchvision --output s3://my-bucket/weights/resnet18/
    python convert_weights.py --architecture resnet50 --source ~/Downloads/resnet50-11ad3fa6.pth --output /tmp/weights/

--source torchvision downloads torchvision's published weights (the architecture's DEFAULT weights enum)
through torchvision's own weights API: for a machine with internet, and only when asked for here;
training never downloads. --source PATH reads a local .pth instead: a state_dict, or a checkpoint holding
one under "state_dict" or "model". Either way the weights are checked against the architecture (every
backbone tensor present with the right shape; the ImageNet classifier may differ, train.py replaces it)
before anything is written, and the error names the file and what was expected. train.py's `pretrained`
channel loads `<architecture>.pth` from the channel folder (train.pretrained_path).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import models
import torch
from torchvision_compat import import_torchvision

TORCHVISION = "torchvision"


def download_torchvision_weights(architecture: str) -> dict[str, torch.Tensor]:
    """torchvision's DEFAULT ImageNet weights for `architecture` (downloads into torch's hub cache)."""
    if architecture not in models.TORCHVISION_ARCHITECTURES:
        raise ValueError(
            f"--source torchvision has no weights for {architecture}: torchvision publishes {', '.join(models.TORCHVISION_ARCHITECTURES)}"
            + (
                "; efficientnet_lite0's ImageNet weights ship with its package (--pretrained-weights imagenet)"
                if architecture in models.PACKAGED_ARCHITECTURES
                else ""
            )
        )
    weights = import_torchvision().models.get_model_weights(architecture).DEFAULT
    print(f"downloading {weights} (torchvision's published ImageNet weights) ...", file=sys.stderr)
    return weights.get_state_dict(progress=True)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A local .pth as a state_dict of tensors; a clear error for anything else."""
    if not path.is_file():
        raise ValueError(f"--source {path} does not exist: give a local .pth file or 'torchvision'")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a pickle with objects (a whole nn.Module), or not a torch file at all
        raise ValueError(
            f"--source {path} is not a loadable state_dict ({type(error).__name__}): save it with torch.save(model.state_dict())"
        ) from None
    if isinstance(state, dict):
        for key in ("state_dict", "model"):  # training checkpoints often wrap the weights
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not state or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise ValueError(f"--source {path} holds a {type(state).__name__}, not a state_dict of named tensors")
    # DataParallel / DDP checkpoints prefix every name with "module."
    if all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state


def reference_state_dict(architecture: str) -> dict[str, torch.Tensor]:
    """The architecture's ImageNet layout (1,000 classes, random weights): what a state_dict must match."""
    if architecture in models.PACKAGED_ARCHITECTURES:
        from efficientnet_lite_pytorch import EfficientNet

        return EfficientNet.from_name("efficientnet-lite0", num_classes=1000).state_dict()
    return getattr(import_torchvision().models, architecture)(weights=None).state_dict()


def validate(state: dict[str, torch.Tensor], architecture: str, source: str) -> dict[str, torch.Tensor]:
    """Every backbone tensor of `architecture` with the right shape (classifier tensors may differ or be absent)."""
    expected = reference_state_dict(architecture)
    backbone = {k: v for k, v in expected.items() if not k.startswith(models.HEAD_PREFIXES)}
    missing = [k for k in backbone if k not in state]
    wrong = [
        f"{k} {list(state[k].shape)} (expected {list(v.shape)})" for k, v in backbone.items() if k in state and state[k].shape != v.shape
    ]
    if missing or wrong:
        detail = (f"{len(missing)} missing, e.g. {', '.join(missing[:3])}" if missing else "") + (
            f"{'; ' if missing else ''}{len(wrong)} with another shape, e.g. {', '.join(wrong[:2])}" if wrong else ""
        )
        raise ValueError(
            f"{source} does not fit {architecture}: of its {len(backbone)} backbone tensors {detail}. "
            f"Expected a torchvision {architecture} state_dict (names such as {', '.join(list(backbone)[:2])}); "
            "is it for another architecture?"
        )
    extra = [k for k in state if k not in expected]
    if extra:
        raise ValueError(
            f"{source} has {len(extra)} tensors {architecture} does not have (e.g. {', '.join(extra[:3])}): is it for another architecture?"
        )
    # Keep exactly the architecture's tensors, contiguous and detached (a clean weights_only file).
    return {k: state[k].detach().contiguous().clone() for k in expected if k in state}


def write(state: dict[str, torch.Tensor], architecture: str, output: str) -> str:
    """Save `<architecture>.pth` into a folder or under an s3://bucket/prefix/; returns where it went."""
    name = f"{architecture}.pth"
    if output.startswith("s3://"):
        bucket, _, prefix = output.removeprefix("s3://").partition("/")
        if not bucket:
            raise ValueError(f"--output {output} has no bucket: expected s3://bucket/prefix/")
        key = f"{prefix.rstrip('/')}/{name}" if prefix.strip("/") else name
        import boto3

        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / name
            torch.save(state, path)
            boto3.client("s3").upload_file(str(path), bucket, key)
        return f"s3://{bucket}/{key}"
    folder = Path(output)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--output {folder} is a file: give a folder (the channel holds {name}) or s3://bucket/prefix/")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    partial = path.with_suffix(".tmp")
    torch.save(state, partial)
    partial.replace(path)
    return str(path)


def convert(architecture: str, source: str, output: str) -> str:
    if architecture not in models.ARCHITECTURES:
        raise ValueError(f"--architecture {architecture!r} is not supported: choose one of {', '.join(models.ARCHITECTURES)}")
    state = download_torchvision_weights(architecture) if source == TORCHVISION else read_state_dict(Path(source).expanduser())
    state = validate(state, architecture, "torchvision's weights" if source == TORCHVISION else f"--source {source}")
    return write(state, architecture, output)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write ImageNet weights as <architecture>.pth for the pipeline's pretrained channel.")
    parser.add_argument("--architecture", required=True, help=f"one of {', '.join(models.ARCHITECTURES)}")
    parser.add_argument("--source", required=True, help="'torchvision' (downloads the published weights) or a local .pth file")
    parser.add_argument("--output", required=True, help="a folder, or s3://bucket/prefix/ (the pretrained channel's prefix)")
    args = parser.parse_args(argv)
    try:
        where = convert(args.architecture, args.source, args.output)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # network, S3 permissions, disk: name it without a traceback
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    prefix = where.rsplit("/", 1)[0] + "/"
    print(f"wrote {where}\nuse {prefix} as the pipeline's pretrained weights prefix (train.py reads {args.architecture}.pth from it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
