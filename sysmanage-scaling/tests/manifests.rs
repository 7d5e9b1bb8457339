//! Kubernetes `autoscaling/v2` manifests: the reference document's HPAs,
//! `kubectl get -o yaml/json` output, and what the API server rejects.
#![cfg(feature = "yaml")]

use sysmanage_core::Timestamp;
use sysmanage_scaling::manifest::{
    Document, FeatureGates, HorizontalPodAutoscaler, documents_from_yaml,
};
use sysmanage_scaling::{
    Hpa, HpaSpec, MetricSource, MetricTarget, MetricValue, Observation, PolicyType, Reason,
    ScalingError, ScalingPolicy, SelectPolicy,
};

const REFERENCE: &str = include_str!("manifests/reference.yaml");
const KUBECTL_YAML: &str = include_str!("manifests/kubectl_get_hpa.yaml");
const KUBECTL_JSON: &str = include_str!("manifests/kubectl_get_hpa.json");

fn reference_hpas() -> Vec<HorizontalPodAutoscaler> {
    documents_from_yaml(REFERENCE)
        .unwrap()
        .into_iter()
        .filter_map(|d| match d {
            Document::HorizontalPodAutoscaler(h) => Some(*h),
            _ => None,
        })
        .collect()
}

#[test]
fn the_reference_documents_hpas_load() {
    let docs = documents_from_yaml(REFERENCE).unwrap();
    assert_eq!(docs.len(), 3);
    let hpas = reference_hpas();
    assert_eq!(hpas.len(), 2);
    let api = hpas[0].to_spec().unwrap();
    assert_eq!(hpas[0].metadata.name.as_deref(), Some("sysmanage-api-hpa"));
    assert_eq!((api.min_replicas, api.max_replicas), (3, 50));
    let names: Vec<&str> = api.metrics.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "cpu",
            "memory",
            "http_requests_per_second",
            "response_time_p95"
        ]
    );
    assert_eq!(api.metrics[1].target, MetricTarget::Utilization(80));
    // "500m" = 0.5 (seconds, as the comment says: 500 ms)
    assert_eq!(api.metrics[3].target, MetricTarget::AverageValue(0.5));
    let b = api.behavior.as_ref().unwrap();
    let down = b.scale_down.as_ref().unwrap();
    assert_eq!(down.stabilization_window_seconds, Some(300));
    assert_eq!(
        down.policies.as_deref().unwrap(),
        [ScalingPolicy::percent(50, 60), ScalingPolicy::pods(2, 60)]
    );
    let up = b.scale_up.as_ref().unwrap();
    assert_eq!(up.stabilization_window_seconds, Some(60));
    assert_eq!(
        up.policies.as_deref().unwrap(),
        [ScalingPolicy::percent(100, 15), ScalingPolicy::pods(5, 60)]
    );

    let workers = hpas[1].to_spec().unwrap();
    assert_eq!((workers.min_replicas, workers.max_replicas), (2, 20));
    assert_eq!(workers.metrics[0].source, MetricSource::Pods);
    assert_eq!(workers.metrics[1].target, MetricTarget::AverageValue(30.0));
}

