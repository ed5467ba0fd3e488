"""Training augmentation and inference inputs shared by every trainer, as in IRNet's misc/imutils.py and
voc12/dataloader.py: random rescale (long side or factor), ImageNet colour normalisation, horizontal flip,
random crop padded to the crop size, HWC -> CHW; CDSP's release (transform_exten.py) also rotates and blurs.
A label map (uint8, 255 = ignore; HxW, or HxWxn for n maps augmented together, n <= 4) is rescaled and
rotated with nearest neighbour and flipped/cropped along with the image; padding fills it with 255 and the
image with 0 (the mean colour after normalisation).

Randomness comes from `rng` (anything with `random()` and `randint(a, b)`; the `random` module by default,
which the DataLoader seeds per worker from torch's generator, so runs repeat under a seed)."""
import math
import random

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from wsss import IGNORE

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
INFERENCE_SCALES = (1.0, 0.5, 1.5, 2.0)  # IRNet make_cam.py
# cv2.GaussianBlur(image, (5, 5), 0) (CDSP's RandomGaussianBlur): sigma 0 with an odd size <= 7 takes OpenCV's
# fixed binomial kernel, separable, borders reflected without repeating the edge (BORDER_REFLECT_101)
BLUR_KERNEL = np.array([1, 4, 6, 4, 1], np.float64) / 16


def normalize(image: np.ndarray) -> np.ndarray:
    """uint8 HxWx3 RGB -> float32 HxWx3 with ImageNet mean and std."""
    return (image.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """float HxWx3 -> float32 tensor [3, H, W]."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), np.float32))


def rescale(image: np.ndarray, scale: float, label: np.ndarray | None = None):
    """Resizes by `scale` (size rounded as IRNet's pil_rescale): bicubic for the image, nearest for the label."""
    h, w = image.shape[:2]
    size = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))
    image = np.asarray(Image.fromarray(image).resize(size, Image.BICUBIC))
    if label is not None:
        label = np.asarray(Image.fromarray(label).resize(size, Image.NEAREST))
    return image, label


def warp(image: np.ndarray, size: int, label: np.ndarray | None = None):
    """Resizes to size x size regardless of the aspect ratio (DSRG's released input: Caffe ImageData
    new_height / new_width, test-ms.py's zoom): bilinear for the image, nearest for the label."""
    image = np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))
    if label is not None:
        label = np.asarray(Image.fromarray(label).resize((size, size), Image.NEAREST))
    return image, label


def rotate(image: np.ndarray, angle: float, label: np.ndarray | None = None):
    """Rotation by `angle` degrees (counter-clockwise on screen) about (w / 2, h / 2), keeping the size, as
    cv2.warpAffine(image, cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1), (w, h)) (CDSP's RandRotate):
    bilinear for the float image, padded with 0 (the mean colour once normalised); nearest for the uint8 label
    maps, padded with 255."""
    h, w = image.shape[:2]
    a, b = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    # getRotationMatrix2D maps (x, y) -> (a x + b y + tx, -b x + a y + ty); warpAffine samples its inverse
    tx, ty = (1 - a) * w / 2 - b * h / 2, b * w / 2 + (1 - a) * h / 2
    matrix = np.array([[a, b], [-b, a]])  # (row, column) of the source of (row, column) of the output
    offset = -matrix @ np.array([ty, tx])

    def warp_channels(x, order, fill):
        planes = x.reshape(h, w, -1)
        out = [ndimage.affine_transform(planes[..., c], matrix, offset, order=order, mode="grid-constant",
                                       cval=fill)
               for c in range(planes.shape[2])]
        return np.stack(out, -1).reshape(x.shape).astype(x.dtype)
    return warp_channels(image, 1, 0.0), None if label is None else warp_channels(label, 0, IGNORE)


def blur(image: np.ndarray) -> np.ndarray:
    """cv2.GaussianBlur(image, (5, 5), 0) of a float HxWxC image (BLUR_KERNEL)."""
    for axis in (0, 1):
        image = ndimage.correlate1d(image, BLUR_KERNEL, axis=axis, mode="mirror")
    return image


def random_crop(image: np.ndarray, label: np.ndarray | None, size: int, rng=random):
    """A size x size window at a random position; a side shorter than `size` is placed at a random offset
    inside a padded canvas (IRNet's imutils.random_crop)."""
    h, w = image.shape[:2]
    out = np.zeros((size, size, *image.shape[2:]), image.dtype)
    out_label = None if label is None else np.full((size, size, *label.shape[2:]), IGNORE, label.dtype)
    (src_y, dst_y, ch), (src_x, dst_x, cw) = _crop_window(h, size, rng), _crop_window(w, size, rng)
    out[dst_y:dst_y + ch, dst_x:dst_x + cw] = image[src_y:src_y + ch, src_x:src_x + cw]
    if label is not None:
        out_label[dst_y:dst_y + ch, dst_x:dst_x + cw] = label[src_y:src_y + ch, src_x:src_x + cw]
    return out, out_label


