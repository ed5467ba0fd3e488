"""wsss.pipeline.papers: a paper's number is shown only beside a run with the settings it was measured with,
and the notes say where the run's method is not the paper's."""
import copy

from wsss.pipeline import papers

PAPER_RUN = {"model": {"backbone": "resnet50"}, "seg": {"arch": "deeplab_v2", "backbone": "resnet101"},
             "irn": {"rw_background": "plane"}, "dsrg": {"saliency_dir": "saliency"}}


def test_numbers_need_the_papers_settings():
    run = copy.deepcopy(PAPER_RUN)
    # IRNet's CAM number is at the fixed threshold 0.15, not the sweep's best
    assert papers.number("cam", "cam", "train", "iou_at_fixed_threshold", run)[0] == 48.3
    assert papers.number("cam", "cam", "train", "iou", run) is None
    assert papers.number("sem_seg", "irnet_rw", "train", "iou", run)[0] == 66.5
    # DSRG: the ResNet-101 result (with the retrain) beside the default ResNet-101; Table 2 is VGG-16 only
    assert papers.number("seg", "dsrg_retrain", "val", "iou", run)[0] == 61.4
    assert all(papers.number("seg", m, "val", "iou", run) is None
               for m in ("dsrg", "dsrg_nogrowth", "dsrg_retrain_cambg"))
    assert papers.number("seg", "seg_irnet", "val", "iou", run) is None  # IRNet Table 4 is ResNet-50
    run["seg"]["backbone"] = "resnet50"
    assert papers.number("seg", "seg_irnet", "val", "iou", run)[0] == 63.5
    assert papers.number("seg", "dsrg_retrain", "val", "iou", run) is None
    run["irn"]["rw_background"] = "walked"
    assert papers.number("sem_seg", "irnet_rw", "train", "iou", run) is None
    assert papers.number("seg", "seg_irnet", "val", "iou", run) is None  # trained on walked-background labels
    assert papers.number("cam", "cam", "train", "iou_at_fixed_threshold", None) is None  # settings unknown


def test_notes_mark_the_walked_background_and_cam_background_cues():
    assert papers.notes(PAPER_RUN) == {} and papers.notes(None) == {}
    demo = {**PAPER_RUN, "irn": {"rw_background": "walked"}, "dsrg": {"saliency_dir": None}}
    notes = papers.notes(demo)
    assert set(notes) == {"sem_seg", "seg"}
    assert "walked background" in notes["sem_seg"][0] and "irnet_rw" in notes["sem_seg"][0]
    assert any("*_cambg" in note for note in notes["seg"]) and any("seg_irnet" in note for note in notes["seg"])
