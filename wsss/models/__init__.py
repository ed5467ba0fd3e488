"""Networks: torchvision-compatible ResNet backbones and the heads of each method."""
from wsss.models.resnet import load_pretrained, resnet

__all__ = ["resnet", "load_pretrained"]
