"""What every method reads from a backbone (ResNet, EfficientNet-Lite): the contract of docs/architecture.md
"Backbones".

- `levels()`: five feature levels as callables, at strides 4, 4, 8, 16, 32 with strides (2, 2, 2, 2)
  (IRNet's five branch inputs; PSI's conv2..conv5 are levels 1..4; DeepLab-v3+'s low-level features level 1;
  RPNet's prototype levels 2 and 4; the CAM, DeepLab's ASPP and CDSP's LoRM read level 4);
  `channels`: their widths; `strides` (stem, level 2, level 3, level 4) set where the resolution halves and
  `output_stride` is their product x 2; `dilate(level, d)` makes the level's spatial convolutions atrous.
- `level_parameters(level)`: what a method freezes or leaves untrained (IRNet's first three levels).
- `forward_features(x, frozen_levels)`: the five outputs, the first `frozen_levels` without a graph.
- Input: every image reaches a network normalised one way, ImageNet's mean and std (wsss.transforms.normalize:
  the pipeline's one normalisation, its zero padding the mean colour). A backbone whose weights were trained
  on another normalisation says so in `input_mean` / `input_std`, and `forward_features` maps the pipeline's
  tensor onto it first (a per-channel affine map, exact up to float rounding; none for the ResNets). So the
  normalisation follows the backbone in one place, whichever stage, trainer or user script feeds it."""

import torch
import torch.nn.functional as F
from torch import nn

from wsss.errors import DataError
from wsss.io import load_torch
from wsss.transforms import IMAGENET_MEAN, IMAGENET_STD


class FixedBatchNorm(nn.BatchNorm2d):
    """IRNet's FixedBatchNorm: normalises with the stored ImageNet statistics even in training mode
    (batches of a few crops would give poor estimates). Same state-dict keys as nn.BatchNorm2d."""

    def forward(self, x):
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            training=False, eps=self.eps)


class Backbone(nn.Module):
    """Base of the wsss backbones: subclasses define `levels`, `level_parameters`, `dilate`, `channels`,
    `output_stride`, and `input_mean` / `input_std` when their weights expect another normalisation."""

    input_mean, input_std = tuple(IMAGENET_MEAN.tolist()), tuple(IMAGENET_STD.tolist())
    classifier_prefix = "fc."  # the ImageNet file's classifier, not part of the backbone (a prefix or a tuple)

    def from_pipeline(self, x: torch.Tensor) -> torch.Tensor:
        """The pipeline's ImageNet-normalised images as this backbone's weights expect them:
        (x * std_in + mean_in - mean) / std, per channel (the identity for ImageNet's own statistics)."""
        if (self.input_mean, self.input_std) == (Backbone.input_mean, Backbone.input_std):
            return x
        scale = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device) / x.new_tensor(self.input_std)
        shift = (torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device) - x.new_tensor(self.input_mean)) \
            / x.new_tensor(self.input_std)
        return x * scale.view(1, 3, 1, 1) + shift.view(1, 3, 1, 1)

    def forward_features(self, x, frozen_levels: int = 0):
        """[x1..x5]: the outputs of the five levels.

        The first `frozen_levels` levels run without building a graph (their outputs are detached), as IRNet
        does for the levels it does not train on top of ImageNet weights."""
        feats = []
        # channels-last: PyTorch's CPU convolutions run 1.2-2.8x faster on it (depthwise ones most, measured on
        # EfficientNet-Lite0 and `small` at 128 px, 2 threads); fit also stores the weights so
        x = self.from_pipeline(x).contiguous(memory_format=torch.channels_last)
        for i, level in enumerate(self.levels()):
            with torch.set_grad_enabled(torch.is_grad_enabled() and i >= frozen_levels):
                x = level(x)
            feats.append(x)
        return feats

    def forward(self, x):
        return self.forward_features(x)[-1]


def load_state(model: Backbone, path):
    """Loads an ImageNet state dict in the backbone's own key names (its classifier, `classifier_prefix`,
    ignored); raises DataError naming the file and the first offending keys if the file is missing or does
    not match the architecture."""
    state = load_torch(path, "pretrained weights file")
    if not isinstance(state, dict):
        raise DataError(f"{path}: expected a state dict (parameter name -> tensor), got {type(state).__name__}")
    state = {k: v for k, v in state.items() if not k.startswith(model.classifier_prefix)}
    expected = model.state_dict()
    # files saved before PyTorch 0.4.1 (torchvision's resnet50-19c8e357.pth) lack the BN step counters;
    # load_state_dict fills them in
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    problems = [(what, keys) for what, keys in
                (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatch", wrong_shape))
                if keys]
    if problems:
        detail = "; ".join(f"{what}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''} ({len(keys)})"
                           for what, keys in problems)
        raise DataError(f"{path}: does not match the backbone ({detail})")
    model.load_state_dict(state)
