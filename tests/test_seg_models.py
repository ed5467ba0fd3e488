"""wsss.models.deeplab: output strides, atrous layers, heads, weight loading."""
import pytest
import torch

from wsss import training
from wsss.cam.net import CAMNet
from wsss.errors import DataError
from wsss.models import deeplab
from wsss.models.resnet import Bottleneck, dilate_layer, resnet

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
    dilate_layer(layer, 4)
    assert all(b.conv2.dilation == b.conv2.padding == (4, 4) and b.conv1.dilation == (1, 1) for b in layer)
    assert layer(torch.zeros(1, 8, 9, 11)).shape == (1, 8, 9, 11)


def test_v2_sums_the_aspp_branches():
    model = deeplab.build(dict(arch="deeplab_v2", backbone="small", class_names=NAMES))
    x = torch.randn(1, 3, 40, 40)
    features = model.backbone.forward_features(x)[-1]
    expected = sum(torch.nn.functional.conv2d(features, c.weight, c.bias, padding=c.padding, dilation=c.dilation)
                   for c in model.aspp)
    torch.testing.assert_close(model(x), expected)


@pytest.mark.parametrize("arch", ["deeplab_v2", "deeplab_v3plus"])
def test_param_groups_split_backbone_and_heads(arch):
    model = deeplab.build(dict(arch=arch, backbone="small", class_names=NAMES))
    groups = deeplab.param_groups(model, head_lr_mult=10)
    ids = [id(p) for params, _, _ in groups for p in params]
    assert sorted(ids) == sorted(id(p) for p in model.parameters()) and len(set(ids)) == len(ids)


def test_param_groups_of_deeplab_v2_as_released(tmp_path):
    # DeepLab-v2 / DSRG prototxt: weights lr x1 with decay, biases x2 without; new layers x10 and x20
    model = deeplab.build(dict(arch="deeplab_v2", backbone="small", class_names=NAMES))
    model.backbone.conv1.bias = torch.nn.Parameter(torch.zeros(model.backbone.conv1.out_channels))  # a biased conv
    groups = {(lr, wd): {id(p) for p in params} for params, lr, wd in deeplab.param_groups(model, head_lr_mult=10)}
    assert set(groups) == {(1.0, 1.0), (2.0, 0.0), (10, 1.0), (20, 0.0)}
    assert groups[(20, 0.0)] == {id(c.bias) for c in model.aspp}
    assert groups[(10, 1.0)] == {id(c.weight) for c in model.aspp}
    assert groups[(2.0, 0.0)] == {id(model.backbone.conv1.bias)}
    assert id(model.backbone.bn1.weight) in groups[(1.0, 1.0)]  # a BN trained from scratch is a weight


def test_bn_is_frozen_with_imagenet_weights(tmp_path):
    torch.save(resnet("small").state_dict(), tmp_path / "imagenet.pt")
    model = deeplab.build(dict(arch="deeplab_v2", backbone="small", class_names=NAMES,
                               pretrained=str(tmp_path / "imagenet.pt")))
    bn = {id(p) for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d) for p in m.parameters()}
    assert bn and not any(id(p) in bn for params, _, _ in deeplab.param_groups(model) for p in params)


def test_fit_applies_the_groups_learning_rate_and_weight_decay(monkeypatch):
    a, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    model = torch.nn.Module()
    model.a, model.b = a, b
    made, real_sgd = [], torch.optim.SGD
    monkeypatch.setattr(torch.optim, "SGD", lambda *args, **kw: made.append(real_sgd(*args, **kw)) or made[-1])

    class Stop(Exception):
        pass

    def first_step(net, batch, it):  # the learning rates are set just before the loss is computed
        raise Stop
    params = dict(device="cpu", lr=0.1, momentum=0.9, weight_decay=0.01, lr_policy="poly", power=0.9, seed=0,
                  batch_size=1, checkpoint_every=0, num_workers=0, amp=False)
    with pytest.raises(Stop):
        training.fit(model, [([a], 1.0, 1.0), ([b], 20.0, 0.0)], _Items(), first_step, params, 1, out="unused",
                     desc="t", module="wsss.seg.train_seg", inputs=[])
    groups = {id(p): g for g in made[0].param_groups for p in g["params"]}
    assert groups[id(a)]["weight_decay"] == 0.01 and groups[id(a)]["lr"] == pytest.approx(0.1)
    assert groups[id(b)]["weight_decay"] == 0.0 and groups[id(b)]["lr"] == pytest.approx(2.0)


class _Items(torch.utils.data.Dataset):
    def __len__(self):
        return 2

    def __getitem__(self, key):
        return {"x": torch.zeros(1)}


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
