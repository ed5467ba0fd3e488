"""One package per method: each rule of workflow/rules/<method>.smk runs the stage of its own name,
wsss/<method>/<rule>.py, whose `run` takes exactly the paths the rule's command passes."""
import importlib
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

from wsss import cli

REPO = Path(__file__).resolve().parents[1]
RULE_FILES = sorted((REPO / "workflow" / "rules").glob("*.smk"))


def rules_with_commands():
    """(rule file, rule name, stage, the --options of its command) for every rule that runs a stage."""
    found = []
    for file in RULE_FILES:
        for block in re.split(r"^\s*rule ", file.read_text(), flags=re.M)[1:]:
            name = block.split(":", 1)[0].strip()
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
        if file.stem != "common":
            assert (REPO / "wsss" / file.stem / "__init__.py").is_file(), f"{file.name}: no package wsss/{file.stem}/"


@pytest.mark.parametrize("method, rule, stage, options", RULES, ids=[r[1] for r in RULES])
def test_rule_runs_the_stage_of_its_name_in_its_package(method, rule, stage, options):
    assert stage == rule, f"rule {rule} runs stage {stage}"
    assert cli.STAGES[stage] == f"wsss.{method}.{stage}"
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


def test_dry_run_prints_a_runnable_command_per_job(tmp_path):
    """`snakemake -n -p` prints each job's shell command (what `run:` rules printed as "None")."""
    result = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "workflow" / "Snakefile"),
                             "--configfile", str(REPO / "config.yaml"), "--directory", str(tmp_path),
                             "-n", "-p", "--cores", "1"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    out = result.stdout + result.stderr
    n_jobs = int(re.search(r"^total\s+(\d+)", out, re.M).group(1))
    commands = re.findall(r"^Shell command: (?:WSSS_GPUS=\d )?\S+ -m wsss\.cli (\w+) --params '\{.*\}' .* > \S+\.log 2>&1$",
                          out, re.M)
    assert len(commands) == n_jobs - 1, out  # all jobs but the target rule `all`
