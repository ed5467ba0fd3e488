"""One package per method: each rule of workflow/rules/<method>.smk runs the stage of its own name,
wsss/<method>/<rule>.py, whose `run` takes exactly the paths the rule's command passes. IRNet's chain
(workflow/rules/chain.smk) is made once per CAM method in a loop: its rules are named by the stage (train_cam,
or rpnet_train_cam for RPNet's) and run stages of wsss/cam and wsss/irnet."""
import importlib
import inspect
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from tqdm import tqdm

from wsss import cli, joblog

REPO = Path(__file__).resolve().parents[1]
RULE_FILES = sorted((REPO / "workflow" / "rules").glob("*.smk"))
# rule files without a package of their own: helpers, and IRNet's chain (stages of wsss/cam and wsss/irnet)
SHARED_FILES = {"common": (), "chain": ("cam", "irnet")}


def rules_with_commands():
    """(rule file, rule name, stage, the --options of its command) for every rule that runs a stage; a rule
    made in chain.smk's loop (`name: cam_chain.rule("train_cam")`) by its stage's name."""
    found = []
    for file in RULE_FILES:
        for block in re.split(r"^\s*rule\b", file.read_text(), flags=re.M)[1:]:
            name = block.split(":", 1)[0].strip()
            if not name:
                named = re.search(r'name:\s*cam_chain\.rule\("(\w+)"\)', block)
                if named is None:
                    continue
                name = named.group(1)
            command = re.search(r'^\s+wsss\(\s*"(\w+)",(.*?)\n\n', block + "\n\n", re.S | re.M)
            if command is None:
                continue
            stage, text = command.groups()
            options = set(re.findall(r"--(\w+)", text)) - {"params"}
            if "{params.init}" in text:
                options.add("init")
            found.append((file.stem, name, stage, options))
    return found


RULES = rules_with_commands()


def test_every_rule_file_has_its_package():
    for file in RULE_FILES:
        if file.stem not in SHARED_FILES:
            assert (REPO / "wsss" / file.stem / "__init__.py").is_file(), f"{file.name}: no package wsss/{file.stem}/"


@pytest.mark.parametrize("method, rule, stage, options", RULES, ids=[r[1] for r in RULES])
def test_rule_runs_the_stage_of_its_name_in_its_package(method, rule, stage, options):
    assert stage == rule, f"rule {rule} runs stage {stage}"
    packages = SHARED_FILES.get(method) or (method,)
    assert cli.STAGES[stage] in {f"wsss.{package}.{stage}" for package in packages}
    run = importlib.import_module(cli.STAGES[stage]).run
    parameters = inspect.signature(run).parameters
    required = {n for n, p in parameters.items() if p.default is inspect.Parameter.empty} - {"params"}
    assert required <= options <= set(parameters) - {"params"}, f"rule {rule}: {options} vs run{tuple(parameters)}"


def test_every_stage_declares_its_params():
    for stage, module in cli.STAGES.items():
        assert isinstance(getattr(importlib.import_module(module), "PARAMS", None), dict), f"{module}: no PARAMS"


def test_stage_help_lists_the_params_and_a_missing_one_is_named(tmp_path):
    helped = subprocess.run([sys.executable, "-m", "wsss.cli", "eval_cam", "--help"], capture_output=True, text=True)
    assert helped.returncode == 0
    assert re.search(r"thresholds\s+list, required", helped.stdout)
    assert re.search(r"split\s+str, required", helped.stdout)
    failed = subprocess.run([sys.executable, "-m", "wsss.cli", "eval_cam", "--params", '{"split": "train"}',
                             "--root", str(tmp_path), "--cams", str(tmp_path), "--metrics", str(tmp_path / "m.csv"),
                             "--sweep", str(tmp_path / "s.csv")], capture_output=True, text=True)
    assert failed.returncode != 0
    assert failed.stderr.strip().splitlines() == [
        "wsss eval_cam: error: eval_cam: missing param 'class_names' (list: class names, background first, then the K "
        "object classes in label order)"]


