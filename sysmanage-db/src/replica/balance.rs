//! Balancing strategies and the peak-EWMA latency estimate, as pure functions.
//!
//! The router hands a strategy the replicas that qualify for a read (by
//! index, read lazily through a closure so power-of-two-choices touches only
//! two of them) plus its random number generator; nothing here reads a clock
//! or a lock.

use std::time::{Duration, Instant};

use sysmanage_core::SplitMix64;

use super::config::Strategy;

/// What a strategy knows about one qualifying replica.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    /// Relative weight, > 0 (drained nodes never become candidates).
    pub weight: f64,
    /// Peak-EWMA latency estimate, in seconds.
    pub latency_secs: f64,
    /// Requests the router has in flight on the node.
    pub in_flight: u32,
}

/// The smallest latency [`Candidate::p2c_cost`] uses (100 µs, about one
/// loopback round trip): an estimate that has decayed toward zero (or a node
/// never observed, with a zero initial latency) still pays for the requests
/// it has in flight.
pub const MIN_COST_LATENCY_SECS: f64 = 100e-6;

impl Candidate {
    /// Peak-EWMA load: latency × (in-flight + 1) ÷ weight, with the latency
    /// floored at [`MIN_COST_LATENCY_SECS`] so in-flight requests always count.
    ///
    /// ```
    /// use sysmanage_db::replica::Candidate;
    /// let idle = Candidate { weight: 1.0, latency_secs: 0.0, in_flight: 0 };
    /// let busy = Candidate { in_flight: 3, ..idle };
    /// assert!(busy.p2c_cost() > idle.p2c_cost());
    /// ```
    pub fn p2c_cost(&self) -> f64 {
        self.latency_secs.max(MIN_COST_LATENCY_SECS) * f64::from(self.in_flight.saturating_add(1))
            / self.weight
    }

    /// SysManage's response-time weight `max(0.1, 2.0 − latency_secs)`, times
    /// the configured weight.
    pub fn latency_weight(&self) -> f64 {
        self.weight * (2.0 - self.latency_secs).max(0.1)
    }
}

/// Picks one of `n` candidates (`0..n`), reading candidate `i` through `get`.
///
/// `turn` is a counter the caller increments per pick (used by
/// [`Strategy::RoundRobin`]). Returns `None` only when `n` is 0.
///
/// # Examples
/// ```
/// use sysmanage_core::SplitMix64;
/// use sysmanage_db::replica::{Candidate, Strategy, pick};
/// let nodes = [
///     Candidate { weight: 1.0, latency_secs: 0.010, in_flight: 4 },
///     Candidate { weight: 1.0, latency_secs: 0.001, in_flight: 0 },
/// ];
/// let mut rng = SplitMix64::new(7);
/// // With two candidates, P2C compares both and keeps the cheaper one.
/// assert_eq!(pick(Strategy::PowerOfTwoChoices, 2, |i| nodes[i], 0, &mut rng), Some(1));
/// ```
pub fn pick(
    strategy: Strategy,
    n: usize,
    get: impl Fn(usize) -> Candidate,
    turn: u64,
    rng: &mut SplitMix64,
) -> Option<usize> {
    match n {
        0 => return None,
        1 => return Some(0),
        _ => {}
    }
    let below = |rng: &mut SplitMix64, k: usize| rng.below(k as u64) as usize;
    Some(match strategy {
        Strategy::PowerOfTwoChoices => {
            let a = below(rng, n);
            let mut b = below(rng, n - 1);
            if b >= a {
                b += 1;
            }
            let (ca, cb) = (get(a).p2c_cost(), get(b).p2c_cost());
            // NaN-safe: a NaN cost never wins.
            if cb < ca || ca.is_nan() { b } else { a }
        }
        Strategy::LeastOutstanding => {
            let mut best = 0;
            let mut best_load = f64::INFINITY;
            let mut ties = 0u64;
            for i in 0..n {
                let c = get(i);
                let load = f64::from(c.in_flight) / c.weight;
                if load < best_load {
                    best = i;
                    best_load = load;
                    ties = 1;
                } else if load == best_load {
                    // Reservoir sampling keeps ties uniform.
                    ties += 1;
                    if rng.below(ties) == 0 {
                        best = i;
                    }
                }
            }
            best
        }
        Strategy::WeightedRandom => {
            let total: f64 = (0..n).map(|i| get(i).latency_weight()).sum();
            if !(total.is_finite() && total > 0.0) {
                return Some(below(rng, n));
            }
            let mut x = rng.next_f64() * total;
            for i in 0..n {
                x -= get(i).latency_weight();
                if x < 0.0 {
                    return Some(i);
                }
            }
            n - 1
        }
        Strategy::RoundRobin => (turn % n as u64) as usize,
    })
}

