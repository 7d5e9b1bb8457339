//! The VPA recommender's own unit tests, ported. Each test names its Go
//! source (kubernetes/autoscaler, vertical-pod-autoscaler/pkg/recommender).

// The upstream tables use 3.14 (cores) as an arbitrary base amount, not as π.
#![allow(clippy::approx_constant)]

use std::collections::BTreeMap;
use std::time::Duration;

use sysmanage_core::Timestamp;
use sysmanage_scaling::manifest::VerticalPodAutoscaler;
use sysmanage_scaling::rightsizing::{
    ContainerCheckpoint, ContainerPolicy, ContainerRecommendation, DecayingHistogram, Histogram,
    HistogramCheckpoint, HistogramOptions, MAX_CHECKPOINT_WEIGHT, MAX_RESOURCE_AMOUNT, Resource,
    RightSizer, RightSizerCheckpoint, RightSizerConfig, confidence_multiplier,
    cores_from_cpu_amount, cpu_amount_from_cores, resource_amount, scale_resource,
};

const VALUE_EPSILON: f64 = 1e-15;
const WEIGHT_EPSILON: f64 = 1e-15;

fn in_epsilon(want: f64, got: f64, rel: f64) {
    let err = ((got - want) / want).abs();
    assert!(err <= rel, "want {want}, got {got} (relative error {err})");
}

/// `testHistogramOptions`: linear, bucket size 1, up to 10.
fn test_options() -> HistogramOptions {
    HistogramOptions::linear(10.0, 1.0, WEIGHT_EPSILON).unwrap()
}

const ANY: Timestamp = Timestamp::from_secs(0);
/// `startTime = time.Unix(1234567890, 0)`.
const START: Timestamp = Timestamp::from_secs(1_234_567_890);
const HOUR: Duration = Duration::from_secs(3600);

// ---- util/histogram_options_test.go

#[test]
fn test_linear_histogram_options() {
    let o = HistogramOptions::linear(5.0, 0.3, 0.001).unwrap();
    assert_eq!(o.epsilon(), 0.001);
    assert_eq!(o.num_buckets(), 18);
    assert_eq!(o.bucket_start(0), 0.0);
    assert_eq!(o.bucket_start(17), 5.1);
    assert_eq!(o.find_bucket(-1.0), 0);
    assert_eq!(o.find_bucket(0.0), 0);
    assert_eq!(o.find_bucket(1.3), 4);
    assert_eq!(o.find_bucket(100.0), 17);
}

#[test]
fn test_exponential_histogram_options() {
    let o = HistogramOptions::exponential(500.0, 40.0, 1.5, 0.001).unwrap();
    assert_eq!(o.epsilon(), 0.001);
    assert_eq!(o.num_buckets(), 6);
    assert_eq!(o.bucket_start(0), 0.0);
    assert_eq!(o.bucket_start(1), 40.0);
    assert_eq!(o.bucket_start(2), 100.0);
    assert_eq!(o.bucket_start(3), 190.0);
    assert_eq!(o.bucket_start(4), 325.0);
    assert_eq!(o.bucket_start(5), 527.5);
    assert_eq!(o.find_bucket(-1.0), 0);
    assert_eq!(o.find_bucket(39.99), 0);
    assert_eq!(o.find_bucket(40.0), 1);
    assert_eq!(o.find_bucket(100.0), 2);
    assert_eq!(o.find_bucket(900.0), 5);
}

// ---- util/histogram_test.go

#[test]
fn test_percentiles_empty_histogram() {
    let h = Histogram::new(test_options());
    for p in [-0.5, 0.0, 0.5, 1.0, 1.5] {
        assert_eq!(h.percentile(p), 0.0);
    }
}

fn one_to_four() -> Histogram {
    let mut h = Histogram::new(test_options());
    for i in 1..=4 {
        h.add_sample(f64::from(i), f64::from(i));
    }
    h
}

