//! Health checks and the three reports load balancers and Kubernetes expect.
//!
//! A [`HealthRegistry`] holds [`HealthCheck`]s and produces:
//!
//! | report | runs checks | HTTP 200 when | use for |
//! |---|---|---|---|
//! | [`LivenessReport`] | none (no I/O) | always, while the process answers | `livenessProbe` |
//! | [`ReadinessReport`] | critical ones | every critical check is healthy or degraded | `readinessProbe`, load-balancer pools |
//! | [`DetailedReport`] | all | the worst status is healthy or degraded | dashboards, operators |
//!
//! Checks run concurrently on the Tokio runtime, each under its own timeout.
//! A check that panics or times out is reported [`HealthStatus::Unhealthy`]
//! with the reason; the registry itself never fails.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::duration::{DAY, MILLISECOND, check_duration};
use crate::error::{Error, Result};
use crate::series::Timestamp;

/// The outcome of a health check, ordered from best to worst.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// Working normally.
    Healthy,
    /// Working with reduced capacity or quality; still serves traffic.
    Degraded,
    /// Not working.
    Unhealthy,
}

impl HealthStatus {
    /// The HTTP status code a probe endpoint should answer with: 200 for
    /// healthy and degraded, 503 for unhealthy.
    pub fn http_status(self) -> u16 {
        match self {
            Self::Healthy | Self::Degraded => 200,
            Self::Unhealthy => 503,
        }
    }

    /// Lowercase name, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Degraded => "degraded",
            Self::Unhealthy => "unhealthy",
        }
    }
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a failing check makes the service not ready.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Criticality {
    /// The service cannot serve without it (its database, say).
    #[default]
    Critical,
    /// The service can serve without it (a cache, an optional integration).
    NonCritical,
}

/// What a check returns.
///
/// # Examples
/// ```
/// use sysmanage_core::{CheckResult, HealthStatus};
/// let r = CheckResult::degraded("replica lag 12 s").with_detail("lag_seconds", "12");
/// assert_eq!(r.status, HealthStatus::Degraded);
/// assert_eq!(r.details["lag_seconds"], "12");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct CheckResult {
    /// The status.
    pub status: HealthStatus,
    /// Why the status is not healthy (or any note).
    pub reason: Option<String>,
    /// Extra facts for the detailed report.
    pub details: BTreeMap<String, String>,
}

impl CheckResult {
    /// A healthy result.
    pub fn healthy() -> Self {
        Self {
            status: HealthStatus::Healthy,
            reason: None,
            details: BTreeMap::new(),
        }
    }

    /// A degraded result with its reason.
    pub fn degraded(reason: impl Into<String>) -> Self {
        Self {
            status: HealthStatus::Degraded,
            reason: Some(reason.into()),
            details: BTreeMap::new(),
        }
    }

    /// An unhealthy result with its reason.
    pub fn unhealthy(reason: impl Into<String>) -> Self {
        Self {
            status: HealthStatus::Unhealthy,
            reason: Some(reason.into()),
            details: BTreeMap::new(),
        }
    }

    /// Adds a detail.
    #[must_use]
    pub fn with_detail(mut self, key: impl Into<String>, value: impl ToString) -> Self {
        self.details.insert(key.into(), value.to_string());
        self
    }
}

