"""What the workflow builds (wsss/pipeline/plan.py): the methods and their targets, the threads of a job, nested
`--config` overrides; unit tests of the helpers, and dry-run plans of the VOC presets with dummy splits."""
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from wsss.pipeline import plan

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "workflow" / "Snakefile")]


def dry_run(workdir: Path, *args) -> str:
    result = subprocess.run([*SNAKEMAKE, "--directory", str(workdir), "--dry-run", *args], capture_output=True,
                            text=True)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return result.stdout + result.stderr


def jobs(out: str) -> dict[str, int]:
    table = out.split("Job stats:")[1].split("total")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.M)}


def voc(workdir: Path, preset: str, *args) -> str:
    """A dry run of config/<preset>.yaml on a VOC root of dummy splits (as tests/test_presets.py)."""
    lists = workdir / "data" / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True, exist_ok=True)
    for split in ("train", "val"):
        (lists / f"{split}.txt").write_text("2007_000032\n")
    (workdir / "here.yaml").write_text(yaml.safe_dump({"run_dir": "run", "dataset": {"root": str(workdir / "data")}}))
    return dry_run(workdir, *args, "--cores", "16", "--resources", "gpu=4", "--configfile",
                   str(REPO / "config" / f"{preset}.yaml"), str(workdir / "here.yaml"))


IRNET = {"sbd_train_aug", "validate_data", "train_cam", "make_cam", "eval_cam", "cam_to_ir_label", "train_irn",
         "make_sem_seg_labels", "eval_sem_seg", "make_ins_seg_labels", "eval_ins_seg", "eval_boundary", "train_seg",
         "infer_seg", "eval_seg"}
RPNET = {"sbd_train_aug", "validate_data", "rpnet_train_cam", "rpnet_make_cam", "rpnet_eval_cam",
         "rpnet_cam_to_ir_label", "rpnet_train_irn", "rpnet_make_sem_seg_labels", "rpnet_eval_sem_seg", "train_seg",
         "infer_seg", "eval_seg"}
DSRG = {"sbd_train_aug", "validate_data", "train_cam", "make_cam", "dsrg_seeds", "train_dsrg", "infer_seg",
        "eval_seg", "train_seg"}
PSI = {"sbd_train_aug", "scribble_pngs", "validate_data", "train_psi", "infer_seg", "eval_seg", "psi_fig2"}
CDSP = {"sbd_train_aug", "scribble_pngs", "validate_data", "train_cam", "make_cam", "cdsp_pseudo_labels",
        "cdsp_distance_maps", "train_cdsp", "infer_seg", "eval_seg"}


@pytest.mark.parametrize("preset, target, expected", [
    ("voc12", "irnet", IRNET),
    ("voc12", "rpnet", RPNET),
    ("voc12", "dsrg", DSRG),  # no dsrg_nogrowth: DSRG Table 2's ablation
    ("voc12_scribble", "psi", PSI),
    ("voc12_scribble", "cdsp", CDSP),
])
def test_a_method_target_builds_that_method_and_what_it_needs(tmp_path, preset, target, expected):
    planned = jobs(voc(tmp_path, preset, target))
    assert set(planned) == expected | {target}
    assert planned["train_seg"] == 1 if "train_seg" in planned else True  # one network: the method's


def test_dsrg_no_growth_runs_under_ablations_only(tmp_path):
    out = voc(tmp_path, "voc12", "dsrg_ablation", "-p")
    assert jobs(out)["train_dsrg"] == 2 and "--out run/dsrg_nogrowth/model.pt" in out
    default = voc(tmp_path, "voc12", "-p")
    assert jobs(default)["train_dsrg"] == 1 and "dsrg_nogrowth" not in default


def test_four_gpu_jobs_run_at_once_with_cores_16_and_4_gpus(tmp_path):
    """README's `--cores 16 --resources gpu=4`: each GPU job takes 16 / 4 threads, so four fit at once (cores
    16 / 4, GPU slots 4 / 1); every heavy job of the plan says so."""
    out = voc(tmp_path, "voc12", "irnet")
    blocks = re.split(r"\n(?=(?:local)?rule \w+:)", out)
    gpu_jobs = [b for b in blocks if re.search(r"resources:.*\bgpu=1\b", b)]
    assert len(gpu_jobs) == 8  # train_cam, make_cam, train_irn, the two labels, eval_boundary, train, infer_seg
    threads = {int(re.search(r"threads: (\d+)", b).group(1)) for b in gpu_jobs}
    assert threads == {4} and 16 // 4 == 4


