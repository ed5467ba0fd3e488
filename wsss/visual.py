"""Drawing outputs over images, for people: the report's galleries and `wsss predict`'s overlays."""
import numpy as np


def blend(image: np.ndarray, colour: np.ndarray, where: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """uint8 HxWx3: `colour` over `image` where `where`; elsewhere the image dimmed to grey (so "no label"
    reads as grey, not as a class colour)."""
    grey = np.repeat(image.mean(2, keepdims=True), 3, 2) * 0.6
    mixed = (1 - alpha) * image + alpha * colour
    return np.where(where[..., None], mixed, grey).astype(np.uint8)


def labels_over(image: np.ndarray, labels: np.ndarray, palette: np.ndarray, ignore: int = 255) -> np.ndarray:
    """Label map `labels` (class indices, `ignore` = none) in its palette colours over `image`."""
    return blend(image, palette[labels], labels != ignore)