#[test]
fn the_reference_documents_hpas_decide() {
    let hpas = reference_hpas();
    let now = Timestamp::from_secs(1_700_000_000);

    // API servers: 4 pods at 140 % CPU against 70 %: ceil(2 × 4) = 8, but the
    // 60 s scale-up window still holds the initial recommendation (4).
    let mut api = Hpa::new(hpas[0].to_spec().unwrap()).unwrap();
    let obs = Observation::new(4)
        .reading("cpu", MetricValue::Average(140.0))
        .reading("memory", MetricValue::Average(50.0))
        .reading("http_requests_per_second", MetricValue::Average(90.0))
        .reading("response_time_p95", MetricValue::Average(0.3));
    let d = api.decide(&obs, now).unwrap();
    assert_eq!(d.combined, Some(8));
    assert_eq!(d.desired_replicas, 4);
    assert!(d.has(Reason::ScaleUpStabilized));
    // a minute later the window has passed: 8, within max(100 % / 15 s, 5 pods / 60 s)
    let t1 = now + std::time::Duration::from_secs(61);
    let d = api.decide(&obs, t1).unwrap();
    assert_eq!(d.desired_replicas, 8);
    assert!(d.has(Reason::DesiredWithinRange));
    api.record_actuation(4, 8, t1);
    // p95 at 1.2 s against 500m: ceil(2.4 × 8) = 20; the window holds 8
    let obs = Observation::new(8)
        .reading("cpu", MetricValue::Average(70.0))
        .reading("memory", MetricValue::Average(50.0))
        .reading("http_requests_per_second", MetricValue::Average(90.0))
        .reading("response_time_p95", MetricValue::Average(1.2));
    let d = api
        .decide(&obs, t1 + std::time::Duration::from_secs(15))
        .unwrap();
    assert_eq!(d.combined, Some(20));
    assert_eq!(d.desired_replicas, 8);
    assert!(d.has(Reason::ScaleUpStabilized));

    // Workers: queue 45 per pod against 10 on 2 pods: ceil(4.5 × 2) = 9;
    // scale-up allows 200 % per 30 s = 6 pods; the 30 s window starts at 2
    let mut workers = Hpa::new(hpas[1].to_spec().unwrap()).unwrap();
    let obs = Observation::new(2)
        .reading("queue_length", MetricValue::Average(45.0))
        .reading("processing_time_avg", MetricValue::Average(12.0));
    let d = workers.decide(&obs, now).unwrap();
    assert_eq!(d.combined, Some(9));
    assert_eq!(d.desired_replicas, 2, "{d:?}");
    assert!(d.has(Reason::ScaleUpStabilized));
    let d = workers
        .decide(&obs, now + std::time::Duration::from_secs(31))
        .unwrap();
    assert_eq!(d.desired_replicas, 6);
    assert!(d.has(Reason::ScaleUpLimit));
}

fn check_kubectl_output(hpa: &HorizontalPodAutoscaler) {
    assert_eq!(hpa.metadata.namespace.as_deref(), Some("shop"));
    assert_eq!(hpa.status.as_ref().unwrap().current_replicas, Some(4));
    let spec = hpa.to_spec().unwrap();
    let m = &spec.metrics;
    assert_eq!(m.len(), 6);
    assert_eq!(
        (m[0].name.as_str(), m[0].target),
        ("cpu", MetricTarget::Utilization(60))
    );
    assert_eq!(
        m[1].target,
        MetricTarget::AverageValue(1536.0 * 1024.0 * 1024.0)
    );
    assert_eq!(
        (m[2].name.as_str(), m[2].source),
        ("app/cpu", MetricSource::ContainerResource)
    );
    assert_eq!(m[3].target, MetricTarget::AverageValue(1500.0));
    assert_eq!(
        (m[4].source, m[4].target),
        (MetricSource::Object, MetricTarget::Value(2000.0))
    );
    assert_eq!(
        (m[5].source, m[5].target),
        (MetricSource::External, MetricTarget::AverageValue(30.0))
    );
    let b = spec.behavior.as_ref().unwrap();
    let down = b.scale_down.as_ref().unwrap();
    assert_eq!(down.tolerance, Some(0.05));
    assert_eq!(down.select_policy, Some(SelectPolicy::Max));
    assert_eq!(
        b.scale_up.as_ref().unwrap().policies.as_ref().unwrap()[0].kind,
        PolicyType::Pods
    );
    // and it decides: the Ingress at 5,000 rps against 2k for 4 ready pods → 10
    let mut h = Hpa::new(spec).unwrap();
    let obs = Observation::new(4)
        .reading("cpu", MetricValue::Average(30.0))
        .reading("requests_per_second", MetricValue::Total(5000.0));
    let d = h.decide(&obs, Timestamp::from_secs(0)).unwrap();
    assert_eq!(d.combined, Some(10));
    assert_eq!(d.desired_replicas, 8, "4 pods or 100 % per 15 s");
    assert!(d.has(Reason::PartialMetricsFailure));
}

