//! Conformance with the Kubernetes HPA controller's own unit tests.
//!
//! Every test names the Go test it ports, from
//! `kubernetes/kubernetes/pkg/controller/podautoscaler/{replica_calculator_test.go,horizontal_test.go}`.
//! Kubernetes expresses levels in milli-units per container with two
//! containers per pod; the ratios are the same per pod, so levels here are
//! per pod in whole units (`300` milli-CPU → `0.3`).
//!
//! Not ported, because a pure decision core has no counterpart for them:
//! `TestConditionFailedGetScale` and `TestConditionFailedUpdateScale` (the
//! scale subresource), `TestAvoidUnnecessaryUpdates` (rewriting the HPA status
//! object), `TestMultipleHPAs` (controller concurrency), and the event,
//! selector and monitor-metric tests. `TestConditionInvalidMetricSourceType`,
//! `TestNoScaleDownOneMetricInvalid` and `TestScaleUpFromZeroOneMetricInvalid`
//! use an invented metric type (`CheddarCheese`) a typed spec cannot express;
//! the same decisions are covered with an unavailable reading. Cases that need
//! `minReplicas: 0` with only a CPU metric are rejected by validation, as the
//! API server does without `HPAScaleToZero`.

use std::time::Duration;

use sysmanage_core::Timestamp;
use sysmanage_scaling::kube::{
    self, RateArgs, Reason, Recommendation, ScaleEvent, convert_with_behavior_rate,
    convert_with_rules, scale_down_limit, scale_up_limit, stabilize, stabilize_with_behaviors,
    store_scale_event,
};
use sysmanage_scaling::{
    Behavior, Calculation, Hpa, HpaSpec, MetricSpec, MetricValue, Observation, PodSample,
    PodStatus, ReplicaCounts, ResolvedRules, ScalingPolicy, ScalingRules, SelectPolicy, Tolerances,
    calc::calculate,
};

const NOW: Timestamp = Timestamp::from_secs(1_700_000_000);
use PodStatus::{Ignored, Pending, Ready, Unready};

fn pods(levels: &[f64], statuses: &[PodStatus], request: Option<f64>) -> Vec<PodSample> {
    let n = statuses.len().max(levels.len());
    (0..n)
        .map(|i| PodSample {
            value: levels.get(i).copied(),
            request,
            status: statuses.get(i).copied().unwrap_or(Ready),
        })
        .collect()
}

fn all_ready(n: usize) -> Vec<PodStatus> {
    vec![Ready; n]
}

fn counts(spec: u32, ready: u32) -> ReplicaCounts {
    ReplicaCounts {
        spec,
        status: spec,
        ready,
    }
}

fn run(metric: MetricSpec, value: MetricValue, c: ReplicaCounts) -> Calculation {
    calculate(&metric, &value, c, Tolerances::symmetric(0.1))
        .expect("valid input")
        .expect("metric computes")
}

fn cpu_case(current: u32, levels: &[f64], statuses: &[PodStatus], target: i32) -> Calculation {
    run(
        MetricSpec::resource_utilization("cpu", target),
        MetricValue::PerPod(pods(levels, statuses, Some(1.0))),
        counts(current, current),
    )
}

fn qps_pods_case(current: u32, levels: &[f64], statuses: &[PodStatus], target: f64) -> Calculation {
    run(
        MetricSpec::pods_average_value("qps", target),
        MetricValue::PerPod(pods(levels, statuses, None)),
        counts(current, current),
    )
}

// ---------------------------------------------------------------- replica_calculator_test.go

#[test]
fn test_replica_calc_scale_up() {
    // TestReplicaCalcScaleUp
    let c = cpu_case(3, &[0.3, 0.5, 0.7], &all_ready(3), 30);
    assert_eq!((c.replicas, c.current), (5, 50.0));
}

#[test]
fn test_replica_calc_scale_up_unready_less_scale() {
    // TestReplicaCalcScaleUpUnreadyLessScale (pod 0 not ready)
    let c = cpu_case(3, &[0.3, 0.5, 0.7], &[Unready, Ready, Ready], 30);
    assert_eq!((c.replicas, c.current), (4, 60.0));
}

/// A pod of the Go fixtures, classified by `groupPods`: started now (`hotCPUCreationTime`)
/// or 3 minutes ago (`coolCPUCreationTime`), running, with a Ready condition whose
/// `lastTransitionTime` is unset, and a metric sample stamped with the zero time over one
/// minute; the test controller uses a 2-minute CPU initialization period and a
/// 10-second initial readiness delay.
fn go_fixture_pod(ready: bool, hot: bool, is_cpu: bool) -> PodStatus {
    use sysmanage_scaling::{
        PodInfo, PodPhase, ReadinessRules, ReadyCondition, SampleTime, classify_pod,
    };
    let zero = Timestamp::from_secs(0);
    let pod = PodInfo {
        phase: PodPhase::Running,
        deleting: false,
        ready: Some(ReadyCondition {
            ready,
            last_transition: zero,
        }),
        start_time: Some(if hot {
            NOW
        } else {
            NOW - Duration::from_secs(180)
        }),
    };
    let sample = SampleTime {
        at: zero,
        window: Duration::from_secs(60),
    };
    let rules = ReadinessRules {
        cpu_initialization_period: Duration::from_secs(120),
        initial_readiness_delay: Duration::from_secs(10),
    };
    classify_pod(&pod, Some(sample), is_cpu, NOW, &rules)
}

#[test]
fn test_replica_calc_scale_up_hot_cpu_less_scale() {
    // TestReplicaCalcScaleUpHotCpuLessScale: every pod is Ready, but pod 0 started
    // just now (hot CPU), so groupPods sets it aside for the CPU resource.
    let statuses: Vec<PodStatus> = [true, false, false]
        .iter()
        .map(|&hot| go_fixture_pod(true, hot, true))
        .collect();
    assert_eq!(statuses, [Unready, Ready, Ready]);
    let c = cpu_case(3, &[0.3, 0.5, 0.7], &statuses, 30);
    assert_eq!((c.replicas, c.current), (4, 60.0));
}

#[test]
fn test_replica_calc_scale_up_unready_no_scale() {
    // TestReplicaCalcScaleUpUnreadyNoScale and TestReplicaCalcScaleHotCpuNoScale
    let c = cpu_case(3, &[0.4, 0.5, 0.7], &[Ready, Unready, Unready], 30);
    assert_eq!((c.replicas, c.current), (3, 40.0));
}

#[test]
fn test_replica_calc_scale_up_ignores_failed_and_deleted_pods() {
    // TestReplicaCalcScaleUpIgnoresFailedPods, TestReplicaCalcScaleUpIgnoresDeletionPods
    let c = cpu_case(2, &[0.5, 0.7], &[Ready, Ready, Ignored, Ignored], 30);
    assert_eq!((c.replicas, c.current), (4, 60.0));
}

#[test]
fn test_replica_calc_scale_up_cm() {
    // TestReplicaCalcScaleUpCM
    let c = qps_pods_case(3, &[20.0, 10.0, 30.0], &all_ready(3), 15.0);
    assert_eq!((c.replicas, c.current), (4, 20.0));
}

#[test]
fn test_replica_calc_scale_up_cm_unready_hot_cpu_no_less_scale() {
    // TestReplicaCalcScaleUpCMUnreadyHotCpuNoLessScale: readiness [True, True, False],
    // start times [cool, cool, hot]. Readiness only matters for CPU, so for a Pods
    // metric every running pod with a sample is Ready.
    let fixture = [(true, false), (true, false), (false, true)];
    let as_cpu: Vec<PodStatus> = fixture
        .iter()
        .map(|&(ready, hot)| go_fixture_pod(ready, hot, true))
        .collect();
    assert_eq!(as_cpu, [Ready, Ready, Unready], "the same pods, for CPU");
    let statuses: Vec<PodStatus> = fixture
        .iter()
        .map(|&(ready, hot)| go_fixture_pod(ready, hot, false))
        .collect();
    let c = qps_pods_case(3, &[50.0, 10.0, 30.0], &statuses, 15.0);
    assert_eq!((c.replicas, c.current), (6, 30.0));
}

#[test]
fn test_replica_calc_scale_up_cm_unready_hot_cpu_scale_would_scale_down() {
    // TestReplicaCalcScaleUpCMUnreadyHotCpuScaleWouldScaleDown: readiness
    // [False, True, False], start times [hot, cool, hot]; a Pods metric counts them all.
    let statuses: Vec<PodStatus> = [(false, true), (true, false), (false, true)]
        .iter()
        .map(|&(ready, hot)| go_fixture_pod(ready, hot, false))
        .collect();
    let c = qps_pods_case(3, &[50.0, 15.0, 30.0], &statuses, 15.0);
    assert_eq!((c.replicas, c.current), (7, 31.666));
}

#[test]
fn test_replica_calc_scale_up_cm_object() {
    // TestReplicaCalcScaleUpCMObject
    let c = run(
        MetricSpec::object_value("qps", 15.0),
        MetricValue::Total(20.0),
        counts(3, 3),
    );
    assert_eq!((c.replicas, c.current), (4, 20.0));
}

#[test]
fn test_replica_calc_scale_up_cm_per_pod_object() {
    // TestReplicaCalcScaleUpCMPerPodObject
    let c = run(
        MetricSpec::object_average_value("qps", 5.0),
        MetricValue::Total(20.0),
        counts(3, 3),
    );
    assert_eq!((c.replicas, c.current), (4, 6.667));
}

#[test]
fn test_replica_calc_scale_up_cm_object_ignores_unready_pods() {
    // TestReplicaCalcScaleUpCMObjectIgnoresUnreadyPods: one ready pod of three
    let c = run(
        MetricSpec::object_value("qps", 10.0),
        MetricValue::Total(50.0),
        counts(3, 1),
    );
    assert_eq!(c.replicas, 5);
}

#[test]
fn test_replica_calc_scale_up_cm_external() {
    // TestReplicaCalcScaleUpCMExternal and TestReplicaCalcScaleUpCMExternalNoLabels (podMetric)
    let c = qps_pods_case(1, &[8.6], &all_ready(1), 4.4);
    assert_eq!((c.replicas, c.current), (2, 8.6));
}

#[test]
fn test_replica_calc_scale_up_cm_external_ignores_unready_pods() {
    // TestReplicaCalcScaleUpCMExternalIgnoresUnreadyPods
    let c = run(
        MetricSpec::external_value("qps", 4.4),
        MetricValue::Total(8.6),
        counts(3, 1),
    );
    assert_eq!(c.replicas, 2);
}

