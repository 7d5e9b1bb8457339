//! `SeasonalMedian`: burst-robust seasonal forecasts that score themselves.

use std::time::Duration;

use sysmanage_core::{LoadForecast, Timestamp};
use sysmanage_scaling::{ScalingError, SeasonalMedian};

const MIN: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

fn at(minute: i64) -> Timestamp {
    Timestamp::from_secs(minute * 60)
}

/// A "day" of two hours at one-minute steps: a ramp from 100 to 219.
fn ramp(minute: i64) -> f64 {
    100.0 + (minute % 120) as f64
}

fn forecaster(seasons: usize) -> SeasonalMedian {
    SeasonalMedian::new("rps", MIN, 2 * HOUR, 10 * MIN)
        .unwrap()
        .with_seasons(seasons)
        .unwrap()
}

#[test]
fn repeats_a_periodic_signal_and_scores_itself_near_zero() {
    let f = forecaster(3);
    assert!(f.recent_error("rps").is_none());
    for m in 0..600 {
        f.observe(at(m), ramp(m));
    }
    let fc = f.forecast("rps", at(599), 10 * MIN).unwrap();
    assert_eq!(fc.point, ramp(609));
    assert_eq!(fc.at, at(609));
    assert!(fc.lower <= fc.point && fc.point <= fc.upper);
    // the median absolute error, as the upper edge of its 1 % bin
    assert_eq!(f.recent_error("rps"), Some(0.01));
    assert_eq!(f.recent_error("other"), None);
    // the peak over the next 30 minutes: the ramp's top, 219 at minute 719
    let peak = f.forecast_max("rps", at(690), 30 * MIN, MIN).unwrap();
    assert_eq!((peak.point, peak.at), (219.0, at(719)));
}

#[test]
fn one_bursty_season_does_not_move_the_median() {
    let f = forecaster(5);
    for m in 0..600 {
        // minutes 500..510 of the last season triple: a burst
        let burst = if (500..510).contains(&m) { 3.0 } else { 1.0 };
        f.observe(at(m), ramp(m) * burst);
    }
    // the same phase next season (minute 620 = phase 20, burst at phases 20..30)
    let fc = f.forecast("rps", at(599), 21 * MIN).unwrap();
    assert!((fc.point - ramp(620)).abs() < 1.0, "{fc:?}");
    // one season of memory (seasonal naive) repeats the burst
    let naive = forecaster(1);
    for m in 0..600 {
        let burst = if (500..510).contains(&m) { 3.0 } else { 1.0 };
        naive.observe(at(m), ramp(m) * burst);
    }
    let fc = naive.forecast("rps", at(599), 21 * MIN).unwrap();
    assert!(fc.point > 2.5 * ramp(620), "{fc:?}");
}

#[test]
fn the_level_follows_a_shift_of_the_whole_signal() {
    let f = forecaster(3);
    for m in 0..480 {
        f.observe(at(m), ramp(m));
    }
    // from minute 480 on, the load is 1.5 times the usual
    for m in 480..600 {
        f.observe(at(m), 1.5 * ramp(m));
    }
    let fc = f.forecast("rps", at(599), 10 * MIN).unwrap();
    let expected = 1.5 * ramp(609);
    assert!((fc.point / expected - 1.0).abs() < 0.01, "{fc:?}");
    // and the errors it measured while adapting widen the interval upwards
    assert!(fc.upper > fc.point);
}

#[test]
fn noise_raises_the_measured_error() {
    let quiet = forecaster(5);
    let noisy = forecaster(5);
    let mut x: u64 = 7;
    for m in 0..1200 {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let u = (x >> 11) as f64 / (1u64 << 53) as f64; // [0, 1)
        quiet.observe(at(m), ramp(m));
        noisy.observe(at(m), ramp(m) * (0.7 + 0.6 * u));
    }
    let q = quiet.recent_error("rps").unwrap();
    let n = noisy.recent_error("rps").unwrap();
    assert!(q <= 0.01 && n > 0.1, "quiet {q}, noisy {n}");
    let fc = noisy.forecast("rps", at(1199), 10 * MIN).unwrap();
    assert!(
        fc.upper > 1.1 * fc.point && fc.lower < 0.9 * fc.point,
        "{fc:?}"
    );
}

#[test]
fn bad_observations_and_repeated_slots_are_ignored() {
    let f = forecaster(3);
    for m in 0..300 {
        f.observe(at(m), ramp(m));
        // a second value for the same minute, NaN, infinite and negative values
        f.observe(at(m), 1e9);
        f.observe(at(m) + Duration::from_secs(30), 1e9);
        f.observe(at(m + 1), f64::NAN);
        f.observe(at(m + 1), f64::INFINITY);
        f.observe(at(m + 1), -5.0);
    }
    let fc = f.forecast("rps", at(299), 10 * MIN).unwrap();
    assert_eq!(fc.point, ramp(309));
    // an older slot after a newer one is ignored too
    f.observe(at(10), 1e9);
    assert_eq!(
        f.forecast("rps", at(299), 10 * MIN).unwrap().point,
        ramp(309)
    );
}

