"""Shared fixtures.

`tiny_voc` -> (root, class_names): a demo data set in the real VOC / ScribbleSup formats (8 train and 4 val
images at 64 px, every file kind wsss.datasets.voc reads). Each test gets its own copy, so it may damage files to
test bad input; the set itself is generated once per session.

Hypothesis runs derandomised (profile "wsss"): every run draws the same examples, so a failure reproduces and a
pass is not luck; `HYPOTHESIS_PROFILE=explore pytest ...` draws new random examples (by hand, to search).
The profile is loaded here, before the test modules' @settings are made from it."""
import os
import shutil

import numba  # noqa: F401  before any fixture pins the threads: numba's pool keeps all cores for the kernel tests
import pytest
import torch
from hypothesis import settings

from wsss import runtime
from wsss.datasets import demo_dataset
from wsss.seg import train_seg

settings.register_profile("wsss", derandomize=True, database=None, deadline=None, print_blob=True)
settings.register_profile("explore", derandomize=False, database=None, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "wsss"))

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


@pytest.fixture
def one_thread():
    """Tiny tensors: one thread (torch and numba) is faster than two, and much faster on a busy machine."""
    threads = torch.get_num_threads()
    runtime.use_threads(1)
    yield
    runtime.use_threads(threads)


@pytest.fixture
def kill_train_seg_at(monkeypatch):
    """kill(iteration) makes train_seg's loss raise KeyboardInterrupt in `iteration` (a killed job) and
    returns the list of the iterations that ran; undone by monkeypatch.undo()."""
    def kill(iteration):
        seen, loss = [], train_seg.cross_entropy

        def counting(logits, labels):
            if len(seen) == iteration:
                raise KeyboardInterrupt
            seen.append(len(seen))
            return loss(logits, labels)
        monkeypatch.setattr(train_seg, "cross_entropy", counting)
        return seen
    return kill