#[test]
fn test_replica_calc_scale_up_per_pod_cm_external() {
    // TestReplicaCalcScaleUpPerPodCMExternal
    let c = run(
        MetricSpec::external_average_value("qps", 2.15),
        MetricValue::Total(8.6),
        counts(3, 3),
    );
    assert_eq!((c.replicas, c.current), (4, 2.867));
}

#[test]
fn test_replica_calc_scale_down() {
    // TestReplicaCalcScaleDown
    let c = cpu_case(5, &[0.1, 0.3, 0.5, 0.25, 0.25], &all_ready(5), 50);
    assert_eq!((c.replicas, c.current), (3, 28.0));
}

#[test]
fn test_replica_calc_scale_down_cm() {
    // TestReplicaCalcScaleDownCM
    let c = qps_pods_case(5, &[12.0; 5], &all_ready(5), 20.0);
    assert_eq!((c.replicas, c.current), (3, 12.0));
}

#[test]
fn test_replica_calc_scale_down_per_pod_cm_object() {
    // TestReplicaCalcScaleDownPerPodCMObject
    let c = run(
        MetricSpec::object_average_value("qps", 2.0),
        MetricValue::Total(6.0),
        counts(5, 5),
    );
    assert_eq!((c.replicas, c.current), (3, 1.2));
}

#[test]
fn test_replica_calc_scale_down_cm_object() {
    // TestReplicaCalcScaleDownCMObject
    let c = run(
        MetricSpec::object_value("qps", 20.0),
        MetricValue::Total(12.0),
        counts(5, 5),
    );
    assert_eq!(c.replicas, 3);
}

#[test]
fn test_replica_calc_scale_down_cm_external() {
    // TestReplicaCalcScaleDownCMExternal
    let c = run(
        MetricSpec::external_value("qps", 14.334),
        MetricValue::Total(8.6),
        counts(5, 5),
    );
    assert_eq!(c.replicas, 3);
}

#[test]
fn test_replica_calc_scale_down_per_pod_cm_external() {
    // TestReplicaCalcScaleDownPerPodCMExternal
    let c = run(
        MetricSpec::external_average_value("qps", 2.867),
        MetricValue::Total(8.6),
        counts(5, 5),
    );
    assert_eq!((c.replicas, c.current), (3, 1.72));
}

#[test]
fn test_replica_calc_scale_down_include_unready_pods() {
    // TestReplicaCalcScaleDownIncludeUnreadyPods and TestReplicaCalcScaleDownIgnoreHotCpuPods
    let c = cpu_case(
        5,
        &[0.1, 0.3, 0.5, 0.25, 0.25],
        &[Ready, Ready, Ready, Unready, Unready],
        50,
    );
    assert_eq!((c.replicas, c.current), (2, 30.0));
}

#[test]
fn test_replica_calc_scale_down_exclude_unscheduled_pods() {
    // TestReplicaCalcScaleDownExcludeUnscheduledPods
    let c = cpu_case(5, &[0.1], &[Ready, Pending, Pending, Pending, Pending], 50);
    assert_eq!((c.replicas, c.current), (1, 10.0));
}

#[test]
fn test_replica_calc_scale_down_ignores_failed_pods() {
    // TestReplicaCalcScaleDownIgnoresFailedPods, TestReplicaCalcScaleDownIgnoresDeletionPods
    let c = cpu_case(
        5,
        &[0.1, 0.3, 0.5, 0.25, 0.25],
        &[Ready, Ready, Ready, Ready, Ready, Ignored, Ignored],
        50,
    );
    assert_eq!((c.replicas, c.current), (3, 28.0));
}

#[test]
fn test_replica_calc_tolerance_per_pod_cm_object() {
    // TestReplicaCalcTolerancePerPodCMObject
    let c = run(
        MetricSpec::object_average_value("qps", 5.0),
        MetricValue::Total(20.166),
        counts(4, 4),
    );
    assert_eq!((c.replicas, c.current), (4, 5.042));
}

#[test]
fn test_replica_calc_tolerance_cm_external() {
    // TestReplicaCalcToleranceCMExternal
    let c = run(
        MetricSpec::external_value("qps", 8.888),
        MetricValue::Total(8.6),
        counts(3, 3),
    );
    assert_eq!(c.replicas, 3);
}

#[test]
fn test_replica_calc_tolerance_per_pod_cm_external() {
    // TestReplicaCalcTolerancePerPodCMExternal
    let c = run(
        MetricSpec::external_average_value("qps", 2.9),
        MetricValue::Total(8.6),
        counts(3, 3),
    );
    assert_eq!((c.replicas, c.current), (3, 2.867));
}

#[test]
fn test_replica_calc_missing_metrics() {
    // TestReplicaCalcMissingMetrics: two of four pods have no sample
    let c = cpu_case(4, &[0.4, 0.095], &all_ready(4), 100);
    assert_eq!((c.replicas, c.current), (3, 24.0));
}

#[test]
fn test_replica_calc_empty_metrics() {
    // TestReplicaCalcEmptyMetrics: no pod reported → the metric is invalid
    let r = calculate(
        &MetricSpec::resource_utilization("cpu", 100),
        &MetricValue::PerPod(pods(&[], &all_ready(3), Some(1.0))),
        counts(4, 4),
        Tolerances::symmetric(0.1),
    )
    .unwrap();
    assert!(r.unwrap_err().contains("did not receive metrics"));
}

#[test]
fn test_replica_calc_empty_cpu_request() {
    // TestReplicaCalcEmptyCPURequest: expectedError "missing request for"; the
    // metric is invalid (other metrics may still decide), not bad input.
    let r = calculate(
        &MetricSpec::resource_utilization("cpu", 100),
        &MetricValue::PerPod(pods(&[0.2], &all_ready(1), None)),
        counts(1, 1),
        Tolerances::symmetric(0.1),
    )
    .expect("not bad input");
    let e = r.expect_err("the metric is invalid");
    assert!(e.contains("missing request for"), "{e}");
}

#[test]
fn test_replica_calc_missing_metrics_no_change_eq() {
    // TestReplicaCalcMissingMetricsNoChangeEq
    let c = cpu_case(2, &[1.0], &all_ready(2), 100);
    assert_eq!((c.replicas, c.current), (2, 100.0));
}

#[test]
fn test_replica_calc_missing_metrics_no_change_gt() {
    // TestReplicaCalcMissingMetricsNoChangeGt
    let c = cpu_case(2, &[1.9], &all_ready(2), 100);
    assert_eq!((c.replicas, c.current), (2, 190.0));
}

#[test]
fn test_replica_calc_missing_metrics_no_change_lt() {
    // TestReplicaCalcMissingMetricsNoChangeLt
    let c = cpu_case(2, &[0.6], &all_ready(2), 100);
    assert_eq!((c.replicas, c.current), (2, 60.0));
}

#[test]
fn test_replica_calc_missing_metrics_unready_change() {
    // TestReplicaCalcMissingMetricsUnreadyChange and ...HotCpuNoChange
    let c = cpu_case(3, &[0.1, 0.45], &[Unready, Ready, Ready], 50);
    assert_eq!((c.replicas, c.current), (3, 45.0));
}

#[test]
fn test_replica_calc_missing_metrics_unready_scale_up() {
    // TestReplicaCalcMissingMetricsUnreadyScaleUp and ...HotCpuScaleUp
    let c = cpu_case(3, &[0.1, 2.0], &[Unready, Ready, Ready], 50);
    assert_eq!((c.replicas, c.current), (4, 200.0));
}

#[test]
fn test_replica_calc_missing_metrics_unready_scale_down() {
    // TestReplicaCalcMissingMetricsUnreadyScaleDown
    let c = cpu_case(4, &[0.1, 0.1, 0.1], &[Unready, Ready, Ready, Ready], 50);
    assert_eq!((c.replicas, c.current), (3, 10.0));
}

#[test]
fn test_replica_calc_during_rolling_update_with_max_surge() {
    // TestReplicaCalcDuringRollingUpdateWithMaxSurge
    let c = cpu_case(2, &[0.1, 0.1], &all_ready(3), 50);
    assert_eq!((c.replicas, c.current), (2, 10.0));
}

#[test]
fn test_replica_calc_computed_tolerance_alg_implementation() {
    // TestReplicaCalcComputedToleranceAlgImplementation
    let per_pod_requested = 300.0;
    let offsets = [100.0, -100.0, 10.0, -10.0, 2.0, -2.0, 1.0, -1.0, 0.0, 0.0];
    let samples: Vec<PodSample> = offsets
        .iter()
        .map(|o| PodSample::with_request(0.15, (per_pod_requested + o) / 1000.0))
        .collect();
    let requested_to_used = 2.0_f64;
    let target = (1.0 / (requested_to_used * (1.0 - 0.1))).abs() + 0.01;
    let pct = (target * 100.0) as i32;
    let final_pods = (1500.0 / (3000.0 * target) * 10.0).ceil() as u32;
    let c = run(
        MetricSpec::resource_utilization("cpu", pct),
        MetricValue::PerPod(samples.clone()),
        counts(10, 10),
    );
    assert_eq!((c.replicas, c.current), (final_pods, 50.0));
    assert_eq!(final_pods, 9);
    // within a hair of the tolerance: no change
    let target = (1.0 / (requested_to_used * (1.0 - 0.1))).abs() + 0.004;
    let c = run(
        MetricSpec::resource_utilization("cpu", (target * 100.0) as i32),
        MetricValue::PerPod(samples),
        counts(10, 10),
    );
    assert_eq!(c.replicas, 10);
}

// ---------------------------------------------------------------- horizontal_test.go

fn rules(
    pods: u32,
    pods_period: u32,
    percent: u32,
    percent_period: u32,
    window: u32,
) -> ScalingRules {
    // generateScalingRules
    let mut policies = Vec::new();
    if pods != 0 {
        policies.push(ScalingPolicy::pods(pods, pods_period));
    }
    if percent != 0 {
        policies.push(ScalingPolicy::percent(percent, percent_period));
    }
    ScalingRules {
        stabilization_window_seconds: Some(window),
        select_policy: Some(SelectPolicy::Max),
        // Go leaves Policies nil when both are zero, and GenerateHPA*Rules then fills the default.
        policies: if policies.is_empty() {
            None
        } else {
            Some(policies)
        },
        tolerance: None,
    }
}

