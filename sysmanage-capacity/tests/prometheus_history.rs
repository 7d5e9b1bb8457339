//! Capacity history imported from the local Prometheus: 30 days of minute
//! samples backfilled with promtool, imported with `query_range` in chunks,
//! give the same report as the same samples recorded in memory.

use std::time::Duration;

use sysmanage_capacity::history::{HistoryQuery, import};
use sysmanage_capacity::{CapacityPlanner, Direction, MetricSpec, Planner, PlannerConfig};
use sysmanage_core::prometheus::{PrometheusClient, PrometheusConfig};
use sysmanage_core::{Sample, Timestamp};
use sysmanage_test::prometheus::{backfill, prometheus_url};

const DAYS: i64 = 30;

/// A daily cycle on a slow rise, with a three-hour hole on day 12 (a
/// target that was down: no samples, as after staleness).
fn history(end: Timestamp) -> Vec<Sample> {
    let start = end.as_millis() / 1000 - DAYS * 86_400;
    (0..DAYS * 1440)
        .filter(|i| !(12 * 1440 + 600..12 * 1440 + 780).contains(i))
        .map(|i| {
            let t = start + i * 60;
            let day = (i % 1440) as f64 / 1440.0;
            let v = 0.30
                + 0.25 * (std::f64::consts::TAU * (day - 0.25)).sin().max(-0.6)
                + 0.004 * i as f64 / 1440.0
                + 0.01 * ((i * 7919) % 97) as f64 / 97.0;
            Sample::new(Timestamp::from_secs(t), v)
        })
        .collect()
}

fn planner(metric: &str) -> Planner {
    let mut p = Planner::new(PlannerConfig::default()).unwrap();
    p.register(MetricSpec::custom(metric, 0.85, Direction::Ceiling).unwrap())
        .unwrap();
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_days_of_backfilled_minutes_give_the_in_memory_report() {
    let name = format!(
        "sysmanage_test_capacity_{}_{}",
        std::process::id(),
        Timestamp::now().as_millis() % 1_000_000
    );
    let counter = format!("{name}_requests");
    // whole minutes, an hour back: older than anything in the head block
    let end = Timestamp::from_secs((Timestamp::now().as_millis() / 1000 / 60 - 60) * 60);
    let samples = history(end);

    let mut om = format!("# TYPE {name} gauge\n");
    for s in &samples {
        om.push_str(&format!(
            "{name}{{host=\"db1\"}} {} {}\n",
            s.value,
            s.at.as_millis() / 1000
        ));
    }
    om.push_str(&format!("# TYPE {counter} counter\n"));
    for (i, s) in samples.iter().enumerate() {
        // 60 requests a minute: a rate of exactly 1/s
        om.push_str(&format!(
            "{counter}_total {} {}\n",
            60 * i,
            s.at.as_millis() / 1000
        ));
    }
    om.push_str("# EOF\n");
    backfill(&name, &om);

    let client = PrometheusClient::new(
        &PrometheusConfig::new(prometheus_url()).timeout(Duration::from_secs(30)),
    )
    .unwrap();
    let start = samples[0].at;
    let mut from_prometheus = planner("cpu");
    let q = HistoryQuery::gauge(format!("{name}{{host=\"db1\"}}"), start, end);
    let imported = import(&client, &mut from_prometheus, "cpu", &q)
        .await
        .unwrap();
    assert_eq!(
        imported.queries, 4,
        "43,200 minutes need four queries of at most 11,000 points"
    );
    let first_difference = imported
        .samples
        .iter()
        .zip(&samples)
        .position(|(a, b)| a != b);
    assert_eq!(
        (imported.samples.len(), first_difference),
        (samples.len(), None),
        "every sample back, exactly, and nothing in the hole (first difference: {:?})",
        first_difference.map(|i| (imported.samples[i], samples[i]))
    );
    // the hole's 180 minutes, and `end` itself (the samples stop a minute before)
    assert_eq!(imported.gaps, 181);
    assert_eq!(imported.non_finite, 0);

    let mut in_memory = planner("cpu");
    in_memory.record_all("cpu", &samples).unwrap();
    let now = end + Duration::from_secs(60);
    let a = serde_json::to_string(&from_prometheus.report(now)).unwrap();
    let b = serde_json::to_string(&in_memory.report(now)).unwrap();
    assert_eq!(
        a, b,
        "the report from Prometheus differs from the in-memory one"
    );

    // the counter through rate(): one request per second, away from the hole and the start
    let day = Duration::from_secs(86_400);
    let q = HistoryQuery::counter(format!("{counter}_total"), start + day, start + day * 2);
    let mut p = planner("rps");
    let rates = import(&client, &mut p, "rps", &q).await.unwrap();
    assert_eq!(rates.samples.len(), 1441);
    assert!(
        rates.samples.iter().all(|s| (s.value - 1.0).abs() < 1e-9),
        "{:?}",
        &rates.samples[..3]
    );

    // more than one series is refused, naming the query
    let e = import(
        &client,
        &mut planner("x"),
        "x",
        &HistoryQuery::gauge(
            format!("{{__name__=~\"{name}|{counter}_total\"}}"),
            end - day,
            end,
        ),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains("2 series") && e.contains(&name), "{e}");
}
