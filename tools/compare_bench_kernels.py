# Side-by-side TB/s of mixserve bench-kernels JSON reports:
#   python3 tools/compare_bench_kernels.py before=a.json after=b.json ...
# Last column: whether the first and last reports' checked outputs hash the same.
import json, sys
runs = [a.split("=", 1) for a in sys.argv[1:]]
data = {}
for label, path in runs:
    try:
        data[label] = {(r["kernel"], r["tokens"]): r for r in json.load(open(path))["results"]}
    except Exception as e:  # a run that failed: its column stays empty
        print(f"{label}: {e}")
        data[label] = {}
keys = []
for label, _ in runs:
    keys += [k for k in data[label] if k not in keys]
first, last = runs[0][0], runs[-1][0]
print(f"{'kernel':26} {'tokens':>6} " + " ".join(f"{l:>18}" for l, _ in runs) + "  bits")
for k in keys:
    cells = []
    for label, _ in runs:
        r = data[label].get(k)
        cells.append("-" if r is None else
                     f"{r['tb_per_s']:5.2f} {r['median_us']:8.1f}us{'' if r['check_ok'] else '!'}")
    a, b = data[first].get(k), data[last].get(k)
    same = "-" if a is None or b is None else ("same" if a.get("output_hash") == b.get("output_hash") else "diff")
    print(f"{k[0]:26} {k[1]:6} " + " ".join(f"{c:>18}" for c in cells) + "  " + same)