fn events(raw: &[u32], period_seconds: u32) -> Vec<ScaleEvent> {
    // generateEventsUniformDistribution (Go truncates the float seconds to a Duration)
    let seg = f64::from(period_seconds) / raw.len() as f64;
    raw.iter()
        .enumerate()
        .map(|(i, &change)| {
            let back = (f64::from(period_seconds) - seg * (i as f64 + 1.0) + seg / 2.0) as u64;
            ScaleEvent {
                change,
                at: NOW - Duration::from_secs(back),
                outdated: false,
            }
        })
        .collect()
}

fn resolve(up: Option<ScalingRules>, down: Option<ScalingRules>) -> (ResolvedRules, ResolvedRules) {
    Behavior {
        scale_up: up,
        scale_down: down,
    }
    .resolve(Duration::from_secs(300), 0.1)
}

struct RulesCase {
    name: &'static str,
    up_events: Vec<ScaleEvent>,
    down_events: Vec<ScaleEvent>,
    min: u32,
    max: u32,
    up: Option<ScalingRules>,
    down: Option<ScalingRules>,
    current: u32,
    desired: u32,
    expected: u32,
    condition: Reason,
}

#[allow(clippy::too_many_arguments)] // mirrors the Go table's columns
fn rc(
    name: &'static str,
    min: u32,
    max: u32,
    up: Option<ScalingRules>,
    down: Option<ScalingRules>,
    current: u32,
    desired: u32,
    expected: u32,
    condition: Reason,
) -> RulesCase {
    RulesCase {
        name,
        up_events: vec![],
        down_events: vec![],
        min,
        max,
        up,
        down,
        current,
        desired,
        expected,
        condition,
    }
}

impl RulesCase {
    fn up_ev(mut self, e: Vec<ScaleEvent>) -> Self {
        self.up_events = e;
        self
    }
    fn down_ev(mut self, e: Vec<ScaleEvent>) -> Self {
        self.down_events = e;
        self
    }
}

#[test]
fn test_scaling_with_rules() {
    // TestScalingWithRules (the case marked testThis, skipped upstream, is omitted)
    use Reason::*;
    let cases = vec![
        rc("prenormalized desired replicas within range", 3, 8, None, None, 5, 7, 7, DesiredWithinRange),
        rc("prenormalized desired replicas < minReplicas", 2, 8, None, None, 3, 1, 2, TooFewReplicas),
        rc("prenormalized desired replicas within range when minReplicas is 0", 0, 10, None, None, 1, 0, 0, DesiredWithinRange),
        rc("maxReplicas is the limit because maxReplicas < scaleUpLimit", 1, 10, None, None, 20, 1000, 10, TooManyReplicas),
        rc("desired replica count is more than the maximum replica count", 100, 150, None, None, 100, 1000, 150, TooManyReplicas),
        rc("scaleUpLimit is the limit because scaleUpLimit < maxReplicas with user policies", 1, 2000, Some(rules(0, 0, 1, 60, 0)), None, 3, 1000, 4, ScaleUpLimit),
        rc("scaleUp with default behavior", 1, 1000, None, None, 10, 50, 20, ScaleUpLimit),
        rc("scaleUp with pods policy larger than percent policy", 1, 1000, Some(rules(100, 60, 100, 60, 0)), None, 10, 500, 110, ScaleUpLimit),
        rc("scaleUp with percent policy larger than pods policy", 1, 1000, Some(rules(2, 60, 100, 60, 0)), None, 10, 500, 20, ScaleUpLimit),
        rc("scaleUp with spec MaxReplicas limitation with large pod policy", 1, 1000, Some(rules(100, 60, 0, 0, 0)), None, 10, 50, 50, DesiredWithinRange),
        rc("scaleUp with spec MaxReplicas limitation with large percent policy", 1, 1000, Some(rules(10000, 60, 0, 0, 0)), None, 10, 50, 50, DesiredWithinRange),
        rc("scaleUp with pod policy limitation", 1, 1000, Some(rules(30, 60, 0, 0, 0)), None, 10, 50, 40, ScaleUpLimit),
        rc("scaleUp with percent policy limitation", 1, 1000, Some(rules(0, 0, 200, 60, 0)), None, 10, 50, 30, ScaleUpLimit),
        rc("scaleDown with percent policy larger than pod policy", 1, 1000, None, Some(rules(20, 60, 1, 60, 300)), 100, 2, 80, ScaleDownLimit),
        rc("scaleDown with pod policy larger than percent policy", 1, 1000, None, Some(rules(2, 60, 1, 60, 300)), 100, 2, 98, ScaleDownLimit),
        rc("scaleDown with spec MinReplicas=nil limitation with large pod policy", 1, 1000, None, Some(rules(100, 60, 0, 0, 300)), 10, 0, 1, TooFewReplicas),
        rc("scaleDown with spec MinReplicas limitation with large percent policy", 5, 1000, None, Some(rules(0, 0, 100, 60, 300)), 10, 2, 5, TooFewReplicas),
        rc("scaleDown with pod policy limitation", 1, 1000, None, Some(rules(5, 60, 0, 0, 300)), 10, 2, 5, ScaleDownLimit),
        rc("scaleDown with percent policy limitation", 1, 1000, None, Some(rules(0, 0, 50, 60, 300)), 10, 5, 5, DesiredWithinRange),
        rc("scaleUp with spec MaxReplicas limitation with large pod policy and events", 1, 200, Some(rules(300, 60, 0, 0, 0)), None, 100, 500, 200, TooManyReplicas).up_ev(events(&[1, 5, 9], 120)),
        rc("scaleUp with spec MaxReplicas limitation with large percent policy and events", 1, 200, Some(rules(0, 0, 10000, 60, 0)), None, 100, 500, 200, TooManyReplicas).up_ev(events(&[1, 5, 9], 120)),
        rc("scaleUp with currentReplicas limitation with rate.PeriodSeconds with a lot of recent scale up events", 1, 1000, Some(rules(5, 120, 0, 0, 0)), None, 100, 500, 100, ScaleUpLimit).up_ev(events(&[1, 5, 9], 120)),
        rc("scaleUp with pod policy and previous scale up events", 1, 1000, Some(rules(150, 120, 0, 0, 0)), None, 100, 500, 235, ScaleUpLimit).up_ev(events(&[1, 5, 9], 120)),
        rc("scaleUp with percent policy and previous scale up events", 1, 1000, Some(rules(0, 0, 200, 120, 0)), None, 100, 500, 255, ScaleUpLimit).up_ev(events(&[1, 5, 9], 120)),
        rc("scaleUp with percent policy and previous scale up and down events", 1, 1000, Some(rules(0, 0, 300, 300, 0)), None, 6, 24, 16, ScaleUpLimit).up_ev(events(&[4], 120)).down_ev(events(&[2], 120)),
        rc("scaleDown with default policy and previous events", 1, 1000, None, None, 10, 5, 5, DesiredWithinRange).down_ev(events(&[1, 5, 9], 120)),
        rc("scaleDown with spec MinReplicas=nil limitation with large pod policy and previous events", 1, 1000, None, Some(rules(115, 120, 0, 0, 300)), 100, 0, 1, TooFewReplicas).down_ev(events(&[1, 5, 9], 120)),
        rc("scaleDown with spec MinReplicas limitation with large pod policy and previous events", 5, 1000, None, Some(rules(130, 120, 0, 0, 300)), 100, 0, 5, TooFewReplicas).down_ev(events(&[1, 5, 9], 120)),
        rc("scaleDown with spec MinReplicas limitation with large percent policy and previous events", 5, 1000, None, Some(rules(0, 0, 100, 120, 300)), 100, 2, 5, TooFewReplicas).down_ev(events(&[1, 5, 9], 120)),
        rc("scaleDown with pod policy limitation and previous events", 1, 1000, None, Some(rules(5, 120, 0, 0, 300)), 100, 2, 100, ScaleDownLimit).down_ev(events(&[1, 5, 9], 120)),
        rc("scaleDown with percent policy limitation and previous events", 1, 1000, None, Some(rules(0, 0, 50, 120, 300)), 100, 0, 56, ScaleDownLimit).down_ev(events(&[2, 4, 6], 120)),
        rc("scaleDown with percent policy and previous scale up and down events", 1, 1000, None, Some(rules(0, 0, 50, 180, 0)), 10, 1, 6, ScaleDownLimit).up_ev(events(&[2], 120)).down_ev(events(&[4], 120)),
        rc("scaleDown with previous events preventing further scale down", 1, 1000, None, Some(rules(0, 0, 10, 120, 300)), 100, 0, 100, ScaleDownLimit).down_ev(events(&[10, 10, 10], 120)),
        rc("scaleDown with with previous events still allowing more scale down", 1, 1000, None, Some(rules(0, 0, 1000, 120, 300)), 10, 5, 5, DesiredWithinRange).down_ev(events(&[10, 10, 10], 120)),
        rc("check 'outdated' flag for events for one behavior for up", 1, 1000, Some(rules(1000, 60, 0, 0, 0)), None, 100, 200, 200, DesiredWithinRange).up_ev(events(&[8, 12, 9, 11], 120)),
        rc("check that events were not marked 'outdated' for two different policies in the behavior for up", 1, 1000, Some(rules(1000, 120, 100, 60, 0)), None, 100, 200, 200, DesiredWithinRange).up_ev(events(&[8, 12, 9, 11], 120)),
        rc("check that events were marked 'outdated' for two different policies in the behavior for up", 1, 1000, Some(rules(1000, 30, 100, 60, 0)), None, 100, 200, 200, DesiredWithinRange).up_ev(events(&[8, 12, 9, 11], 120)),
        rc("check 'outdated' flag for events for one behavior for down", 1, 1000, None, Some(rules(1000, 60, 0, 0, 300)), 100, 5, 5, DesiredWithinRange).down_ev(events(&[8, 12, 9, 11], 120)),
        rc("check that events were not marked 'outdated' for two different policies in the behavior for down", 1, 1000, None, Some(rules(1000, 120, 100, 60, 300)), 100, 5, 5, DesiredWithinRange).down_ev(events(&[8, 12, 9, 11], 120)),
        rc("check that events were marked 'outdated' for two different policies in the behavior for down", 1, 1000, None, Some(rules(1000, 30, 100, 60, 300)), 100, 5, 5, DesiredWithinRange).down_ev(events(&[8, 12, 9, 11], 120)),
    ];
    assert!(cases.len() >= 40);
    for c in cases {
        let (up, down) = resolve(c.up.clone(), c.down.clone());
        let (got, why) = convert_with_behavior_rate(
            RateArgs {
                current: c.current,
                desired: c.desired,
                min: c.min,
                max: c.max,
                up: &up,
                down: &down,
                up_events: &c.up_events,
                down_events: &c.down_events,
            },
            NOW,
        );
        assert_eq!((got, why), (c.expected, c.condition), "{}", c.name);
    }
}