#[test]
fn test_percentiles() {
    let h = one_to_four();
    for (p, want) in [
        (0.0, 2.0),
        (0.1, 2.0),
        (0.2, 3.0),
        (0.3, 3.0),
        (0.4, 4.0),
        (0.5, 4.0),
        (0.6, 4.0),
        (0.7, 5.0),
        (0.8, 5.0),
        (0.9, 5.0),
        (1.0, 5.0),
    ] {
        in_epsilon(want, h.percentile(p), VALUE_EPSILON);
    }
}

#[test]
fn test_percentile_out_of_bounds() {
    let o = HistogramOptions::linear(1.0, 0.1, WEIGHT_EPSILON).unwrap();
    let mut h = Histogram::new(o);
    h.add_sample(0.1, 0.1);
    h.add_sample(0.2, 0.2);
    in_epsilon(0.2, h.percentile(-0.1), VALUE_EPSILON);
    in_epsilon(0.3, h.percentile(1.1), VALUE_EPSILON);
    // fill the boundary buckets
    h.add_sample(0.0, 0.1);
    h.add_sample(1.0, 0.2);
    in_epsilon(0.1, h.percentile(-0.1), VALUE_EPSILON);
    in_epsilon(1.0, h.percentile(1.1), VALUE_EPSILON);
}

#[test]
fn test_empty_histogram() {
    let o = HistogramOptions::linear(1.0, 0.1, WEIGHT_EPSILON).unwrap();
    let mut h = Histogram::new(o);
    assert!(h.is_empty());
    h.add_sample(0.1, WEIGHT_EPSILON * 2.5);
    assert!(!h.is_empty());
    h.subtract_sample(0.1, WEIGHT_EPSILON);
    assert!(!h.is_empty());
    h.subtract_sample(0.1, WEIGHT_EPSILON);
    assert!(h.is_empty());
}

#[test]
fn test_non_empty_on_epsilon_addition() {
    let o = HistogramOptions::linear(1.0, 0.1, WEIGHT_EPSILON).unwrap();
    let mut h = Histogram::new(o);
    assert!(h.is_empty());
    h.add_sample(9.9, WEIGHT_EPSILON * 3.0);
    assert!(!h.is_empty());
    h.add_sample(0.1, WEIGHT_EPSILON * 0.3);
    assert!(!h.is_empty());
    h.add_sample(999.9, WEIGHT_EPSILON * 0.3);
    assert!(!h.is_empty());
}

#[test]
fn test_histogram_merge() {
    let mut h1 = Histogram::new(test_options());
    h1.add_sample(1.0, 1.0);
    h1.add_sample(2.0, 1.0);
    let mut h2 = Histogram::new(test_options());
    h2.add_sample(2.0, 1.0);
    h2.add_sample(3.0, 1.0);
    let mut expected = Histogram::new(test_options());
    for v in [1.0, 2.0, 2.0, 3.0] {
        expected.add_sample(v, 1.0);
    }
    h1.merge(&h2).unwrap();
    assert!(h1.approx_eq(&expected));
}

#[test]
fn test_histogram_save_to_checkpoint_empty() {
    let s = Histogram::new(test_options()).checkpoint();
    assert_eq!(s.total_weight, 0.0);
    assert!(s.bucket_weights.is_empty());
}

#[test]
fn test_histogram_save_to_checkpoint() {
    let mut h = Histogram::new(test_options());
    h.add_sample(1.0, 1.0);
    let s = h.checkpoint();
    let bucket = test_options().find_bucket(1.0) as i64;
    assert_eq!(s.total_weight, 1.0);
    assert_eq!(s.bucket_weights.len(), 1);
    assert_eq!(s.bucket_weights[&bucket], MAX_CHECKPOINT_WEIGHT);
}

