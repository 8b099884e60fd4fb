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

With --leases (candidate lease lengths in steps, longest first, as the simulator's 10,5,4) it also asks,
at every moment a plan was made, whether the store rose past that plan's bound before a lease given then
would have ended (after the blind spot): what a charger that lost us at that moment would have been
exposed to. Once with every lease at the longest, once with the lease the balancer picks from the four
weeks (the longest in which the history never rose past its own bound; the shortest if none).

    python3 end2end/lb/store_rise.py --days 1-100 --headroom 10 --leases 10,5,4
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


def held_rises(x, lens, horizon, hold):
    """Each reading's rise above the lowest of the lens's references from `horizon + hold` to `horizon`
    steps before it: how far past a plan made then it rose while a lease given then still held."""
    refs = [reference(x, k, *lens) for k in range(len(x))]
    return [x[k] - min(refs[max(k - horizon - hold, 0):k - horizon + 1]) for k in range(horizon, len(x))]


def passed_within(x, b, horizon, hold):
    """How many plans (made at each reference moment, bound b) the store rose past before a lease
    given then ended: any reading from `horizon` to `horizon + hold` steps after it above b."""
    n = 0
    for j, limit in enumerate(b):
        if max(x[j + horizon:j + horizon + hold + 1]) > limit:
            n += 1
    return n


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
    ap.add_argument("--leases", default=None, help="candidate lease lengths in steps, longest first")
    a = ap.parse_args()
    work = a.work or tempfile.mkdtemp(prefix="store-rise-")
    os.makedirs(work, exist_ok=True)
    first, _, last = a.days.partition("-")
    seeds = range(int(first), int(last or first) + 1)
    lenses = [tuple(int(v) for v in lens.split(":")) for lens in a.lenses.split(",")]
    for pct in [int(p) for p in a.headroom.split(",")]:
        exceeded, worst, steps, slack = 0, float("-inf"), 0, 0.0
        leases = [int(v) for v in a.leases.split(",")] if a.leases else []
        fixed_passed, sized_passed, picked = 0, 0, {}
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
            if leases:
                # The lease is the site's, over every phase and lens: the longest one the history held.
                def holds(hold):
                    for p in PHASES:
                        for lens in lenses:
                            a_l = (1 + pct / 100) * max(max(rises(h[p], lens, a.horizon)) for h in week)
                            if max(max(held_rises(h[p], lens, a.horizon, hold)) for h in week) > a_l:
                                return False
                    return True
                lease = next((hold for hold in leases if holds(hold)), leases[-1])
                picked[lease] = picked.get(lease, 0) + 1
                for p in PHASES:
                    allowances = [(1 + pct / 100) * max(max(rises(h[p], lens, a.horizon)) for h in week) for lens in lenses]
                    b = bounds(today[p], lenses, allowances, a.horizon)
                    fixed_passed += passed_within(today[p], b, a.horizon, leases[0])
                    sized_passed += passed_within(today[p], b, a.horizon, lease)
        print(f"lenses {a.lenses}, headroom {pct} %: the store rose past the learned bound on {exceeded} of {steps} phase-steps "
              f"({len(seeds)} days); closest {worst:+.1f} A; mean bound above the load {slack / steps:.2f} A")
        if leases:
            print(f"  plans the store rose past before a lease given then ended: {fixed_passed} of {steps} with "
                  f"{leases[0]}-step leases, {sized_passed} with leases sized to the store "
                  f"(days per lease picked: {dict(sorted(picked.items(), reverse=True))})")


if __name__ == "__main__":
    main()