#[test]
fn test_convert_desired_replicas_with_rules() {
    // TestConvertDesiredReplicasWithRules (legacy path)
    use Reason::*;
    let cases = [
        (5, 7, 3, 8, 7, DesiredWithinRange),
        (3, 1, 2, 8, 2, TooFewReplicas),
        (1, 0, 0, 10, 0, DesiredWithinRange),
        (20, 1000, 1, 10, 10, TooManyReplicas),
        (
            3,
            1000,
            1,
            2000,
            kube::legacy_scale_up_limit(3),
            ScaleUpLimit,
        ),
    ];
    for (current, desired, min, max, expected, cond) in cases {
        assert_eq!(
            convert_with_rules(current, desired, min, max),
            (expected, cond)
        );
    }
    assert_eq!(kube::legacy_scale_up_limit(3), 6);
    assert_eq!(kube::legacy_scale_up_limit(1), 4);
}

#[test]
fn test_calculate_scale_up_limit_with_scaling_rules() {
    // TestCalculateScaleUpLimitWithScalingRules
    let r = ResolvedRules {
        stabilization_window_seconds: 300,
        select_policy: SelectPolicy::Min,
        policies: vec![ScalingPolicy::pods(2, 60), ScalingPolicy::percent(50, 60)],
        tolerance: 0.1,
    };
    assert_eq!(scale_up_limit(1, &[], &[], &r, NOW), 2);
}

#[test]
fn test_calculate_scale_down_limit_with_behaviors() {
    // TestCalculateScaleDownLimitWithBehaviors
    let r = ResolvedRules {
        stabilization_window_seconds: 300,
        select_policy: SelectPolicy::Min,
        policies: vec![ScalingPolicy::pods(2, 60), ScalingPolicy::percent(50, 60)],
        tolerance: 0.1,
    };
    assert_eq!(scale_down_limit(5, &[], &[], &r, NOW), 3);
}

fn recs(list: &[(u32, i64)]) -> Vec<Recommendation> {
    list.iter()
        .map(|&(replicas, mins_ago)| Recommendation {
            replicas,
            at: NOW - Duration::from_secs(u64::try_from(mins_ago * 60).unwrap()),
        })
        .collect()
}

#[test]
fn test_normalize_desired_replicas() {
    // TestNormalizeDesiredReplicas (legacy stabilizeRecommendation, 5-minute window)
    let cases: [(&str, Vec<Recommendation>, u32, u32, usize); 5] = [
        ("empty log", recs(&[]), 5, 5, 1),
        ("stabilize", recs(&[(4, 2), (5, 1)]), 3, 5, 3),
        ("no stabilize", recs(&[(1, 2), (2, 1)]), 3, 3, 3),
        (
            "no stabilize - old recommendations",
            recs(&[(10, 10), (9, 9)]),
            3,
            3,
            2,
        ),
        (
            "stabilize - old recommendations",
            recs(&[(10, 10), (4, 1), (5, 2), (9, 9)]),
            3,
            5,
            4,
        ),
    ];
    for (name, mut log, desired, expected, len) in cases {
        let got = stabilize(&mut log, desired, Duration::from_secs(300), NOW);
        assert_eq!(got, expected, "{name}");
        assert_eq!(log.len(), len, "{name}");
    }
}

#[test]
fn test_normalize_desired_replicas_with_behavior() {
    // TestNormalizeDesiredReplicasWithBehavior
    struct C {
        name: &'static str,
        recs: Vec<Recommendation>,
        current: u32,
        desired: u32,
        expected: u32,
        stored: Option<Vec<u32>>,
        up: u32,
        down: u32,
    }
    let cases = vec![
        C {
            name: "empty recommendations for scaling down",
            recs: recs(&[]),
            current: 100,
            desired: 5,
            expected: 5,
            stored: Some(vec![5]),
            up: 0,
            down: 0,
        },
        C {
            name: "simple scale down stabilization",
            recs: recs(&[(4, 2), (5, 1)]),
            current: 100,
            desired: 3,
            expected: 5,
            stored: Some(vec![4, 5, 3]),
            up: 0,
            down: 180,
        },
        C {
            name: "simple scale up stabilization",
            recs: recs(&[(4, 2), (5, 1)]),
            current: 1,
            desired: 7,
            expected: 4,
            stored: Some(vec![4, 5, 7]),
            up: 300,
            down: 0,
        },
        C {
            name: "no scale down stabilization",
            recs: recs(&[(1, 2), (2, 1)]),
            current: 100,
            desired: 3,
            expected: 3,
            stored: Some(vec![1, 2, 3]),
            up: 300,
            down: 0,
        },
        C {
            name: "no scale up stabilization",
            recs: recs(&[(4, 2), (5, 1)]),
            current: 1,
            desired: 3,
            expected: 3,
            stored: Some(vec![4, 5, 3]),
            up: 0,
            down: 300,
        },
        C {
            name: "no scale down stabilization, reuse recommendation element",
            recs: recs(&[(10, 10), (9, 9)]),
            current: 100,
            desired: 3,
            expected: 3,
            stored: Some(vec![10, 3]),
            up: 0,
            down: 0,
        },
        C {
            name: "no scale up stabilization, reuse recommendation element",
            recs: recs(&[(10, 10), (9, 9)]),
            current: 1,
            desired: 100,
            expected: 100,
            stored: Some(vec![10, 100]),
            up: 0,
            down: 0,
        },
        C {
            name: "scale down stabilization, reuse one of obsolete recommendation element",
            recs: recs(&[(10, 10), (4, 1), (5, 2), (9, 9)]),
            current: 100,
            desired: 3,
            expected: 5,
            stored: Some(vec![10, 4, 5, 3]),
            up: 0,
            down: 180,
        },
        C {
            name: "scale up stabilization, reuse one of obsolete recommendation element",
            recs: recs(&[(10, 100), (6, 1), (5, 2), (9, 3)]),
            current: 1,
            desired: 100,
            expected: 5,
            stored: Some(vec![100, 6, 5, 9]),
            up: 300,
            down: 0,
        },
        C {
            name: "scale up and down stabilization, do not scale up when prenormalized rec goes down",
            recs: recs(&[(2, 100), (3, 3)]),
            current: 2,
            desired: 1,
            expected: 2,
            stored: None,
            up: 300,
            down: 300,
        },
        C {
            name: "scale up and down stabilization, do not scale down when prenormalized rec goes up",
            recs: recs(&[(2, 100), (1, 3)]),
            current: 2,
            desired: 3,
            expected: 2,
            stored: None,
            up: 300,
            down: 300,
        },
    ];
    for mut c in cases {
        let (got, _) =
            stabilize_with_behaviors(&mut c.recs, c.current, c.desired, c.up, c.down, NOW);
        assert_eq!(got, c.expected, "{}", c.name);
        if let Some(stored) = c.stored {
            let have: Vec<u32> = c.recs.iter().map(|r| r.replicas).collect();
            assert_eq!(have, stored, "{}", c.name);
        }
    }
}

#[test]
fn test_store_scale_events() {
    // TestStoreScaleEvents
    fn ev(change: u32, secs_ago: u64) -> ScaleEvent {
        ScaleEvent {
            change,
            at: NOW - Duration::from_secs(secs_ago),
            outdated: false,
        }
    }
    // (name, prev, expected (change, outdated), rules, expected change in the last 60 s)
    type Case = (
        &'static str,
        Vec<ScaleEvent>,
        Vec<(u32, bool)>,
        Option<ScalingRules>,
        i64,
    );
    let cases: Vec<Case> = vec![
        (
            "empty entries with default behavior",
            vec![],
            vec![],
            None,
            0,
        ),
        (
            "empty entries with two-policy-behavior",
            vec![],
            vec![(5, false)],
            Some(rules(10, 60, 100, 60, 0)),
            0,
        ),
        (
            "one outdated entry to be kept untouched without behavior",
            vec![ev(7, 61)],
            vec![(7, false)],
            None,
            0,
        ),
        (
            "one outdated entry to be replaced with behavior",
            vec![ev(7, 61)],
            vec![(5, false)],
            Some(rules(10, 60, 100, 60, 0)),
            0,
        ),
        (
            "one actual entry to be not touched with behavior",
            vec![ev(7, 58)],
            vec![(7, false), (5, false)],
            Some(rules(10, 60, 100, 60, 0)),
            7,
        ),
        (
            "two entries, one of them to be replaced",
            vec![ev(7, 61), ev(6, 59)],
            vec![(5, false), (6, false)],
            Some(rules(10, 60, 0, 0, 0)),
            6,
        ),
        (
            "replace one entry, use policies with different periods",
            vec![ev(8, 29), ev(6, 59), ev(7, 61), ev(9, 61)],
            vec![(8, false), (6, false), (7, true), (5, false)],
            Some(rules(10, 60, 100, 30, 0)),
            14,
        ),
        (
            "two entries, both actual",
            vec![ev(7, 58), ev(6, 59)],
            vec![(7, false), (6, false), (5, false)],
            Some(rules(10, 120, 100, 30, 0)),
            13,
        ),
    ];
    for (name, prev, expected, r, change) in cases {
        assert_eq!(
            kube::replicas_change_per_period(60, &prev, NOW),
            change,
            "{name}"
        );
        let mut events = prev.clone();
        // storeScaleEvent: nothing is stored without a behavior
        if let Some(r) = r {
            let (up, _) = resolve(Some(r), None);
            store_scale_event(&mut events, up.longest_period_seconds(), 5, NOW);
        }
        let got: Vec<(u32, bool)> = events.iter().map(|e| (e.change, e.outdated)).collect();
        assert_eq!(got, expected, "{name}");
    }
}

// ---------------------------------------------------------------- whole-controller cases

fn cpu_obs(current: u32, levels: &[f64]) -> Observation {
    Observation::new(current).reading(
        "cpu",
        MetricValue::PerPod(pods(levels, &all_ready(levels.len()), Some(1.0))),
    )
}

