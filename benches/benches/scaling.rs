//! sysmanage-scaling: one decision with an hour of history and 5 metrics
//! (target ≤ 2 µs), and 30 days of simulation at 15 s steps (target ≤ 1 s).

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use sysmanage_core::Timestamp;
use sysmanage_scaling::{
    Behavior, Hpa, HpaSpec, MetricSpec, MetricValue, Observation, ServiceModel, Trace, simulate,
};

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
}

fn simulation(c: &mut Criterion) {
    let day = Trace::synthetic(7, 30, 300.0);
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

criterion_group!(benches, decision, simulation);
criterion_main!(benches);