/// Peak-EWMA latency, as in Finagle and tower: a slower observation replaces
/// the estimate at once (the peak), a faster one is blended in with weight
/// `1 − exp(−Δt / τ)`, where Δt is the time since the previous observation.
///
/// # Examples
/// ```
/// use std::time::{Duration, Instant};
/// use sysmanage_db::replica::PeakEwma;
/// let t0 = Instant::now();
/// let mut e = PeakEwma::new(Duration::from_millis(5), Duration::from_secs(10));
/// e.observe(Duration::from_millis(50), t0);
/// assert_eq!(e.estimate(), Duration::from_millis(50)); // peaks jump up
/// e.observe(Duration::from_millis(1), t0 + Duration::from_secs(10));
/// // one time constant later, a fast reply pulls it 63 % of the way down
/// assert!((e.estimate().as_secs_f64() - 0.0190).abs() < 0.0005);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PeakEwma {
    estimate_secs: f64,
    tau_secs: f64,
    updated: Option<Instant>,
}

impl PeakEwma {
    /// Starts at `initial` with time constant `decay` (τ).
    pub fn new(initial: Duration, decay: Duration) -> Self {
        Self {
            estimate_secs: initial.as_secs_f64(),
            tau_secs: decay.as_secs_f64().max(f64::MIN_POSITIVE),
            updated: None,
        }
    }

    /// Records one observed latency at `now`.
    pub fn observe(&mut self, rtt: Duration, now: Instant) {
        let rtt = rtt.as_secs_f64();
        let elapsed = self.updated.map_or(f64::INFINITY, |t| {
            now.saturating_duration_since(t).as_secs_f64()
        });
        self.updated = Some(now);
        if rtt > self.estimate_secs {
            self.estimate_secs = rtt;
        } else {
            let decay = (-elapsed / self.tau_secs).exp();
            self.estimate_secs = self.estimate_secs * decay + rtt * (1.0 - decay);
        }
    }

    /// Decays the estimate toward zero for the time since the last update,
    /// as tower does when it reads an idle endpoint's load: a node that lost
    /// every comparison is tried again once its old peak has faded.
    pub fn decay(&mut self, now: Instant) {
        if let Some(t) = self.updated {
            let elapsed = now.saturating_duration_since(t).as_secs_f64();
            self.estimate_secs *= (-elapsed / self.tau_secs).exp();
            self.updated = Some(now);
        }
    }

    /// The current estimate.
    pub fn estimate(&self) -> Duration {
        Duration::from_secs_f64(self.estimate_secs)
    }

