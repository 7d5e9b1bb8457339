//! sysmanage-scaling: one decision with an hour of history and 5 metrics
//! (target ≤ 2 µs), 30 days of simulation at 15 s steps (target ≤ 1 s), the
//! seasonal-median forecaster, and the right-sizer (a sample ≤ 100 ns, a
//! recommendation ≤ 10 µs).

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use std::sync::Arc;
use sysmanage_core::Timestamp;

use sysmanage_core::{Forecast, LoadForecast};
use sysmanage_scaling::{
    AutoScaler, Behavior, Guards, Hpa, HpaSpec, MetricSpec, MetricValue, Observation,
    PredictiveConfig, Scaler, ScalerConfig, SeasonalMedian, ServiceModel, Trace, simulate,
};

/// A forecaster with a daily sine, cheap enough not to dominate the measurement.
#[derive(Debug)]
struct Sine;

impl LoadForecast for Sine {
    fn forecast(
        &self,
        _metric: &str,
        now: Timestamp,
        horizon: Duration,
    ) -> sysmanage_core::Result<Forecast> {
        let t = (now + horizon).as_secs_f64();
        let v = 1000.0 + 500.0 * (t / 86_400.0 * std::f64::consts::TAU).sin();
        Forecast::exact(now + horizon, v)
    }
    fn recent_error(&self, _metric: &str) -> Option<f64> {
        // within the default 9 % trust: the forecast path runs in full
        Some(0.05)
    }
}

fn five_metric_spec() -> HpaSpec {
    HpaSpec::new(
        2,
        100,
        vec![
            MetricSpec::resource_utilization("cpu", 60),
            MetricSpec::resource_utilization("memory", 75),
            MetricSpec::pods_average_value("rps", 100.0),
            MetricSpec::object_value("ingress_rps", 2000.0),
            MetricSpec::external_average_value("queue", 30.0),
        ],
    )
    .with_behavior(Behavior::default())
}

fn decision(c: &mut Criterion) {
    let t0 = Timestamp::from_secs(1_700_000_000);
    // an hour of history: 240 decisions at the 15 s sync period, with actuations
    let mut hpa = Hpa::new(five_metric_spec()).expect("valid spec");
    let mut current = 10u32;
    for i in 0..240u64 {
        let now = t0 + Duration::from_secs(i * 15);
        let load = 1.0 + 0.5 * ((i as f64) / 20.0).sin();
        let obs = Observation::new(current)
            .reading("cpu", MetricValue::Average(60.0 * load))
            .reading("memory", MetricValue::Average(50.0))
            .reading("rps", MetricValue::Average(90.0 * load))
            .reading("ingress_rps", MetricValue::Total(1500.0 * load))
            .reading("queue", MetricValue::Total(200.0 * load));
        let d = hpa.decide(&obs, now).expect("valid input");
        if d.desired_replicas != current {
            hpa.record_actuation(current, d.desired_replicas, now);
            current = d.desired_replicas;
        }
    }
    let now = t0 + Duration::from_secs(3600);
    let obs = Observation::new(current)
        .reading("cpu", MetricValue::Average(85.0))
        .reading("memory", MetricValue::Average(50.0))
        .reading("rps", MetricValue::Average(120.0))
        .reading("ingress_rps", MetricValue::Total(2500.0))
        .reading("queue", MetricValue::Total(400.0));
    c.bench_function("scaling/decide_5_metrics_1h_history", |b| {
        b.iter_batched_ref(
            || hpa.clone(),
            |h| black_box(h.decide(black_box(&obs), now).expect("valid input")),
            criterion::BatchSize::SmallInput,
        );
    });

    // the same with prediction (5 forecasts over a 5-minute lead), guards and a flap budget
    let cfg = ScalerConfig::new("full", five_metric_spec())
        .predictive(PredictiveConfig::new(
            "rps",
            100.0,
            Duration::from_secs(300),
        ))
        .guards(Guards {
            latency_slo_ms: Some(250.0),
            max_error_rate: Some(0.05),
            extra_step_up: true,
        })
        .flap_budget(3, Duration::from_secs(1800));
    let mut scaler = Scaler::new(cfg, Some(Arc::new(Sine))).expect("valid config");
    let mut current = 10u32;
    for i in 0..240u64 {
        let at = t0 + Duration::from_secs(i * 15);
        let load = 1.0 + 0.5 * ((i as f64) / 20.0).sin();
        let o = Observation::new(current)
            .reading("cpu", MetricValue::Average(60.0 * load))
            .reading("memory", MetricValue::Average(50.0))
            .reading("rps", MetricValue::Average(90.0 * load))
            .reading("ingress_rps", MetricValue::Total(1500.0 * load))
            .reading("queue", MetricValue::Total(200.0 * load))
            .latency_p95_ms(120.0);
        let d = scaler.decide(&o, at).expect("valid input");
        if d.desired_replicas != current {
            scaler.record_actuation(current, d.desired_replicas, at);
            current = d.desired_replicas;
        }
    }
    let obs = obs.clone().latency_p95_ms(300.0).error_rate(0.01);
    c.bench_function(
        "scaling/scaler_decide_5_metrics_forecast_guards_flap",
        |b| {
            b.iter_batched_ref(
                || scaler.clone(),
                |s| black_box(s.decide(black_box(&obs), now).expect("valid input")),
                criterion::BatchSize::SmallInput,
            );
        },
    );
}