#[test]
fn test_histogram_save_to_checkpoint_drops_relatively_small_values() {
    let mut h = Histogram::new(test_options());
    h.add_sample(1.0, 1.0);
    h.add_sample(2.0, 100_000.0);
    let (b1, b2) = (
        test_options().find_bucket(1.0),
        test_options().find_bucket(2.0),
    );
    assert_ne!(b1, b2);
    let s = h.checkpoint();
    assert_eq!(s.total_weight, 100_001.0);
    assert_eq!(s.bucket_weights.len(), 1);
    assert_eq!(s.bucket_weights[&(b2 as i64)], MAX_CHECKPOINT_WEIGHT);
}

#[test]
fn test_histogram_save_to_checkpoint_for_multiple_values() {
    let mut h = Histogram::new(test_options());
    h.add_sample(1.0, 1.0);
    h.add_sample(2.0, 10_000.0);
    h.add_sample(3.0, 50.0);
    let o = test_options();
    let s = h.checkpoint();
    assert_eq!(s.total_weight, 10_051.0);
    assert_eq!(s.bucket_weights.len(), 3);
    assert_eq!(s.bucket_weights[&(o.find_bucket(1.0) as i64)], 1);
    assert_eq!(s.bucket_weights[&(o.find_bucket(2.0) as i64)], 10_000);
    assert_eq!(s.bucket_weights[&(o.find_bucket(3.0) as i64)], 50);
}

fn checkpoint(total: f64, weights: &[(i64, u32)]) -> HistogramCheckpoint {
    HistogramCheckpoint {
        reference_timestamp: None,
        bucket_weights: weights.iter().copied().collect::<BTreeMap<_, _>>(),
        total_weight: total,
    }
}

#[test]
fn test_histogram_load_from_checkpoint() {
    let mut h = Histogram::new(test_options());
    h.load_checkpoint(&checkpoint(6.0, &[(0, 1), (1, 2)]))
        .unwrap();
    assert_eq!(h.total_weight(), 6.0);
    assert_eq!(h.bucket_weight(0), 2.0);
    assert_eq!(h.bucket_weight(1), 4.0);
}

#[test]
fn test_histogram_load_from_checkpoint_returns_error_on_negative_bucket() {
    let mut h = Histogram::new(test_options());
    assert!(h.load_checkpoint(&checkpoint(1.0, &[(-1, 1)])).is_err());
}

#[test]
fn test_histogram_load_from_checkpoint_returns_error_on_invalid_bucket() {
    let mut h = Histogram::new(test_options());
    assert!(h.load_checkpoint(&checkpoint(1.0, &[(99, 1)])).is_err());
}

#[test]
fn test_histogram_load_from_checkpoint_returns_error_negative_tota_weight() {
    let mut h = Histogram::new(test_options());
    assert!(h.load_checkpoint(&checkpoint(-1.0, &[])).is_err());
}

// ---- util/decaying_histogram_test.go

fn decaying() -> DecayingHistogram {
    DecayingHistogram::new(test_options(), HOUR).unwrap()
}

#[test]
fn test_percentiles_empty_decaying_histogram() {
    let h = decaying();
    for p in [-0.5, 0.0, 0.5, 1.0, 1.5] {
        assert_eq!(h.percentile(p), 0.0);
    }
}

#[test]
fn test_simple_decay() {
    let mut h = decaying();
    h.add_sample(2.0, 1000.0, START);
    h.add_sample(1.0, 1.0, START + HOUR * 20);
    in_epsilon(2.0, h.percentile(0.999), VALUE_EPSILON);
    in_epsilon(3.0, h.percentile(1.0), VALUE_EPSILON);
}

#[test]
fn test_longterm_decay() {
    let mut h = decaying();
    h.add_sample(2.0, 1.0, START);
    h.add_sample(1.0, 1.0, START + HOUR * 101);
    in_epsilon(2.0, h.percentile(1.0), VALUE_EPSILON);
}