#[test]
fn test_scale_up() {
    // TestScaleUp: min 2, max 6, 3 replicas, CPU target 30 %, levels 300/500/700 m
    let mut hpa = Hpa::new(HpaSpec::new(
        2,
        6,
        vec![MetricSpec::resource_utilization("cpu", 30)],
    ))
    .unwrap();
    let d = hpa.decide(&cpu_obs(3, &[0.3, 0.5, 0.7]), NOW).unwrap();
    assert_eq!(d.desired_replicas, 5);
}

#[test]
fn test_scale_up_one_metric_empty() {
    // TestScaleUpOneMetricEmpty: CPU proposes 4, the External metric fails → still 4
    let spec = HpaSpec::new(
        2,
        6,
        vec![
            MetricSpec::resource_utilization("cpu", 30),
            MetricSpec::external_value("qps", 0.1),
        ],
    );
    let mut hpa = Hpa::new(spec).unwrap();
    let obs = cpu_obs(3, &[0.3, 0.4, 0.5]).reading("qps", MetricValue::Unavailable("boom".into()));
    let d = hpa.decide(&obs, NOW).unwrap();
    assert_eq!(d.desired_replicas, 4);
    assert!(d.has(Reason::PartialMetricsFailure));
    assert_eq!(d.proposals[1].error.as_deref(), Some("boom"));
}

#[test]
fn scale_down_with_one_metric_failing_is_blocked() {
    // The downward counterpart of TestScaleUpOneMetricEmpty (computeReplicasForMetrics:
    // "some are invalid and we would scale down" → no change).
    let spec = HpaSpec::new(
        1,
        6,
        vec![
            MetricSpec::resource_utilization("cpu", 50),
            MetricSpec::external_value("qps", 0.1),
        ],
    );
    let mut hpa = Hpa::new(spec).unwrap();
    let obs = cpu_obs(5, &[0.1, 0.3, 0.5, 0.25, 0.25])
        .reading("qps", MetricValue::Unavailable("x".into()));
    let d = hpa.decide(&obs, NOW).unwrap();
    assert_eq!(d.desired_replicas, 5);
    assert!(d.has(Reason::FailedGetMetrics));
}

#[test]
fn zero_replicas_disables_scaling_and_out_of_range_counts_are_corrected() {
    // reconcileAutoscaler: spec.replicas == 0 && minReplicas != 0 → ScalingDisabled;
    // above max / below min → corrected without looking at metrics.
    let mut hpa = Hpa::new(HpaSpec::new(
        2,
        6,
        vec![MetricSpec::resource_utilization("cpu", 30)],
    ))
    .unwrap();
    let d = hpa.decide(&Observation::new(0), NOW).unwrap();
    assert_eq!(
        (d.desired_replicas, d.reasons[0]),
        (0, Reason::ScalingDisabled)
    );
    let d = hpa.decide(&Observation::new(9), NOW).unwrap();
    assert_eq!(
        (d.desired_replicas, d.reasons[0]),
        (6, Reason::CurrentAboveMax)
    );
    let d = hpa.decide(&Observation::new(1), NOW).unwrap();
    assert_eq!(
        (d.desired_replicas, d.reasons[0]),
        (2, Reason::CurrentBelowMin)
    );
}

// ---------------------------------------------------------------- horizontal_test.go, whole reconcile
//
// The Go harness's `recommendations: []timestampedRecommendation{}` (a non-nil
// empty log, so `recordInitialRecommendation` does nothing) is emulated with a
// log holding one long-expired recommendation, which behaves identically.

fn reconcile(spec: HpaSpec, obs: Observation, empty_log: bool) -> sysmanage_scaling::Decision {
    let state = if empty_log {
        sysmanage_scaling::HpaState {
            recommendations: vec![Recommendation {
                replicas: 999,
                at: NOW - Duration::from_secs(86_400),
            }],
            ..Default::default()
        }
    } else {
        sysmanage_scaling::HpaState::default()
    };
    let mut hpa = Hpa::with_state(spec, state).unwrap();
    hpa.decide(&obs, NOW).unwrap()
}

fn cpu_pods(levels: &[f64], requests: &[f64], statuses: &[PodStatus]) -> MetricValue {
    let n = requests.len();
    MetricValue::PerPod(
        (0..n)
            .map(|i| PodSample {
                value: levels.get(i).copied(),
                request: Some(requests[i]),
                status: statuses.get(i).copied().unwrap_or(Ready),
            })
            .collect(),
    )
}

#[test]
fn horizontal_reconcile_table() {
    let ones = |n: usize| vec![1.0; n];
    let one_metric = |min, max, m: MetricSpec| HpaSpec::new(min, max, vec![m]);
    // (Go test, spec, observation, empty recommendation log, expected desired replicas)
    let cases: Vec<(&str, HpaSpec, Observation, bool, u32)> = vec![
        (
            "TestScaleUp",
            one_metric(2, 6, MetricSpec::resource_utilization("cpu", 30)),
            Observation::new(3).reading("cpu", cpu_pods(&[0.3, 0.5, 0.7], &ones(3), &[])),
            false,
            5,
        ),
        (
            "TestScaleUpCMObject",
            one_metric(2, 6, MetricSpec::object_value("qps", 15.0)),
            Observation::new(3).reading("qps", MetricValue::Total(20.0)),
            false,
            4,
        ),
        (
            "TestScaleUpFromZeroCMObject",
            one_metric(0, 6, MetricSpec::object_value("qps", 15.0)),
            Observation::new(0)
                .ready(0)
                .reading("qps", MetricValue::Total(20.0)),
            false,
            2,
        ),
        (
            "TestScaleUpFromZeroIgnoresToleranceCMObject",
            one_metric(0, 6, MetricSpec::object_value("qps", 1.0)),
            Observation::new(0)
                .ready(0)
                .reading("qps", MetricValue::Total(1.0)),
            false,
            1,
        ),
        (
            "TestScaleUpPerPodCMObject",
            one_metric(2, 6, MetricSpec::object_average_value("qps", 10.0)),
            Observation::new(3).reading("qps", MetricValue::Total(40.0)),
            false,
            4,
        ),
        (
            "TestScaleUpCMExternal",
            one_metric(2, 6, MetricSpec::external_value("qps", 6.666)),
            Observation::new(3).reading("qps", MetricValue::Total(8.6)),
            false,
            4,
        ),
        (
            "TestScaleUpPerPodCMExternal",
            one_metric(2, 6, MetricSpec::external_average_value("qps", 2.222)),
            Observation::new(3).reading("qps", MetricValue::Total(8.6)),
            false,
            4,
        ),
        (
            "TestScaleDown",
            one_metric(2, 6, MetricSpec::resource_utilization("cpu", 50)),
            Observation::new(5)
                .reading("cpu", cpu_pods(&[0.1, 0.3, 0.5, 0.25, 0.25], &ones(5), &[])),
            true,
            3,
        ),
        (
            "TestScaleDownWithScalingRules",
            one_metric(2, 6, MetricSpec::resource_utilization("cpu", 50)).with_behavior(Behavior {
                scale_up: Some(rules(0, 0, 100, 15, 30)),
                scale_down: None,
            }),
            Observation::new(5)
                .reading("cpu", cpu_pods(&[0.1, 0.3, 0.5, 0.25, 0.25], &ones(5), &[])),
            true,
            3,
        ),
        (
            "TestScaleDownPerPodCMObject",
            one_metric(2, 6, MetricSpec::object_average_value("qps", 20.0)),
            Observation::new(5).reading("qps", MetricValue::Total(60.0)),
            true,
            3,
        ),
        (
            "TestScaleDownCMExternal",
            one_metric(2, 6, MetricSpec::external_value("qps", 14.4)),
            Observation::new(5).reading("qps", MetricValue::Total(8.6)),
            true,
            3,
        ),
        (
            "TestScaleDownToZeroCMExternal",
            one_metric(0, 6, MetricSpec::external_value("qps", 14.4)),
            Observation::new(5).reading("qps", MetricValue::Total(0.0)),
            true,
            0,
        ),
        (
            "TestScaleDownPerPodCMExternal",
            one_metric(2, 6, MetricSpec::external_average_value("qps", 3.0)),
            Observation::new(5).reading("qps", MetricValue::Total(8.6)),
            true,
            3,
        ),
        (
            "TestScaleDownIncludeUnreadyPods / TestScaleDownIgnoreHotCpuPods",
            one_metric(2, 6, MetricSpec::resource_utilization("cpu", 50)),
            Observation::new(5).reading(
                "cpu",
                cpu_pods(
                    &[0.1, 0.3, 0.5, 0.25, 0.25],
                    &ones(5),
                    &[Ready, Ready, Ready, Unready, Unready],
                ),
            ),
            true,
            2,
        ),
        (
            "TestScaleDownIgnoresFailedPods / TestScaleDownIgnoresDeletionPods",
            one_metric(2, 6, MetricSpec::resource_utilization("cpu", 50)),
            Observation::new(5).reading(
                "cpu",
                cpu_pods(
                    &[0.1, 0.3, 0.5, 0.25, 0.25],
                    &ones(7),
                    &[Ready, Ready, Ready, Ready, Ready, Ignored, Ignored],
                ),
            ),
            true,
            3,
        ),
        (
            "TestTolerance",
            one_metric(1, 5, MetricSpec::resource_utilization("cpu", 100)),
            Observation::new(3)
                .reading("cpu", cpu_pods(&[1.01, 1.03, 1.02], &[0.9, 1.0, 1.1], &[])),
            false,
            3,
        ),
        (
            "TestToleranceCM",
            one_metric(1, 5, MetricSpec::pods_average_value("qps", 20.0)),
            Observation::new(3).reading(
                "qps",
                MetricValue::PerPod(pods(&[20.0, 20.001, 21.0], &all_ready(3), None)),
            ),
            false,
            3,
        ),
        (
            "TestToleranceCMObject",
            one_metric(1, 5, MetricSpec::object_value("qps", 20.0)),
            Observation::new(3).reading("qps", MetricValue::Total(20.05)),
            false,
            3,
        ),
        (
            "TestMinReplicas",
            one_metric(2, 5, MetricSpec::resource_utilization("cpu", 90)),
            Observation::new(3)
                .reading("cpu", cpu_pods(&[0.01, 0.095, 0.01], &[0.9, 1.0, 1.1], &[])),
            true,
            2,
        ),
        (
            "TestMinReplicasDesiredZero",
            one_metric(2, 5, MetricSpec::resource_utilization("cpu", 90)),
            Observation::new(3).reading("cpu", cpu_pods(&[0.0, 0.0, 0.0], &[0.9, 1.0, 1.1], &[])),
            true,
            2,
        ),
        (
            "TestZeroReplicas",
            one_metric(3, 5, MetricSpec::resource_utilization("cpu", 90)),
            Observation::new(0),
            false,
            0,
        ),
        (
            "TestTooFewReplicas",
            one_metric(3, 5, MetricSpec::resource_utilization("cpu", 90)),
            Observation::new(2),
            false,
            3,
        ),
        (
            "TestTooManyReplicas",
            one_metric(3, 5, MetricSpec::resource_utilization("cpu", 90)),
            Observation::new(10),
            false,
            5,
        ),
        (
            "TestMaxReplicas",
            one_metric(2, 5, MetricSpec::resource_utilization("cpu", 90)),
            Observation::new(3).reading("cpu", cpu_pods(&[8.0, 9.5, 1.0], &[0.9, 1.0, 1.1], &[])),
            false,
            5,
        ),
        (
            // samples for pods that do not exist are dropped by Kubernetes (no request); they are not representable here
            "TestSuperfluousMetrics",
            one_metric(2, 6, MetricSpec::resource_utilization("cpu", 100)),
            Observation::new(4).reading("cpu", cpu_pods(&[4.0, 9.5, 3.0, 7.0], &ones(4), &[])),
            false,
            6,
        ),
        (
            "TestMissingMetrics",
            one_metric(2, 6, MetricSpec::resource_utilization("cpu", 100)),
            Observation::new(4).reading("cpu", cpu_pods(&[0.4, 0.095], &ones(4), &[])),
            true,
            3,
        ),
        (
            "TestEmptyMetrics",
            one_metric(2, 6, MetricSpec::resource_utilization("cpu", 100)),
            Observation::new(4).reading("cpu", cpu_pods(&[], &ones(4), &[])),
            false,
            4,
        ),
        (
            "TestEventCreated",
            one_metric(1, 5, MetricSpec::resource_utilization("cpu", 50)),
            Observation::new(1).reading("cpu", cpu_pods(&[0.2], &[0.2], &[])),
            false,
            2,
        ),
        (
            "TestEventNotCreated",
            one_metric(1, 5, MetricSpec::resource_utilization("cpu", 50)),
            Observation::new(2).reading("cpu", cpu_pods(&[0.2, 0.2], &[0.4, 0.4], &[])),
            false,
            2,
        ),
        (
            "TestMissingReports",
            one_metric(1, 5, MetricSpec::resource_utilization("cpu", 50)),
            Observation::new(4).reading("cpu", cpu_pods(&[0.2], &[0.2], &[])),
            true,
            2,
        ),
        (
            "TestUpscaleCap",
            one_metric(1, 100, MetricSpec::resource_utilization("cpu", 10)).with_behavior(
                Behavior {
                    scale_up: Some(rules(0, 0, 700, 60, 0)),
                    scale_down: None,
                },
            ),
            Observation::new(3).reading("cpu", cpu_pods(&[0.1, 0.2, 0.3], &[0.1; 3], &[])),
            false,
            24,
        ),
        (
            "TestUpscaleCapGreaterThanMaxReplicas",
            one_metric(1, 20, MetricSpec::resource_utilization("cpu", 10)).with_behavior(
                Behavior {
                    scale_up: Some(rules(0, 0, 700, 60, 0)),
                    scale_down: None,
                },
            ),
            Observation::new(3).reading("cpu", cpu_pods(&[0.1, 0.2, 0.3], &[0.1; 3], &[])),
            false,
            20,
        ),
        (
            "TestMoreReplicasThanSpecNoScale",
            one_metric(1, 8, MetricSpec::resource_utilization("cpu", 50)),
            Observation::new(4)
                .status_replicas(5)
                .reading("cpu", cpu_pods(&[0.5; 5], &ones(5), &[])),
            false,
            4,
        ),
        (
            // the "CheddarCheese" metric cannot be expressed in a typed spec; an unavailable reading fails the same way
            "TestScaleUpOneMetricInvalid",
            HpaSpec::new(
                2,
                6,
                vec![
                    MetricSpec::resource_utilization("cpu", 30),
                    MetricSpec::external_value("cheddar", 1.0),
                ],
            ),
            Observation::new(3)
                .reading("cpu", cpu_pods(&[0.3, 0.4, 0.5], &ones(3), &[]))
                .reading(
                    "cheddar",
                    MetricValue::Unavailable("unknown metric source type".into()),
                ),
            false,
            4,
        ),
        (
            "TestScaleUpBothMetricsEmpty",
            one_metric(2, 6, MetricSpec::external_value("cheddar", 1.0)),
            Observation::new(3).reading(
                "cheddar",
                MetricValue::Unavailable("unknown metric source type".into()),
            ),
            false,
            3,
        ),
    ];
    for (name, spec, obs, empty_log, expected) in cases {
        let d = reconcile(spec, obs, empty_log);
        assert_eq!(d.desired_replicas, expected, "{name}: {d:?}");
    }
}