def top_left_crop(image: np.ndarray, size: int, fill=0) -> np.ndarray:
    """The top-left size x size window, zero- (`fill`-) padded right and bottom where the image is smaller
    (IRNet's imutils.top_left_crop)."""
    out = np.full((size, size, *image.shape[2:]), fill, image.dtype)
    h, w = min(size, image.shape[0]), min(size, image.shape[1])
    out[:h, :w] = image[:h, :w]
    return out


def _crop_window(length, size, rng):
    """(source start, destination start, extent) along one axis."""
    if length >= size:
        return rng.randint(0, length - size), 0, size
    return 0, rng.randint(0, size - length), length


class TrainAugment:
    """Random rescale -> normalise -> [random rotation -> random blur] -> random flip -> random crop -> CHW
    tensor.

    resize_long: (lo, hi) draws the long side uniformly (IRNet CAM training: (320, 640));
    scale: (lo, hi) draws a factor uniformly (IRNet IRN training: (0.5, 1.5)); crop: side (IRNet: 512);
    warp: instead of rescale and crop, the whole image is resized to crop x crop (`warp`, DSRG's release).
    rotate: with probability 0.5, a rotation by an angle drawn uniformly in [-rotate, rotate] degrees (`rotate`);
    blur: with probability 0.5, `blur` (CDSP's release: 10 and on; the others: off)."""

    def __init__(self, crop: int, resize_long=None, scale=None, flip: bool = True, warp: bool = False,
                 rotate: float = 0.0, blur: bool = False):
        if sum(x is not None for x in (resize_long, scale)) + warp > 1:
            raise ValueError("give one of resize_long, scale and warp")
        self.crop, self.resize_long, self.scale, self.flip, self.warp = crop, resize_long, scale, flip, warp
        self.rotate, self.blur = rotate, blur

    def __call__(self, image: np.ndarray, label: np.ndarray | None = None, rng=random):
        """uint8 HxWx3 (and uint8 HxW label) -> float32 [3, crop, crop] (and int64 [crop, crop] label)."""
        factor = self._draw_scale(image.shape[:2], rng)
        if factor is not None:
            image, label = rescale(image, factor, label)
        if self.warp:
            image, label = warp(image, self.crop, label)
        image = normalize(image)
        if self.rotate and rng.random() < 0.5:  # CDSP's RandRotate, then RandomGaussianBlur
            image, label = rotate(image, -self.rotate + 2 * self.rotate * rng.random(), label)
        if self.blur and rng.random() < 0.5:
            image = blur(image)
        if self.flip and rng.random() < 0.5:
            image = image[:, ::-1]
            label = None if label is None else label[:, ::-1]
        if not self.warp:
            image, label = random_crop(image, label, self.crop, rng)
        return to_tensor(image), (None if label is None else torch.from_numpy(label.astype(np.int64)))

    def _draw_scale(self, shape, rng):
        if self.resize_long is not None:
            return rng.randint(*self.resize_long) / max(shape)
        if self.scale is not None:
            lo, hi = self.scale
            return lo + rng.random() * (hi - lo)
        return None


def multiscale_inputs(image: np.ndarray, scales=INFERENCE_SCALES, flip: bool = True,
                      sizes=None) -> list[torch.Tensor]:
    """One normalised batch per scale, [2, 3, h, w] (image and its mirror) or [1, 3, h, w] without flip,
    as IRNet's VOC12ClassificationDatasetMSF builds them; with `sizes`, one per side s of the image warped
    to s x s instead (DSRG's test-ms.py: 241, 321, 401)."""
    batches = []
    resized = ([warp(image, s)[0] for s in sizes] if sizes is not None
               else [image if s == 1 else rescale(image, s)[0] for s in scales])
    for scaled in resized:
        x = to_tensor(normalize(scaled))
        batches.append(torch.stack([x, x.flip(-1)]) if flip else x[None])
    return batches


def fuse_flips(output: torch.Tensor) -> torch.Tensor:
    """Sums the prediction of an image and the mirrored prediction of its mirror: [2, ...] -> [...]."""
    return output[0] + output[1].flip(-1) if len(output) == 2 else output[0]
