"""Every benchmark in one command: `python -m wsss.bench [--list] [--only NAME ...] [--device cpu|cuda]
[--quick] [--out DIR]`.

Each benchmark measures its subject and its reference in the same run and prints their ratio, so the ratios
hold on any machine; absolute times depend on the machine and its load (printed before and after each).
Benchmarks are found by convention, wherever they live:
- the kernels' ops, `kernels/bench/<op>.py` (`kernels.bench.MODULES`): one name per op (`random_walk`, ...);
- a stage benchmark is a module `wsss/<package>/bench.py` (named after the package) or
  `wsss/<package>/bench_<name>.py` (named `<name>`) with `main(argv)` that takes `--quick` and `--device`.
  A module that sets `RUN_BY_DEFAULT = False` (a long cost study) runs only when named with `--only`.
Each runs in its own process (its threads, memory and peak counters to itself), as `python -m <module>`, and
its output is shown as it comes; `--out DIR` also keeps each output in DIR/<name>.txt and the summary in
DIR/summary.csv. Recorded results: docs/benchmarks.md.
"""
import argparse
import ast
import csv
import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class Bench:
    name: str
    command: tuple[str, ...]  # arguments after `python`
    run_by_default: bool = True


def kernel_benches(root: Path = ROOT) -> list[Bench]:
    """One benchmark per kernel op of `kernels/bench/`, run through `python -m kernels.bench --only <op>`."""
    tree = ast.parse((root / "kernels" / "bench" / "__main__.py").read_text())
    ops = next(ast.literal_eval(node.value) for node in tree.body
               if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "MODULES")
    return [Bench(op, ("-m", "kernels.bench", "--only", op)) for op in ops]


def stage_benches(root: Path = ROOT) -> list[Bench]:
    """The modules wsss/<package>/bench.py and wsss/<package>/bench_<name>.py, read without importing them."""
    found: dict[str, Path] = {}
    for path in sorted((root / "wsss").glob("*/bench*.py")):
        if path.stem == "bench":
            name = path.parent.name
        elif path.stem.startswith("bench_"):
            name = path.stem[len("bench_"):]
        else:
            continue
        if name in found:
            raise RuntimeError(f"two benchmarks are named {name!r}: {found[name]} and {path}; rename one")
        found[name] = path
    return [Bench(name, ("-m", ".".join(path.relative_to(root).with_suffix("").parts)), _runs_by_default(path))
            for name, path in found.items()]


def _runs_by_default(path: Path) -> bool:
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "RUN_BY_DEFAULT":
            return bool(ast.literal_eval(node.value))
    return True


def discover(root: Path = ROOT) -> list[Bench]:
    benches = kernel_benches(root) + stage_benches(root)
    names = [b.name for b in benches]
    clash = {n for n in names if names.count(n) > 1}
    if clash:
        raise RuntimeError(f"a stage benchmark has a kernel op's name: {sorted(clash)}; rename it")
    return benches


def _load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def run(bench: Bench, quick: bool, device: str | None, out: Path | None) -> dict:
    command = [sys.executable, *bench.command] + (["--quick"] if quick else []) + (["--device", device] if device else [])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    print(f"\n=== {bench.name}: {' '.join(['python', *command[1:]])} (load average {_load()})", flush=True)
    load_before, started = _load(), time.perf_counter()
    lines = []
    with subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True) as process:
        for line in process.stdout:
            print(line, end="", flush=True)
            lines.append(line)
    seconds = time.perf_counter() - started
    status = "ok" if process.returncode == 0 else f"failed (exit {process.returncode})"
    print(f"=== {bench.name}: {status}, {seconds:.0f} s, load average {load_before} -> {_load()}", flush=True)
    if out is not None:
        (out / f"{bench.name}.txt").write_text("".join(lines))
    return dict(name=bench.name, command=" ".join(["python", *command[1:]]), status=status,
                seconds=round(seconds, 1), load_before=load_before, load_after=_load())


def main(argv=None) -> int:
    benches = discover()
    parser = argparse.ArgumentParser(prog="python -m wsss.bench", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--only", action="append", choices=[b.name for b in benches], metavar="NAME",
                        help="run only these (repeatable); --list shows the names")
    parser.add_argument("--device", help="cpu or cuda (default: each benchmark's own, cuda where one is visible)")
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke run of every benchmark")
    parser.add_argument("--list", action="store_true", help="print the benchmarks and their commands, run nothing")
    parser.add_argument("--out", type=Path, help="keep each output in OUT/<name>.txt and a summary in OUT/summary.csv")
    args = parser.parse_args(argv)
    chosen = [b for b in benches if (b.name in args.only if args.only else b.run_by_default)]
    if args.list:
        for b in benches:
            print(f"{b.name:24s} python {' '.join(b.command)}" + ("" if b.run_by_default else "   (only with --only)"))
        return 0
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    results = [run(b, args.quick, args.device, args.out) for b in chosen]
    print("\nsummary")
    for r in results:
        print(f"  {r['name']:24s} {r['status']:20s} {r['seconds']:7.1f} s  load {r['load_before']} -> {r['load_after']}")
    if args.out:
        with open(args.out / "summary.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(results[0]) if results else ["name"])
            writer.writeheader()
            writer.writerows(results)
    return 0 if all(r["status"] == "ok" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
