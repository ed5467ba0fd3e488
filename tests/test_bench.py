"""`python -m wsss.bench`: every kernel and stage benchmark found by convention and run with its reference."""
import csv
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
    assert {"rpnet", "cdsp", "cpp"} <= set(names)  # wsss/{cam or rpnet}/bench*.py, cdsp/bench.py, psi/bench_cpp.py
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
