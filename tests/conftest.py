"""Shared fixtures.

`tiny_voc` -> (root, class_names): a demo data set in the real VOC / ScribbleSup formats (8 train and 4 val
images at 64 px, every file kind wsss.datasets.voc reads). Each test gets its own copy, so it may damage files to
test bad input; the set itself is generated once per session."""
import shutil

import pytest

from wsss.datasets import demo_dataset

TINY_DEMO = dict(seed=0, n_train=8, n_val=4, size=64, min_radius=0.14, max_radius=0.24)


@pytest.fixture(scope="session")
def tiny_demo_params():
    """The demo parameters `tiny_voc` is generated with."""
    return dict(TINY_DEMO)


@pytest.fixture(scope="session")
def tiny_voc_master(tmp_path_factory, tiny_demo_params):
    """The shared original behind `tiny_voc`; read it, never write to it."""
    root = tmp_path_factory.mktemp("tiny_voc") / "voc"
    demo_dataset.run(tiny_demo_params, root=root)
    return root


@pytest.fixture
def tiny_voc(tiny_voc_master, tmp_path):
    root = tmp_path / "voc"
    shutil.copytree(tiny_voc_master, root)
    return root, list(demo_dataset.PARAMS["class_names"].default)