#[test]
fn test_decaying_histogram_percentiles() {
    let mut h = decaying();
    let mut t = START;
    for i in 1..=4 {
        h.add_sample(f64::from(i), f64::from(i), t);
        t = t + HOUR;
    }
    for (p, want) in [
        (0.00, 2.0),
        (0.02, 2.0),
        (0.03, 3.0),
        (0.10, 3.0),
        (0.11, 4.0),
        (0.34, 4.0),
        (0.35, 5.0),
        (1.00, 5.0),
    ] {
        in_epsilon(want, h.percentile(p), VALUE_EPSILON);
    }
}

#[test]
fn test_no_decay() {
    let mut h = decaying();
    for i in 1..=4 {
        h.add_sample(f64::from(i), f64::from(i), START);
    }
    for (p, want) in [
        (0.0, 2.0),
        (0.2, 3.0),
        (0.1, 2.0),
        (0.3, 3.0),
        (0.4, 4.0),
        (0.5, 4.0),
        (0.6, 4.0),
        (0.7, 5.0),
        (0.8, 5.0),
        (0.9, 5.0),
        (1.0, 5.0),
    ] {
        in_epsilon(want, h.percentile(p), VALUE_EPSILON);
    }
}

#[test]
fn test_decaying_histogram_merge() {
    let mut h1 = decaying();
    h1.add_sample(1.0, 1.0, START);
    h1.add_sample(2.0, 1.0, START + HOUR);
    let mut h2 = decaying();
    h2.add_sample(2.0, 1.0, START + HOUR * 2);
    h2.add_sample(3.0, 1.0, START + HOUR);
    let mut expected = decaying();
    expected.add_sample(2.0, 1.0, START + HOUR * 2);
    expected.add_sample(2.0, 1.0, START + HOUR);
    expected.add_sample(3.0, 1.0, START + HOUR);
    expected.add_sample(1.0, 1.0, START);
    h1.merge(&h2).unwrap();
    assert!(h1.approx_eq(&expected), "{h1:?}\n{expected:?}");
}

#[test]
fn test_decaying_histogram_save_to_checkpoint() {
    let mut d = decaying();
    d.add_sample(2.0, 1.0, START + HOUR * 100);
    assert!(d.reference().is_some());
    let cp = d.checkpoint();
    assert_eq!(cp.reference_timestamp, d.reference());
    assert!(!cp.bucket_weights.is_empty());
    assert_ne!(cp.total_weight, 0.0);
}

#[test]
fn test_decaying_histogram_load_from_checkpoint() {
    // 2018-01-02T03:04:05Z
    let ts = Timestamp::from_secs(1_514_862_245);
    let mut cp = checkpoint(6.0, &[(0, 1)]);
    cp.reference_timestamp = Some(ts);
    let mut d = decaying();
    d.load_checkpoint(&cp).unwrap();
    assert!(!d.is_empty());
    assert_eq!(d.reference(), Some(ts));
}

// ---- logic/estimator_test.go (with model.GetAggregationsConfig's histograms)

#[test]
fn test_percentile_estimator() {
    let mut cpu = Histogram::new(HistogramOptions::vpa_cpu());
    for v in [1.0, 2.0, 3.0] {
        cpu.add_sample(v, 1.0);
    }
    let mut mem = Histogram::new(HistogramOptions::vpa_memory());
    for v in [1e9, 2e9, 3e9] {
        mem.add_sample(v, 1.0);
    }
    let cpu_est = cpu_amount_from_cores(cpu.percentile(0.2));
    let mem_est = resource_amount(mem.percentile(0.5));
    // 5 % relative error for the histogram's rounding
    in_epsilon(1.0, cores_from_cpu_amount(cpu_est), 0.05);
    in_epsilon(2e9, mem_est as f64, 0.05);
}

