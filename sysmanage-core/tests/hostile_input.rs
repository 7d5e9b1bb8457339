//! Every public entry point of sysmanage-core that takes numbers,
//! durations or strings, driven with arbitrary values (NaN, ±inf, ±0,
//! subnormals, integer extremes, empty and huge inputs). Runs in the debug
//! profile, so integer overflow panics: the properties are "no panic, and
//! every result is a typed error or within its documented bounds".

use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use sysmanage_core::duration::{DAY, check_count, check_duration, deadline, parse_duration};
use sysmanage_core::{
    Backoff, BreakerConfig, CircuitBreaker, ConnectionUrl, FailureRatio, Jitter, SampleBuffer,
    Secret, Timestamp, ensure_finite, positive_secs,
};

/// Any f64, with the awkward values over-represented.
fn any_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(0.0),
        Just(-0.0),
        Just(f64::MIN_POSITIVE / 2.0),
        Just(f64::MAX),
        Just(f64::MIN),
        any::<f64>(),
        -1e6..1e6f64,
    ]
}

/// Any duration, the extremes over-represented.
fn any_duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::MAX),
        Just(Duration::from_nanos(1)),
        Just(DAY),
        (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
        (0u64..100_000).prop_map(Duration::from_millis),
    ]
}

fn jitter() -> impl Strategy<Value = Jitter> {
    prop_oneof![
        Just(Jitter::None),
        Just(Jitter::Full),
        Just(Jitter::Equal),
        Just(Jitter::Decorrelated),
    ]
}

proptest! {
    #[test]
    fn backoff_builds_or_refuses_and_delays_stay_within_max(
        initial in any_duration(),
        max in any_duration(),
        multiplier in any_f64(),
        retries in proptest::option::of(any::<u32>()),
        j in jitter(),
        attempt in any::<u32>(),
        unit in any_f64(),
        seed in any::<u64>(),
    ) {
        let mut b = Backoff::builder().initial(initial).max(max).multiplier(multiplier).jitter(j);
        if let Some(r) = retries {
            b = b.max_retries(r);
        }
        if let Ok(b) = b.build() {
            prop_assert!(b.max() <= DAY);
            let d = b.delay(attempt, unit);
            prop_assert!(d <= b.max());
            prop_assert!(b.base_delay(attempt) <= b.max());
            for d in b.iter(seed).take(50) {
                prop_assert!(d <= b.max());
            }
        }
    }

    #[test]
    fn breakers_never_panic_on_any_accepted_config(
        failures in 1u32..1000,
        cool_down in any_duration(),
        ratio in proptest::option::of((any_f64(), any::<u32>(), any_duration())),
        half_open in 1u32..100,
        steps in proptest::collection::vec((0u64..100_000, any::<bool>()), 0..60),
    ) {
        let mut config = BreakerConfig::default();
        config.consecutive_failures = std::num::NonZeroU32::new(failures).unwrap();
        config.cool_down = cool_down;
        config.half_open_max_calls = std::num::NonZeroU32::new(half_open).unwrap();
        config.failure_ratio = ratio.map(|(ratio, min_calls, window)| FailureRatio {
            ratio,
            min_calls,
            window,
        });
        let Ok(mut breaker) = CircuitBreaker::new(config) else { return Ok(()) };
        let t0 = Instant::now();
        let mut t = t0;
        for (advance_ms, ok) in steps {
            t = deadline(t, Duration::from_millis(advance_ms));
            if breaker.try_acquire(t).is_ok() {
                if ok { breaker.record_success(t) } else { breaker.record_failure(t) }
            }
            let status = breaker.status(t);
            if let Some(wait) = status.retry_in {
                prop_assert!(wait <= DAY);
            }
        }
    }

    #[test]
    fn durations_parse_or_refuse(text in ".{0,64}") {
        if let Ok(d) = parse_duration(&text) {
            // Whatever parsed formats back to the same duration.
            prop_assert_eq!(parse_duration(&sysmanage_core::duration::format_duration(d)).unwrap(), d);
        }
    }

    #[test]
    fn range_checks_are_exact(value in any_duration(), lo in any_duration(), hi in any_duration(), n in any::<u64>()) {
        prop_assert_eq!(check_duration("f", value, lo, hi).is_ok(), lo <= value && value <= hi);
        prop_assert_eq!(check_count("n", n, 3, 1_000).is_ok(), (3..=1_000).contains(&n));
        let now = Instant::now();
        prop_assert!(deadline(now, value) >= now);
    }

    #[test]
    fn numeric_guards_are_typed(x in any_f64()) {
        prop_assert_eq!(ensure_finite("x", x).is_ok(), x.is_finite());
        match positive_secs("x", x) {
            Ok(d) => prop_assert!(x > 0.0 && d > Duration::ZERO),
            Err(_) => prop_assert!(!(x.is_finite() && (1e-9..1e18).contains(&x))),
        }
    }

    #[test]
    fn timestamps_saturate(a in any::<i64>(), b in any::<i64>(), d in any_duration()) {
        let (a, b) = (Timestamp::from_millis(a), Timestamp::from_millis(b));
        let _ = a + d;
        let _ = a - d;
        let _ = a - b;
        let _ = a.saturating_since(b);
        prop_assert!(a.secs_since(b).is_finite());
        let _ = a.to_string();
    }

    #[test]
    fn sample_buffers_take_any_sample(
        len in 1usize..64,
        age in any_duration(),
        samples in proptest::collection::vec((any::<i64>(), any_f64()), 0..100),
    ) {
        let Ok(mut buf) = SampleBuffer::new(NonZeroUsize::new(len).unwrap(), age) else {
            return Ok(());
        };
        for (at, v) in samples {
            if buf.push(Timestamp::from_millis(at), v).is_ok() {
                prop_assert!(v.is_finite(), "a non-finite sample was accepted");
            }
            prop_assert!(buf.len() <= len);
        }
        if let Some(first) = buf.first() {
            let _ = buf.stats_since(first.at);
        }
    }

    #[test]
    fn secrets_never_print_the_password(user in "[a-z]{0,8}", password in "[!-~]{1,24}", rest in ".{0,40}") {
        let url = ConnectionUrl::new(format!("postgres://{user}:{password}@host{rest}"));
        let shown = format!("{url} {url:?}");
        if password.len() >= 4 && !password.contains(['@', '/', ':', '?', '#']) {
            prop_assert!(!shown.contains(&password), "{shown}");
        }
        let s = Secret::new(password.clone());
        let shown = format!("{s:?} {s}");
        // What is shown is the same for every secret.
        let fixed = { let x = Secret::new("x"); format!("{x:?} {x}") };
        prop_assert_eq!(&shown, &fixed);
    }
}

#[test]
fn accepted_values_stay_inside_the_documented_ranges() {
    // The limits the crate documents.
    assert!(Backoff::builder().initial(DAY).max(DAY).build().is_ok());
    assert!(
        Backoff::builder()
            .max(DAY + Duration::from_secs(1))
            .build()
            .is_err()
    );
    let mut c = BreakerConfig::default();
    c.cool_down = Duration::MAX;
    assert!(CircuitBreaker::new(c).is_err());
}
