import numpy as np
import pytest
from PIL import Image

from wsss import io, metrics
from wsss.pipeline import metrics as metrics_stage


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out" / "table.csv"
    with pytest.raises(RuntimeError):
        with io.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert not target.exists() and list((tmp_path / "out").iterdir()) == []


def test_atomic_path_replaces_a_folder(tmp_path):
    (tmp_path / "maps").mkdir()
    (tmp_path / "maps" / "old.npz").write_text("stale")
    with io.atomic_path(tmp_path / "maps") as tmp:
        tmp.mkdir()
        (tmp / "new.npz").write_text("fresh")
    assert [p.name for p in (tmp_path / "maps").iterdir()] == ["new.npz"]


def test_palette_png_keeps_indices(tmp_path):
    labels = np.array([[0, 1, 255], [2, 20, 0]], np.uint8)
    palette = np.random.default_rng(0).integers(0, 256, (256, 3), dtype=np.uint8)
    io.save_png(tmp_path / "l.png", labels, palette)
    img = Image.open(tmp_path / "l.png")
    assert img.mode == "P"
    np.testing.assert_array_equal(np.asarray(img), labels)
    np.testing.assert_array_equal(np.asarray(img.getpalette(), np.uint8).reshape(-1, 3)[:256], palette)


def test_scores_on_a_hand_computed_case():
    gt = np.array([[0, 0, 1, 1], [2, 2, 255, 255]])
    pred = np.array([[0, 1, 1, 1], [2, 0, 2, 0]])
    conf = metrics.confusion(pred, gt, 3)
    np.testing.assert_array_equal(conf, [[1, 1, 0], [0, 2, 0], [1, 0, 1]])
    s = metrics.scores(conf)
    np.testing.assert_allclose(s["iou"], [1 / 3, 2 / 3, 1 / 2])
    np.testing.assert_allclose(s["precision"], [1 / 2, 2 / 3, 1])
    np.testing.assert_allclose(s["recall"], [1 / 2, 1, 1 / 2])



def test_supervision_quality_counts_unlabelled_pixels_against_recall():
    """Two classes and an unlabelled column (index 2): by hand, per class over the gt rows."""
    pred = np.array([0, 0, 1, 2, 1, 1, 2, 2])  # 2 = unlabelled
    gt = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    conf = metrics.confusion(pred, gt, 3)
    precision = [2 / 2, 2 / 3]  # class 1 predicted 3 times, right twice
    recall = [2 / 4, 2 / 4]  # unlabelled pixels count as missed
    iou = [2 / (4 + 2 - 2), 2 / (4 + 3 - 2)]
    assert metrics.supervision_quality(conf, 2) == pytest.approx(
        [np.mean(precision), np.mean(recall), np.mean(iou), 5 / 8])
    assert np.isnan(metrics.supervision_quality(np.zeros((3, 3), np.int64), 2)[-1])


def test_metric_rows_and_gather(tmp_path):
    conf = np.array([[3, 1], [0, 4]])
    rows = metrics.rows("cam", "cam", "train", ["background", "disc"], conf, best_threshold=0.15)
    metrics.write(tmp_path / "a.csv", rows)
    metrics_stage.run({}, inputs=[str(tmp_path / "a.csv")] * 2, out=str(tmp_path / "all.csv"))
    table = metrics.read(tmp_path / "all.csv")
    assert list(table.columns) == metrics.COLUMNS and len(table) == 2 * len(rows)
    miou = table[(table.metric == "iou") & (table["class"] == "")].value.iloc[0]
    assert miou == pytest.approx((3 / 4 + 4 / 5) / 2)
    assert table[table.metric == "best_threshold"].value.iloc[0] == pytest.approx(0.15)


def test_nan_values_read_back_as_numbers(tmp_path):
    conf = np.array([[3, 0, 1], [0, 0, 0], [0, 0, 2]])  # class 1 never occurs: NaN IoU
    metrics.write(tmp_path / "m.csv", metrics.rows("cam", "cam", "train", ["bg", "a", "b"], conf))
    table = metrics.read(tmp_path / "m.csv")
    assert table.value.dtype == np.float64 and table.value.isna().sum() == 3
    assert set(table["class"]) == {"", "bg", "a", "b"}
