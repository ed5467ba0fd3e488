"""`wsss <stage> --params JSON --<path-name> PATH ...`: runs one pipeline stage.

Every stage module in wsss/ has `run(params: dict, *, <paths>)`; the Snakefile passes the rule's params as
JSON (types preserved) and its named inputs/outputs as --name PATH. `wsss <stage> --help` lists them.
WSSS_GPUS=n (set by the workflow from the rule's `gpu` resource) pins the job to n free GPUs."""
import argparse
import importlib
import inspect
import json
import os
import sys

from wsss import gpu_slots

STAGES = {
    "demo_dataset": "wsss.demo",
    "train_cam": "wsss.train_cam",
    "make_cam": "wsss.make_cam",
    "eval_cam": "wsss.eval_cam",
    "cam_to_ir_label": "wsss.cam_to_ir_label",
    "train_irn": "wsss.train_irn",
    "make_sem_seg_labels": "wsss.make_sem_seg_labels",
    "make_ins_seg_labels": "wsss.make_ins_seg_labels",
    "eval_sem_seg": "wsss.eval_sem_seg",
    "eval_ins_seg": "wsss.eval_ins_seg",
    "dsrg_seeds": "wsss.dsrg_seeds",
    "train_dsrg": "wsss.train_dsrg",
    "train_seg": "wsss.train_seg",
    "infer_seg": "wsss.infer_seg",
    "eval_seg": "wsss.eval_seg",
    "gather": "wsss.shards",
    "metrics": "wsss.metrics",
    "report": "wsss.report",
}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in STAGES:
        sys.exit(f"usage: wsss <stage> [--params JSON] [--<path> PATH ...]\nstages: {', '.join(STAGES)}")
    stage, rest = argv[0], argv[1:]
    module = importlib.import_module(STAGES[stage])
    fn = module.run
    path_params = [p for p in inspect.signature(fn).parameters.values() if p.name != "params"]
    ap = argparse.ArgumentParser(prog=f"wsss {stage}", description=inspect.getdoc(fn))
    ap.add_argument("--params", type=json.loads, default={}, help="stage parameters as a JSON object")
    for p in path_params:  # a parameter annotated `list` takes several paths; one with a default is optional
        ap.add_argument(f"--{p.name}", required=p.default is inspect.Parameter.empty,
                        default=None if p.default is inspect.Parameter.empty else p.default,
                        nargs="+" if p.annotation in (list, "list") else None)
    args = vars(ap.parse_args(rest))
    gpus = gpu_slots.acquire(int(os.environ.get("WSSS_GPUS", "0")))  # before torch initialises CUDA
    fn(args.pop("params"), **args)
    del gpus


if __name__ == "__main__":
    main()