#[test]
fn kubectl_get_yaml_and_json_output_loads() {
    check_kubectl_output(&HorizontalPodAutoscaler::from_yaml(KUBECTL_YAML).unwrap());
    check_kubectl_output(&HorizontalPodAutoscaler::from_json(KUBECTL_JSON).unwrap());
    assert_eq!(
        HpaSpec::from_manifest_yaml(KUBECTL_YAML).unwrap(),
        HpaSpec::from_manifest_json(KUBECTL_JSON).unwrap()
    );
}

const MINIMAL: &str = "apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: web
spec:
  scaleTargetRef:
    kind: Deployment
    name: web
  maxReplicas: 10
";

#[test]
fn defaults_follow_the_api_server() {
    let spec = HpaSpec::from_manifest_yaml(MINIMAL).unwrap();
    assert_eq!(spec.min_replicas, 1);
    // SetDefaults_HorizontalPodAutoscaler: no metrics means CPU at 80 %
    assert_eq!(spec.metrics.len(), 1);
    assert_eq!(
        (spec.metrics[0].name.as_str(), spec.metrics[0].target),
        ("cpu", MetricTarget::Utilization(80))
    );
    // no behavior: the legacy path
    assert_eq!(spec.behavior, None);
    // behavior with only scaleDown: scaleUp takes every default
    let y = format!("{MINIMAL}  behavior:\n    scaleDown:\n      stabilizationWindowSeconds: 60\n");
    let spec = HpaSpec::from_manifest_yaml(&y).unwrap();
    let (up, down) = spec
        .behavior
        .as_ref()
        .unwrap()
        .resolve(spec.downscale_stabilization, spec.tolerance);
    assert_eq!(
        up.policies,
        [ScalingPolicy::pods(4, 15), ScalingPolicy::percent(100, 15)]
    );
    assert_eq!(down.stabilization_window_seconds, 60);
    assert_eq!(down.policies, [ScalingPolicy::percent(100, 15)]);
}

fn rejected(yaml: &str) -> (String, String) {
    match HorizontalPodAutoscaler::from_yaml(yaml).and_then(|h| h.to_spec()) {
        Err(ScalingError::Manifest { path, reason }) => (path, reason),
        other => panic!("expected a manifest error, got {other:?}\n{yaml}"),
    }
}

fn with_spec(extra: &str) -> String {
    format!("{MINIMAL}{extra}")
}