/// A health check of one dependency or subsystem.
///
/// # Examples
/// ```
/// use sysmanage_core::{CheckResult, Criticality, HealthCheck, HealthRegistry, HealthStatus};
///
/// #[derive(Debug)]
/// struct DiskSpace { free_fraction: f64 }
///
/// #[async_trait::async_trait]
/// impl HealthCheck for DiskSpace {
///     fn name(&self) -> &str { "disk" }
///     fn criticality(&self) -> Criticality { Criticality::NonCritical }
///     async fn check(&self) -> CheckResult {
///         match self.free_fraction {
///             f if f < 0.05 => CheckResult::unhealthy(format!("{:.0}% free", f * 100.0)),
///             f if f < 0.15 => CheckResult::degraded(format!("{:.0}% free", f * 100.0)),
///             _ => CheckResult::healthy(),
///         }
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), sysmanage_core::Error> {
/// let registry = HealthRegistry::builder().check(DiskSpace { free_fraction: 0.1 }).build()?;
/// let report = registry.detailed().await;
/// assert_eq!(report.status, HealthStatus::Degraded);
/// assert_eq!(report.checks[0].reason.as_deref(), Some("10% free"));
/// # Ok(())
/// # }
/// ```
#[async_trait::async_trait]
pub trait HealthCheck: Send + Sync + fmt::Debug {
    /// A unique, stable name, e.g. `"postgres.primary"`.
    fn name(&self) -> &str;

    /// Whether readiness depends on this check. Default: critical.
    fn criticality(&self) -> Criticality {
        Criticality::Critical
    }

    /// Runs the check. Timeouts are the registry's job; a check need not
    /// guard against hanging.
    async fn check(&self) -> CheckResult;
}

/// A [`HealthCheck`] made from a name and an async closure.
///
/// # Examples
/// ```
/// use sysmanage_core::{CheckResult, Criticality, FnCheck, HealthCheck};
/// let check = FnCheck::new("always-ok", Criticality::Critical, || async { CheckResult::healthy() });
/// assert_eq!(check.name(), "always-ok");
/// ```
pub struct FnCheck<F> {
    name: String,
    criticality: Criticality,
    f: F,
}

impl<F, Fut> FnCheck<F>
where
    F: Fn() -> Fut + Send + Sync,
    Fut: Future<Output = CheckResult> + Send,
{
    /// A check named `name` that runs `f`.
    pub fn new(name: impl Into<String>, criticality: Criticality, f: F) -> Self {
        Self {
            name: name.into(),
            criticality,
            f,
        }
    }
}

impl<F> fmt::Debug for FnCheck<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnCheck")
            .field("name", &self.name)
            .field("criticality", &self.criticality)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl<F, Fut> HealthCheck for FnCheck<F>
where
    F: Fn() -> Fut + Send + Sync,
    Fut: Future<Output = CheckResult> + Send,
{
    fn name(&self) -> &str {
        &self.name
    }
    fn criticality(&self) -> Criticality {
        self.criticality
    }
    async fn check(&self) -> CheckResult {
        (self.f)().await
    }
}

/// One check's entry in a report.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct CheckReport {
    /// The check's name.
    pub name: String,
    /// Its criticality.
    pub criticality: Criticality,
    /// Its status.
    pub status: HealthStatus,
    /// Why it is not healthy, including "timed out after …" and "panicked: …".
    pub reason: Option<String>,
    /// Extra facts the check reported.
    pub details: BTreeMap<String, String>,
    /// How long it ran, in milliseconds.
    pub duration_ms: f64,
    /// When it started.
    pub checked_at: Timestamp,
}

/// Liveness: the process is running and answering. Performs no I/O.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct LivenessReport {
    /// Always [`HealthStatus::Healthy`]: a process that can build this report is alive.
    pub status: HealthStatus,
    /// Seconds since the registry was built.
    pub uptime_secs: f64,
    /// When the report was made.
    pub checked_at: Timestamp,
}

impl LivenessReport {
    /// 200.
    pub fn http_status(&self) -> u16 {
        self.status.http_status()
    }
}

/// Readiness: every critical check passes (healthy or degraded).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct ReadinessReport {
    /// Whether the service should receive traffic.
    pub ready: bool,
    /// Names of the critical checks that failed.
    pub failing: Vec<String>,
    /// The critical checks that ran.
    pub checks: Vec<CheckReport>,
    /// When the report was made.
    pub checked_at: Timestamp,
}

impl ReadinessReport {
    /// 200 when ready, else 503.
    pub fn http_status(&self) -> u16 {
        if self.ready { 200 } else { 503 }
    }
}

/// Every check with its status, duration and timestamp; overall = worst.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct DetailedReport {
    /// The worst status of any check (healthy when there are none).
    pub status: HealthStatus,
    /// Every check, in registration order.
    pub checks: Vec<CheckReport>,
    /// Wall time of the whole run, in milliseconds.
    pub duration_ms: f64,
    /// When the report was made.
    pub checked_at: Timestamp,
}

impl DetailedReport {
    /// 200 for healthy or degraded, 503 for unhealthy.
    pub fn http_status(&self) -> u16 {
        self.status.http_status()
    }
}

#[derive(Debug)]
struct Registered {
    check: Arc<dyn HealthCheck>,
    timeout: Duration,
}

