//! The right-sizer on the reference document's VPA manifest and a replayed
//! usage trace; policies, OOM bumps and checkpoints.
#![cfg(feature = "yaml")]

use std::time::Duration;

use sysmanage_core::Timestamp;
use sysmanage_scaling::Trace;
use sysmanage_scaling::manifest::{Document, VerticalPodAutoscaler, documents_from_yaml};
use sysmanage_scaling::rightsizing::{
    ContainerPolicy, ControlledValues, Resource, RightSizer, RightSizerCheckpoint, RightSizerConfig,
};

const REFERENCE: &str = include_str!("manifests/reference.yaml");
const GI: i64 = 1 << 30;

fn reference_vpa() -> VerticalPodAutoscaler {
    documents_from_yaml(REFERENCE)
        .unwrap()
        .into_iter()
        .find_map(|d| match d {
            Document::VerticalPodAutoscaler(v) => Some(*v),
            _ => None,
        })
        .unwrap()
}

/// Replays the bike-share trace as the analytics container's usage, every
/// 5 minutes: CPU = rps / 400 cores, memory = 1.5 GB + 4 MB per rps.
fn replay(rs: &mut RightSizer, scale: f64) -> Timestamp {
    let trace = Trace::shipped().unwrap().remove(2);
    let t0 = Timestamp::from_secs(1_700_000_000);
    let mut t = Duration::ZERO;
    while t < trace.duration() {
        let rps = trace.rps_at(t) * scale;
        let at = t0 + t;
        rs.add_cpu_sample("analytics", at, rps / 400.0, 1.0)
            .unwrap();
        rs.add_memory_sample("analytics", at, 1.5e9 + 4e6 * rps)
            .unwrap();
        t += Duration::from_secs(300);
    }
    t0 + t
}

#[test]
fn the_reference_documents_vpa_loads_and_recommends_on_a_replayed_trace() {
    let vpa = reference_vpa();
    assert_eq!(
        vpa.metadata.name.as_deref(),
        Some("sysmanage-analytics-vpa")
    );
    let policies = vpa.container_policies().unwrap();
    assert_eq!(policies.len(), 1);
    let p = &policies[0];
    assert_eq!(p.container_name, "analytics");
    assert_eq!(
        (p.min_allowed.cpu_millicores, p.min_allowed.memory_bytes),
        (Some(500), Some(GI))
    );
    assert_eq!(
        (p.max_allowed.cpu_millicores, p.max_allowed.memory_bytes),
        (Some(4000), Some(16 * GI))
    );
    assert_eq!(p.controlled_resources, [Resource::Cpu, Resource::Memory]);

    let mut rs = vpa.right_sizer(RightSizerConfig::default()).unwrap();
    replay(&mut rs, 1.0);
    let recs = rs.recommend().unwrap();
    assert_eq!(recs.len(), 1);
    let r = &recs[0];
    let (cpu, mem) = (
        r.target.cpu_millicores.unwrap(),
        r.target.memory_bytes.unwrap(),
    );
    // the trace peaks near 1,276 rps (3.2 cores) and idles near 0; p90 × 1.15 lies between
    assert!((1000..=4000).contains(&cpu), "{cpu}");
    assert!((GI..=16 * GI).contains(&mem), "{mem}");
    let lo = r.lower_bound.cpu_millicores.unwrap();
    let hi = r.upper_bound.cpu_millicores.unwrap();
    assert!(lo <= cpu && cpu <= hi, "{lo} {cpu} {hi}");
    assert!(lo >= 500, "minAllowed applies to the bounds too");
    assert!(hi <= 4000, "maxAllowed applies to the bounds too");

    // ten times the load: capped at maxAllowed; uncapped target says what it wanted
    let mut rs = vpa.right_sizer(RightSizerConfig::default()).unwrap();
    replay(&mut rs, 10.0);
    let r = &rs.recommend().unwrap()[0];
    assert_eq!(r.target.cpu_millicores, Some(4000));
    assert!(r.uncapped_target.cpu_millicores.unwrap() > 4000);
    // a tenth: raised to minAllowed
    let mut rs = vpa.right_sizer(RightSizerConfig::default()).unwrap();
    replay(&mut rs, 0.05);
    let r = &rs.recommend().unwrap()[0];
    assert_eq!(r.target.cpu_millicores, Some(500));
    assert_eq!(r.target.memory_bytes.map(|m| m >= GI), Some(true));
}

#[test]
fn bounds_widen_with_little_history_and_narrow_with_more() {
    let mut rs = RightSizer::new(RightSizerConfig::default(), vec![]).unwrap();
    let t0 = Timestamp::from_secs(0);
    let width = |rs: &RightSizer| {
        let r = &rs.recommend().unwrap()[0];
        (
            r.lower_bound.cpu_millicores.unwrap(),
            r.upper_bound.cpu_millicores.unwrap(),
        )
    };
    for m in 0..60 {
        rs.add_cpu_sample("c", t0 + Duration::from_secs(60 * m), 1.0, 1.0)
            .unwrap();
    }
    let (lo1, hi1) = width(&rs);
    for m in 60..(7 * 1440) {
        rs.add_cpu_sample("c", t0 + Duration::from_secs(60 * m), 1.0, 1.0)
            .unwrap();
    }
    let (lo2, hi2) = width(&rs);
    assert!(
        hi1 > 10 * hi2,
        "an hour of history: upper × (1 + 24) ({hi1} vs {hi2})"
    );
    assert!(lo1 <= lo2);
    // a week: upper bound × (1 + 1/7) over the 95th percentile with the margin
    assert!(hi2 < 1_600, "{hi2}");
}

