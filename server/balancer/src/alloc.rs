//! The allocation kernel: admission at the 6 A floor, then weighted water-filling.
//!
//! Pure and index-based so it can be tested and timed alone. Constraints are
//! (node, phase) pairs flattened to `node * 3 + phase`; each demand lists the
//! constraints it loads (its circuit path times its phases).
//!
//! Safety is integer: the float water level only decides *how* to share, then every
//! share is floored to the granularity and re-checked against integer capacity.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

/// One session that wants current, in admission order (most deserving first).
#[derive(Clone, Debug)]
pub(crate) struct Demand {
    /// Range into the shared constraint list.
    pub cons: std::ops::Range<usize>,
    /// Most it can use, deciamps; at least `min` when it can charge at all.
    pub cap: u32,
    /// Share of the water-filling (priority x urgency), > 0.
    pub weight: f64,
}

/// A heap key: an f64 level with a total order (levels are never NaN here).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Level(f64);
impl Eq for Level {}
impl PartialOrd for Level {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Level {
    fn cmp(&self, o: &Self) -> Ordering {
        self.0.total_cmp(&o.0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    /// Demand `i` reaches its cap at this level.
    Cap(usize),
    /// Constraint `c` saturates at this level (valid while its version matches).
    Sat(usize, u32),
}

/// State of the progressive filling: per constraint the load at the level it was
/// last brought up to, and the slope (sum of weights of members still rising).
struct Fill {
    cap: Vec<f64>,
    members: Vec<Vec<usize>>,
    slope: Vec<f64>,
    used: Vec<f64>,
    at: Vec<f64>,
    version: Vec<u32>,
    saturated: Vec<bool>,
    frozen: Vec<bool>,
    extra: Vec<f64>,
    heap: BinaryHeap<Reverse<(Level, Ev)>>,
}

impl Fill {
    fn new(capacity: &[i64], n: usize) -> Fill {
        let nc = capacity.len();
        Fill {
            cap: capacity.iter().map(|&c| c.max(0) as f64).collect(),
            members: vec![Vec::new(); nc],
            slope: vec![0.0; nc],
            used: vec![0.0; nc],
            at: vec![0.0; nc],
            version: vec![0; nc],
            saturated: vec![false; nc],
            frozen: vec![true; n],
            extra: vec![0.0; n],
            heap: BinaryHeap::new(),
        }
    }

    /// Queues the level at which constraint `c` saturates, if anything still rises in it.
    fn predict(&mut self, c: usize) {
        if !self.saturated[c] && self.slope[c] > 1e-12 {
            let l = self.at[c] + (self.cap[c] - self.used[c]).max(0.0) / self.slope[c];
            self.heap.push(Reverse((Level(l), Ev::Sat(c, self.version[c]))));
        }
    }

    /// Demand `i` stops rising at level `lam` with `value` above its floor.
    fn freeze(&mut self, i: usize, lam: f64, value: f64, d: &Demand, cons: &[usize]) {
        self.frozen[i] = true;
        self.extra[i] = value;
        for &c in &cons[d.cons.clone()] {
            self.used[c] += self.slope[c] * (lam - self.at[c]);
            self.at[c] = lam;
            self.slope[c] -= d.weight;
            self.version[c] += 1;
            self.predict(c);
        }
    }
}

/// Allocates `capacity` (deciamps per constraint, may be negative = already over)
/// among `demands`. Returns deciamps per demand: 0 or in `[min, cap]`, multiples of
/// `gran`. `capacity` is left holding the residual.
///
/// 1. Admission: in the given order, a demand is admitted if `min` fits on every
///    constraint it loads (O(n·depth)).
/// 2. Water-filling of the residual over admitted demands above their floor:
///    progressive filling with a global level λ, each demand at `min + w·λ` up to
///    its cap; a constraint that saturates freezes its members. Event-driven with a
///    heap, so O(n·depth·log n) rather than one pass per saturated constraint.
/// 3. Floor to `gran`, repair any float excess, then hand out the leftover
///    granules in admission order.
pub(crate) fn allocate(
    capacity: &mut [i64],
    demands: &[Demand],
    cons: &[usize],
    min: u32,
    gran: u32,
) -> Vec<u32> {
    let n = demands.len();
    let mut out = vec![0u32; n];
    let gran = gran.max(1);

    // 1. admission at the floor
    let mut admitted = Vec::with_capacity(n);
    for (i, d) in demands.iter().enumerate() {
        if d.cap < min {
            continue;
        }
        let fits = cons[d.cons.clone()].iter().all(|&c| capacity[c] >= i64::from(min));
        if fits {
            for &c in &cons[d.cons.clone()] {
                capacity[c] -= i64::from(min);
            }
            out[i] = min;
            admitted.push(i);
        }
    }

    // 2. weighted progressive filling of the rest, in floats
    let mut f = Fill::new(capacity, n);
    for &i in &admitted {
        let d = &demands[i];
        let room = f64::from(d.cap - min);
        if room <= 0.0 {
            continue;
        }
        f.frozen[i] = false;
        f.heap.push(Reverse((Level(room / d.weight), Ev::Cap(i))));
        for &c in &cons[d.cons.clone()] {
            f.members[c].push(i);
            f.slope[c] += d.weight;
        }
    }
    for c in 0..f.cap.len() {
        f.predict(c);
    }
    while let Some(Reverse((Level(lam), ev))) = f.heap.pop() {
        match ev {
            Ev::Cap(i) => {
                if !f.frozen[i] {
                    f.freeze(i, lam, f64::from(demands[i].cap - min), &demands[i], cons);
                }
            }
            Ev::Sat(c, v) => {
                if f.saturated[c] || v != f.version[c] {
                    continue;
                }
                f.saturated[c] = true;
                for i in std::mem::take(&mut f.members[c]) {
                    if !f.frozen[i] {
                        let d = &demands[i];
                        f.freeze(i, lam, (d.weight * lam).min(f64::from(d.cap - min)), d, cons);
                    }
                }
            }
        }
    }
    let extra = f.extra;

    // 3. floor to granules, integer re-check, leftovers
    for &i in &admitted {
        let add = (extra[i].max(0.0).floor() as u32) / gran * gran;
        let add = add.min(demands[i].cap - min);
        if add > 0 {
            out[i] += add;
            for &c in &cons[demands[i].cons.clone()] {
                capacity[c] -= i64::from(add);
            }
        }
    }
    // Float error can only overshoot by a hair; take granules back from the largest
    // shares above the floor until every constraint is whole again.
    for c in 0..capacity.len() {
        while capacity[c] < 0 {
            let victim = admitted
                .iter()
                .copied()
                .filter(|&i| out[i] >= min + gran && cons[demands[i].cons.clone()].contains(&c))
                .max_by_key(|&i| (out[i], Reverse(i)));
            let Some(i) = victim else { break };
            out[i] -= gran;
            for &k in &cons[demands[i].cons.clone()] {
                capacity[k] += i64::from(gran);
            }
        }
    }
    // Leftover granules, one per demand per pass in admission order, until nobody can
    // take one more. After water-filling each constraint holds less than one granule
    // per member, so this ends after a pass or two.
    loop {
        let mut progress = false;
        for &i in &admitted {
            let d = &demands[i];
            if out[i] + gran <= d.cap && cons[d.cons.clone()].iter().all(|&c| capacity[c] >= i64::from(gran))
            {
                out[i] += gran;
                for &c in &cons[d.cons.clone()] {
                    capacity[c] -= i64::from(gran);
                }
                progress = true;
            }
        }
        if !progress {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(cons: std::ops::Range<usize>, cap: u32, weight: f64) -> Demand {
        Demand { cons, cap, weight }
    }

    struct Case {
        name: &'static str,
        capacity: Vec<i64>,
        cons: Vec<usize>,
        demands: Vec<Demand>,
        want: Vec<u32>,
    }

    #[test]
    fn table() {
        let cases = vec![
            Case {
                name: "equal split of one phase",
                capacity: vec![300],
                cons: vec![0, 0, 0],
                demands: vec![d(0..1, 320, 1.0), d(1..2, 320, 1.0), d(2..3, 320, 1.0)],
                want: vec![100, 100, 100],
            },
            Case {
                name: "capped car gives its share to others",
                capacity: vec![500],
                cons: vec![0, 0, 0],
                demands: vec![d(0..1, 100, 1.0), d(1..2, 320, 1.0), d(2..3, 320, 1.0)],
                want: vec![100, 200, 200],
            },
            Case {
                name: "weights",
                capacity: vec![300],
                cons: vec![0, 0],
                demands: vec![d(0..1, 320, 1.0), d(1..2, 320, 2.0)],
                // floors 60 each, remaining 180 split 1:2
                want: vec![120, 180],
            },
            Case {
                name: "floor cannot be met for all: last in order waits",
                capacity: vec![150],
                cons: vec![0, 0, 0],
                demands: vec![d(0..1, 320, 1.0), d(1..2, 320, 1.0), d(2..3, 320, 1.0)],
                want: vec![75, 75, 0],
            },
            Case {
                name: "nested: feeder binds, others take the rest of the grid",
                // constraint 0 = grid, 1 = feeder
                capacity: vec![600, 200],
                cons: vec![1, 0, 1, 0, 0],
                demands: vec![d(0..2, 320, 1.0), d(2..4, 320, 1.0), d(4..5, 320, 1.0)],
                want: vec![100, 100, 320],
            },
            Case {
                name: "three-phase car is held by its busiest phase",
                // L1, L2, L3 of one node; a 1-phase car on L1 competes
                capacity: vec![200, 320, 320],
                cons: vec![0, 1, 2, 0],
                demands: vec![d(0..3, 320, 1.0), d(3..4, 320, 1.0)],
                want: vec![100, 100],
            },
            Case {
                name: "over-committed constraint admits nobody",
                capacity: vec![-10],
                cons: vec![0],
                demands: vec![d(0..1, 320, 1.0)],
                want: vec![0],
            },
        ];
        for c in cases {
            let mut cap = c.capacity.clone();
            let got = allocate(&mut cap, &c.demands, &c.cons, 60, 1);
            assert_eq!(got, c.want, "{}", c.name);
            assert!(cap.iter().all(|&x| x >= 0 || c.capacity.iter().any(|&y| y < 0)), "{}", c.name);
        }
    }

    #[test]
    fn whole_amp_granules_never_exceed_capacity() {
        let mut cap = vec![333];
        let demands = vec![d(0..1, 320, 1.0), d(1..2, 320, 1.0), d(2..3, 320, 1.0)];
        let got = allocate(&mut cap, &demands, &[0, 0, 0], 60, 10);
        assert!(got.iter().all(|a| a % 10 == 0));
        assert_eq!(got.iter().sum::<u32>(), 330);
        assert_eq!(cap, vec![3]);
    }

    use proptest::prelude::*;

    proptest! {
        /// Safe, valid and efficient: nothing exceeds capacity, every share is 0 or in
        /// [floor, cap] in whole granules, and nobody admitted below its cap could take
        /// one more granule (capacity a car cannot use went to the others).
        #[test]
        fn shares_are_safe_valid_and_pareto_efficient(
            caps in prop::collection::vec(0i64..2000, 1..12),
            raw in prop::collection::vec((prop::collection::vec(any::<prop::sample::Index>(), 1..4), 0u32..400, 1u32..50), 0..40),
            gran in prop_oneof![Just(1u32), Just(10u32)],
        ) {
            let mut cons = Vec::new();
            let mut demands = Vec::new();
            for (cs, cap, w) in &raw {
                let start = cons.len();
                let mut mine: Vec<usize> = cs.iter().map(|i| i.index(caps.len())).collect();
                mine.sort_unstable();
                mine.dedup();
                cons.extend(mine);
                let cap = if *cap < 60 { *cap } else { cap / gran * gran };
                demands.push(Demand { cons: start..cons.len(), cap, weight: f64::from(*w) / 10.0 });
            }
            let mut residual = caps.clone();
            let out = allocate(&mut residual, &demands, &cons, 60, gran);
            let mut used = vec![0i64; caps.len()];
            for (d, &a) in demands.iter().zip(&out) {
                prop_assert!(a == 0 || (a >= 60 && a <= d.cap.max(60)), "share {a} outside [60, {}]", d.cap);
                prop_assert_eq!(a % gran, 0);
                for &c in &cons[d.cons.clone()] {
                    used[c] += i64::from(a);
                }
            }
            for c in 0..caps.len() {
                prop_assert!(used[c] <= caps[c], "constraint {c}: {} > {}", used[c], caps[c]);
                prop_assert_eq!(residual[c], caps[c] - used[c]);
            }
            for (d, &a) in demands.iter().zip(&out) {
                if a > 0 && a + gran <= d.cap {
                    let blocked = cons[d.cons.clone()].iter().any(|&c| residual[c] < i64::from(gran));
                    prop_assert!(blocked, "demand at {a} of cap {} could take another granule", d.cap);
                }
            }
        }
    }
}