/// `getConfidence` through the right-sizer: 9 CPU samples 2 minutes apart.
fn nine_samples(interval: Duration) -> f64 {
    let mut rs = RightSizer::new(
        RightSizerConfig {
            confidence_interval: interval,
            ..RightSizerConfig::default()
        },
        vec![],
    )
    .unwrap();
    let mut t = ANY;
    for _ in 1..=9 {
        rs.add_cpu_sample("c", t, 1.0, 0.0).unwrap();
        t = t + Duration::from_secs(120);
    }
    rs.confidence_of("c").unwrap()
}

#[test]
fn test_confidence_multiplier() {
    let base_cpu = cpu_amount_from_cores(3.14);
    let base_mem = resource_amount(3.14e9);
    // no history: confidence 0 → +Inf (capped) or 0
    assert_eq!(
        confidence_multiplier(base_cpu, 1.0, 1.0, 0.0),
        MAX_RESOURCE_AMOUNT
    );
    assert_eq!(confidence_multiplier(base_cpu, 1.0, -1.0, 0.0), 0);
    // confidence = 9 / (60 × 24) = 0.00625
    let conf = nine_samples(Duration::from_secs(86_400));
    assert_eq!(conf, 0.00625);
    // 3.14 × (1 + 0.1/0.00625)^2 = 907.46
    assert_eq!(
        cores_from_cpu_amount(confidence_multiplier(base_cpu, 0.1, 2.0, conf)),
        907.46
    );
    assert_eq!(
        confidence_multiplier(base_mem, 0.1, 2.0, conf) as f64,
        9.0746e11
    );
}

#[test]
fn test_confidence_multiplier_with_custom_interval() {
    let conf = nine_samples(Duration::from_secs(18 * 60));
    assert_eq!(conf, 0.5);
    let base_cpu = cpu_amount_from_cores(3.14);
    assert_eq!(
        cores_from_cpu_amount(confidence_multiplier(base_cpu, 0.1, 2.0, conf)),
        4.521
    );
    assert_eq!(
        confidence_multiplier(resource_amount(3.14e9), 0.1, 2.0, conf) as f64,
        4.5216e9
    );
}

#[test]
fn test_confidence_multiplier_no_history() {
    assert_eq!(
        confidence_multiplier(cpu_amount_from_cores(3.14), 0.1, 2.0, 0.0),
        MAX_RESOURCE_AMOUNT
    );
}

#[test]
fn test_margin_estimator() {
    assert_eq!(
        cores_from_cpu_amount(scale_resource(cpu_amount_from_cores(3.14), 1.1)),
        3.454
    );
    assert_eq!(scale_resource(resource_amount(3.14e9), 1.1) as f64, 3.454e9);
}

#[test]
fn test_min_resources_estimator() {
    let cpu = cpu_amount_from_cores(3.14).max(cpu_amount_from_cores(0.2));
    assert_eq!(cores_from_cpu_amount(cpu), 3.14);
    let mem = resource_amount(4e8).max(resource_amount(2e7));
    assert_eq!(mem as f64, 4e8);
}

// ---- logic/recommender_test.go
//
// The Go tests use a `ConstEstimator` of 0.001 core and 1 MB; here the
// container's only samples are that usage, so the VPA's percentile (the end
// of the first bucket, 10 m / 10 MB) plus the margin stays below the pod
// minimums and the minimums decide, as in the Go tests.

const MIB: i64 = 1024 * 1024;

/// A right-sizer whose containers each saw 0.001 core and 1 MB once.
fn tiny_usage(containers: &[&str], policies: Vec<ContainerPolicy>) -> Vec<ContainerRecommendation> {
    let mut rs = RightSizer::new(RightSizerConfig::default(), policies).unwrap();
    for c in containers {
        rs.add_cpu_sample(c, START, 0.001, 0.001).unwrap();
        rs.add_memory_sample(c, START, 1e6).unwrap();
    }
    rs.recommend().unwrap()
}

