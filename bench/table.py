"""bench/table.py RESULTS FAILURES -- one markdown table from the
benchmark processes' result lines (one JSON object per line) and the list
of contenders that could not run (tab-separated: contender, reason).

Each row shows the median of its runs and its ratio to fusebox measured
in the same run: fusebox from Lua where that case has a Lua row, else
fusebox from C. A ratio above 1 means slower (or bigger) than fusebox.
"""
import json
import statistics
import sys

BENCH_ORDER = ["guarded call", "balanced pick", "registry at scale",
               "simulation"]
FUSEBOX = ["fusebox C", "fusebox Lua"]


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
    if base is None or base["impl"] == value["impl"]:
        return "1 (baseline)" if base is value else ""
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
    out = ["| Benchmark | Case | Implementation | Ops × runs | Median | "
           "× fusebox | Note |",
           "|---|---|---|---:|---:|---:|---|"]
    for key in order:
        group = sorted(cases[key], key=lambda r: (
            FUSEBOX.index(r["impl"]) if r["impl"] in FUSEBOX else 2))
        measured = {r["impl"]: r for r in group if "median" in r}
        base = measured.get("fusebox Lua") or measured.get("fusebox C")
        for r in group:
            if "skip" in r:
                continue
            out.append(
                f"| {key[0]} | {key[1]} | {r['impl']} | "
                f"{r['n']:,.0f} × {len(r['runs'])} | "
                f"{fmt(r['median'])} {r['unit']} | {ratio(r, base)} | "
                f"{note_of(r)} |")
    return out


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
    print("\n".join(table(rows) + skipped(rows, failures)))


if __name__ == "__main__":
    main()