/// Runs health checks and builds reports; see the [module docs](self).
///
/// Cheap to clone; clones share the checks.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use sysmanage_core::{CheckResult, Criticality, FnCheck, HealthRegistry, HealthStatus};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let registry = HealthRegistry::builder()
///     .default_timeout(Duration::from_secs(2))
///     .check(FnCheck::new("db", Criticality::Critical, || async { CheckResult::healthy() }))
///     .check(FnCheck::new("cache", Criticality::NonCritical, || async {
///         CheckResult::unhealthy("connection refused")
///     }))
///     .build()
///     .unwrap();
///
/// assert_eq!(registry.liveness().http_status(), 200);
/// let ready = registry.readiness().await;
/// assert!(ready.ready, "only a non-critical check fails");
/// let detailed = registry.detailed().await;
/// assert_eq!(detailed.status, HealthStatus::Unhealthy);
/// assert_eq!(detailed.http_status(), 503);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct HealthRegistry {
    checks: Arc<[Registered]>,
    started: Instant,
}

/// Builder for [`HealthRegistry`].
#[derive(Debug)]
#[must_use = "a builder does nothing until `.build()` is called"]
pub struct HealthRegistryBuilder {
    default_timeout: Duration,
    checks: Vec<(Arc<dyn HealthCheck>, Option<Duration>)>,
}

impl Default for HealthRegistryBuilder {
    fn default() -> Self {
        Self {
            // Kubernetes' default probe timeout is 1 s; a check should answer well within it.
            default_timeout: Duration::from_secs(1),
            checks: Vec::new(),
        }
    }
}

impl HealthRegistryBuilder {
    /// Timeout for checks registered without their own. Default: 1 s.
    pub fn default_timeout(mut self, t: Duration) -> Self {
        self.default_timeout = t;
        self
    }

    /// Adds a check under the default timeout.
    pub fn check(mut self, check: impl HealthCheck + 'static) -> Self {
        self.checks.push((Arc::new(check), None));
        self
    }

    /// Adds a shared check under the default timeout.
    pub fn check_arc(mut self, check: Arc<dyn HealthCheck>) -> Self {
        self.checks.push((check, None));
        self
    }

    /// Adds a check with its own timeout.
    pub fn check_with_timeout(
        mut self,
        check: impl HealthCheck + 'static,
        timeout: Duration,
    ) -> Self {
        self.checks.push((Arc::new(check), Some(timeout)));
        self
    }

    /// Validates and builds the registry.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a timeout outside 1 ms – 1 day or an
    /// empty check name, [`Error::Duplicate`] when two checks share a name.
    pub fn build(self) -> Result<HealthRegistry> {
        check_duration(
            "health.default_timeout",
            self.default_timeout,
            MILLISECOND,
            DAY,
        )?;
        let mut seen = std::collections::HashSet::new();
        let mut checks = Vec::with_capacity(self.checks.len());
        for (check, timeout) in self.checks {
            let name = check.name();
            if name.trim().is_empty() {
                return Err(Error::invalid("health check name", "must not be empty"));
            }
            if !seen.insert(name.to_owned()) {
                return Err(Error::Duplicate {
                    kind: "health check",
                    name: name.to_owned(),
                });
            }
            let timeout = match timeout {
                Some(t) => check_duration("health check timeout", t, MILLISECOND, DAY)?,
                None => self.default_timeout,
            };
            checks.push(Registered { check, timeout });
        }
        Ok(HealthRegistry {
            checks: checks.into(),
            started: Instant::now(),
        })
    }
}

impl HealthRegistry {
    /// A builder with a 1 s default timeout and no checks.
    pub fn builder() -> HealthRegistryBuilder {
        HealthRegistryBuilder::default()
    }

    /// Number of registered checks.
    pub fn len(&self) -> usize {
        self.checks.len()
    }

    /// Whether no checks are registered.
    pub fn is_empty(&self) -> bool {
        self.checks.is_empty()
    }

    /// Liveness, without running any check.
    pub fn liveness(&self) -> LivenessReport {
        LivenessReport {
            status: HealthStatus::Healthy,
            uptime_secs: self.started.elapsed().as_secs_f64(),
            checked_at: Timestamp::now(),
        }
    }

    /// Readiness: runs the critical checks concurrently.
    ///
    /// Must be called within a Tokio runtime with the time driver enabled.
    pub async fn readiness(&self) -> ReadinessReport {
        let checked_at = Timestamp::now();
        let checks = self
            .run(|r| r.check.criticality() == Criticality::Critical)
            .await;
        let failing: Vec<String> = checks
            .iter()
            .filter(|c| c.status == HealthStatus::Unhealthy)
            .map(|c| c.name.clone())
            .collect();
        ReadinessReport {
            ready: failing.is_empty(),
            failing,
            checks,
            checked_at,
        }
    }