#[test]
fn test_min_resources_applied() {
    let rec = tiny_usage(&["container-1"], vec![]);
    // podMinCPUMillicores = 25, podMinMemoryMb = 250
    assert_eq!(
        rec[0].target.cpu_millicores,
        Some(cpu_amount_from_cores(25.0 / 1000.0))
    );
    assert_eq!(rec[0].target.memory_bytes, Some(250 * MIB));
}

#[test]
fn test_min_resources_split_across_containers() {
    let rec = tiny_usage(&["container-1", "container-2"], vec![]);
    for r in &rec {
        // CPUAmountFromCores(0.025 / 2) truncates 12.5 to 12 millicores
        assert_eq!(
            r.target.cpu_millicores,
            Some(cpu_amount_from_cores(25.0 / 1000.0 / 2.0))
        );
        assert_eq!(r.target.cpu_millicores, Some(12));
        assert_eq!(r.target.memory_bytes, Some(250 * MIB / 2));
    }
    assert_eq!(rec.len(), 2);
}

#[test]
fn test_controlled_resources_filtered() {
    let mut p = ContainerPolicy::new("container-1");
    p.controlled_resources = vec![Resource::Memory];
    let rec = tiny_usage(&["container-1"], vec![p]);
    for r in [&rec[0].target, &rec[0].lower_bound, &rec[0].upper_bound] {
        assert!(r.memory_bytes.is_some());
        assert_eq!(r.cpu_millicores, None);
    }
}

#[test]
fn test_controlled_resources_filtered_default() {
    let mut p = ContainerPolicy::new("container-1");
    p.controlled_resources = vec![Resource::Memory, Resource::Cpu];
    let rec = tiny_usage(&["container-1"], vec![p]);
    for r in [&rec[0].target, &rec[0].lower_bound, &rec[0].upper_bound] {
        assert!(r.memory_bytes.is_some());
        assert!(r.cpu_millicores.is_some());
    }
}

// ---- model/aggregate_container_state_test.go
//
// Not ported, because a pure decision core has no counterpart for them:
// `TestAggregateContainerStateIsExpired` and
// `TestAggregateContainerStateIsExpiredWithCustomIntervalCount` (garbage
// collection of the cluster model's aggregate states after 8 days without
// samples: a `RightSizer` holds exactly the containers its host feeds and
// drops), `TestAggregateContainerStateLoadFromCheckpointFailsForVersionMismatch`
// (the API object's `version` string: `RightSizerCheckpoint` is a serde type
// whose shape is checked when it is deserialised and loaded), and
// `TestUpdateFromPolicyMemoryAggregationInterval` /
// `TestUpdateFromPolicyMemoryAggregationIntervalCount` (per-container
// `memoryAggregationIntervalSeconds` / `Count` behind the alpha `PerVPAConfig`
// feature gate: the memory window is one setting of the right-sizer,
// `RightSizerConfig::memory_aggregation_interval`). The checkpoint's
// `lastUpdateTime` and `version` checks of
// `TestAggregateContainerStateSaveToCheckpoint` are left out for the same
// reason.
//
// A difference, not ported: the memory half of
// `TestAggregateStateByContainerName`. The VPA keeps one memory aggregation
// window per pod's container and merges the per-pod peaks by container name;
// a `RightSizer` keeps one window per container name, so two pods' peaks in
// the same window count once (the larger), which makes the memory
// recommendation for multi-replica workloads more conservative than the VPA's.

/// `testRequest`: 3.14 cores.
const TEST_REQUEST_CORES: f64 = 3.14;
/// `testTimestamp`.
const TEST_TIMESTAMP: Timestamp = Timestamp::from_secs(1_517_403_600);