#[test]
fn an_oom_bumps_memory() {
    let mut rs = RightSizer::new(RightSizerConfig::default(), vec![]).unwrap();
    let t0 = Timestamp::from_secs(0);
    for m in 0..1440 {
        let at = t0 + Duration::from_secs(60 * m);
        rs.add_cpu_sample("c", at, 0.5, 0.5).unwrap();
        rs.add_memory_sample("c", at, 500e6).unwrap();
    }
    let before = rs.recommend().unwrap()[0].target.memory_bytes.unwrap();
    // killed at a 512 MiB request: the peak becomes max(512 MiB + 100 MiB, 512 MiB × 1.2)
    rs.record_oom("c", t0 + Duration::from_secs(60 * 1440), 512.0 * 1048576.0)
        .unwrap();
    let after = rs.recommend().unwrap()[0].target.memory_bytes.unwrap();
    assert!(after > before, "{before} -> {after}");
    assert!(after as f64 >= 612.0 * 1048576.0, "{after}");
    // an OOM from before the current window is refused
    assert!(rs.record_oom("c", t0, 1e9).is_err());
}

#[test]
fn policies_turn_containers_and_resources_off() {
    let mut off = ContainerPolicy::new("sidecar");
    off.off = true;
    let mut cpu_only = ContainerPolicy::new("*");
    cpu_only.controlled_resources = vec![Resource::Cpu];
    cpu_only.controlled_values = ControlledValues::RequestsOnly;
    let mut rs = RightSizer::new(RightSizerConfig::default(), vec![off, cpu_only]).unwrap();
    let t = Timestamp::from_secs(0);
    for c in ["app", "sidecar"] {
        rs.add_cpu_sample(c, t, 1.0, 1.0).unwrap();
        rs.add_memory_sample(c, t, 1e9).unwrap();
    }
    let recs = rs.recommend().unwrap();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].container_name, "app");
    assert!(recs[0].target.cpu_millicores.is_some());
    assert_eq!(recs[0].target.memory_bytes, None);
    assert_eq!(recs[0].controlled_values, ControlledValues::RequestsOnly);
    // minAllowed above maxAllowed is rejected
    let mut bad = ContainerPolicy::new("x");
    bad.min_allowed.cpu_millicores = Some(2000);
    bad.max_allowed.cpu_millicores = Some(1000);
    assert!(RightSizer::new(RightSizerConfig::default(), vec![bad]).is_err());
}

#[test]
fn a_checkpoint_keeps_the_history_across_a_restart() {
    let vpa = reference_vpa();
    let mut rs = vpa.right_sizer(RightSizerConfig::default()).unwrap();
    replay(&mut rs, 1.0);
    let json = serde_json::to_string(&rs.checkpoint()).unwrap();
    let cp: RightSizerCheckpoint = serde_json::from_str(&json).unwrap();
    let back = RightSizer::from_checkpoint(
        RightSizerConfig::default(),
        vpa.container_policies().unwrap(),
        &cp,
    )
    .unwrap();
    let (a, b) = (&rs.recommend().unwrap()[0], &back.recommend().unwrap()[0]);
    // the compact histogram format keeps 1/10,000 of the largest bucket: within 2 %
    let close = |x: Option<i64>, y: Option<i64>| {
        let (x, y) = (x.unwrap() as f64, y.unwrap() as f64);
        (x - y).abs() <= 0.02 * x
    };
    assert!(
        close(a.target.cpu_millicores, b.target.cpu_millicores),
        "{a:?}\n{b:?}"
    );
    assert!(close(a.target.memory_bytes, b.target.memory_bytes));
    assert_eq!(
        rs.confidence_of("analytics"),
        back.confidence_of("analytics")
    );
    // a corrupt checkpoint is a typed error
    let mut bad = cp.clone();
    bad.containers
        .get_mut("analytics")
        .unwrap()
        .cpu_histogram
        .total_weight = f64::NAN;
    assert!(RightSizer::from_checkpoint(RightSizerConfig::default(), vec![], &bad).is_err());
}

#[test]
fn vpa_manifests_are_validated() {
    let base = "apiVersion: autoscaling.k8s.io/v1\nkind: VerticalPodAutoscaler\nmetadata:\n  name: v\nspec:\n  targetRef:\n    kind: Deployment\n    name: d\n";
    let with = |extra: &str| VerticalPodAutoscaler::from_yaml(&format!("{base}{extra}"));
    assert!(with("").unwrap().container_policies().unwrap().is_empty());
    for (extra, path) in [
        (
            "  updatePolicy:\n    updateMode: Sometimes\n",
            "spec.updatePolicy.updateMode",
        ),
        (
            "  resourcePolicy:\n    containerPolicies:\n    - containerName: a\n      mode: Maybe\n",
            "containerPolicies[0].mode",
        ),
        (
            "  resourcePolicy:\n    containerPolicies:\n    - containerName: a\n      controlledResources: [gpu]\n",
            "controlledResources",
        ),
        (
            "  resourcePolicy:\n    containerPolicies:\n    - containerName: a\n      minAllowed:\n        cpu: 2\n      maxAllowed:\n        cpu: 1\n",
            "maxAllowed.cpu",
        ),
        (
            "  resourcePolicy:\n    containerPolicies:\n    - containerName: a\n      controlledValues: Limits\n",
            "controlledValues",
        ),
    ] {
        let e = with(extra).unwrap().container_policies().unwrap_err();
        assert!(e.to_string().contains(path), "{e}");
    }
    // unknown spec fields: rejected with their position
    let e = with("  updatePolicy:\n    mode: Auto\n").unwrap_err();
    assert!(e.to_string().contains("unknown field `mode`"), "{e}");
}
