#!/usr/bin/env python3
"""How often the store would have risen past the bound our balancer learns, on generated days.

The balancer (server/src/balancer/store.rs) learns, per phase and per reference ("lens": the
rank-th highest of the readings of a window), the largest rise of the store load over its blind spot
(here meter lag 1 + latency 1 = two steps) above that reference, over four weeks of history, plus a
headroom; it plans on the lowest over the lenses of reference plus rise. This replays that rule on the
referee's generated days, each with its own history (seeds 1000*i + seed, as compare.py gives the
balancer), and counts the steps where the day's store rose past the bound, whether or not the grid was
binding then.

    python3 end2end/lb/store_rise.py --days 1-100 --headroom 10,20
    python3 end2end/lb/store_rise.py --days 1-100 --history-days 7 --headroom 10,20   # the earlier week
    python3 end2end/lb/store_rise.py --days 1-12 --step-s 10 --horizon 7 --lenses 1:1,10:3,60:6
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

PHASES = ["L1", "L2", "L3"]


def day(bench, work, seed, step_s=60):
    path = os.path.join(work, f"day-s{seed}-c16-100kw-{step_s}s.json")
    if not os.path.exists(path):
        subprocess.run([sys.executable, os.path.join(bench, "gen_workload.py"), "--seed", str(seed), "--connectors",
                        "16", "--grid-kw", "100", "--step-s", str(step_s), "-o", path], check=True, stdout=subprocess.DEVNULL)
    with open(path) as f:
        return json.load(f)["site"]["base_load_a"]


def reference(x, k, window, rank):
    """The rank-th highest of the readings from `window` steps before k up to k (store.rs's Lens)."""
    seen = sorted(x[max(k - window, 0):k + 1], reverse=True)
    return seen[min(rank, len(seen)) - 1]


def rises(x, lens, horizon=2):
    """Each reading's rise above the lens's reference `horizon` steps before it."""
    return [x[k] - reference(x, k - horizon, *lens) for k in range(horizon, len(x))]


def bounds(x, lenses, allowances, horizon=2):
    """For each reading from `horizon` on, the lowest over the lenses of reference + allowance."""
    return [min(reference(x, k - horizon, *lens) + a for lens, a in zip(lenses, allowances)) for k in range(horizon, len(x))]


def main():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--days", default="1-40")
    ap.add_argument("--headroom", default="10,20", help="percent, comma-separated")
    ap.add_argument("--history-days", type=int, default=28)
    ap.add_argument("--step-s", type=int, default=60, help="the days' step (compare.py --step-s)")
    ap.add_argument("--horizon", type=int, default=2, help="the blind spot in steps: meter lag + latency")
    ap.add_argument("--lenses", default="1:1,10:3", help="window steps:rank, comma-separated (store.rs's from_four_weeks)")
    ap.add_argument("--bench", default=os.path.join(root, "..", "shared", "lb-bench"))
    ap.add_argument("--work", default=None)
    a = ap.parse_args()
    work = a.work or tempfile.mkdtemp(prefix="store-rise-")
    os.makedirs(work, exist_ok=True)
    first, _, last = a.days.partition("-")
    seeds = range(int(first), int(last or first) + 1)
    lenses = [tuple(int(v) for v in lens.split(":")) for lens in a.lenses.split(",")]
    for pct in [int(p) for p in a.headroom.split(",")]:
        exceeded, worst, steps, slack = 0, float("-inf"), 0, 0.0
        for s in seeds:
            today = day(a.bench, work, s, a.step_s)
            week = [day(a.bench, work, 1000 * i + s, a.step_s) for i in range(1, a.history_days + 1)]
            for p in PHASES:
                allowances = [(1 + pct / 100) * max(max(rises(h[p], lens, a.horizon)) for h in week) for lens in lenses]
                x = today[p][a.horizon:]
                b = bounds(today[p], lenses, allowances, a.horizon)
                steps += len(x)
                exceeded += sum(1 for v, limit in zip(x, b) if v > limit)
                worst = max(worst, max(v - limit for v, limit in zip(x, b)))
                slack += sum(limit - v for v, limit in zip(x, b))
        print(f"lenses {a.lenses}, headroom {pct} %: the store rose past the learned bound on {exceeded} of {steps} phase-steps "
              f"({len(seeds)} days); closest {worst:+.1f} A; mean bound above the load {slack / steps:.2f} A")


if __name__ == "__main__":
    main()
