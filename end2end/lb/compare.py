#!/usr/bin/env python3
"""Our load balancer beside the independent referee, on the same retail day.

Generates a day with the referee's generator (../shared/lb-bench), runs acnportal's algorithms on it,
drives our real balancer through it (`forecourt lb-bench`), has the referee score our pilots by replay
with its own physics, and prints one table. With meter lag or latency, acnportal's algorithms overload;
so the best of them are also run with the smallest whole-amp grid margin that stops their overloads, which is what an operator would have to configure to run it safely.

    python end2end/lb/compare.py --seed 1                                # no delays, with the LP ceilings
    python end2end/lb/compare.py --seed 1 --meter-lag 1 --latency-steps 1
    python end2end/lb/compare.py --seeds 1-12 --meter-lag 1 --latency-steps 1   # many days, margins held out

Our balancer gets four weeks of the same site's store meter history (28 more generated days, seeds
1000·i + seed): it learns from it how far the store can rise while the meter is blind. With --seeds, each
acnportal algorithm in --margin-algos gets the margin an operator would have set from the other days (the
largest of their smallest safe margins), and the smallest safe margin of the day itself (hindsight) beside it.
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


def fair_ceiling(python, bench, day):
    """The referee's other hindsight bound: the worst-served session's share as high as it can be,
    then as much energy as that allows (the energy ceiling gets there by starving sessions)."""
    out = run([python, os.path.join(bench, "offline_opt.py"), day], stdout=subprocess.PIPE, text=True).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return next((r for r in rows if "max-min" in r["algo"]), None)


HISTORY_DAYS = 28


def step_tag(a):
    return "" if a.step_s == 60 else f"-{a.step_s}s"


def generate(a, seed):
    feeder = "" if a.feeder_a is None else f"-f{a.feeder_a:g}a"
    day = os.path.join(a.work, f"day-s{seed}-c{a.connectors}-{a.grid_kw:g}kw{feeder}{step_tag(a)}.json")
    if not os.path.exists(day):
        run([a.python, os.path.join(a.bench, "gen_workload.py"), "--seed", str(seed), "--connectors",
             str(a.connectors), "--grid-kw", str(a.grid_kw), "--step-s", str(a.step_s), "-o", day]
            + ([] if a.feeder_a is None else ["--feeder-a", f"{a.feeder_a:g}"]),
            stdout=subprocess.DEVNULL)
    return day


def history(a, seed):
    """The four weeks before the day: the same site, other days (the store meter history)."""
    return [generate(a, 1000 * i + seed) for i in range(1, HISTORY_DAYS + 1)]


def scenario_flags(a):
    return ["--meter-lag", str(a.meter_lag), "--latency-steps", str(a.latency_steps),
            "--default-a", str(a.default_a)] + (["--ev-max-known"] if a.ev_max_known else []) + \
        (["--battery", "taper"] if a.taper else [])


def ours(a, seed):
    """Our balancer through the day, scored by the referee's replay."""
    day = generate(a, seed)
    flags = ["--meter-lag", str(a.meter_lag), "--latency-steps", str(a.latency_steps),
             "--default-a", str(int(a.default_a))] + (["--ev-max-known"] if a.ev_max_known else []) + \
        (["--taper"] if a.taper else []) + a.ours_flag
    for h in history(a, seed):
        flags += ["--store-history", h]
    pilots = os.path.join(a.work, f"ours-pilots-s{seed}.json")
    own = run([a.forecourt, "lb-bench", day, "-o", pilots, *flags], stdout=subprocess.PIPE, text=True)
    own = json.loads(own.stdout)
    row = referee(a.python, a.bench, day, os.path.join(a.work, f"ours-s{seed}.json"), scenario_flags(a),
                  ["--replay", pilots])[0]
    row["algo"] = "Forecourt (scored by the referee)"
    row["ms_per_call_mean"] = round(own["ms_per_call_mean"], 3)
    row["learned_rise_a"] = own.get("learned_store_rise_a")
    return row