    /// The detailed report: runs every check concurrently.
    ///
    /// Must be called within a Tokio runtime with the time driver enabled.
    pub async fn detailed(&self) -> DetailedReport {
        let checked_at = Timestamp::now();
        let started = Instant::now();
        let checks = self.run(|_| true).await;
        let status = checks
            .iter()
            .map(|c| c.status)
            .max()
            .unwrap_or(HealthStatus::Healthy);
        DetailedReport {
            status,
            checks,
            duration_ms: started.elapsed().as_secs_f64() * 1e3,
            checked_at,
        }
    }

    async fn run(&self, select: impl Fn(&Registered) -> bool) -> Vec<CheckReport> {
        // Start every selected check in its own task first, so they all run
        // concurrently; a task also catches a panic and can be aborted on timeout.
        let started: Vec<_> = self
            .checks
            .iter()
            .filter(|r| select(r))
            .map(|reg| {
                let check = Arc::clone(&reg.check);
                let task = tokio::spawn(async move { check.check().await });
                (reg, Timestamp::now(), tokio::time::Instant::now(), task)
            })
            .collect();
        let mut reports = Vec::with_capacity(started.len());
        for (reg, checked_at, start, task) in started {
            reports.push(finish_one(reg, checked_at, start, task).await);
        }
        reports
    }
}