#[test]
fn test_tolerance_reports_ready_for_new_scale() {
    // TestTolerance's expected condition: AbleToScale/ReadyForNewScale
    let d = reconcile(
        HpaSpec::new(1, 5, vec![MetricSpec::resource_utilization("cpu", 100)]),
        Observation::new(3).reading("cpu", cpu_pods(&[1.01, 1.03, 1.02], &[0.9, 1.0, 1.1], &[])),
        false,
    );
    assert!(d.has(Reason::ReadyForNewScale));
    assert_eq!(d.proposals[0].current, Some(102.0));
}

#[test]
fn restart_without_history_holds_a_scale_down_for_the_window() {
    // recordInitialRecommendation: a fresh controller remembers the current
    // count, so it does not scale down during its first stabilization window.
    let spec = HpaSpec::new(2, 6, vec![MetricSpec::resource_utilization("cpu", 50)]);
    let obs = Observation::new(5).reading(
        "cpu",
        cpu_pods(&[0.1, 0.3, 0.5, 0.25, 0.25], &[1.0; 5], &[]),
    );
    let d = reconcile(spec, obs, false);
    assert_eq!(d.desired_replicas, 5);
    assert!(d.has(Reason::ScaleDownStabilized));
}

#[test]
fn test_empty_cpu_request() {
    // TestEmptyCPURequest: min 1, max 5, 1 replica, CPU target 100 %, a pod at
    // 200 m without a request → FailedGetResourceMetric, desired stays 1.
    let mut hpa = Hpa::new(HpaSpec::new(
        1,
        5,
        vec![MetricSpec::resource_utilization("cpu", 100)],
    ))
    .unwrap();
    let obs = Observation::new(1).reading("cpu", MetricValue::PerPod(vec![PodSample::ready(0.2)]));
    let d = hpa
        .decide(&obs, NOW)
        .expect("an invalid metric, not bad input");
    assert_eq!(d.desired_replicas, 1);
    assert_eq!(d.reasons, vec![Reason::FailedGetMetrics]);
    let e = d.proposals[0].error.as_deref().unwrap_or_default();
    assert!(e.contains("missing request for cpu"), "{e}");
}

#[test]
fn missing_cpu_request_invalidates_only_that_metric() {
    // computeReplicasForMetrics: a metric whose pod requests cannot be computed is
    // one invalid metric; a valid metric that asks for more replicas still scales
    // up (as in TestScaleUpOneMetricEmpty), and one asking for fewer is blocked.
    let spec = HpaSpec::new(
        1,
        10,
        vec![
            MetricSpec::resource_utilization("cpu", 50),
            MetricSpec::external_average_value("queue", 10.0),
        ],
    );
    let no_request = MetricValue::PerPod(vec![PodSample::ready(0.9), PodSample::ready(0.9)]);
    let mut hpa = Hpa::new(spec.clone()).unwrap();
    let up = Observation::new(2)
        .reading("cpu", no_request.clone())
        .reading("queue", MetricValue::Total(40.0));
    let d = hpa
        .decide(&up, NOW)
        .expect("an invalid metric, not bad input");
    assert_eq!(d.desired_replicas, 4, "ceil(40 / 10) from the queue metric");
    assert!(d.has(Reason::PartialMetricsFailure));
    assert!(d.proposals[0].error.is_some());
    assert_eq!(d.proposals[1].replicas, Some(4));

    let mut hpa = Hpa::new(spec).unwrap();
    let down = Observation::new(4)
        .reading("cpu", no_request)
        .reading("queue", MetricValue::Total(10.0));
    let d = hpa.decide(&down, NOW).unwrap();
    assert_eq!(d.desired_replicas, 4);
    assert!(d.has(Reason::FailedGetMetrics));
}

#[test]
fn limits_are_reported_with_kubernetes_condition_reasons() {
    // TestMinReplicas → TooFewReplicas, TestMaxReplicas / TestSuperfluousMetrics → TooManyReplicas
    let d = reconcile(
        HpaSpec::new(2, 5, vec![MetricSpec::resource_utilization("cpu", 90)]),
        Observation::new(3).reading("cpu", cpu_pods(&[0.01, 0.095, 0.01], &[0.9, 1.0, 1.1], &[])),
        true,
    );
    assert!(d.has(Reason::TooFewReplicas));
    let d = reconcile(
        HpaSpec::new(2, 5, vec![MetricSpec::resource_utilization("cpu", 90)]),
        Observation::new(3).reading("cpu", cpu_pods(&[8.0, 9.5, 1.0], &[0.9, 1.0, 1.1], &[])),
        false,
    );
    assert!(d.has(Reason::TooManyReplicas));
    let d = reconcile(
        HpaSpec::new(3, 5, vec![MetricSpec::resource_utilization("cpu", 90)]),
        Observation::new(0),
        false,
    );
    assert_eq!(d.reasons, vec![Reason::ScalingDisabled]);
}

#[test]
fn test_condition_failed_get_metrics() {
    // TestConditionFailedGetMetrics: whichever kind of metric fails, nothing changes
    for (reason, m) in [
        (
            "FailedGetResourceMetric",
            MetricSpec::resource_utilization("qps", 10),
        ),
        (
            "FailedGetPodsMetric",
            MetricSpec::pods_average_value("qps", 15.0),
        ),
        (
            "FailedGetObjectMetric",
            MetricSpec::object_value("qps", 15.0),
        ),
        (
            "FailedGetExternalMetric",
            MetricSpec::external_value("qps", 0.3),
        ),
    ] {
        let d = reconcile(
            HpaSpec::new(1, 100, vec![m]),
            Observation::new(3).reading(
                "qps",
                MetricValue::Unavailable("something went wrong".into()),
            ),
            false,
        );
        assert_eq!(d.desired_replicas, 3, "{reason}");
        assert_eq!(d.reasons, vec![Reason::FailedGetMetrics], "{reason}");
        assert_eq!(
            d.proposals[0].error.as_deref(),
            Some("something went wrong")
        );
    }
}

