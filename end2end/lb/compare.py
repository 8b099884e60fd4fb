#!/usr/bin/env python3
"""Our load balancer beside the independent referee, on the same retail day.

Generates a day with the referee's generator (../shared/lb-bench), runs acnportal's algorithms on it,
drives our real balancer through it (`forecourt lb-bench`), has the referee score our pilots by replay
with its own physics, and prints one table. With meter lag or latency, acnportal's algorithms overload;
so the best of them are also run with the smallest whole-amp grid margin that stops their overloads, which is what an operator would have to configure to run it safely.

    python end2end/lb/compare.py --seed 1                                # no delays, with the LP ceiling
    python end2end/lb/compare.py --seed 1 --meter-lag 1 --latency-steps 1
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLUMNS = [
    ("algo", "allocator"),
    ("energy_pct", "energy %"),
    ("pct_of_lp", "% of LP"),
    ("satisfied_pct", "fully served %"),
    ("jain_frac_served", "Jain"),
    ("min_frac_served", "worst served"),
    ("max_overload_grid_a", "grid over A"),
    ("max_overload_feeder_a", "feeder over A"),
    ("margin_a", "margin A"),
    ("ms_per_call_mean", "ms/call"),
]


def run(cmd, **kw):
    print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
    return subprocess.run(cmd, check=True, **kw)


def referee(python, bench, day, out, scenario, extra):
    run([python, os.path.join(bench, "acn_bench.py"), day, *scenario, *extra, "--json-out", out],
        stdout=subprocess.DEVNULL)
    with open(out) as f:
        return json.load(f)["results"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--connectors", type=int, default=16)
    ap.add_argument("--grid-kw", type=float, default=100)
    ap.add_argument("--meter-lag", type=int, default=0)
    ap.add_argument("--latency-steps", type=int, default=0)
    ap.add_argument("--default-a", type=float, default=0)
    ap.add_argument("--ev-max-known", action="store_true")
    ap.add_argument("--algos", default="RoundRobin,FCFS,EDF,LLF,LLF+min")
    ap.add_argument("--margin-algos", default="RoundRobin,LLF+min", help="with delays: find these algorithms' safe margin")
    ap.add_argument("--no-lp", action="store_true", help="skip the perfect-hindsight LP ceiling")
    ap.add_argument("--bench", default=os.path.join(ROOT, "..", "shared", "lb-bench"), help="the referee's folder")
    ap.add_argument("--forecourt", default=os.path.join(ROOT, "target", "release", "forecourt"))
    ap.add_argument("--python", default=sys.executable, help="a Python with acnportal 0.3.3")
    ap.add_argument("--work", default=None, help="keep the day, pilots and raw results here")
    ap.add_argument("--json-out", default=None)
    a = ap.parse_args()

    work = a.work or tempfile.mkdtemp(prefix="lb-compare-")
    os.makedirs(work, exist_ok=True)
    day = os.path.join(work, f"day-s{a.seed}-c{a.connectors}-{a.grid_kw:g}kw.json")
    if not os.path.exists(day):
        run([a.python, os.path.join(a.bench, "gen_workload.py"), "--seed", str(a.seed), "--connectors",
             str(a.connectors), "--grid-kw", str(a.grid_kw), "-o", day])
    scenario = ["--meter-lag", str(a.meter_lag), "--latency-steps", str(a.latency_steps),
                "--default-a", str(a.default_a)] + (["--ev-max-known"] if a.ev_max_known else [])
    delays = a.meter_lag > 0 or a.latency_steps > 0

    rows = referee(a.python, a.bench, day, os.path.join(work, "acn.json"), scenario,
                   ["--algos", a.algos] + ([] if a.no_lp else ["--offline"]))
    lp = next((r["energy_pct"] for r in rows if r["algo"].startswith("Offline-LP")), None)
    if delays:
        # The smallest whole-amp margin that stops each algorithm overloading (bisection: a larger
        # margin never overloads more).
        base = {r["algo"]: r for r in rows}
        for algo in a.margin_algos.split(","):
            def safe(margin):
                res = referee(a.python, a.bench, day, os.path.join(work, f"acn-{algo}-m{margin}.json"), scenario,
                              ["--algos", algo, "--margin-a", str(margin)])[0]
                return res if res["max_overload_grid_a"] == 0 and res["max_overload_feeder_a"] == 0 else None
            if algo in base and base[algo]["max_overload_grid_a"] == 0 and base[algo]["max_overload_feeder_a"] == 0:
                continue
            lo, hi = 0, 32
            best = safe(hi)
            if best is None:
                continue
            while hi - lo > 1:
                mid = (lo + hi) // 2
                res = safe(mid)
                if res is None:
                    lo = mid
                else:
                    hi, best = mid, res
            best["algo"] = f"{algo} (smallest safe margin)"
            best["margin_a"] = float(hi)
            rows.append(best)

    ours_flags = ["--meter-lag", str(a.meter_lag), "--latency-steps", str(a.latency_steps),
                  "--default-a", str(int(a.default_a))] + (["--ev-max-known"] if a.ev_max_known else [])
    pilots = os.path.join(work, "ours-pilots.json")
    own = run([a.forecourt, "lb-bench", day, "-o", pilots, *ours_flags], stdout=subprocess.PIPE, text=True)
    own = json.loads(own.stdout)
    ours = referee(a.python, a.bench, day, os.path.join(work, "ours.json"), scenario, ["--replay", pilots])[0]
    ours["algo"] = "Forecourt (scored by the referee)"
    ours["ms_per_call_mean"] = round(own["ms_per_call_mean"], 3)
    rows.insert(0, ours)

    for r in rows:
        r.setdefault("margin_a", 0.0)
        if lp and not r["algo"].startswith("Offline"):
            r["pct_of_lp"] = round(100 * r["energy_pct"] / lp, 1)
    print(f"seed {a.seed}, {a.connectors} connectors, {a.grid_kw:g} kW, meter lag {a.meter_lag}, "
          f"latency {a.latency_steps}, default {a.default_a:g} A, car maximum known: {a.ev_max_known}")
    if delays and lp is None and not a.no_lp:
        print("(the LP ceiling has no delays: it is the same day's bound without them)")
    widths = [max(len(h), *(len(str(r.get(k, ""))) for r in rows)) for k, h in COLUMNS]
    print("| " + " | ".join(h.ljust(w) for (_, h), w in zip(COLUMNS, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(str(r.get(k, "")).ljust(w) for (k, _), w in zip(COLUMNS, widths)) + " |")
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump({"scenario": vars(a), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
