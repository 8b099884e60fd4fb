#!/usr/bin/env python3
"""How often the store would have risen past the bound our balancer learns, on generated days.

The balancer (server/src/balancer/store.rs) learns, per phase, the largest rise of the store load over
its blind spot (here meter lag 1 + latency 1 = two steps) above the higher of the two readings before,
over a week of history, plus a headroom. This replays that rule on the referee's generated days, each
with its own week (seeds 1000*i + seed, as compare.py gives the balancer), and counts the steps where the
day's store rose past the bound, whether or not the grid was binding then.

    python3 end2end/lb/store_rise.py --days 1-40 --headroom 10,20
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

PHASES = ["L1", "L2", "L3"]


def day(bench, work, seed):
    path = os.path.join(work, f"day-s{seed}-c16-100kw.json")
    if not os.path.exists(path):
        subprocess.run([sys.executable, os.path.join(bench, "gen_workload.py"), "--seed", str(seed), "--connectors",
                        "16", "--grid-kw", "100", "-o", path], check=True, stdout=subprocess.DEVNULL)
    with open(path) as f:
        return json.load(f)["site"]["base_load_a"]


def rises(x, horizon=2, window=2):
    """Each reading's rise above the highest of `window` readings `horizon` steps before it."""
    return [x[k] - max(x[k - horizon - window + 1:k - horizon + 1]) for k in range(horizon + window - 1, len(x))]


def main():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--days", default="1-40")
    ap.add_argument("--headroom", default="10,20", help="percent, comma-separated")
    ap.add_argument("--history-days", type=int, default=7)
    ap.add_argument("--bench", default=os.path.join(root, "..", "shared", "lb-bench"))
    ap.add_argument("--work", default=None)
    a = ap.parse_args()
    work = a.work or tempfile.mkdtemp(prefix="store-rise-")
    first, _, last = a.days.partition("-")
    seeds = range(int(first), int(last or first) + 1)
    for pct in [int(p) for p in a.headroom.split(",")]:
        exceeded, worst, steps = 0, float("-inf"), 0
        for s in seeds:
            today = day(a.bench, work, s)
            week = [day(a.bench, work, 1000 * i + s) for i in range(1, a.history_days + 1)]
            for p in PHASES:
                bound = (1 + pct / 100) * max(max(rises(h[p])) for h in week)
                r = rises(today[p])
                steps += len(r)
                exceeded += sum(1 for v in r if v > bound)
                worst = max(worst, max(v - bound for v in r))
        print(f"headroom {pct} %: the store rose past the learned bound on {exceeded} of {steps} phase-steps "
              f"({len(seeds)} days); closest {worst:+.1f} A")


if __name__ == "__main__":
    main()
