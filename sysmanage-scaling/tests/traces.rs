//! The shipped traces parse, and the synthetic one is exactly what the generator produces.

use std::time::Duration;

use sysmanage_scaling::{ScalingError, Trace, sim::SYNTHETIC_CSV};

const SYNTHETIC_COMMENT: &str = "Synthetic request rate: Trace::synthetic(seed = 7, days = 7, base = 300.0).\n\
Daily cycle 300..900 rps peaking mid-afternoon, weekend dip, +-5 % noise, ~3 bursts/day at 3x for 5-20 min.\n\
Regenerate with SYSMANAGE_REGENERATE_TRACES=1 cargo test -p sysmanage-scaling --test traces";

#[test]
fn shipped_synthetic_trace_matches_generator() {
    let generated = Trace::synthetic(7, 7, 300.0).unwrap();
    let csv = generated.to_csv(SYNTHETIC_COMMENT);
    if std::env::var_os("SYSMANAGE_REGENERATE_TRACES").is_some() {
        std::fs::write(
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/traces/synthetic_daily_bursts.csv"
            ),
            &csv,
        )
        .unwrap();
        return;
    }
    assert_eq!(
        SYNTHETIC_CSV, csv,
        "traces/synthetic_daily_bursts.csv is stale"
    );
    let parsed = Trace::from_csv("synthetic", SYNTHETIC_CSV).unwrap();
    assert_eq!(parsed.rps(), generated.rps());
    assert_eq!(parsed.duration(), Duration::from_secs(7 * 86_400));
}

#[test]
fn shipped_traces_parse_and_look_like_demand() {
    let traces = Trace::shipped().unwrap();
    let names: Vec<&str> = traces.iter().map(|t| t.name()).collect();
    assert_eq!(
        names,
        [
            "synthetic",
            "uk-electricity",
            "bikeshare-dc",
            "msft-volume",
            "air-passengers",
            "sunspots"
        ]
    );
    // lengths and first values as extracted (see traces/README.md)
    let shape: Vec<(usize, u64, f64)> = traces[2..]
        .iter()
        .map(|t| (t.rps().len(), t.step().as_secs() / 60, t.rps()[0]))
        .collect();
    assert_eq!(
        shape,
        [
            (1344, 60, 68.0),
            (2520, 15, 1491.92),
            (144, 60, 224.0),
            (2820, 15, 290.0)
        ]
    );
    // the trending trace grows: the last year's mean is over twice the first's
    let air = traces[4].rps();
    let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len() as f64;
    assert!(mean(&air[132..]) > 2.0 * mean(&air[..12]));
    // the bursty trace has days at several times its median
    let mut v = traces[3].rps().to_vec();
    v.sort_by(f64::total_cmp);
    assert!(v[v.len() - 1] > 4.0 * v[v.len() / 2], "{}", v[v.len() - 1]);
    let uk = &traces[1];
    assert_eq!(uk.step(), Duration::from_secs(1800));
    assert_eq!(uk.rps().len(), 4032, "12 weeks of half-hourly demand");
    // first value of Taylor (2003): 22262 MW / 20
    assert_eq!(uk.rps()[0], 1113.1);
    // daily seasonality: the lag-48 autocorrelation is strong
    let mean = uk.rps().iter().sum::<f64>() / uk.rps().len() as f64;
    let var: f64 = uk.rps().iter().map(|v| (v - mean).powi(2)).sum();
    let cov: f64 = uk
        .rps()
        .windows(49)
        .map(|w| (w[0] - mean) * (w[48] - mean))
        .sum();
    assert!(cov / var > 0.8, "lag-1-day autocorrelation {}", cov / var);
    let syn = &traces[0];
    let max = syn.rps().iter().cloned().fold(0.0, f64::max);
    assert!(max > 1500.0, "bursts present (max {max})");
}

#[test]
fn bad_csv_is_a_typed_error_naming_the_line() {
    let e = Trace::from_csv("x", "minute,rps\n0,1\n1,abc\n").unwrap_err();
    assert!(matches!(e, ScalingError::InvalidSpec { .. }));
    assert!(e.to_string().contains("line 3"), "{e}");
    assert!(Trace::from_csv("x", "minute,rps\n0,1\n").is_err());
    assert!(Trace::from_csv("x", "0,1\n1,-2\n").is_err());
    assert!(Trace::from_csv("x", "0,1\n1,2\n3,4\n").is_err());
    assert!(Trace::from_csv("x", "0,1\n1,NaN\n").is_err());
}

#[test]
fn interpolation_and_truncation() {
    let t = Trace::from_csv("x", "0,100\n1,200\n2,300\n").unwrap();
    assert_eq!(t.rps_at(Duration::from_secs(30)), 150.0);
    assert_eq!(t.rps_at(Duration::from_secs(600)), 300.0);
    assert_eq!(t.truncated(Duration::from_secs(60)).rps(), [100.0, 200.0]);
}

#[test]
fn a_trace_is_valid_whichever_way_it_is_made() {
    let min = Duration::from_secs(60);
    for (rps, step) in [
        (vec![], min),
        (vec![1.0], min),
        (vec![1.0, f64::NAN], min),
        (vec![1.0, -1.0], min),
        (vec![1.0, 2.0], Duration::ZERO),
        (vec![1.0, 2.0], Duration::from_secs(15)),
        (vec![1.0, 2.0], Duration::from_secs(90)),
        (vec![1.0, 2.0], Duration::from_secs(2 * 86_400)),
    ] {
        let e = Trace::new("x", step, rps.clone()).unwrap_err();
        assert!(
            matches!(e, ScalingError::InvalidSpec { .. }),
            "{rps:?} {step:?}: {e}"
        );
    }
    // deserialising checks the same invariants
    let empty = r#"{"name":"x","step":{"secs":60,"nanos":0},"rps":[]}"#;
    let e = serde_json::from_str::<Trace>(empty).unwrap_err();
    assert!(e.to_string().contains("samples"), "{e}");
    let zero_step = r#"{"name":"x","step":{"secs":0,"nanos":0},"rps":[1.0,2.0]}"#;
    assert!(serde_json::from_str::<Trace>(zero_step).is_err());
    let t = Trace::new("ok", min, vec![1.0, 2.0]).unwrap();
    let back: Trace = serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
    assert_eq!(back, t);
    // the synthetic generator rejects what would make an invalid trace
    assert!(Trace::synthetic(1, 0, 100.0).is_err());
    assert!(Trace::synthetic(1, 1, f64::NAN).is_err());
    assert!(Trace::synthetic(1, 1, -5.0).is_err());
    assert!(Trace::synthetic(1, 100_000, 100.0).is_err());
}

#[test]
fn trace_methods_never_panic_at_the_extremes() {
    let t = Trace::from_csv("x", "0,100\n1,200\n").unwrap();
    assert_eq!(t.rps_at(Duration::MAX), 200.0);
    assert_eq!(t.rps_at(Duration::from_secs(u64::MAX / 2)), 200.0);
    assert_eq!(t.rps_at(Duration::ZERO), 100.0);
    assert_eq!(t.truncated(Duration::ZERO).rps(), [100.0, 200.0]);
    assert_eq!(t.truncated(Duration::MAX).rps(), [100.0, 200.0]);
    let day = Trace::new("day", Duration::from_secs(86_400), vec![1.0; 1000]).unwrap();
    assert_eq!(day.duration(), Duration::from_secs(86_400_000));
    assert_eq!(day.with_name("renamed").name(), "renamed");
}
