"""IRNet's network as released: inference on padded inputs, the mean displacement measured after training."""
import numpy as np
import torch
import torch.nn.functional as F

from wsss.datasets import voc
from wsss.irnet import net as irn_net
from wsss.irnet.train_irn import measure_mean_displacement
from wsss.transforms import normalize, rescale, to_tensor


def _model(seed=0):
    torch.manual_seed(seed)
    model = irn_net.build("small").eval()
    for p in model.parameters():  # GroupNorm affine at random values too, so padding shows everywhere
        p.data.normal_(0, 0.5)
    return model


def test_inference_on_a_small_image_equals_the_padded_image_cropped_back():
    model = _model()
    image = torch.randn(3, 37, 50, dtype=torch.float32)  # not multiples of 4: outputs ceil(37/4) x ceil(50/4)
    boundary, disp = model.infer(image, pad_to=64)
    assert boundary.shape == (10, 13) and disp.shape == (2, 10, 13)
    # reference: each of image and mirror zero-padded right / bottom to 64, outputs cropped, mirror flipped back
    pad = (0, 64 - 50, 0, 64 - 37)
    with torch.no_grad():
        edge, dp = model(torch.stack([F.pad(image, pad), F.pad(image.flip(-1), pad)]))
    edge, dp = edge[..., :10, :13].double(), dp[..., :10, :13]
    torch.testing.assert_close(boundary.double(), torch.sigmoid((edge[0, 0] + edge[1, 0].flip(-1)) / 2))
    torch.testing.assert_close(disp, dp[0])
    # GroupNorm sees the whole map: without the padding the outputs differ
    unpadded, _ = model.infer(image, pad_to=0)
    assert (unpadded - boundary).abs().max() > 1e-3


def test_training_leaves_the_mean_displacement_alone():
    model = _model().train()
    model(torch.randn(2, 3, 32, 32))
    assert model.mean_displacement.abs().sum() == 0


def test_mean_displacement_is_measured_in_one_eval_pass_over_top_left_padded_crops(tiny_voc):
    root, _ = tiny_voc
    ids = voc.read_ids(root, "train")[:3]
    model = _model(1)
    model.mean_displacement.fill_(5.0)  # a stale value must not leak into the measurement
    params = {"input_scale": 1.5, "crop": 64}
    measure_mean_displacement(model, root, ids, params)
    expected = torch.zeros(2, dtype=torch.float64)
    for image_id in ids:  # 64 px images at x1.5 = 96 px: the top-left 64 x 64 window, nothing to pad
        image = rescale(voc.load_image(voc.path(root, "image", image_id)), 1.5)[0][:64, :64]
        model.train()  # raw output, no mean subtracted
        with torch.no_grad():
            expected += model(to_tensor(normalize(image))[None])[1].double().mean((0, 2, 3))
    torch.testing.assert_close(model.mean_displacement.double(), expected / len(ids), rtol=1e-5, atol=1e-6)
    # a crop larger than the image: zero padding right and bottom enters the mean, as released
    measure_mean_displacement(model, root, ids[:1], {"input_scale": 1.0, "crop": 80})
    image = np.zeros((80, 80, 3), np.float32)
    image[:64, :64] = normalize(voc.load_image(voc.path(root, "image", ids[0])))
    model.train()
    with torch.no_grad():
        padded = model(to_tensor(image)[None])[1].mean((0, 2, 3))
    torch.testing.assert_close(model.mean_displacement, padded, rtol=1e-5, atol=1e-6)