#[test]
fn test_upscale_cap_reports_scale_up_limit() {
    // TestUpscaleCap's expected condition: ScalingLimited/ScaleUpLimit (TooManyReplicas when capped by max)
    for (max, reason) in [(100, Reason::ScaleUpLimit), (20, Reason::TooManyReplicas)] {
        let spec = HpaSpec::new(1, max, vec![MetricSpec::resource_utilization("cpu", 10)])
            .with_behavior(Behavior {
                scale_up: Some(rules(0, 0, 700, 60, 0)),
                scale_down: None,
            });
        let d = reconcile(
            spec,
            Observation::new(3).reading("cpu", cpu_pods(&[0.1, 0.2, 0.3], &[0.1; 3], &[])),
            false,
        );
        assert!(d.has(reason), "{d:?}");
    }
}

#[test]
fn test_group_pods() {
    // TestGroupPods (the controller's test uses a 2-minute CPU initialization
    // period and a 10-second initial readiness delay)
    use sysmanage_scaling::{
        PodInfo, PodPhase, ReadinessRules, ReadyCondition, SampleTime, classify_pod,
    };
    let rules = ReadinessRules {
        cpu_initialization_period: Duration::from_secs(120),
        initial_readiness_delay: Duration::from_secs(10),
    };
    let ago = |s: u64| NOW - Duration::from_secs(s);
    let sample = |window: u64| {
        Some(SampleTime {
            at: NOW,
            window: Duration::from_secs(window),
        })
    };
    let pod = |phase, ready: Option<(bool, u64)>, start: Option<u64>| PodInfo {
        phase,
        deleting: false,
        ready: ready.map(|(r, t)| ReadyCondition {
            ready: r,
            last_transition: ago(t),
        }),
        start_time: start.map(ago),
    };
    let cases = [
        (
            "count in a ready pod - memory",
            pod(PodPhase::Succeeded, None, None),
            sample(60),
            false,
            Ready,
        ),
        (
            "ignore a pod without ready condition - CPU",
            pod(PodPhase::Succeeded, None, Some(0)),
            sample(60),
            true,
            Unready,
        ),
        (
            "count in a ready pod with fresh metrics during initialization period - CPU",
            pod(PodPhase::Succeeded, Some((true, 30)), Some(60)),
            sample(30),
            true,
            Ready,
        ),
        (
            "ignore a ready pod without fresh metrics during initialization period - CPU",
            pod(PodPhase::Succeeded, Some((true, 30)), Some(60)),
            sample(60),
            true,
            Unready,
        ),
        (
            "ignore an unready pod during initialization period - CPU",
            pod(PodPhase::Succeeded, Some((false, 594)), Some(600)),
            sample(60),
            true,
            Unready,
        ),
        (
            "count in a ready pod without fresh metrics after initialization period - CPU",
            pod(PodPhase::Succeeded, Some((true, 180)), Some(180)),
            sample(60),
            true,
            Ready,
        ),
        (
            "pending pods are unready",
            pod(PodPhase::Pending, None, None),
            None,
            true,
            Pending,
        ),
        (
            "failed pods are ignored",
            pod(PodPhase::Failed, None, None),
            sample(60),
            false,
            Ignored,
        ),
    ];
    for (name, p, s, cpu, expected) in cases {
        assert_eq!(classify_pod(&p, s, cpu, NOW, &rules), expected, "{name}");
    }
    let deleting = PodInfo {
        deleting: true,
        ..pod(PodPhase::Running, Some((true, 999)), Some(999))
    };
    assert_eq!(
        classify_pod(&deleting, sample(60), true, NOW, &rules),
        Ignored
    );
    assert_eq!(
        ReadinessRules::default().cpu_initialization_period,
        Duration::from_secs(300)
    );
}

#[test]
fn test_scale_down_container_resource() {
    // TestScaleDownContainerResource: the container's samples, computed like a Resource metric
    let m = MetricSpec::new(
        "cpu",
        sysmanage_scaling::MetricSource::ContainerResource,
        sysmanage_scaling::MetricTarget::Utilization(50),
    );
    let d = reconcile(
        HpaSpec::new(2, 6, vec![m]),
        Observation::new(5).reading(
            "cpu",
            cpu_pods(&[0.1, 0.3, 0.5, 0.25, 0.25], &[1.0; 5], &[]),
        ),
        true,
    );
    assert_eq!(d.desired_replicas, 3);
}

// ---------------------------------------------------------------- horizontal_test.go, remaining cases
//
// Pod readiness and start times follow the Go fixtures through `go_fixture_pod`
// (`reportedPodReadiness`, `hotCPUCreationTime` / `coolCPUCreationTime`); for a
// non-CPU metric the classification keeps every running pod.

/// The Go fixture's per-pod statuses for a CPU (`is_cpu`) or custom metric.
fn fixture_statuses(ready: &[bool], hot: &[bool], is_cpu: bool) -> Vec<PodStatus> {
    ready
        .iter()
        .zip(hot)
        .map(|(&r, &h)| go_fixture_pod(r, h, is_cpu))
        .collect()
}

fn qps_pods(levels: &[f64], statuses: &[PodStatus]) -> MetricValue {
    MetricValue::PerPod(pods(levels, statuses, None))
}

#[test]
fn horizontal_reconcile_table_remaining() {
    let ones = |n: usize| vec![1.0; n];
    let one_metric = |min, max, m: MetricSpec| HpaSpec::new(min, max, vec![m]);
    let cpu30 = || MetricSpec::resource_utilization("cpu", 30);
    let qps15 = || MetricSpec::pods_average_value("qps", 15.0);
    let t = true;
    let f = false;
    // (Go test, spec, observation, empty recommendation log, expected desired replicas)
    let cases: Vec<(&str, HpaSpec, Observation, bool, u32)> = vec![
        (
            "TestScaleUpContainer",
            one_metric(
                2,
                6,
                MetricSpec::new(
                    "cpu",
                    sysmanage_scaling::MetricSource::ContainerResource,
                    sysmanage_scaling::MetricTarget::Utilization(30),
                ),
            ),
            Observation::new(3).reading("cpu", cpu_pods(&[0.3, 0.5, 0.7], &ones(3), &[])),
            false,
            5,
        ),
        (
            "TestScaleUpUnreadyLessScale",
            one_metric(2, 6, cpu30()),
            Observation::new(3).reading(
                "cpu",
                cpu_pods(
                    &[0.3, 0.5, 0.7],
                    &ones(3),
                    &fixture_statuses(&[f, t, t], &[f, f, f], true),
                ),
            ),
            false,
            4,
        ),
        (
            "TestScaleUpHotCpuLessScale",
            one_metric(2, 6, cpu30()),
            Observation::new(3).reading(
                "cpu",
                cpu_pods(
                    &[0.3, 0.5, 0.7],
                    &ones(3),
                    &fixture_statuses(&[t, t, t], &[t, f, f], true),
                ),
            ),
            false,
            4,
        ),
        (
            "TestScaleUpUnreadyNoScale",
            one_metric(2, 6, cpu30()),
            Observation::new(3).reading(
                "cpu",
                cpu_pods(
                    &[0.4, 0.5, 0.7],
                    &ones(3),
                    &fixture_statuses(&[t, f, f], &[f, f, f], true),
                ),
            ),
            false,
            3,
        ),
        (
            "TestScaleUpHotCpuNoScale",
            one_metric(2, 6, cpu30()),
            Observation::new(3).reading(
                "cpu",
                cpu_pods(
                    &[0.4, 0.5, 0.7],
                    &ones(3),
                    &fixture_statuses(&[t, f, f], &[f, t, t], true),
                ),
            ),
            false,
            3,
        ),
        (
            "TestScaleUpIgnoresFailedPods",
            one_metric(2, 6, cpu30()),
            Observation::new(2).reading(
                "cpu",
                cpu_pods(&[0.5, 0.7], &ones(4), &[Ready, Ready, Ignored, Ignored]),
            ),
            false,
            4,
        ),
        (
            "TestScaleUpIgnoresDeletionPods",
            one_metric(2, 6, cpu30()),
            Observation::new(2).reading(
                "cpu",
                cpu_pods(&[0.5, 0.7], &ones(4), &[Ready, Ready, Ignored, Ignored]),
            ),
            false,
            4,
        ),
        (
            "TestScaleUpDeployment",
            one_metric(2, 6, cpu30()),
            Observation::new(3).reading("cpu", cpu_pods(&[0.3, 0.5, 0.7], &ones(3), &[])),
            false,
            5,
        ),
        (
            "TestScaleUpReplicaSet",
            one_metric(2, 6, cpu30()),
            Observation::new(3).reading("cpu", cpu_pods(&[0.3, 0.5, 0.7], &ones(3), &[])),
            false,
            5,
        ),
        (
            "TestScaleUpCM",
            one_metric(2, 6, qps15()),
            Observation::new(3).reading("qps", qps_pods(&[20.0, 10.0, 30.0], &all_ready(3))),
            false,
            4,
        ),
        (
            "TestScaleUpCMUnreadyAndHotCpuNoLessScale",
            one_metric(2, 6, qps15()),
            Observation::new(3).reading(
                "qps",
                qps_pods(
                    &[50.0, 10.0, 30.0],
                    &fixture_statuses(&[t, t, f], &[f, f, t], false),
                ),
            ),
            false,
            6,
        ),
        (
            "TestScaleUpCMUnreadyandCpuHot",
            one_metric(2, 6, qps15()),
            Observation::new(3).reading(
                "qps",
                qps_pods(
                    &[50.0, 15.0, 30.0],
                    &fixture_statuses(&[f, t, f], &[t, f, t], false),
                ),
            ),
            false,
            6,
        ),
        (
            "TestScaleUpHotCpuNoScaleWouldScaleDown",
            one_metric(2, 6, qps15()),
            Observation::new(3).reading(
                "qps",
                qps_pods(
                    &[50.0, 15.0, 30.0],
                    &fixture_statuses(&[t, t, t], &[t, f, t], false),
                ),
            ),
            false,
            6,
        ),
        (
            // lastScaleTime is "now": the controller applies no upscale backoff.
            "TestNoBackoffUpscaleCM",
            one_metric(1, 5, qps15()),
            Observation::new(3).reading("qps", qps_pods(&[20.0, 10.0, 30.0], &all_ready(3))),
            false,
            4,
        ),
        (
            // CPUTarget 10 adds a CPU metric next to qps; the same levels read as
            // 20/10/30 cores against 1-core requests, capped by maxReplicas.
            "TestNoBackoffUpscaleCMNoBackoffCpu",
            HpaSpec::new(
                1,
                5,
                vec![MetricSpec::resource_utilization("cpu", 10), qps15()],
            ),
            Observation::new(3)
                .reading("cpu", cpu_pods(&[20.0, 10.0, 30.0], &ones(3), &[]))
                .reading("qps", qps_pods(&[20.0, 10.0, 30.0], &all_ready(3))),
            false,
            5,
        ),
        (
            // CPUTarget 0 in Go (no metric is consulted below minReplicas).
            "TestScaleUpRCImmediately",
            one_metric(2, 6, MetricSpec::resource_utilization("cpu", 80)),
            Observation::new(1).reading("cpu", cpu_pods(&[0.0; 4], &ones(4), &[])),
            false,
            2,
        ),
        (
            "TestScaleDownRCImmediately",
            one_metric(2, 5, MetricSpec::resource_utilization("cpu", 50)),
            Observation::new(6).reading("cpu", cpu_pods(&[8.0, 9.5, 1.0], &[0.9, 1.0, 1.1], &[])),
            false,
            5,
        ),
        (
            "TestNoScaleDownOneMetricEmpty",
            HpaSpec::new(
                2,
                6,
                vec![
                    MetricSpec::resource_utilization("cpu", 50),
                    MetricSpec::external_value("qps", 1.0),
                ],
            ),
            Observation::new(5)
                .reading("cpu", cpu_pods(&[0.1, 0.3, 0.5, 0.25, 0.25], &ones(5), &[]))
                .reading(
                    "qps",
                    MetricValue::Unavailable("something went wrong".into()),
                ),
            true,
            5,
        ),
    ];
    for (name, spec, obs, empty_log, expected) in cases {
        let d = reconcile(spec, obs, empty_log);
        assert_eq!(d.desired_replicas, expected, "{name}: {d:?}");
    }
}