def safe(row):
    return row["max_overload_grid_a"] == 0 and row["max_overload_feeder_a"] == 0


def at_margin(a, seed, algo, margin):
    """One acnportal run with a grid margin; kept in --work, so a long comparison can be resumed."""
    tag = "-".join(scenario_flags(a)).replace("--", "") + step_tag(a)
    out = os.path.join(a.work, f"acn-{algo}-s{seed}-m{margin}-{tag}.json")
    if os.path.exists(out):
        with open(out) as f:
            return json.load(f)["results"][0]
    return referee(a.python, a.bench, generate(a, seed), out, scenario_flags(a),
                   ["--algos", algo, "--margin-a", str(margin)])[0]


def smallest_safe_margin(a, seed, algo):
    """The smallest whole-amp margin that stops the algorithm overloading on that day (bisection: a
    larger margin never overloads more), and its row; (None, None) if even 32 A does not."""
    lo, hi = -1, 32
    best = at_margin(a, seed, algo, hi)
    if not safe(best):
        return None, None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        res = at_margin(a, seed, algo, mid)
        if safe(res):
            hi, best = mid, res
        else:
            lo = mid
    return hi, best


def table(rows, columns):
    widths = [max(len(h), *(len(str(r.get(k, ""))) for r in rows)) for k, h in columns]
    print("| " + " | ".join(h.ljust(w) for (_, h), w in zip(columns, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(str(r.get(k, "")).ljust(w) for (k, _), w in zip(columns, widths)) + " |")


def many_days(a):
    """Every day of --seeds: ours, and each margin algorithm with the margin the other days call for."""
    first, _, last = a.seeds.partition("-")
    seeds = list(range(int(first), int(last or first) + 1))
    algos = [x for x in a.margin_algos.split(",") if x]
    rows = {s: {"seed": s} for s in seeds}
    for s in seeds:
        r = ours(a, s)
        rows[s].update(ours_pct=r["energy_pct"], ours_over=max(r["max_overload_grid_a"], r["max_overload_feeder_a"]),
                       ours_rise="/".join(f"{x:g}" for x in (r["learned_rise_a"] or [])) or "configured")
    smallest = {}
    for algo in algos:
        for s in seeds:
            smallest[algo, s], row = smallest_safe_margin(a, s, algo)
            rows[s][f"{algo}_hind"] = f"{row['energy_pct']} ({smallest[algo, s]} A)" if row else "unsafe at 32 A"
        for s in seeds:
            others = [smallest[algo, t] for t in seeds if t != s and smallest[algo, t] is not None]
            if not others:
                continue
            m = max(others)
            row = at_margin(a, s, algo, m)
            over = max(row["max_overload_grid_a"], row["max_overload_feeder_a"])
            rows[s][f"{algo}_held"] = f"{row['energy_pct']} ({m} A)" + (f", over {over} A" if over else "")
            rows[s][f"{algo}_held_pct"] = row["energy_pct"]
    print(f"{len(seeds)} days (seeds {a.seeds}), {a.connectors} connectors, {a.grid_kw:g} kW, {a.step_s} s steps, meter lag {a.meter_lag}, "
          f"latency {a.latency_steps}, default {a.default_a:g} A; energy % of requested")
    columns = [("seed", "seed"), ("ours_pct", "Forecourt"), ("ours_over", "over A"), ("ours_rise", "learned rise A")]
    for algo in algos:
        columns += [(f"{algo}_held", f"{algo}, margin from the other days"), (f"{algo}_hind", f"{algo}, the day's own smallest safe margin")]
    out = [rows[s] for s in seeds]
    mean = {"seed": "mean", "ours_pct": round(sum(r["ours_pct"] for r in out) / len(out), 2)}
    for algo in algos:
        held = [r[f"{algo}_held_pct"] for r in out if f"{algo}_held_pct" in r]
        if held:
            mean[f"{algo}_held"] = round(sum(held) / len(held), 2)
    table(out + [mean], columns)
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump({"scenario": vars(a), "rows": out}, f, indent=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--connectors", type=int, default=16)
    ap.add_argument("--grid-kw", type=float, default=100)
    ap.add_argument("--feeder-a", type=float, default=None, help="feeder breaker per phase, amps (the generator's default: 63)")
    ap.add_argument("--step-s", type=int, default=60, help="the day's step; lag and latency are counted in steps")
    ap.add_argument("--meter-lag", type=int, default=0)
    ap.add_argument("--latency-steps", type=int, default=0)
    ap.add_argument("--default-a", type=float, default=0)
    ap.add_argument("--ev-max-known", action="store_true")
    ap.add_argument("--taper", action="store_true", help="batteries take less above 80 %% state of charge")
    # RR+rampdown: round robin with acnportal's SimpleRampdown, which learns what each car draws as we do.
    ap.add_argument("--algos", default="RoundRobin,RR+rampdown,FCFS,EDF,LLF,LLF+min,LLF+rampdown")
    ap.add_argument("--margin-algos", default="RoundRobin,RR+rampdown,LLF+min",
                    help="with delays: find these algorithms' safe margin")
    ap.add_argument("--no-lp", action="store_true", help="skip the perfect-hindsight LP ceiling")
    ap.add_argument("--bench", default=os.path.join(ROOT, "..", "shared", "lb-bench"), help="the referee's folder")
    ap.add_argument("--forecourt", default=os.path.join(ROOT, "target", "release", "forecourt"))
    ap.add_argument("--python", default=sys.executable, help="a Python with acnportal 0.3.3")
    ap.add_argument("--work", default=None, help="keep the day, pilots and raw results here")
    ap.add_argument("--json-out", default=None)
    ap.add_argument("--ours-flag", action="append", default=[],
                    help="an extra flag for our lb-bench run (repeatable; e.g. --ours-flag=--no-handover)")
    ap.add_argument("--seeds", default=None, help="many days, e.g. 1-12: a table of energy per day (needs delays)")
    a = ap.parse_args()

    a.work = a.work or tempfile.mkdtemp(prefix="lb-compare-")
    os.makedirs(a.work, exist_ok=True)
    work = a.work
    delays = a.meter_lag > 0 or a.latency_steps > 0
    if a.seeds:
        if not delays:
            ap.error("--seeds compares margins, which only delays call for: add --meter-lag or --latency-steps")
        return many_days(a)
    day = generate(a, a.seed)
    scenario = scenario_flags(a)

    rows = referee(a.python, a.bench, day, os.path.join(work, "acn.json"), scenario,
                   ["--algos", a.algos] + ([] if a.no_lp else ["--offline"]))
    lp = next((r["energy_pct"] for r in rows if r["algo"].startswith("Offline-LP")), None)
    if lp is not None:
        fair = fair_ceiling(a.python, a.bench, day)
        if fair:
            rows.append(fair)
    if delays:
        base = {r["algo"]: r for r in rows}
        for algo in [x for x in a.margin_algos.split(",") if x]:
            if algo in base and safe(base[algo]):
                continue
            margin, best = smallest_safe_margin(a, a.seed, algo)
            if best is None:
                continue
            best["algo"] = f"{algo} (smallest safe margin)"
            best["margin_a"] = float(margin)
            rows.append(best)

    rows.insert(0, ours(a, a.seed))

    for r in rows:
        r.setdefault("margin_a", 0.0)
        if lp and not r["algo"].startswith("Offline"):
            r["pct_of_lp"] = round(100 * r["energy_pct"] / lp, 1)
    print(f"seed {a.seed}, {a.connectors} connectors, {a.grid_kw:g} kW, {a.step_s} s steps, meter lag {a.meter_lag}, "
          f"latency {a.latency_steps}, default {a.default_a:g} A, car maximum known: {a.ev_max_known}, taper: {a.taper}")
    if delays and lp is None and not a.no_lp:
        print("(the LP ceiling has no delays: it is the same day's bound without them)")
    table(rows, COLUMNS)
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump({"scenario": vars(a), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