#[test]
fn what_the_api_server_rejects_is_rejected() {
    let metric = |m: &str| with_spec(&format!("  metrics:\n{m}"));
    let cases: Vec<(String, &str, &str)> = vec![
        (
            MINIMAL.replace("maxReplicas: 10", "maxReplicas: 10\n  minReplicas: 0"),
            "spec.minReplicas",
            "greater than or equal to 1",
        ),
        (
            MINIMAL.replace("maxReplicas: 10", "maxReplicas: 0"),
            "spec.maxReplicas",
            "greater than 0",
        ),
        (
            MINIMAL.replace("maxReplicas: 10", "maxReplicas: 3\n  minReplicas: 5"),
            "spec.maxReplicas",
            "`minReplicas`",
        ),
        (
            MINIMAL.replace(
                "    name: web\n  maxReplicas",
                "    name: a/b\n  maxReplicas",
            ),
            "spec.scaleTargetRef.name",
            "'/'",
        ),
        (
            MINIMAL.replace("    kind: Deployment\n", ""),
            "spec.scaleTargetRef.kind",
            "Required",
        ),
        (
            MINIMAL.replace("apiVersion: autoscaling/v2", "apiVersion: autoscaling/v1"),
            "apiVersion",
            "autoscaling/v2",
        ),
        (
            MINIMAL.replace("name: web\nspec", "name: Web_1\nspec"),
            "metadata.name",
            "RFC 1123",
        ),
        (
            metric(
                "  - type: Resource\n    resource:\n      name: cpu\n      target:\n        type: Utilization\n        averageUtilization: 0\n",
            ),
            "spec.metrics[0].resource.target.averageUtilization",
            "greater than 0",
        ),
        (
            metric(
                "  - type: Resource\n    resource:\n      name: cpu\n      target:\n        type: Utilization\n",
            ),
            "spec.metrics[0].resource.target.averageUtilization",
            "must set either",
        ),
        (
            metric(
                "  - type: Resource\n    resource:\n      name: cpu\n      target:\n        type: Utilization\n        averageUtilization: 50\n        averageValue: 500m\n",
            ),
            "spec.metrics[0].resource.target.averageValue",
            "may not set both",
        ),
        (
            metric(
                "  - type: Resource\n    resource:\n      name: cpu\n      target:\n        type: Percent\n        averageUtilization: 50\n",
            ),
            "spec.metrics[0].resource.target.type",
            "Utilization, Value, or AverageValue",
        ),
        (
            metric(
                "  - type: Resource\n    resource:\n      name: \"\"\n      target:\n        type: Utilization\n        averageUtilization: 50\n",
            ),
            "spec.metrics[0].resource.name",
            "resource name",
        ),
        (
            metric(
                "  - type: Pods\n    pods:\n      metric:\n        name: rps\n      target:\n        type: Utilization\n        averageUtilization: 50\n",
            ),
            "spec.metrics[0].pods.target.averageValue",
            "averageValue",
        ),
        (
            metric(
                "  - type: Pods\n    pods:\n      metric:\n        name: rps\n      target:\n        type: AverageValue\n        averageValue: \"-1\"\n",
            ),
            "spec.metrics[0].pods.target.averageValue",
            "must be positive",
        ),
        (
            metric(
                "  - type: Pods\n    pods:\n      metric:\n        name: rps\n      target:\n        type: AverageValue\n        averageValue: \"0\"\n",
            ),
            "spec.metrics[0].pods.target.averageValue",
            "must be positive",
        ),
        (
            metric(
                "  - type: Object\n    object:\n      describedObject:\n        kind: Ingress\n        name: shop\n      metric:\n        name: rps\n      target:\n        type: Value\n",
            ),
            "spec.metrics[0].object.target.averageValue",
            "either a target value or averageValue",
        ),
        (
            metric(
                "  - type: Object\n    object:\n      describedObject:\n        kind: Ingress\n        name: \"\"\n      metric:\n        name: rps\n      target:\n        type: Value\n        value: 10\n",
            ),
            "spec.metrics[0].object.describedObject.name",
            "Required",
        ),
        (
            metric(
                "  - type: Object\n    object:\n      describedObject:\n        kind: Ingress\n        name: shop\n      metric:\n        name: rps\n      target:\n        type: Utilization\n        value: 10\n",
            ),
            "spec.metrics[0].object.target.type",
            "never computes",
        ),
        (
            metric(
                "  - type: External\n    external:\n      metric:\n        name: q\n      target:\n        type: Value\n        value: 10\n        averageValue: 5\n",
            ),
            "spec.metrics[0].external.target.value",
            "may not set both",
        ),
        (
            metric(
                "  - type: External\n    pods:\n      metric:\n        name: q\n      target:\n        type: AverageValue\n        averageValue: 5\n",
            ),
            "spec.metrics[0].external",
            "must populate information",
        ),
        (
            metric(
                "  - type: Pods\n    pods:\n      metric:\n        name: q\n      target:\n        type: AverageValue\n        averageValue: 5\n    external:\n      metric:\n        name: q\n      target:\n        type: AverageValue\n        averageValue: 5\n",
            ),
            "spec.metrics[0].external",
            "given metric source only",
        ),
        (
            metric("  - type: Custom\n"),
            "spec.metrics[0].type",
            "Unsupported value",
        ),
        (
            metric(
                "  - type: ContainerResource\n    containerResource:\n      name: cpu\n      container: App\n      target:\n        type: Utilization\n        averageUtilization: 50\n",
            ),
            "spec.metrics[0].containerResource.container",
            "RFC 1123",
        ),
        (
            metric(
                "  - type: Pods\n    pods:\n      metric:\n        name: rps\n      target:\n        type: AverageValue\n        averageValue: 5\n  - type: Pods\n    pods:\n      metric:\n        name: rps\n      target:\n        type: AverageValue\n        averageValue: 7\n",
            ),
            "spec.metrics[1]",
            "each metric needs its own name",
        ),
        (
            with_spec("  behavior:\n    scaleUp:\n      stabilizationWindowSeconds: 3601\n"),
            "spec.behavior.scaleUp.stabilizationWindowSeconds",
            "less than or equal to 3600",
        ),
        (
            with_spec("  behavior:\n    scaleDown:\n      stabilizationWindowSeconds: -1\n"),
            "spec.behavior.scaleDown.stabilizationWindowSeconds",
            "greater than or equal to zero",
        ),
        (
            with_spec(
                "  behavior:\n    scaleDown:\n      policies:\n      - type: Pods\n        value: 1\n        periodSeconds: 1801\n",
            ),
            "spec.behavior.scaleDown.policies[0].periodSeconds",
            "less than or equal to 1800",
        ),
        (
            with_spec(
                "  behavior:\n    scaleDown:\n      policies:\n      - type: Pods\n        value: 1\n        periodSeconds: 0\n",
            ),
            "spec.behavior.scaleDown.policies[0].periodSeconds",
            "greater than zero",
        ),
        (
            with_spec(
                "  behavior:\n    scaleUp:\n      policies:\n      - type: Pods\n        value: 0\n        periodSeconds: 15\n",
            ),
            "spec.behavior.scaleUp.policies[0].value",
            "greater than zero",
        ),
        (
            with_spec(
                "  behavior:\n    scaleUp:\n      policies:\n      - type: Replicas\n        value: 1\n        periodSeconds: 15\n",
            ),
            "spec.behavior.scaleUp.policies[0].type",
            "Unsupported value",
        ),
        (
            with_spec("  behavior:\n    scaleUp:\n      policies: []\n"),
            "spec.behavior.scaleUp.policies",
            "at least one Policy",
        ),
        (
            with_spec("  behavior:\n    scaleUp:\n      selectPolicy: Maximum\n"),
            "spec.behavior.scaleUp.selectPolicy",
            "Unsupported value",
        ),
        (
            with_spec("  behavior:\n    scaleUp:\n      tolerance: \"-0.1\"\n"),
            "spec.behavior.scaleUp.tolerance",
            "greater than or equal to 0",
        ),
    ];
    for (yaml, path, why) in cases {
        let (p, r) = rejected(&yaml);
        assert_eq!(p, path, "{r}\n{yaml}");
        assert!(r.contains(why), "{p}: {r:?} does not say {why:?}\n{yaml}");
    }
}

