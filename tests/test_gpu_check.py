"""`python -m wsss.gpu_check`: every part that runs without a GPU (the CUDA kernels under numba's simulator,
bfloat16 autocast, gloo, the DAG with --resources gpu=1 on the CPU). The GPU itself: README, docs/benchmarks.md."""
import importlib

import pandas as pd
import pytest
import torch
from _cudasim import run_cudasim

from wsss import gpu_check

CPU = torch.device("cpu")


@pytest.mark.slow  # the simulator runs every CUDA thread in Python: about a minute
def test_kernel_and_speed_parts_run_the_cuda_kernels_under_the_simulator():
    out = run_cudasim("""
        import torch
        from wsss import gpu_check
        rows = gpu_check.check_kernels(torch.device("cpu"), quick=True) + gpu_check.time_kernels(
            torch.device("cpu"), quick=True)
        for r in rows:
            print(r["part"], r["ok"], r["check"], "|", r["value"])
    """)
    lines = out.splitlines()
    assert len(lines) == 8, out
    assert all(" ok " in line and "cuda vs" in line for line in lines), out
    for op in ("line_max_affinity", "random_walk", "region_grow", "neighborhood_aggregate"):
        assert sum(op in line for line in lines) == 2, op  # its error and its speed


def test_kernel_part_reports_a_wrong_kernel(monkeypatch):
    walk = importlib.import_module("kernels.random_walk")  # the module (kernels.random_walk is also the op)
    real = walk._WALK["torch"]
    monkeypatch.setitem(walk._WALK, "torch", lambda v, *a: real(v, *a) * 1.001)  # what the check runs on a CPU
    rows = {r["check"].split()[0]: r for r in gpu_check.check_kernels(CPU, quick=True)}
    assert rows["random_walk"]["ok"] == "FAIL" and rows["region_grow"]["ok"] == "ok"


@pytest.mark.slow  # seven trainers, a few iterations each
def test_amp_part_trains_every_network_with_mixed_precision(tmp_path):
    rows = gpu_check.train_amp(CPU, tmp_path)
    assert [r["check"] for r in rows] == ["train_cam (IRNet)", "train_cam (RPNet)", "train_irn", "train_seg",
                                          "train_dsrg", "train_psi", "train_cdsp"]
    assert all(r["ok"] == "ok" for r in rows), rows
    assert torch.load(tmp_path / "amp" / "seg.pt", weights_only=False)["params"]["amp"] is True


def test_ddp_part_in_one_process_and_in_two(tmp_path):
    [one] = gpu_check.check_ddp(CPU, tmp_path, 1)
    assert one["ok"] == "ok" and "gloo" in one["check"]
    [two] = gpu_check.check_ddp(CPU, tmp_path, 2)
    assert two["ok"] == "ok" and "as 2 DDP processes (gloo)" in two["check"]


@pytest.mark.slow  # a Snakemake run of the first stages (data set, CAM training and maps): about a minute
def test_dag_part_runs_the_first_stages_with_one_gpu_slot(tmp_path):
    # up to the CAMs' scores only: the GPU check goes on to the random-walk labels, which is more of the same
    [r] = gpu_check.run_dag(CPU, tmp_path, targets=("metrics/eval_cam.csv",))
    assert r["ok"] == "ok", (tmp_path / "dag.log").read_text()[-3000:] if (tmp_path / "dag.log").exists() else r
    assert (tmp_path / "dag" / "results" / "gpu_check" / "metrics" / "eval_cam.csv").is_file()


def test_main_prints_one_table_and_fails_on_a_failed_check(tmp_path, capsys, monkeypatch):
    assert gpu_check.main(["--device", "cpu", "--parts", "ddp", "--out", str(tmp_path / "t.csv")]) == 0
    table = pd.read_csv(tmp_path / "t.csv")
    assert list(table.columns) == ["part", "check", "value", "target", "ok"] and (table.ok == "ok").all()
    monkeypatch.setattr(gpu_check, "check_ddp", lambda *a: 1 / 0)
    assert gpu_check.main(["--device", "cpu", "--parts", "ddp"]) == 1
    assert "ZeroDivisionError" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        gpu_check.main(["--parts", "kernels,gpu"])