def test_job_log_begins_with_a_header(tmp_path):
    """A job's log (stderr to a file) begins with the command, params, commit, versions, device and threads."""
    log, empty = tmp_path / "job.log", tmp_path / "shard"
    empty.mkdir()
    with log.open("w") as err:
        done = subprocess.run([sys.executable, "-m", "wsss.cli", "gather_shards", "--inputs", str(empty),
                               "--out", str(tmp_path / "out")], stderr=err, cwd=REPO,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0
    head = log.read_text().splitlines()
    assert head[0].startswith("== wsss gather_shards:")
    assert head[1].endswith("-m wsss.cli gather_shards --inputs " + str(empty) + " --out " +
                            str(tmp_path / "out"))
    assert head[2] == "params: {}" and re.fullmatch(r"commit: [0-9a-f]{12}( \+changes)?", head[3])
    assert re.match(r"versions: torch \S+, numba \S+, numpy \S+, python 3", head[4]) and head[5].startswith("device:")
    assert head[6] == "kernels: numba CPU kernels on the CPU"
    assert head[7] == "threads: 1 (torch), 1 (numba)"  # the job's OMP_NUM_THREADS, in both (issue 30)


def test_gpu_job_header_says_which_kernel_backend_runs(monkeypatch):
    """issue 24: a GPU job without numba's CUDA toolchain says that its kernels run on torch, and how to fix it."""
    from kernels import _backend
    monkeypatch.setattr(_backend, "numba_cuda_usable", lambda: True)
    assert joblog.kernel_backends("auto", on_gpu=True) == "numba.cuda kernels on the GPU"
    monkeypatch.setattr(_backend, "numba_cuda_usable", lambda: False)
    monkeypatch.setattr(_backend, "numba_cuda_problem", lambda: "NVVM, the CUDA compiler library, not found")
    line = joblog.kernel_backends("auto", on_gpu=True)
    assert line.startswith("torch on the GPU; numba cannot compile CUDA kernels (NVVM") and "make env CUDA=1" in line
    monkeypatch.setenv("WSSS_KERNEL_BACKEND", "torch")
    assert joblog.kernel_backends("cpu") == "torch on the CPU (WSSS_KERNEL_BACKEND)"


def test_progress_in_a_log_is_one_line_per_redraw():
    stream = io.StringIO()
    bar = tqdm(total=3, file=joblog.LineStream(stream), mininterval=0, desc="x")
    for _ in range(3):
        bar.update()
    bar.write("a message", file=bar.fp)
    bar.close()
    lines = stream.getvalue().split("\n")
    assert "\r" not in stream.getvalue() and lines[-1] == ""
    assert lines[0].startswith("x:   0%") and lines[-2].startswith("x: 100%") and "a message" in lines
    assert all(line.strip() for line in lines[:-1])


def test_every_stage_has_a_rule():
    assert set(cli.STAGES) == {rule for _, rule, _, _ in RULES}


def test_stage_table_is_found_not_kept(tmp_path, monkeypatch):
    """A new module with `run` in a method package is a stage; one without is not."""
    package = tmp_path / "wsss"
    (package / "newmethod").mkdir(parents=True)
    (package / "newmethod" / "do_thing.py").write_text('"""Does the thing."""\ndef run(params, *, out):\n    pass\n')
    (package / "newmethod" / "helpers.py").write_text("def helper():\n    pass\n")
    monkeypatch.setattr(cli, "PACKAGE", package)
    assert cli.find_stages() == {"do_thing": "wsss.newmethod.do_thing"}


def test_help_lists_every_stage_with_a_line():
    result = subprocess.run([sys.executable, "-m", "wsss.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for stage in cli.STAGES:
        line = next(line for line in result.stdout.splitlines() if line.split()[:1] == [stage])
        assert len(line.split()) > 1, f"stage {stage} has no summary line"


def test_snakemake_lint_is_clean():
    result = subprocess.run([sys.executable, "-m", "snakemake", "--lint"], cwd=REPO, capture_output=True, text=True)
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr, result.stdout


def test_snakefmt_check_is_clean():
    """`snakefmt --check workflow` (settings in pyproject.toml [tool.snakefmt]: line length 120, directives kept
    in their order): run `snakefmt workflow` to format."""
    result = subprocess.run([sys.executable, "-m", "snakefmt", "--check", "workflow"], cwd=REPO, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dry_run_prints_a_runnable_command_per_job(tmp_path):
    """`snakemake -n -p` prints each job's shell command (what `run:` rules printed as "None")."""
    result = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "workflow" / "Snakefile"),
                             "--configfile", str(REPO / "config.yaml"), "--directory", str(tmp_path),
                             "-n", "-p", "--cores", "1"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    out = result.stdout + result.stderr
    n_jobs = int(re.search(r"^total\s+(\d+)", out, re.M).group(1))
    command = r"^Shell command: (?:WSSS_GPUS=\d )?\S+ -m wsss\.cli (\w+) --params '\{.*\}' .* > \S+\.log 2>&1$"
    commands = re.findall(command, out, re.M)
    assert len(commands) == n_jobs - 1, out  # all jobs but the target rule `all`
