"""`python -m kernels.bench [--quick] [--device cpu|cuda] [--only OP] [--csv PATH]`

Prints one table of time and peak memory for every kernel against its reference, with the ratios
measured in the same run; where a case counts its floating-point work (the random walk), also GFLOP/s and
the fraction of the machine's peak, measured in the same run by a float32 matmul (per wall second, and per CPU second, which a busy machine
does not distort). The header gives the
machine, the thread counts and the load average (other processes on the cores inflate absolute times, not
the ratios). See docs/benchmarks.md for recorded results; `python -m wsss.bench` runs these with the
stage benchmarks.
"""
import argparse
import importlib
import os

import numba
import pandas as pd
import torch

from kernels.bench._harness import matmul_flops, measure

MODULES = ["line_max_affinity", "random_walk", "region_grow", "neighborhood_aggregate"]


def machine(device: torch.device) -> str:
    """One line: the device, the threads torch and numba use, the 1-minute load average over the cores."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                    "cpu") if os.path.exists("/proc/cpuinfo") else "cpu"
    return (f"device: {name}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, numba threads "
            f"{numba.get_num_threads()}, load average {os.getloadavg()[0]:.1f}")


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m kernels.bench", description=__doc__)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true", help="small sizes only (seconds, for a smoke test)")
    ap.add_argument("--only", choices=MODULES, action="append", help="run only these ops")
    ap.add_argument("--csv", help="also write the table here")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    print(machine(device), flush=True)
    rows, peaks = [], []
    for name in args.only or MODULES:
        module = importlib.import_module(f"kernels.bench.{name}")
        cases = module.cases(device, args.quick)
        counted = any(case.flops for case in cases)
        if counted:
            peaks.append(matmul_flops(device, 512 if args.quick else 2048))
        for case in cases:
            seconds, peak, cpu_seconds = measure(case.fn, device, case.repeat)
            rows.append(dict(op=case.op, size=case.size, impl=case.impl, reference=case.reference or "",
                             ms=seconds * 1e3, peak_MiB=peak / 2**20,
                             GFLOP_s=case.flops / seconds / 1e9 if case.flops else float("nan"),
                             GFLOP_cpu_s=case.flops / cpu_seconds / 1e9 if case.flops else float("nan")))
            print(f"{case.op:24s} {case.size:22s} {case.impl:22s} {seconds * 1e3:10.2f} ms "
                  f"{peak / 2**20:9.1f} MiB", flush=True)
        if counted:  # the peak before and after the op's cases: the better of the two, as the load varies
            after = matmul_flops(device, 512 if args.quick else 2048)
            peaks[-1] = tuple(max(x, y) for x, y in zip(peaks[-1], after))
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
    if peaks:
        peak, peak_cpu = (max(p[i] for p in peaks) for i in (0, 1))
        table["of_peak"] = table.GFLOP_s * 1e9 / peak
        table["of_peak_cpu"] = table.GFLOP_cpu_s * 1e9 / peak_cpu
    table = table.drop(columns=["GFLOP_cpu_s"] + ([] if peaks else ["GFLOP_s"]))
    print("\n" + machine(device))
    if peaks:
        print(f"peak: float32 matmul {peak / 1e9:.1f} GFLOP/s wall, {peak_cpu / 1e9:.1f} GFLOP per CPU second, "
              f"{torch.get_num_threads()} threads. of_peak = GFLOP_s / the first; of_peak_cpu = the same per CPU "
              "second (all threads), which holds on a busy machine; a fused multiply-add counts 2 flops")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    if args.csv:
        table.to_csv(args.csv, index=False)


if __name__ == "__main__":
    main()