@pytest.mark.parametrize("cores, gpus, configured, slurm, expected", [
    (16, 4, None, None, 4),  # a GPU slot's share
    (16, 2, None, None, 8),
    (2, None, None, None, 1),  # the demo: two 1-thread jobs on 2 cores
    (64, None, None, None, 8),  # half the cores, at most 8
    (16, 4, 3, None, 3),  # config job_threads
    (None, None, None, None, 8),  # a cluster run without --cores
    (None, None, 3, "6", 6),  # inside a SLURM job: its cpus_per_task
])
def test_job_threads(cores, gpus, configured, slurm, expected):
    assert plan.job_threads(cores, gpus, configured, slurm) == expected


def test_nested_config_overrides_are_typed():
    config = {"report": {"n_overlays": "2", "paper_numbers": False}, "cam": {"scales": ["1.0", "0.5"]},
              "methods": ["irnet"]}
    plan.parse_overrides(config, {"report": {"n_overlays": "2"}, "cam": {"scales": ["1.0", "0.5"]},
                                  "methods": ["irnet"]})
    assert config == {"report": {"n_overlays": 2, "paper_numbers": False}, "cam": {"scales": [1.0, 0.5]},
                      "methods": ["irnet"]}


def test_nested_config_override_on_the_command_line(tmp_path):
    """README: `--config report='{"n_overlays": 2}'` (Snakemake's own parser gives the string '2')."""
    (tmp_path / "config.yaml").write_text((REPO / "config.yaml").read_text())
    out = dry_run(tmp_path, "--cores", "1", "-p", "psi_fig2", "--config", 'report={"n_overlays": 2}',
                  'methods=[psi]')
    assert '"n_images": 2' in out


def test_outputs_select_methods_and_ablations():
    out = plan.Outputs()
    out.add("rpnet", "metrics", "r.csv")
    out.add("irnet", "metrics", "i.csv")
    out.add("dsrg", "metrics", "d.csv")
    out.add("dsrg", "metrics", "dn.csv", ablation=True)
    out.add("dsrg", "figure", "f.png", "caption")
    assert out.files(["irnet", "dsrg", "rpnet"], kind="metrics") == ["i.csv", "d.csv", "r.csv"]  # METHODS order
    assert out.files(["dsrg"], ["dsrg"], kind="metrics") == ["d.csv", "dn.csv"]
    assert out.files(["irnet"]) == ["i.csv"] and out.files([], ["dsrg"]) == ["dn.csv"]  # ablation rows alone
    assert [e.label for e in out.select(["dsrg"], kind="figure")] == ["caption"]
    with pytest.raises(ValueError, match="unknown method"):
        out.add("deeplab", "metrics", "x.csv")


def test_ablations_true_a_list_or_false():
    config = {"methods": ["irnet", "dsrg", "psi"], "ablations": True}
    assert plan.ablation_methods(config) == ["irnet", "dsrg", "psi"]
    assert plan.ablation_methods({**config, "ablations": ["dsrg", "cdsp"]}) == ["dsrg"]
    assert plan.ablation_methods({**config, "ablations": False}) == []


def test_scribble_methods_need_scribbles():
    config = {"methods": ["irnet", "psi"], "cam": {"methods": ["irnet", "rpnet"]},
              "dataset": {"demo": False, "scribbles": False}}
    with pytest.raises(ValueError, match=r"methods: \['psi'\] learn from scribbles"):
        plan.check(config)
    plan.check({**config, "dataset": {"demo": False, "scribbles": True}})
    with pytest.raises(ValueError, match="cam.methods"):
        plan.check({**config, "methods": ["rpnet"], "cam": {"methods": ["irnet"]}})


def test_chain_names_and_folders():
    irnet, rpnet = plan.Chain("irnet", "run"), plan.Chain("rpnet", "run")
    assert (irnet.rule("train_cam"), irnet.cam_model, irnet.cam_row, irnet.seg_net) == (
        "train_cam", "run/cam/model.pt", "cam", "seg_irnet")
    assert (rpnet.rule("train_cam"), rpnet.cam_model, rpnet.cam_row, rpnet.seg_net) == (
        "rpnet_train_cam", "run/rpnet/cam/model.pt", "rpnet", "seg_rpnet")
    assert rpnet.labels_row("sem_seg") == "rpnet_rw" and irnet.labels_row("ir_label") == "irnet_crf"


def test_train_cam_values_of_a_cam_method_take_its_section():
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config.update(train={"checkpoint_every": 10, "amp": False})
    config["dataset"]["train_fraction"] = 1
    config["cam"]["rpnet"].update(weight_decay=0.0001, references=1, levels=[2, 4], alpha=0.3, keep=0.5,
                                  sigma=3.0, consistency_weight=10.0)
    values = plan.train_cam_values(config, "rpnet")
    assert values["method"] == "rpnet" and values["epochs"] == config["cam"]["rpnet"]["epochs"]
    assert {"references", "levels", "neck_channels", "alpha", "keep", "sigma", "consistency_weight"} <= set(values)
    assert "method" not in plan.train_cam_values(config, "irnet")
