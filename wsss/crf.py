"""The fully-connected CRF (Kraehenbuehl & Koltun, NIPS 2011) every stage shares, through pydensecrf.

One function, `dense_crf`, refines class probabilities with a Gaussian (smoothness) and a bilateral
(appearance) Potts kernel and returns the mean-field marginals Q. Its defaults are those of Koltun's public
implementation (examples/inference.cpp), which DSRG uses (Sec. 4.1) both for the constrain-to-boundary loss
and at test time. Other users set the pairwise parameters, e.g. IRNet's IR labels (Sec. 4.1:
bilateral_sxy=50, bilateral_srgb=5) whose unary comes from a label map through `label_probs`.
"""
import numpy as np
import pydensecrf.densecrf as dcrf


def dense_crf(image: np.ndarray, probs: np.ndarray, *, n_iters: int = 10, gauss_sxy: float = 3,
              gauss_compat: float = 3, bilateral_sxy: float = 80, bilateral_srgb: float = 13,
              bilateral_compat: float = 10, scale: float = 1.0, log_unary: bool = True,
              clip: float = 1e-5) -> np.ndarray:
    """Mean-field marginals Q, float32 [C, H, W], of the dense CRF over probabilities `probs` [C, H, W].

    image: uint8 H x W x 3 RGB at the resolution of `probs`.
    scale: the grid is `scale` times coarser than the image the spatial standard deviations refer to, so
        they are divided by it (SEC and DSRG run the CRF on 41 x 41 score maps of 321 px crops with 12).
    log_unary: unary energy -log(max(p, clip)) (the CRF's definition, and DSRG's test code);
        False passes -p instead, as SEC's and DSRG's released training layers do.
    """
    n_classes, h, w = probs.shape
    if image.shape != (h, w, 3) or image.dtype != np.uint8:
        raise ValueError(f"dense_crf: image must be uint8 {h}x{w}x3 to match probs {probs.shape}, "
                         f"got {image.dtype} {image.shape}")
    p = np.asarray(probs, np.float32).reshape(n_classes, -1)
    unary = -np.log(np.maximum(p, clip)) if log_unary else -p
    crf = dcrf.DenseCRF2D(w, h, n_classes)
    crf.setUnaryEnergy(np.ascontiguousarray(unary, np.float32))
    crf.addPairwiseGaussian(sxy=gauss_sxy / scale, compat=gauss_compat)
    # pydensecrf keeps a writable view of the image (PIL's arrays are read-only): hence the copy
    crf.addPairwiseBilateral(sxy=bilateral_sxy / scale, srgb=bilateral_srgb,
                             rgbim=np.array(image, order="C"), compat=bilateral_compat)
    return np.asarray(crf.inference(n_iters), np.float32).reshape(n_classes, h, w)


def label_probs(labels: np.ndarray, n_labels: int, gt_prob: float = 0.7) -> np.ndarray:
    """float32 [n_labels, H, W] for a label map: `gt_prob` on its label, the rest spread evenly. With
    `dense_crf` this is pydensecrf's unary_from_labels(..., zero_unsure=False) (IRNet's crf_inference_label)."""
    if not 0 < gt_prob < 1:
        raise ValueError(f"gt_prob must be in (0, 1), got {gt_prob}")
    if labels.min() < 0 or labels.max() >= n_labels:
        raise ValueError(f"labels must lie in 0..{n_labels - 1}, got {labels.min()}..{labels.max()}")
    probs = np.full((n_labels, *labels.shape), (1 - gt_prob) / (n_labels - 1), np.float32)
    np.put_along_axis(probs, labels[None].astype(np.int64), gt_prob, axis=0)
    return probs
