"""`python -m wsss.bench`: every kernel and stage benchmark found by convention and run with its reference."""
import csv
import math
import subprocess
import sys
from pathlib import Path

import pytest

from wsss import bench

REPO = Path(__file__).resolve().parents[1]


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_finds_every_benchmark_of_the_repository():
    names = {b.name: b for b in bench.discover()}
    assert {"line_max_affinity", "random_walk", "region_grow", "neighborhood_aggregate"} <= set(names)
    assert {"rpnet", "cdsp", "cpp", "scaling"} <= set(names)  # wsss/{cam or rpnet}/bench*.py, ...
    assert not names["scaling"].run_by_default
    assert names["random_walk"].command == ("-m", "kernels.bench", "--only", "random_walk")
    assert names["cdsp"].command == ("-m", "wsss.cdsp.bench")


def test_a_benchmark_is_found_wherever_its_package_puts_it(tmp_path):
    # RPNet's bench moves from wsss/cam/bench_rpnet.py to wsss/rpnet/bench.py: the same name either way
    for rpnet in ("wsss/cam/bench_rpnet.py", "wsss/rpnet/bench.py"):
        root = _tree(tmp_path / rpnet.replace("/", "_"), {
            "kernels/bench/__main__.py": 'MODULES = ["walk"]\n', rpnet: "", "wsss/psi/bench_cpp.py": "",
            "wsss/pipeline/bench_scaling.py": "RUN_BY_DEFAULT = False\n", "wsss/cam/benchmarks.py": ""})
        found = {b.name: b for b in bench.discover(root)}
        assert set(found) == {"walk", "rpnet", "cpp", "scaling"}
        assert found["rpnet"].command == ("-m", rpnet[:-3].replace("/", "."))
        assert not found["scaling"].run_by_default and found["cpp"].run_by_default


def test_two_benchmarks_of_one_name_are_an_error(tmp_path):
    root = _tree(tmp_path, {"kernels/bench/__main__.py": "MODULES = []\n", "wsss/cam/bench_rpnet.py": "",
                            "wsss/rpnet/bench.py": ""})
    with pytest.raises(RuntimeError, match="two benchmarks are named 'rpnet'"):
        bench.discover(root)


def test_every_stage_benchmark_takes_quick_and_device():
    for b in bench.stage_benches():
        done = subprocess.run([sys.executable, *b.command, "--help"], cwd=REPO, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        assert "--quick" in done.stdout and "--device" in done.stdout, b


@pytest.mark.slow  # the quick walk bench in a subprocess, IRNet's dense walk and the CSR walk included: ~30 s
def test_runs_the_walk_with_its_references_and_the_fraction_of_peak(tmp_path):
    done = subprocess.run([sys.executable, "-m", "wsss.bench", "--quick", "--only", "random_walk", "--device", "cpu",
                           "--out", str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text = (tmp_path / "random_walk.txt").read_text()
    assert "load average" in text and "peak: float32 matmul" in text
    table = text[text.index(" op "):].splitlines()
    assert "of_peak" in table[0] and "speedup_vs_ref" in table[0]
    assert all(any(impl in line for line in table) for impl in (" numba ", " torch CSR ", " dense (IRNet) "))
    of_peak = float(next(line for line in table if " numba " in line).split()[-1])
    assert 0 < of_peak < 1
    [summary] = list(csv.DictReader(open(tmp_path / "summary.csv")))
    assert summary["name"] == "random_walk" and summary["status"] == "ok"


def test_cost_study_fits_the_exponent_and_extrapolates_from_it():
    from wsss.pipeline import bench_scaling as study
    sides = [128, 256, 512]
    a, k = study.fit_exponent(sides, [3e-5 * s ** 2 for s in sides])
    assert k == pytest.approx(2) and a == pytest.approx(3e-5)
    assert study.fit_exponent(sides, [0.0, -1.0, 2.0])[1] != study.fit_exponent(sides, [0.0, -1.0, 2.0])[1]  # NaN
    assert study.fit_exponent(sides, [-0.1, 1.0, 8.0])[1] == pytest.approx(3)  # a run below the noise is dropped
    stages = {stage for rows in study.PRESETS.values() for stage, *_ in rows}
    fits = {stage: (1e-6, 2.0) for stage in stages}
    flops = {name: 1e9 for rows in study.PRESETS.values() for *_, name, _ in rows if name}
    table = study.extrapolate(fits, flops, 512).set_index(["preset", "stage"])
    row = table.loc[("voc12 (IRNet, RPNet, DSRG)", "train_cam")]
    assert row.core_hours == pytest.approx(study.TRAIN_AUG * 5 * 1e-6 * 512 ** 2 / 3600)
    assert row.gpu_hours == pytest.approx(study.TRAIN_AUG * 5 * 3 * 1e9 / (study.GPU_TFLOPS * 1e12) / 3600)
    assert row.cpu_only_core_hours == 0
    crf = table.loc[("voc12 (IRNet, RPNet, DSRG)", "cam_to_ir_label")]
    assert crf.gpu_hours == 0 and crf.cpu_only_core_hours == crf.core_hours > 0


def test_cost_study_runs_every_stage_at_a_tiny_side(tmp_path, one_thread):
    """The study calls the real stages with the presets' settings: a stale param name (issue 23 renamed RPNet's)
    must fail here, not an hour into `python -m wsss.bench --only scaling`."""
    from wsss.pipeline import bench_scaling as study
    measured = study.measure_side(48, tmp_path, "cpu")
    stages = {stage for rows in study.PRESETS.values() for stage, *_ in rows}
    assert stages <= set(measured) and all(math.isfinite(v) for v in measured.values())