/// Waits for one started check until its deadline, turning a panic or a
/// timeout into an unhealthy report.
async fn finish_one(
    reg: &Registered,
    checked_at: Timestamp,
    start: tokio::time::Instant,
    mut task: tokio::task::JoinHandle<CheckResult>,
) -> CheckReport {
    let result = match tokio::time::timeout_at(start + reg.timeout, &mut task).await {
        Ok(Ok(result)) => result,
        Ok(Err(join_error)) if join_error.is_panic() => {
            let payload = join_error.into_panic();
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic payload".into());
            CheckResult::unhealthy(format!("check panicked: {msg}"))
        }
        Ok(Err(_)) => CheckResult::unhealthy("check was cancelled"),
        Err(_) => {
            task.abort();
            CheckResult::unhealthy(format!("check timed out after {:?}", reg.timeout))
        }
    };
    let duration_ms = start.elapsed().as_secs_f64() * 1e3;
    tracing::debug!(
        target: "sysmanage_core::health",
        check = reg.check.name(),
        status = result.status.as_str(),
        duration_ms,
        "health check finished"
    );
    CheckReport {
        name: reg.check.name().to_owned(),
        criticality: reg.check.criticality(),
        status: result.status,
        reason: result.reason,
        details: result.details,
        duration_ms,
        checked_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn check(
        name: &str,
        criticality: Criticality,
        result: CheckResult,
    ) -> impl HealthCheck + 'static {
        FnCheck::new(name, criticality, move || {
            let r = result.clone();
            async move { r }
        })
    }

    #[derive(Debug)]
    struct Slow(Duration);
    #[async_trait::async_trait]
    impl HealthCheck for Slow {
        fn name(&self) -> &str {
            "slow"
        }
        async fn check(&self) -> CheckResult {
            tokio::time::sleep(self.0).await;
            CheckResult::healthy()
        }
    }

    #[derive(Debug)]
    struct Panics;
    #[async_trait::async_trait]
    impl HealthCheck for Panics {
        fn name(&self) -> &str {
            "panics"
        }
        fn criticality(&self) -> Criticality {
            Criticality::NonCritical
        }
        async fn check(&self) -> CheckResult {
            panic!("boom")
        }
    }

    #[test]
    fn builder_rejects_bad_input() {
        let e = HealthRegistry::builder()
            .check(check("a", Criticality::Critical, CheckResult::healthy()))
            .check(check("a", Criticality::Critical, CheckResult::healthy()))
            .build()
            .unwrap_err();
        assert_eq!(e.to_string(), "duplicate health check name \"a\"");
        assert!(
            HealthRegistry::builder()
                .check(check(" ", Criticality::Critical, CheckResult::healthy()))
                .build()
                .is_err()
        );
        assert!(
            HealthRegistry::builder()
                .default_timeout(Duration::ZERO)
                .build()
                .is_err()
        );
        assert!(
            HealthRegistry::builder()
                .check_with_timeout(
                    check("a", Criticality::Critical, CheckResult::healthy()),
                    Duration::ZERO
                )
                .build()
                .is_err()
        );
    }

    #[tokio::test]
    async fn empty_registry_is_healthy_and_ready() {
        let r = HealthRegistry::builder().build().unwrap();
        assert!(r.is_empty());
        assert!(r.readiness().await.ready);
        assert_eq!(r.detailed().await.status, HealthStatus::Healthy);
    }

    #[tokio::test]
    async fn readiness_depends_only_on_critical_checks() {
        let r = HealthRegistry::builder()
            .check(check(
                "db",
                Criticality::Critical,
                CheckResult::degraded("slow"),
            ))
            .check(check(
                "cache",
                Criticality::NonCritical,
                CheckResult::unhealthy("down"),
            ))
            .build()
            .unwrap();
        let ready = r.readiness().await;
        assert!(ready.ready);
        assert_eq!(ready.http_status(), 200);
        assert_eq!(
            ready.checks.len(),
            1,
            "non-critical checks are not run for readiness"
        );
        let detailed = r.detailed().await;
        assert_eq!(detailed.status, HealthStatus::Unhealthy);
        assert_eq!(detailed.http_status(), 503);
        assert_eq!(detailed.checks[0].name, "db");
        assert_eq!(detailed.checks[1].reason.as_deref(), Some("down"));

        let r = HealthRegistry::builder()
            .check(check(
                "db",
                Criticality::Critical,
                CheckResult::unhealthy("refused"),
            ))
            .build()
            .unwrap();
        let ready = r.readiness().await;
        assert!(!ready.ready);
        assert_eq!(ready.failing, ["db"]);
        assert_eq!(ready.http_status(), 503);
    }

    #[tokio::test(start_paused = true)]
    async fn timeouts_and_panics_become_unhealthy() {
        let r = HealthRegistry::builder()
            .check_with_timeout(Slow(Duration::from_secs(60)), Duration::from_millis(200))
            .check(Panics)
            .check(check("ok", Criticality::Critical, CheckResult::healthy()))
            .build()
            .unwrap();
        let report = r.detailed().await;
        assert_eq!(report.status, HealthStatus::Unhealthy);
        let by_name: BTreeMap<_, _> = report.checks.iter().map(|c| (c.name.as_str(), c)).collect();
        assert_eq!(by_name["slow"].status, HealthStatus::Unhealthy);
        assert_eq!(
            by_name["slow"].reason.as_deref(),
            Some("check timed out after 200ms")
        );
        assert!(by_name["slow"].duration_ms < 1000.0);
        assert_eq!(by_name["panics"].status, HealthStatus::Unhealthy);
        assert_eq!(
            by_name["panics"].reason.as_deref(),
            Some("check panicked: boom")
        );
        assert_eq!(by_name["ok"].status, HealthStatus::Healthy);
        // Readiness ignores the non-critical panicking check but not the critical slow one.
        let ready = r.readiness().await;
        assert_eq!(ready.failing, ["slow"]);
    }

    #[tokio::test(start_paused = true)]
    async fn checks_run_concurrently() {
        let mut b = HealthRegistry::builder().default_timeout(Duration::from_secs(5));
        let calls = Arc::new(AtomicUsize::new(0));
        for i in 0..10 {
            let calls = Arc::clone(&calls);
            b = b.check(FnCheck::new(
                format!("c{i}"),
                Criticality::Critical,
                move || {
                    let calls = Arc::clone(&calls);
                    async move {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        calls.fetch_add(1, Ordering::SeqCst);
                        CheckResult::healthy()
                    }
                },
            ));
        }
        let r = b.build().unwrap();
        let start = tokio::time::Instant::now();
        let report = r.detailed().await;
        assert_eq!(calls.load(Ordering::SeqCst), 10);
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "ran sequentially: {:?}",
            start.elapsed()
        );
        assert_eq!(report.status, HealthStatus::Healthy);
    }

    #[test]
    fn reports_serialise_with_stable_names() {
        let report = ReadinessReport {
            ready: false,
            failing: vec!["db".into()],
            checks: vec![],
            checked_at: Timestamp::from_millis(5),
        };
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["ready"], false);
        assert_eq!(json["failing"][0], "db");
        assert_eq!(json["checked_at"], 5);
        assert_eq!(
            serde_json::to_value(HealthStatus::Degraded).unwrap(),
            "degraded"
        );
        assert!(HealthStatus::Healthy < HealthStatus::Degraded);
        assert!(HealthStatus::Degraded < HealthStatus::Unhealthy);
    }
}
