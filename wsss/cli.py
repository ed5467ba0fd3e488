"""`wsss <stage> --params JSON --<path-name> PATH ...`: runs one pipeline stage.

A stage is a module `wsss/<package>/<stage>.py` that defines `run(params: dict, *, <paths>)`; the table
of stages is found from the packages (STAGES), and each workflow rule runs the stage of its own name.
The rule passes its params as one JSON object (types preserved) and its named inputs/outputs as
--name PATH. `wsss --help` lists the stages, `wsss <stage> --help` its paths.
WSSS_GPUS=n (set by the workflow from the rule's `gpu` resource) pins the job to n free GPUs; torch and numba
compute on the job's threads (OMP_NUM_THREADS, which Snakemake sets to the rule's `threads`)."""
import argparse
import ast
import importlib
import inspect
import json
import os
import sys
from pathlib import Path

from wsss import gpu_slots, joblog, jobs
from wsss.errors import DataError
from wsss.params import describe, resolve

PACKAGE = Path(__file__).parent


def _defines_run(file: Path) -> bool:
    tree = ast.parse(file.read_text())
    return any(isinstance(node, ast.FunctionDef) and node.name == "run" for node in tree.body)


def find_stages() -> dict[str, str]:
    """stage name -> module: every module one package below wsss/ that defines `run` (read, not imported,
    so listing the stages stays fast). Two stages of one name would be ambiguous: an error."""
    stages = {}
    for file in sorted(PACKAGE.glob("*/*.py")):
        if file.stem.startswith("_") or not _defines_run(file):
            continue
        if file.stem in stages:
            raise RuntimeError(f"stage {file.stem!r} is defined twice: {stages[file.stem]} and {file}")
        stages[file.stem] = f"wsss.{file.parent.name}.{file.stem}"
    return stages


STAGES = find_stages()


def summary(module: str) -> str:
    """The first line of a stage module's docstring."""
    file = PACKAGE.parent.joinpath(*module.split(".")).with_suffix(".py")
    doc = ast.get_docstring(ast.parse(file.read_text())) or ""
    return doc.splitlines()[0] if doc else ""


def usage() -> str:
    width = max(map(len, STAGES))
    lines = [f"  {name:<{width}}  {summary(module)}" for name, module in STAGES.items()]
    return ("usage: wsss <stage> [--params JSON] [--<path> PATH ...]\n"
            "       wsss <stage> --help   (the stage's paths and parameters)\n"
            "       wsss predict --model <net>/model.pt --images DIR|FILES --out DIR   (your own images)\n"
            "\nstages:\n" + "\n".join(lines))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return
    from wsss import runtime  # here, not above: listing the stages stays fast (no torch)
    runtime.use_threads()  # the job's threads in torch and numba, before a kernel can change them (issue 30)
    if argv[0] == "predict":  # a command for people, not a workflow stage
        from wsss.seg import predict
        return predict.main(argv[1:])
    if argv[0] not in STAGES:
        sys.exit(f"wsss: unknown stage {argv[0]!r}\n\n{usage()}")
    stage, rest = argv[0], argv[1:]
    jobs.adopt()  # under the workflow: the stage lives and publishes only while its job does
    console = os.environ.pop("WSSS_CONSOLE_FD", None)  # this process's only: children may reuse the number
    module = importlib.import_module(STAGES[stage])
    fn = module.run
    path_params = [p for p in inspect.signature(fn).parameters.values() if p.name != "params"]
    ap = argparse.ArgumentParser(prog=f"wsss {stage}", description=inspect.getdoc(module),
                                 epilog="params (--params JSON object):\n" + describe(module.PARAMS),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", type=json.loads, default={}, help="stage parameters as a JSON object")
    for p in path_params:  # a parameter annotated `list` takes any number of paths; one with a default is optional
        ap.add_argument(f"--{p.name}", required=p.default is inspect.Parameter.empty,
                        default=None if p.default is inspect.Parameter.empty else p.default,
                        nargs="*" if p.annotation in (list, "list") else None)
    args = vars(ap.parse_args(rest))
    try:
        resolved = resolve(args["params"], module.PARAMS, stage)  # a bad param: one line, before the log header
        gpus = gpu_slots.acquire(int(os.environ.get("WSSS_GPUS", "0")))  # before torch initialises CUDA
        with joblog.job(stage, argv, resolved):
            fn(args.pop("params"), **args)
    except DataError as e:  # bad input: one line naming the file, not a traceback
        _to_console(console, f"wsss {stage}: error: {e}")
        sys.exit(f"wsss {stage}: error: {e}")
    except Exception as e:
        _to_console(console, f"wsss {stage}: failed: {type(e).__name__}: {e} (traceback in the job's log)")
        raise
    del gpus


def _to_console(fd, line: str):
    """Repeats `line` on the console, the descriptor `fd` the workflow passes as WSSS_CONSOLE_FD (the job's
    own stderr goes to its log, and Snakemake's failure message does not show the log)."""
    if not fd:
        return
    try:
        os.write(int(fd), (line + "\n").encode())
    except (OSError, ValueError):
        pass  # run by hand without the workflow's fd: the line is on stderr already


if __name__ == "__main__":
    main()
