//! Right-sizing with the Vertical Pod Autoscaler's recommender: the
//! reference VerticalPodAutoscaler manifest (`examples/data/sysmanage_autoscalers.yaml`)
//! configures a `RightSizer`, which replays two months of usage derived from
//! the shipped bike-share trace and prints its recommendation.
//!
//! Run with `cargo run --release -p sysmanage-examples --features yaml --example right_sizing`.

use std::time::Duration;

use sysmanage_core::Timestamp;
use sysmanage_examples::{init_tracing, section};
use sysmanage_scaling::Trace;
use sysmanage_scaling::manifest::{Document, documents_from_yaml};
use sysmanage_scaling::rightsizing::{Resources, RightSizerConfig};

const MANIFESTS: &str = include_str!("data/sysmanage_autoscalers.yaml");
const MIB: f64 = 1024.0 * 1024.0;

fn show(r: &Resources) -> String {
    let cpu = r.cpu_millicores.map_or("-".into(), |m| format!("{m} m"));
    let mem = r
        .memory_bytes
        .map_or("-".into(), |b| format!("{:.0} MiB", b as f64 / MIB));
    format!("cpu {cpu:>8}, memory {mem:>9}")
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    init_tracing();
    let vpa = documents_from_yaml(MANIFESTS)?
        .into_iter()
        .find_map(|d| match d {
            Document::VerticalPodAutoscaler(v) => Some(*v),
            _ => None,
        })
        .ok_or("no VerticalPodAutoscaler in the manifests")?;
    section("policy");
    for p in vpa.container_policies()? {
        println!(
            "{}: min {}; max {}",
            p.container_name,
            show(&p.min_allowed),
            show(&p.max_allowed)
        );
    }
    let mut rs = vpa.right_sizer(RightSizerConfig::default())?;

    // usage: CPU follows the request rate (400 rps per core), memory a
    // 1.5 GB base plus 4 MB per request/s; one sample every 5 minutes
    let trace = Trace::shipped()?.remove(2);
    let t0 = Timestamp::from_secs(1_700_000_000);
    let mut t = Duration::ZERO;
    let mut samples = 0u32;
    while t < trace.duration() {
        let rps = trace.rps_at(t);
        rs.add_cpu_sample("analytics", t0 + t, rps / 400.0, 1.0)?;
        rs.add_memory_sample("analytics", t0 + t, 1.5e9 + 4e6 * rps)?;
        t += Duration::from_secs(300);
        samples += 1;
    }
    section("recommendation");
    println!(
        "{samples} samples over {} days of the {} trace",
        trace.duration().as_secs() / 86_400,
        trace.name()
    );
    let recs = rs.recommend()?;
    for r in &recs {
        println!("{} target      {}", r.container_name, show(&r.target));
        println!("{} lower bound {}", r.container_name, show(&r.lower_bound));
        println!("{} upper bound {}", r.container_name, show(&r.upper_bound));
        println!(
            "{} uncapped    {}",
            r.container_name,
            show(&r.uncapped_target)
        );
    }
    let first = recs.first().ok_or("no recommendation")?;
    let cpu = |r: &Resources| r.cpu_millicores.unwrap_or_default();
    let mib = |r: &Resources| (r.memory_bytes.unwrap_or_default() as f64 / MIB).round();
    println!(
        "summary: containers={} target_cpu_m={} target_memory_mib={} lower={}m/{}Mi upper={}m/{}Mi",
        recs.len(),
        cpu(&first.target),
        mib(&first.target),
        cpu(&first.lower_bound),
        mib(&first.lower_bound),
        cpu(&first.upper_bound),
        mib(&first.upper_bound),
    );
    Ok(())
}
