#!/usr/bin/env python3
"""Sums an ncu CSV (--csv --print-units base --metrics gpu__time_duration.sum[,dram__bytes.sum])
per kernel family; with dram__bytes also the achieved DRAM bandwidth of each family.

Usage: ncu_summary.py report.csv [steps]   (steps: divide totals by this many profiled steps)
Prints: family, launches, total ms (per step), share of the total.
"""
import csv
import re
import sys
from collections import defaultdict


def family(name: str) -> str:
    name = re.sub(r"\(.*", "", name)          # drop the argument list
    name = re.sub(r"<.*", "", name)           # drop template arguments
    name = name.split("::")[-1].strip()
    if name.startswith("nvjet") or "gemm" in name.lower() or name.startswith("sm90_"):
        return "GEMM:" + name[:60]
    return name[:70]


def main() -> None:
    path = sys.argv[1]
    steps = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
    rows = list(csv.DictReader(line for line in open(path) if line.startswith('"')))
    total = defaultdict(float)
    count = defaultdict(int)
    dram = defaultdict(float)
    for r in rows:
        f = family(r["Kernel Name"])
        v = float(r["Metric Value"].replace(",", ""))
        if r.get("Metric Name") == "dram__bytes.sum":
            dram[f] += v
        if r.get("Metric Name") != "gpu__time_duration.sum":
            continue
        total[f] += v
        count[f] += 1
    grand = sum(total.values())
    print(f"{'kernel family':60s} {'launches':>8s} {'ms/step':>9s} {'share':>6s} {'TB/s':>6s}")
    for f, ns in sorted(total.items(), key=lambda kv: -kv[1]):
        bw = f"{dram[f] / ns / 1e3:6.2f}" if f in dram else "     -"
        print(f"{f[:60]:60s} {count[f]:8d} {ns / 1e6 / steps:9.3f} {100 * ns / grand:5.1f}% {bw}")
    print(f"{'TOTAL':60s} {sum(count.values()):8d} {grand / 1e6 / steps:9.3f}")


if __name__ == "__main__":
    main()