    /// The current estimate in seconds.
    pub fn estimate_secs(&self) -> f64 {
        self.estimate_secs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::{any, prop_assert, prop_assert_ne, prop_assume, proptest};
    use proptest::strategy::Strategy as _;

    const ALL: [Strategy; 4] = [
        Strategy::PowerOfTwoChoices,
        Strategy::LeastOutstanding,
        Strategy::WeightedRandom,
        Strategy::RoundRobin,
    ];

    fn counts(strategy: Strategy, nodes: &[Candidate], picks: u64) -> Vec<u64> {
        let mut rng = SplitMix64::new(42);
        let mut out = vec![0; nodes.len()];
        for turn in 0..picks {
            let i = pick(strategy, nodes.len(), |i| nodes[i], turn, &mut rng).unwrap();
            out[i] += 1;
        }
        out
    }

    fn equal(n: usize) -> Vec<Candidate> {
        vec![
            Candidate {
                weight: 1.0,
                latency_secs: 0.002,
                in_flight: 0
            };
            n
        ]
    }

    #[test]
    fn every_strategy_spreads_equal_nodes_evenly() {
        for strategy in ALL {
            let c = counts(strategy, &equal(4), 40_000);
            for (i, &k) in c.iter().enumerate() {
                assert!(
                    (9_000..=11_000).contains(&k),
                    "{strategy:?}: node {i} got {k} of 40000 ({c:?})"
                );
            }
        }
    }

    #[test]
    fn p2c_prefers_the_faster_node() {
        let mut nodes = equal(2);
        nodes[0].latency_secs = 0.020;
        let c = counts(Strategy::PowerOfTwoChoices, &nodes, 1_000);
        assert_eq!(c, [0, 1_000]);
        // With three nodes, the slow one loses every comparison it is drawn into.
        let mut nodes = equal(3);
        nodes[2].latency_secs = 0.050;
        let c = counts(Strategy::PowerOfTwoChoices, &nodes, 30_000);
        assert_eq!(c[2], 0, "{c:?}");
    }

    #[test]
    fn p2c_accounts_for_in_flight_and_weight() {
        let nodes = [
            Candidate {
                weight: 1.0,
                latency_secs: 0.001,
                in_flight: 9,
            }, // cost 0.010
            Candidate {
                weight: 1.0,
                latency_secs: 0.002,
                in_flight: 0,
            }, // cost 0.002
        ];
        assert_eq!(counts(Strategy::PowerOfTwoChoices, &nodes, 100), [0, 100]);
        let nodes = [
            Candidate {
                weight: 10.0,
                latency_secs: 0.010,
                in_flight: 0,
            }, // cost 0.001
            Candidate {
                weight: 1.0,
                latency_secs: 0.002,
                in_flight: 0,
            }, // cost 0.002
        ];
        assert_eq!(counts(Strategy::PowerOfTwoChoices, &nodes, 100), [100, 0]);
    }

    #[test]
    fn least_outstanding_picks_the_idlest() {
        let mut nodes = equal(3);
        nodes[0].in_flight = 3;
        nodes[1].in_flight = 1;
        nodes[2].in_flight = 2;
        assert_eq!(counts(Strategy::LeastOutstanding, &nodes, 50), [0, 50, 0]);
    }

    #[test]
    fn weighted_random_follows_sysmanage_latency_weights() {
        // rt 0.5 s → 1.5; rt 1.9 s → 0.1 (floor); rt 0 → 2.0.
        let nodes = [
            Candidate {
                weight: 1.0,
                latency_secs: 0.5,
                in_flight: 0,
            },
            Candidate {
                weight: 1.0,
                latency_secs: 1.9,
                in_flight: 0,
            },
            Candidate {
                weight: 1.0,
                latency_secs: 0.0,
                in_flight: 0,
            },
        ];
        assert!((nodes[1].latency_weight() - 0.1).abs() < 1e-12);
        let c = counts(Strategy::WeightedRandom, &nodes, 360_000);
        let total = 3.6;
        for (i, want) in [1.5, 0.1, 2.0].into_iter().enumerate() {
            let share = c[i] as f64 / 360_000.0;
            assert!(
                (share - want / total).abs() < 0.01,
                "node {i}: {share} vs {}",
                want / total
            );
        }
    }

    #[test]
    fn weighted_random_honours_configured_weights() {
        let mut nodes = equal(2);
        nodes[0].weight = 3.0;
        let c = counts(Strategy::WeightedRandom, &nodes, 40_000);
        let share = c[0] as f64 / 40_000.0;
        assert!((share - 0.75).abs() < 0.01, "{share}");
    }

    #[test]
    fn round_robin_cycles_in_order() {
        let mut rng = SplitMix64::new(1);
        let got: Vec<_> = (0..6)
            .map(|t| pick(Strategy::RoundRobin, 3, |i| equal(3)[i], t, &mut rng).unwrap())
            .collect();
        assert_eq!(got, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn empty_and_single_candidate_sets() {
        let mut rng = SplitMix64::new(1);
        for s in ALL {
            assert_eq!(pick(s, 0, |_| unreachable!(), 0, &mut rng), None);
            assert_eq!(pick(s, 1, |i| equal(1)[i], 5, &mut rng), Some(0));
        }
    }

    #[test]
    fn ewma_peaks_then_decays_exponentially() {
        let t0 = Instant::now();
        let tau = Duration::from_secs(10);
        let mut e = PeakEwma::new(Duration::from_millis(5), tau);
        // The first observation replaces the initial value when slower …
        e.observe(Duration::from_millis(100), t0);
        assert_eq!(e.estimate(), Duration::from_millis(100));
        // … and a fast observation after Δt = τ moves it (1 − e⁻¹) of the way.
        e.observe(Duration::ZERO, t0 + tau);
        let want = 0.100 * (-1.0f64).exp();
        assert!(
            (e.estimate_secs() - want).abs() < 1e-9,
            "{}",
            e.estimate_secs()
        );
        // Observations close together barely move it.
        let before = e.estimate_secs();
        e.observe(Duration::ZERO, t0 + tau + Duration::from_millis(1));
        assert!(before - e.estimate_secs() < before * 0.001);
        // A new peak wins at once.
        e.observe(Duration::from_secs(1), t0 + tau * 2);
        assert_eq!(e.estimate(), Duration::from_secs(1));
        // Idle, it fades toward zero: e⁻¹ after one time constant, e⁻² after two.
        e.decay(t0 + tau * 3);
        assert!((e.estimate_secs() - (-1.0f64).exp()).abs() < 1e-9);
        e.decay(t0 + tau * 4);
        assert!((e.estimate_secs() - (-2.0f64).exp()).abs() < 1e-9);
    }

    fn candidate() -> impl proptest::strategy::Strategy<Value = Candidate> {
        (0.01f64..100.0, 0.0f64..3.0, 0u32..1000).prop_map(|(weight, latency_secs, in_flight)| {
            Candidate {
                weight,
                latency_secs,
                in_flight,
            }
        })
    }

    proptest! {
        #[test]
        fn every_pick_is_in_range(
            nodes in proptest::collection::vec(candidate(), 1..40),
            seed in any::<u64>(),
            turn in any::<u64>(),
        ) {
            let mut rng = SplitMix64::new(seed);
            for s in ALL {
                let i = pick(s, nodes.len(), |i| nodes[i], turn, &mut rng).unwrap();
                prop_assert!(i < nodes.len());
            }
        }

        #[test]
        fn p2c_never_picks_the_strictly_worst_of_three_or_more(
            nodes in proptest::collection::vec(candidate(), 3..20),
            seed in any::<u64>(),
        ) {
            let costs: Vec<f64> = nodes.iter().map(Candidate::p2c_cost).collect();
            let max = costs.iter().cloned().fold(f64::MIN, f64::max);
            let worst: Vec<usize> = (0..nodes.len()).filter(|&i| costs[i] == max).collect();
            prop_assume!(worst.len() == 1);
            let mut rng = SplitMix64::new(seed);
            for _ in 0..50 {
                let i = pick(Strategy::PowerOfTwoChoices, nodes.len(), |i| nodes[i], 0, &mut rng).unwrap();
                prop_assert_ne!(i, worst[0]);
            }
        }

        #[test]
        fn ewma_stays_between_min_and_max_observation(
            rtts in proptest::collection::vec(0u64..10_000, 1..50),
            gaps in proptest::collection::vec(0u64..20_000, 50),
        ) {
            let t0 = Instant::now();
            let mut e = PeakEwma::new(Duration::from_micros(rtts[0]), Duration::from_secs(1));
            let mut t = t0;
            for (i, &r) in rtts.iter().enumerate() {
                t += Duration::from_millis(gaps[i]);
                e.observe(Duration::from_micros(r), t);
                let lo = *rtts[..=i].iter().min().unwrap() as f64 / 1e6;
                let hi = *rtts[..=i].iter().max().unwrap() as f64 / 1e6;
                prop_assert!(e.estimate_secs() >= lo - 1e-12 && e.estimate_secs() <= hi + 1e-12);
            }
        }
    }
}
