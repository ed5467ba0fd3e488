"""Inter-pixel relations mined from IR labels (IRNet Sec. 4.2, Eq. 2-4), shared by train_irn and the tests.

A pair (i, j) is a pixel i and j = i + (dy, dx) for one offset of `kernels.neighbor_offsets(radius)`, which
lists every unordered pair within the radius once (Eq. 2: 0 < |x_i - x_j| < radius). Pair tensors are laid
out [B, D, H, W] with i at (y, x), the layout of `kernels.line_max_affinity`, so a pair set is a mask on
the predicted affinities. Pairs whose j falls outside the map, or touch an unsure (255) pixel, are in no set.
"""
import torch

from kernels import neighbor_offsets

from wsss import IGNORE


def downsample_label(label: torch.Tensor, stride: int = 4) -> torch.Tensor:
    """Nearest-neighbour reduction of [..., H, W] labels to the branch outputs' grid (ceil(H / stride) cells),
    sampling the pixel at the centre of each cell, stride * i + stride // 2 (2, 6, 10, ... for stride 4), as
    the released PIL nearest resize at 0.25 does (voc12/dataloader.py, imutils.pil_rescale); the last cell
    of a size that is not a multiple of the stride takes the last pixel."""
    h, w = label.shape[-2:]
    rows = (torch.arange(-(-h // stride)) * stride + stride // 2).clamp_max(h - 1)
    cols = (torch.arange(-(-w // stride)) * stride + stride // 2).clamp_max(w - 1)
    return label[..., rows[:, None], cols]


def shift(x: torch.Tensor, dy: int, dx: int, fill) -> torch.Tensor:
    """out[..., y, x] = x[..., y + dy, x + dx], `fill` where that lies outside the map."""
    h, w = x.shape[-2:]
    out = torch.full_like(x, fill)
    if abs(dy) >= h or abs(dx) >= w:  # nothing lands inside (and the slices below would wrap)
        return out
    ys, yd = slice(max(dy, 0), h + min(dy, 0)), slice(max(-dy, 0), h + min(-dy, 0))
    xs, xd = slice(max(dx, 0), w + min(dx, 0)), slice(max(-dx, 0), w + min(-dx, 0))
    out[..., yd, xd] = x[..., ys, xs]
    return out


SOURCE_WINDOWS = ("release", "all")


def source_window(shape, radius: int, window: str, device=None) -> torch.Tensor:
    """bool [H, W]: the pixels that may be the source i of a pair. "release": rows [0, H - (r - 1)) and
    columns [r - 1, W - (r - 1)) (misc/indexing.py, PathIndex with radius_floor = r - 1), where every
    partner lies inside the map; "all": every pixel (pairs whose partner falls outside are dropped anyway)."""
    if window not in SOURCE_WINDOWS:
        raise ValueError(f"source window must be one of {SOURCE_WINDOWS}, got {window!r}")
    h, w = shape
    inside = torch.ones(h, w, dtype=torch.bool, device=device)
    if window == "release":
        floor = radius - 1
        inside[h - floor:] = False
        inside[:, :floor] = False
        inside[:, w - floor:] = False
    return inside


def pair_sets(label: torch.Tensor, radius: int, window: str = "release") -> dict[str, torch.Tensor]:
    """P+fg, P+bg and P- (Eq. 3-4) of a [B, H, W] label map (0 background, 1..K classes, 255 unsure) as
    bool masks [B, D, H, W]: "fg_pos" same foreground class, "bg_pos" both background, "neg" different.
    Sources i are limited to `source_window(window)`."""
    label = label.long()
    other = torch.stack([shift(label, int(dy), int(dx), IGNORE) for dy, dx in neighbor_offsets(radius)], 1)
    label = label.unsqueeze(1)
    valid = (label != IGNORE) & (other != IGNORE) & source_window(label.shape[-2:], radius, window, label.device)
    same = valid & (label == other)
    return {"fg_pos": same & (label > 0), "bg_pos": same & (label == 0), "neg": valid & (label != other)}


def pair_differences(field: torch.Tensor, radius: int) -> torch.Tensor:
    """delta(i, j) = D(x_i) - D(x_j) (Sec. 4.3) of a [B, 2, H, W] field as [B, 2, D, H, W] (0 where j is
    outside the map; such pairs are in no pair set)."""
    return torch.stack([field - shift(field, int(dy), int(dx), 0.0) for dy, dx in neighbor_offsets(radius)], 2)


def pair_offsets(radius: int, device=None) -> torch.Tensor:
    """delta-hat(i, j) = x_j - x_i (Sec. 4.3) as [1, 2, D, 1, 1], channel 0 = y, 1 = x, to broadcast
    against `pair_differences`."""
    return neighbor_offsets(radius).t().to(device, torch.float32)[None, :, :, None, None]