fn simulation(c: &mut Criterion) {
    let day = Trace::synthetic(7, 30, 300.0).expect("valid trace");
    let model = ServiceModel::default();
    let mut g = c.benchmark_group("scaling");
    g.sample_size(10);
    g.bench_function("simulate_30d_15s_hpa", |b| {
        b.iter(|| {
            let mut hpa = Hpa::new(
                HpaSpec::new(2, 60, vec![MetricSpec::resource_utilization("cpu", 70)])
                    .with_behavior(Behavior::default()),
            )
            .expect("valid spec");
            black_box(
                simulate(&day, &mut hpa, &model, Duration::from_secs(15), None)
                    .expect("valid model"),
            )
        });
    });
    g.finish();
}

/// The replay example's forecaster: one observation, and the peak over a
/// 10-minute lead at 60 s spacing, after 7 days of 15 s samples.
fn forecasting(c: &mut Criterion) {
    let step = Duration::from_secs(15);
    let f = SeasonalMedian::new(
        "rps",
        step,
        Duration::from_secs(86_400),
        Duration::from_secs(600),
    )
    .expect("valid forecaster");
    let t0 = Timestamp::from_secs(1_700_000_000);
    let trace = Trace::synthetic(7, 8, 300.0).expect("valid trace");
    let week = 7 * 5760;
    for (i, v) in trace.rps().iter().take(week / 4).enumerate() {
        for k in 0..4u64 {
            f.observe(t0 + step * (4 * i as u32 + k as u32), *v);
        }
    }
    let mut i = week as u32;
    c.bench_function("scaling/seasonal_median_observe", |b| {
        b.iter(|| {
            i += 1;
            f.observe(t0 + step * i, black_box(300.0 + f64::from(i % 600)));
        })
    });
    let now = t0 + step * i;
    c.bench_function("scaling/seasonal_median_forecast_max_10_horizons", |b| {
        b.iter(|| {
            black_box(
                f.forecast_max(
                    "rps",
                    now,
                    Duration::from_secs(600),
                    Duration::from_secs(60),
                )
                .expect("a week of history"),
            )
        })
    });
}

/// The right-sizer: one CPU sample into its decaying histogram (target ≤ 100 ns),
/// and a recommendation for 3 containers after a week of samples (target ≤ 10 µs).
fn right_sizing(c: &mut Criterion) {
    use sysmanage_scaling::rightsizing::{RightSizer, RightSizerConfig};
    let mut rs = RightSizer::new(RightSizerConfig::default(), vec![]).expect("valid");
    let t0 = Timestamp::from_secs(1_700_000_000);
    for m in 0..(7 * 1440u64) {
        let at = t0 + Duration::from_secs(60 * m);
        for (i, name) in ["app", "sidecar", "proxy"].into_iter().enumerate() {
            let load = 0.2 + (m % 1440) as f64 / 1440.0 + i as f64 * 0.1;
            rs.add_cpu_sample(name, at, load, 0.5).expect("valid");
            rs.add_memory_sample(name, at, 4e8 + 2e8 * load)
                .expect("valid");
        }
    }
    let mut at = t0 + Duration::from_secs(7 * 86_400);
    let mut v = 0.0f64;
    c.bench_function("scaling/right_sizer_add_cpu_sample", |b| {
        b.iter(|| {
            at = at + Duration::from_secs(1);
            v = (v + 0.37) % 4.0;
            rs.add_cpu_sample(black_box("app"), at, black_box(v), 0.5)
                .expect("valid")
        })
    });
    c.bench_function("scaling/right_sizer_recommend_3_containers", |b| {
        b.iter(|| black_box(rs.recommend().expect("valid")))
    });
}

criterion_group!(benches, decision, simulation, forecasting, right_sizing);
criterion_main!(benches);