#[test]
fn test_scale_up_cm_unready_and_cpu_hot_reports_too_many_replicas() {
    // TestScaleUpCMUnreadyandCpuHot / TestScaleUpHotCpuNoScaleWouldScaleDown expected
    // conditions: SucceededRescale and ScalingLimited/TooManyReplicas (7 capped at 6).
    let d = reconcile(
        HpaSpec::new(2, 6, vec![MetricSpec::pods_average_value("qps", 15.0)]),
        Observation::new(3).reading(
            "qps",
            qps_pods(
                &[50.0, 15.0, 30.0],
                &fixture_statuses(&[false, true, false], &[true, false, true], false),
            ),
        ),
        false,
    );
    assert_eq!(d.combined, Some(7));
    assert_eq!(d.desired_replicas, 6);
    assert!(d.has(Reason::TooManyReplicas));
}

#[test]
fn test_no_backoff_upscale_cm_no_backoff_cpu_reports_too_many_replicas() {
    // TestNoBackoffUpscaleCMNoBackoffCpu expected condition: ScalingLimited/TooManyReplicas
    let d = reconcile(
        HpaSpec::new(
            1,
            5,
            vec![
                MetricSpec::resource_utilization("cpu", 10),
                MetricSpec::pods_average_value("qps", 15.0),
            ],
        ),
        Observation::new(3)
            .reading("cpu", cpu_pods(&[20.0, 10.0, 30.0], &[1.0; 3], &[]))
            .reading("qps", qps_pods(&[20.0, 10.0, 30.0], &all_ready(3))),
        false,
    );
    assert_eq!(d.desired_replicas, 5);
    assert!(d.has(Reason::TooManyReplicas));
    // The qps metric alone asks for 4; the CPU one dominates.
    assert_eq!(d.proposals[1].replicas, Some(4));
}

#[test]
fn test_no_scale_down_one_metric_empty_reports_failed_get_metrics() {
    // TestNoScaleDownOneMetricEmpty: CPU alone would go 5 → 3, but the External
    // metric fails, so nothing changes (ScalingActive false).
    let d = reconcile(
        HpaSpec::new(
            2,
            6,
            vec![
                MetricSpec::resource_utilization("cpu", 50),
                MetricSpec::external_value("qps", 1.0),
            ],
        ),
        Observation::new(5)
            .reading(
                "cpu",
                cpu_pods(&[0.1, 0.3, 0.5, 0.25, 0.25], &[1.0; 5], &[]),
            )
            .reading(
                "qps",
                MetricValue::Unavailable("something went wrong".into()),
            ),
        true,
    );
    assert_eq!(d.desired_replicas, 5);
    assert_eq!(d.proposals[0].replicas, Some(3));
    assert!(d.has(Reason::FailedGetMetrics));
}

#[test]
fn test_stabilize_downscale() {
    // TestStabilizeDownscale: 4 replicas, three pods at 50 % of target → 2, but a
    // recommendation of 4 from one minute ago holds it (the 10 from ten minutes
    // ago has left the 5-minute window): ScaleDownStabilized.
    let state = sysmanage_scaling::HpaState {
        recommendations: vec![
            Recommendation {
                replicas: 10,
                at: NOW - Duration::from_secs(600),
            },
            Recommendation {
                replicas: 4,
                at: NOW - Duration::from_secs(60),
            },
        ],
        ..Default::default()
    };
    let mut hpa = Hpa::with_state(
        HpaSpec::new(1, 5, vec![MetricSpec::resource_utilization("cpu", 100)]),
        state,
    )
    .unwrap();
    let obs = Observation::new(4).reading("cpu", cpu_pods(&[0.05; 3], &[0.1; 3], &[]));
    let d = hpa.decide(&obs, NOW).unwrap();
    assert_eq!(d.combined, Some(2));
    assert_eq!(d.desired_replicas, 4);
    assert!(d.has(Reason::ScaleDownStabilized));
}

#[test]
fn test_computed_tolerance_alg_implementation() {
    // TestComputedToleranceAlgImplementation (horizontal_test.go): ten pods using
    // 150 m each against requests summing to 3000 m (50 % utilization). A target of
    // int32((1/(2*0.9) + .01) * 100) = 56 % breaches the tolerance → ceil(10*50/56) = 9;
    // a target of int32((1/(2*0.9) + .004) * 100) = 55 % stays within it → 10.
    // Go uses minReplicas 0 (scale-to-zero feature gate); 1 here, which the
    // outcome never reaches.
    let requests: Vec<f64> = [400, 200, 310, 290, 302, 298, 301, 299, 300, 300]
        .iter()
        .map(|&m| f64::from(m) / 1000.0)
        .collect();
    let to_target = |extra: f64| -> i32 {
        let requested_to_used = 2.0_f64;
        (((1.0 / (requested_to_used * (1.0 - 0.1))).abs() + extra) * 100.0) as i32
    };
    assert_eq!((to_target(0.01), to_target(0.004)), (56, 55));
    for (target, expected) in [(to_target(0.01), 9), (to_target(0.004), 10)] {
        let d = reconcile(
            HpaSpec::new(
                1,
                1000,
                vec![MetricSpec::resource_utilization("cpu", target)],
            ),
            Observation::new(10).reading("cpu", cpu_pods(&[0.15; 10], &requests, &[])),
            true,
        );
        assert_eq!(d.desired_replicas, expected, "target {target}: {d:?}");
    }
}

#[test]
fn test_replica_calc_tolerance() {
    // TestReplicaCalcTolerance: 102 % of a 100 % target is within the 0.1 tolerance
    let c = run(
        MetricSpec::resource_utilization("cpu", 100),
        cpu_pods(&[1.01, 1.03, 1.02], &[0.9, 1.0, 1.1], &[]),
        counts(3, 3),
    );
    assert_eq!((c.replicas, c.current), (3, 102.0));
}

#[test]
fn test_replica_calc_tolerance_cm() {
    // TestReplicaCalcToleranceCM: average 20.666 qps against 20 → no change
    let c = qps_pods_case(3, &[20.0, 21.0, 21.0], &all_ready(3), 20.0);
    assert_eq!(c.replicas, 3);
    assert!((c.current - 20.666).abs() < 0.001, "{c:?}");
}

#[test]
fn test_replica_calc_tolerance_cm_object() {
    // TestReplicaCalcToleranceCMObject: an object at 20.666 against a value target of 20
    let c = run(
        MetricSpec::object_value("qps", 20.0),
        MetricValue::Total(20.666),
        counts(3, 3),
    );
    assert_eq!((c.replicas, c.current), (3, 20.666));
}

#[test]
fn test_replica_calc_superfluous_metrics() {
    // TestReplicaCalcSuperfluousMetrics: six samples are reported for four pods; the
    // two for pods outside the target are dropped before the calculation (here the
    // observation is per pod, so they never reach it). 23.5 cores over 4 requested
    // cores is 587.5 % of a 100 % target → ceil(5.875 * 4) = 24.
    let c = run(
        MetricSpec::resource_utilization("cpu", 100),
        cpu_pods(&[4.0, 9.5, 3.0, 7.0], &[1.0; 4], &[]),
        counts(4, 4),
    );
    assert_eq!(c.replicas, 24);
    assert_eq!(c.current.trunc(), 587.0, "{c:?}");
}

#[test]
fn test_replica_calc_disjoint_resources_metrics() {
    // TestReplicaCalcDisjointResourcesMetrics: the only sample belongs to a pod that is
    // not part of the target ("an-older-pod-name"), so the one known pod has none and
    // the metric is invalid (Go: "no metrics returned matched known pods"). Samples
    // for unknown pods cannot be expressed in a per-pod observation; what reaches the
    // calculation is a known pod without a value.
    let r = calculate(
        &MetricSpec::resource_utilization("cpu", 100),
        &MetricValue::PerPod(vec![PodSample::missing(Some(1.0))]),
        counts(1, 1),
        Tolerances::symmetric(0.1),
    )
    .unwrap();
    assert!(r.is_err(), "{r:?}");
}
