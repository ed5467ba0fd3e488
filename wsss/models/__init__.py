"""Networks: torchvision-compatible ResNet backbones and the heads of each method."""
import torch

from wsss.errors import DataError
from wsss.io import load_torch
from wsss.models.resnet import load_pretrained, resnet

__all__ = ["resnet", "load_pretrained", "read_checkpoint", "load_trained"]


def read_checkpoint(path) -> dict:
    """A wsss model file ({"state_dict", "params", ...}); DataError naming the file if it is not one."""
    ckpt = load_torch(path, "model file")
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "params" not in ckpt:
        raise DataError(f"{path}: expected a wsss model file with 'state_dict' and 'params'")
    return ckpt


def load_trained(path, build, device="cpu") -> torch.nn.Module:
    """The network saved at `path`, rebuilt by `build(params)` from its saved params, in eval mode."""
    ckpt = read_checkpoint(path)
    model = build(ckpt["params"])
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        raise DataError(f"{path}: weights do not match the network its params describe ({e})") from e
    return model.to(device).eval()
