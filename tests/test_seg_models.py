"""wsss.models.deeplab: output strides, atrous layers, heads, weight loading."""
import pytest
import torch

from wsss.cam.net import CAMNet
from wsss.errors import DataError
from wsss.models import deeplab
from wsss.models.resnet import Bottleneck, resnet

NAMES = ["background", "a", "b"]


@pytest.mark.parametrize("arch, side", [("deeplab_v2", 13), ("deeplab_v3plus", 25)])
def test_output_grid(arch, side):
    # 97 px (8 x 12 + 1, like DeepLab's 321 = 8 x 40 + 1) gives 13 x 13 scores at stride 8; v3+ decodes to stride 4
    model = deeplab.build(dict(arch=arch, backbone="small", class_names=NAMES)).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 97, 97)).shape == (1, 3, side, side)


def test_v2_is_atrous_resnet():
    model = deeplab.build(dict(arch="deeplab_v2", backbone="small", class_names=NAMES))
    assert model.backbone.output_stride == 8
    layer3, layer4 = model.backbone.layer3[0], model.backbone.layer4[0]
    assert layer3.conv1.dilation == layer3.conv2.dilation == (2, 2) and layer3.conv1.stride == (1, 1)
    assert layer4.conv1.dilation == layer4.conv2.dilation == layer4.conv2.padding == (4, 4)
    assert [c.dilation[0] for c in model.aspp] == [6, 12, 18, 24]


def test_dilate_bottlenecks_keeps_the_size():
    layer = torch.nn.Sequential(*(Bottleneck(8, 2, 1, None, torch.nn.BatchNorm2d) for _ in range(2)))
    deeplab.dilate(layer, 4)
    assert all(b.conv2.dilation == b.conv2.padding == (4, 4) and b.conv1.dilation == (1, 1) for b in layer)
    assert layer(torch.zeros(1, 8, 9, 11)).shape == (1, 8, 9, 11)


def test_v2_sums_the_aspp_branches():
    model = deeplab.build(dict(arch="deeplab_v2", backbone="small", class_names=NAMES))
    x = torch.randn(1, 3, 40, 40)
    features = model.backbone.forward_features(x)[-1]
    expected = sum(torch.nn.functional.conv2d(features, c.weight, c.bias, padding=c.padding, dilation=c.dilation)
                   for c in model.aspp)
    torch.testing.assert_close(model(x), expected)


def test_param_groups_split_backbone_and_heads():
    model = deeplab.build(dict(arch="deeplab_v3plus", backbone="small", class_names=NAMES))
    backbone, heads = deeplab.param_groups(model)
    assert len(backbone) + len(heads) == len(list(model.parameters()))
    assert {id(p) for p in backbone}.isdisjoint(id(p) for p in heads)


def test_load_weights_from_cam_network_and_round_trip(tmp_path):
    cam = CAMNet(resnet("small"), n_classes=2)
    torch.save({"state_dict": cam.state_dict(), "params": {}}, tmp_path / "cam.pt")
    model = deeplab.build(dict(arch="deeplab_v2", backbone="small", class_names=NAMES))
    n = deeplab.load_weights(model, tmp_path / "cam.pt")
    assert n == len(cam.backbone.state_dict())  # the backbone only; the CAM classifier has no match
    torch.testing.assert_close(model.backbone.layer4[0].conv1.weight, cam.backbone.layer4[0].conv1.weight)

    params = dict(arch="deeplab_v2", backbone="small", class_names=NAMES, pretrained=None)
    torch.save({"state_dict": model.state_dict(), "params": params}, tmp_path / "seg.pt")
    loaded = deeplab.load(tmp_path / "seg.pt")
    x = torch.randn(1, 3, 40, 40)
    torch.testing.assert_close(loaded(x), model.eval()(x))


def test_load_errors_name_the_file(tmp_path):
    model = deeplab.build(dict(arch="deeplab_v2", backbone="small", class_names=NAMES))
    with pytest.raises(DataError, match="nothere.pt: model file not found"):
        deeplab.load(tmp_path / "nothere.pt")
    state = model.state_dict()
    state["backbone.layer2.0.conv1.weight"] = torch.zeros(1)  # another backbone's shape
    torch.save({"state_dict": state, "params": {}}, tmp_path / "other.pt")
    with pytest.raises(DataError, match="other.pt: does not hold this backbone.*layer2.0.conv1"):
        deeplab.load_weights(model, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="unknown arch"):
        deeplab.build(dict(arch="fcn", backbone="small", class_names=NAMES))