#[test]
fn scale_to_zero_needs_the_feature_gate_and_an_object_or_external_metric() {
    let zero = MINIMAL.replace("maxReplicas: 10", "maxReplicas: 10\n  minReplicas: 0");
    let hpa = HorizontalPodAutoscaler::from_yaml(&zero).unwrap();
    assert!(hpa.to_spec().is_err());
    let gates = FeatureGates::new().hpa_scale_to_zero(true);
    let e = hpa.to_spec_with(gates).unwrap_err();
    assert!(e.to_string().contains("Object or External"), "{e}");
    let with_queue = format!(
        "{zero}  metrics:\n  - type: External\n    external:\n      metric:\n        name: q\n      target:\n        type: Value\n        value: 10\n"
    );
    let spec = HorizontalPodAutoscaler::from_yaml(&with_queue)
        .unwrap()
        .to_spec_with(gates)
        .unwrap();
    assert_eq!(spec.min_replicas, 0);
}

#[test]
fn unknown_spec_fields_are_rejected_with_their_position_metadata_and_status_are_not() {
    // a typo inside the spec: rejected, as under kubectl's default --validate=strict
    let typo = with_spec("  behavior:\n    scaleDown:\n      stabilizationWindow: 60\n");
    let e = HorizontalPodAutoscaler::from_yaml(&typo).unwrap_err();
    let ScalingError::Manifest { path, reason } = &e else {
        panic!("{e:?}")
    };
    assert!(path.starts_with("line 12 column"), "{path}");
    assert!(
        reason.contains("unknown field `stabilizationWindow`"),
        "{reason}"
    );
    let json = r#"{"apiVersion":"autoscaling/v2","kind":"HorizontalPodAutoscaler",
        "spec":{"scaleTargetRef":{"kind":"Deployment","name":"w"},"maxReplicas":3,"minReplica":1}}"#;
    let e = HorizontalPodAutoscaler::from_json(json).unwrap_err();
    assert!(e.to_string().contains("unknown field `minReplica`"), "{e}");
    assert!(e.to_string().contains("line 2"), "{e}");
    // anything under metadata and status is what the server added: accepted
    let extra = MINIMAL.replacen(
        "  name: web\n",
        "  name: web\n  generation: 3\n  finalizers: [x]\n",
        1,
    ) + "status:\n  observedGeneration: 3\n  currentReplicas: 1\n  desiredReplicas: 2\n";
    let hpa = HorizontalPodAutoscaler::from_yaml(&extra).unwrap();
    assert_eq!(hpa.status.unwrap().desired_replicas, Some(2));
}

