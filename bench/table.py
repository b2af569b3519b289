"""bench/table.py RESULTS FAILURES -- one markdown table from the
benchmark processes' result lines (one JSON object per line) and the list
of contenders that could not run (tab-separated: contender, reason).

Each row shows the median of its runs and its ratio to fusebox measured
in the same run: fusebox from Lua where that case has a Lua row, else
fusebox from C. A ratio above 1 means slower (or bigger) than fusebox.
The Lua hot paths run on both clocks: their rows say which, the ratios
are to fusebox Lua on the real clock where the case has one, and a
second table puts the two clocks side by side with the naive classic
C-API binding measured in the same real-clock process.
"""
import json
import statistics
import sys

BENCH_ORDER = ["guarded call", "balanced pick", "registry at scale",
               "simulation"]
FUSEBOX = ["fusebox C", "fusebox Lua"]
NAIVE = "naive C-API binding"


def load(path):
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                rows.append(json.loads(line))
    return rows


def fmt(x):
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def ratio(value, base):
    if base is value:
        return "1 (baseline)"
    if base is None:
        return ""
    r = value["median"] / base["median"]
    return f"{r:,.0f}×" if r >= 100 else f"{r:.2g}×"


def note_of(row):
    note = row.get("note", "")
    if row["bench"] == "simulation" and row["median"] > 0:
        rate = 1e9 / row["median"]
        note = f"{rate:,.0f} simulated requests/s; " + note
    return note


def table(rows):
    cases = {}
    for row in rows:
        cases.setdefault((row["bench"], row["case"]), []).append(row)
        if "runs" in row:
            row["median"] = statistics.median(row["runs"])
    order = sorted(cases, key=lambda k: (
        BENCH_ORDER.index(k[0]) if k[0] in BENCH_ORDER else 99,
        list(cases).index(k)))
    out = ["| Benchmark | Case | Implementation | Clock | Ops × runs | Median | "
           "× fusebox | Note |",
           "|---|---|---|---|---:|---:|---:|---|"]
    for key in order:
        group = sorted(cases[key], key=lambda r: (
            FUSEBOX.index(r["impl"]) if r["impl"] in FUSEBOX else 2,
            r.get("clock") != "real"))
        measured = {(r["impl"], r.get("clock")): r for r in group if "median" in r}
        base = (measured.get(("fusebox Lua", "real"))
                or measured.get(("fusebox Lua", "virtual"))
                or measured.get(("fusebox C", None)))
        for r in group:
            if "skip" in r:
                continue
            out.append(
                f"| {key[0]} | {key[1]} | {r['impl']} | {r.get('clock', 'own')} | "
                f"{r['n']:,.0f} × {len(r['runs'])} | "
                f"{fmt(r['median'])} {r['unit']} | {ratio(r, base)} | "
                f"{note_of(r)} |")
    return out


def hot_paths(rows):
    """The Lua rows measured on both clocks, side by side, with the naive
    binding's row of the same bench from the real-clock process."""
    both = {}
    naive = {}
    for r in rows:
        if "median" not in r or "clock" not in r:
            continue
        if r["impl"] == NAIVE:
            if r["clock"] == "real":
                naive[r["bench"]] = r
            continue
        both.setdefault((r["bench"], r["case"], r["impl"]), {})[r["clock"]] = r
    out = ["", "Hot paths from Lua on both clocks (median ns/op; × naive: "
           "real clock over the naive classic C-API binding measured in the "
           "same real-clock process, " + ", ".join(
               f"{b}: {fmt(n['median'])} ns ({n.get('note', '')})"
               for b, n in naive.items()) + "):", "",
           "| Benchmark | Case | Implementation | Real clock | Virtual clock | "
           "× naive (real) |", "|---|---|---|---:|---:|---:|"]
    for (bench, case, impl), by in both.items():
        if "real" not in by:
            continue
        real, virt = by["real"], by.get("virtual")
        n = naive.get(bench)
        ratio_n = f"{real['median'] / n['median']:.2g}×" if n else ""
        out.append(f"| {bench} | {case} | {impl} | {fmt(real['median'])} | "
                   f"{fmt(virt['median']) if virt else ''} | {ratio_n} |")
    return out if len(out) > 4 else []


def skipped(rows, failures):
    """Rows a contender reported it could not measure, one line per
    contender and reason, then contenders that did not run at all."""
    grouped = {}
    for r in rows:
        if "skip" in r:
            grouped.setdefault((r["bench"], r["impl"], r["skip"]), []).append(r["case"])
    out = [f"- {b}, {impl} ({'; '.join(cases)}): {why}"
           for (b, impl, why), cases in grouped.items()]
    out += [f"- {who}: {why}" for who, why in failures]
    return ["", "Not measured in this run:"] + out if out else []


def main():
    rows = load(sys.argv[1])
    with open(sys.argv[2]) as f:
        failures = [line.rstrip("\n").split("\t", 1) for line in f if line.strip()]
    print("\n".join(table(rows) + hot_paths(rows) + skipped(rows, failures)))


if __name__ == "__main__":
    main()
