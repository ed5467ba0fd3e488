"""`python -m kernels.bench [--quick] [--device cpu|cuda] [--only OP] [--csv PATH]`

Prints one table of time and peak memory for every kernel against its reference, with the ratios
measured in the same run. See docs/benchmarks.md for recorded results.
"""
import argparse
import importlib

import pandas as pd
import torch

from kernels.bench._harness import measure

MODULES = ["line_max_affinity", "random_walk", "region_grow", "neighborhood_aggregate"]


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m kernels.bench", description=__doc__)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true", help="small sizes only (seconds, for a smoke test)")
    ap.add_argument("--only", choices=MODULES, action="append", help="run only these ops")
    ap.add_argument("--csv", help="also write the table here")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    rows = []
    for name in args.only or MODULES:
        module = importlib.import_module(f"kernels.bench.{name}")
        for case in module.cases(device, args.quick):
            seconds, peak = measure(case.fn, device, case.repeat)
            rows.append(dict(op=case.op, size=case.size, impl=case.impl, reference=case.reference or "",
                             ms=seconds * 1e3, peak_MiB=peak / 2**20))
            print(f"{case.op:24s} {case.size:22s} {case.impl:22s} {seconds * 1e3:10.2f} ms "
                  f"{peak / 2**20:9.1f} MiB", flush=True)
    table = pd.DataFrame(rows)
    ref = table.set_index(["op", "size", "impl"])
    speed, mem = [], []
    for r in table.itertuples():
        if r.reference:
            base = ref.loc[(r.op, r.size, r.reference)]
            speed.append(base.ms / r.ms)
            mem.append(r.peak_MiB / base.peak_MiB if base.peak_MiB > 0 else float("nan"))
        else:
            speed.append(float("nan"))
            mem.append(float("nan"))
    table["speedup_vs_ref"] = speed
    table["mem_vs_ref"] = mem
    print(f"\ndevice: {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}, "
          f"torch threads: {torch.get_num_threads()}")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    if args.csv:
        table.to_csv(args.csv, index=False)


if __name__ == "__main__":
    main()