#[test]
fn bad_quantities_and_out_of_range_integers_name_their_position() {
    let q = with_spec(
        "  metrics:\n  - type: Pods\n    pods:\n      metric:\n        name: rps\n      target:\n        type: AverageValue\n        averageValue: 1.5 Gi\n",
    );
    let e = HorizontalPodAutoscaler::from_yaml(&q).unwrap_err();
    assert!(e.to_string().contains("line 17"), "{e}");
    assert!(e.to_string().contains("1.5 Gi"), "{e}");
    let big = MINIMAL.replace("maxReplicas: 10", "maxReplicas: 3000000000");
    let e = HorizontalPodAutoscaler::from_yaml(&big).unwrap_err();
    assert!(e.to_string().contains("line 9"), "{e}");
    // a target below one milli-unit rounds up to 1m, as MilliValue() does
    let tiny = with_spec(
        "  metrics:\n  - type: Pods\n    pods:\n      metric:\n        name: rps\n      target:\n        type: AverageValue\n        averageValue: 100u\n",
    );
    let spec = HpaSpec::from_manifest_yaml(&tiny).unwrap();
    assert_eq!(spec.metrics[0].target, MetricTarget::AverageValue(0.001));
    // JSON numbers are quantities too
    let json = r#"{"apiVersion":"autoscaling/v2","kind":"HorizontalPodAutoscaler",
        "spec":{"scaleTargetRef":{"kind":"Deployment","name":"w"},"maxReplicas":3,
        "metrics":[{"type":"External","external":{"metric":{"name":"q"},"target":{"type":"Value","value":2.5}}}]}}"#;
    let spec = HpaSpec::from_manifest_json(json).unwrap();
    assert_eq!(spec.metrics[0].target, MetricTarget::Value(2.5));
}
