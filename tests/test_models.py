"""Backbones: torchvision-format weights, strides, frozen BN; the CAM head (IRNet Eq. 1)."""
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