#[test]
fn test_aggregate_state_by_container_name() {
    // two pods, { app-A, app-B } and { app-A, app-C }: a right-sizer keys its
    // state by container name, so both app-A containers feed one state
    let mut rs = RightSizer::new(RightSizerConfig::default(), vec![]).unwrap();
    for (c, cpu) in [
        ("app-A", 1.0),
        ("app-B", 5.0),
        ("app-A", 3.0),
        ("app-C", 5.0),
    ] {
        rs.add_cpu_sample(c, TEST_TIMESTAMP, cpu, TEST_REQUEST_CORES)
            .unwrap();
    }
    let cp = rs.checkpoint();
    assert_eq!(
        cp.containers.keys().map(String::as_str).collect::<Vec<_>>(),
        ["app-A", "app-B", "app-C"]
    );
    assert_eq!(cp.containers["app-A"].total_samples_count, 2);
    assert_eq!(cp.containers["app-B"].total_samples_count, 1);
    assert_eq!(cp.containers["app-C"].total_samples_count, 1);
    // the app-A CPU histogram is the merge of both containers' samples
    let cfg = RightSizerConfig::default();
    let mut expected = DecayingHistogram::new(HistogramOptions::vpa_cpu(), cfg.half_life).unwrap();
    for cpu in [1.0, 3.0] {
        let mut one = DecayingHistogram::new(HistogramOptions::vpa_cpu(), cfg.half_life).unwrap();
        one.add_sample(cpu, TEST_REQUEST_CORES, TEST_TIMESTAMP);
        expected.merge(&one).unwrap();
    }
    let mut actual = DecayingHistogram::new(HistogramOptions::vpa_cpu(), cfg.half_life).unwrap();
    actual
        .load_checkpoint(&cp.containers["app-A"].cpu_histogram)
        .unwrap();
    assert_eq!(actual.checkpoint(), expected.checkpoint());
}

#[test]
fn test_aggregate_container_state_save_to_checkpoint() {
    let t1 = Timestamp::from_secs(1_514_772_184); // 2018-01-01T02:03:04Z
    let t2 = Timestamp::from_secs(1_517_450_584); // 2018-02-01T02:03:04Z
    let cfg = RightSizerConfig::default();
    let mut cpu = DecayingHistogram::new(HistogramOptions::vpa_cpu(), cfg.half_life).unwrap();
    cpu.add_sample(1.0, 33.0, t2);
    let mut memory = DecayingHistogram::new(HistogramOptions::vpa_memory(), cfg.half_life).unwrap();
    memory.add_sample(1.0, 55.0, t1);
    memory.add_sample(10_000_000.0, 55.0, t1);
    let state = ContainerCheckpoint {
        cpu_histogram: cpu.checkpoint(),
        memory_histogram: memory.checkpoint(),
        first_sample_start: Some(t1),
        last_sample_start: Some(t2),
        total_samples_count: 10,
        window_end: None,
        memory_peak: 0.0,
    };
    let loaded = RightSizer::from_checkpoint(
        cfg,
        vec![],
        &RightSizerCheckpoint {
            containers: BTreeMap::from([("c".to_owned(), state)]),
        },
    )
    .unwrap();
    let checkpoint = &loaded.checkpoint().containers["c"];
    assert_eq!(checkpoint.first_sample_start, Some(t1));
    assert_eq!(checkpoint.last_sample_start, Some(t2));
    assert_eq!(checkpoint.total_samples_count, 10);
    // basic check that the histograms were serialised
    assert_eq!(checkpoint.cpu_histogram.bucket_weights.len(), 1);
    assert_eq!(checkpoint.memory_histogram.bucket_weights.len(), 2);
}