#[test]
fn too_little_data_unknown_metrics_and_long_horizons_are_errors() {
    let f = forecaster(3);
    assert!(matches!(
        f.forecast("rps", at(0), MIN),
        Err(sysmanage_core::Error::InsufficientData { .. })
    ));
    for m in 0..130 {
        f.observe(at(m), ramp(m));
    }
    assert!(f.forecast("rps", at(129), MIN).is_ok());
    assert!(matches!(
        f.forecast("cpu", at(129), MIN),
        Err(sysmanage_core::Error::Unknown { .. })
    ));
    // a season or more ahead: not from one season of history
    assert!(f.forecast("rps", at(129), 2 * HOUR).is_err());
    assert!(f.forecast_max("rps", at(129), MIN, Duration::ZERO).is_err());
    assert!(f.forecast_max("cpu", at(129), MIN, MIN).is_err());
}

#[test]
fn configuration_is_validated_with_the_field_named() {
    let field = |e: ScalingError| match e {
        ScalingError::OutOfRange { field, .. } | ScalingError::InvalidSpec { field, .. } => field,
        other => panic!("unexpected {other:?}"),
    };
    let new = |step, season, horizon| SeasonalMedian::new("rps", step, season, horizon);
    assert_eq!(
        field(SeasonalMedian::new("", MIN, HOUR, MIN).unwrap_err()),
        "seasonalMedian.signal"
    );
    assert_eq!(
        field(new(Duration::ZERO, HOUR, MIN).unwrap_err()),
        "seasonalMedian.step"
    );
    assert_eq!(
        field(new(Duration::from_secs(2 * 86_400), HOUR, MIN).unwrap_err()),
        "seasonalMedian.step"
    );
    assert_eq!(
        field(new(Duration::from_secs(7), HOUR, MIN).unwrap_err()),
        "seasonalMedian.season"
    );
    assert_eq!(
        field(new(MIN, HOUR, 2 * HOUR).unwrap_err()),
        "seasonalMedian.horizon"
    );
    assert_eq!(
        field(new(MIN, HOUR, Duration::from_secs(1)).unwrap_err()),
        "seasonalMedian.horizon"
    );
    // 2^23 one-second steps: more than the 2^22 values a forecaster may keep
    assert_eq!(
        field(new(Duration::from_secs(1), Duration::from_secs(1 << 23), MIN).unwrap_err()),
        "seasonalMedian.season"
    );
    let ok = || new(MIN, HOUR, MIN).unwrap();
    assert_eq!(
        field(ok().with_seasons(0).unwrap_err()),
        "seasonalMedian.seasons"
    );
    assert_eq!(
        field(ok().with_seasons(17).unwrap_err()),
        "seasonalMedian.seasons"
    );
    // 2^19 steps × 16 seasons = 2^23 values
    let big = new(Duration::from_secs(1), Duration::from_secs(1 << 19), MIN).unwrap();
    assert_eq!(
        field(big.with_seasons(16).unwrap_err()),
        "seasonalMedian.seasons"
    );
    for c in [0.4, 1.0, f64::NAN] {
        assert_eq!(
            field(ok().with_coverage(c).unwrap_err()),
            "seasonalMedian.coverage"
        );
    }
    assert!(ok().with_seasons(16).unwrap().with_coverage(0.95).is_ok());
}

mod props {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn hostile_observations_never_panic_and_forecasts_stay_finite(
            values in proptest::collection::vec(proptest::num::f64::ANY, 1..400),
            gaps in proptest::collection::vec(0i64..5, 1..400),
            start in i64::MIN / 4..i64::MAX / 4,
            horizon_min in 1u64..120,
        ) {
            let f = SeasonalMedian::new("rps", MIN, 2 * HOUR, 10 * MIN).unwrap().with_seasons(2).unwrap();
            let mut t = start / 1000;
            for (v, g) in values.iter().zip(gaps.iter().cycle()) {
                t = t.saturating_add(60 * g);
                f.observe(Timestamp::from_secs(t), *v);
            }
            let now = Timestamp::from_secs(t);
            if let Ok(fc) = f.forecast("rps", now, Duration::from_secs(60 * horizon_min)) {
                prop_assert!(fc.point.is_finite() && fc.lower.is_finite() && fc.upper.is_finite());
                prop_assert!(fc.lower <= fc.point && fc.point <= fc.upper && fc.lower >= 0.0);
            }
            if let Ok(fc) = f.forecast_max("rps", now, 10 * MIN, MIN) {
                prop_assert!(fc.point.is_finite());
            }
            if let Some(e) = f.recent_error("rps") {
                prop_assert!(e.is_finite() && e >= 0.0);
            }
        }
    }
}
