"""What determinism rests on (docs/reliability.md, Determinism): a stage computes on exactly the threads its job
was given, in torch and in numba; the randomised tests draw the same examples every run.

Threads (issue 30): numba's `omp` threading layer, when it starts its pool, sets the process-wide OpenMP thread
count, which is torch's: a 1-thread job ran on every core after its first kernel call, and a resumed run differed
from an uninterrupted one. `wsss.runtime.use_threads` (called by wsss.cli at a stage's start) pins both. Each case
runs in a fresh process, as a stage does, since numba's pool starts once per process."""
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# each numba CPU kernel, called the way a stage calls it, with inputs large enough for its parallel path
KERNELS = {
    "line_max_affinity": "kernels.line_max_affinity(torch.rand(2, 24, 24), 5, backend='numba')",
    "random_walk": "kernels.random_walk(torch.rand(1, 3, 24, 24), torch.rand(1, 24, 24), 5, 10, 4, backend='numba')",
    # its parallel path needs B > 1 and B * H * W >= 2^20 pixels
    "region_grow": "kernels.region_grow(torch.rand(2, 2, 725, 725), torch.rand(2, 2, 725, 725) > 0.99, "
                   "torch.ones(2, 2, dtype=torch.bool), backend='numba')",
    "neighborhood_aggregate": "[o.sum().backward() for o in kernels.neighborhood_aggregate("
                              "torch.rand(1, 4, 8, 8, requires_grad=True), [torch.rand(1, 4, 8, 8)], "
                              "[torch.rand(1, 3, 8, 8)], [2], [0], backend='numba')]",
}

PROGRAM = """
import json, sys
if {numba_first}:
    import numba  # loaded before the stage pins its threads (as in a test process), its pool not started
from wsss import runtime
budget = runtime.use_threads()
import numba, torch, kernels
counts = [(torch.get_num_threads(), numba.get_num_threads())]
{call}
counts.append((torch.get_num_threads(), numba.get_num_threads()))
print(json.dumps(dict(budget=budget, counts=counts, layer=numba.threading_layer())))
"""


def _counts(call: str, numba_first: bool) -> dict:
    # the job's budget is 1 thread; numba's default pool (NUMBA_NUM_THREADS) is larger: 3 threads where numba is
    # loaded first, all cores otherwise (2 in CI)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    env.pop("NUMBA_NUM_THREADS", None)
    if numba_first:
        env["NUMBA_NUM_THREADS"] = "3"
    done = subprocess.run([sys.executable, "-c", PROGRAM.format(numba_first=numba_first, call=call)], env=env,
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.parametrize("kernel", list(KERNELS))
def test_a_kernel_call_leaves_the_jobs_thread_count(kernel):
    """After the stage's start and after a call of each numba CPU kernel, torch and numba both run on the job's
    one thread (before the fix torch went to all cores at the first kernel call)."""
    seen = _counts(KERNELS[kernel], numba_first=False)
    assert seen["budget"] == 1
    assert seen["counts"] == [[1, 1], [1, 1]], seen


def test_the_threads_hold_when_numba_was_loaded_before_the_stage_started():
    """numba already imported (its environment read) but its pool not started: the pool starts at the stage's
    start, so its omp_set_num_threads comes before torch's count, not after it at a kernel call."""
    seen = _counts(KERNELS["line_max_affinity"], numba_first=True)
    assert seen["counts"] == [[1, 1], [1, 1]], seen


def test_child_processes_inherit_the_budget():
    """Spawned workers (cam_to_ir_label's CRF pool, DDP ranks) start numba's pool at the job's size too."""
    call = ("import subprocess; child = subprocess.run([sys.executable, '-c', 'import numba; "
            "print(numba.config.NUMBA_NUM_THREADS)'], capture_output=True, text=True).stdout.strip(); "
            "assert child == '1', child")
    assert _counts(call, numba_first=False)["counts"] == [[1, 1], [1, 1]]


def test_every_hypothesis_test_draws_the_same_examples_each_run():
    """conftest's Hypothesis profile is derandomised (a failure reproduces, a pass is not luck) and no test's own
    @settings undoes it."""
    if os.environ.get("HYPOTHESIS_PROFILE", "wsss") != "wsss":
        pytest.skip("exploring with another Hypothesis profile on purpose")
    found = {}
    for file in sorted(Path(__file__).parent.glob("test_*.py")):
        if "from hypothesis import" in file.read_text():
            module = importlib.import_module(file.stem)
            found |= {f"{file.stem}.{name}": fn._hypothesis_internal_use_settings
                      for name, fn in vars(module).items() if getattr(fn, "is_hypothesis_test", False)}
    assert len(found) >= 8, sorted(found)  # the kernel tests' property tests
    assert {name for name, chosen in found.items() if not chosen.derandomize or chosen.database is not None} == set()