#[test]
fn test_aggregate_container_state_load_from_checkpoint() {
    let t1 = Timestamp::from_secs(1_514_772_184);
    let t2 = Timestamp::from_secs(1_517_450_584);
    let hist = |total: f64| HistogramCheckpoint {
        reference_timestamp: None,
        bucket_weights: BTreeMap::from([(0, 10)]),
        total_weight: total,
    };
    let state = ContainerCheckpoint {
        cpu_histogram: hist(44.0),
        memory_histogram: hist(33.0),
        first_sample_start: Some(t1),
        last_sample_start: Some(t2),
        total_samples_count: 20,
        window_end: None,
        memory_peak: 0.0,
    };
    let cfg = RightSizerConfig::default();
    let rs = RightSizer::from_checkpoint(
        cfg.clone(),
        vec![],
        &RightSizerCheckpoint {
            containers: BTreeMap::from([("c".to_owned(), state)]),
        },
    )
    .unwrap();
    let cp = &rs.checkpoint().containers["c"];
    assert_eq!(cp.first_sample_start, Some(t1));
    assert_eq!(cp.last_sample_start, Some(t2));
    assert_eq!(cp.total_samples_count, 20);
    for (h, options) in [
        (&cp.cpu_histogram, HistogramOptions::vpa_cpu()),
        (&cp.memory_histogram, HistogramOptions::vpa_memory()),
    ] {
        let mut d = DecayingHistogram::new(options, cfg.half_life).unwrap();
        d.load_checkpoint(h).unwrap();
        assert!(!d.is_empty());
    }
}

/// A VerticalPodAutoscaler with one container policy for `app` (JSON fields after `containerName`).
fn policy_from(fields: Option<&str>) -> Vec<ContainerPolicy> {
    let policies = match fields {
        None => String::new(),
        Some(f) => {
            format!(r#","resourcePolicy":{{"containerPolicies":[{{"containerName":"app"{f}}}]}}"#)
        }
    };
    let json = format!(
        r#"{{"apiVersion":"autoscaling.k8s.io/v1","kind":"VerticalPodAutoscaler","metadata":{{"name":"v"}},"spec":{{"targetRef":{{"kind":"Deployment","name":"d"}}{policies}}}}}"#
    );
    VerticalPodAutoscaler::from_json(&json)
        .unwrap()
        .container_policies()
        .unwrap()
}

#[test]
fn test_update_from_policy_scaling_mode() {
    // (name, policy, recommended: the mode is Auto)
    let cases = [
        (
            "Explicit auto scaling mode",
            Some(r#","mode":"Auto""#),
            true,
        ),
        ("Off scaling mode", Some(r#","mode":"Off""#), false),
        ("No mode specified - default to Auto", Some(""), true),
        ("Nil policy - default to Auto", None, true),
    ];
    for (name, fields, auto) in cases {
        let policies = policy_from(fields);
        assert_eq!(policies.iter().any(|p| p.off), !auto, "{name}");
        let rec = tiny_usage(&["app"], policies);
        assert_eq!(rec.len(), usize::from(auto), "{name}");
    }
}

#[test]
fn test_update_from_policy_controlled_resources() {
    let both = vec![Resource::Cpu, Resource::Memory];
    let cases = [
        (
            "Explicit ControlledResources",
            Some(r#","controlledResources":["cpu","memory"]"#),
            both.clone(),
        ),
        (
            "Empty ControlledResources",
            Some(r#","controlledResources":[]"#),
            vec![],
        ),
        (
            "ControlledResources with one resource",
            Some(r#","controlledResources":["memory"]"#),
            vec![Resource::Memory],
        ),
        (
            "No ControlledResources specified - used default",
            Some(""),
            both.clone(),
        ),
        ("Nil policy - use default", None, both.clone()),
    ];
    for (name, fields, expected) in cases {
        let policies = policy_from(fields);
        let controlled = policies
            .first()
            .map_or(both.clone(), |p| p.controlled_resources.clone());
        assert_eq!(controlled, expected, "{name}");
        // and the recommendation carries exactly those resources
        let rec = tiny_usage(&["app"], policies);
        let t = &rec[0].target;
        assert_eq!(
            t.cpu_millicores.is_some(),
            expected.contains(&Resource::Cpu),
            "{name}"
        );
        assert_eq!(
            t.memory_bytes.is_some(),
            expected.contains(&Resource::Memory),
            "{name}"
        );
    }
}
