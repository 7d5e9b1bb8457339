//! What is measured: metric specifications, limits, directions and physical bounds.

use serde::{Deserialize, Serialize};
use sysmanage_core::{Error, Result, ensure_finite};

/// Which side of the limit is bad.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Direction {
    /// Values at or above the limit are bad (utilisation, latency, queue length).
    Ceiling,
    /// Values at or below the limit are bad (free space, remaining credits).
    Floor,
}

/// Values a metric can physically take; forecasts are clamped into them.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Bounds {
    /// Smallest possible value, if any.
    pub min: Option<f64>,
    /// Largest possible value, if any.
    pub max: Option<f64>,
}

impl Bounds {
    /// No physical bounds.
    pub const UNBOUNDED: Self = Self {
        min: None,
        max: None,
    };
    /// A fraction in `[0, 1]` (utilisation).
    pub const UNIT: Self = Self {
        min: Some(0.0),
        max: Some(1.0),
    };
    /// A non-negative quantity (counts, rates, durations).
    pub const NON_NEGATIVE: Self = Self {
        min: Some(0.0),
        max: None,
    };

    /// `v` clamped into the bounds.
    pub fn clamp(&self, v: f64) -> f64 {
        let v = self.min.map_or(v, |m| v.max(m));
        self.max.map_or(v, |m| v.min(m))
    }
}

/// The metrics SysManage's capacity planner tracks, plus custom ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MetricKind {
    /// CPU utilisation as a fraction in `[0, 1]`.
    CpuUtilization,
    /// Memory utilisation as a fraction in `[0, 1]`.
    MemoryUtilization,
    /// Disk utilisation as a fraction in `[0, 1]`.
    DiskUtilization,
    /// Network throughput (any non-negative unit, e.g. bytes/s).
    NetworkThroughput,
    /// Requests per second.
    RequestRate,
    /// Response time in seconds.
    ResponseTime,
    /// Open connections.
    ActiveConnections,
    /// Items waiting in a queue.
    QueueLength,
    /// Anything else; give it a limit, direction and bounds yourself.
    Custom,
}

impl MetricKind {
    /// The eight built-in kinds, in SysManage's order.
    pub const BUILT_IN: [Self; 8] = [
        Self::CpuUtilization,
        Self::MemoryUtilization,
        Self::DiskUtilization,
        Self::NetworkThroughput,
        Self::RequestRate,
        Self::ResponseTime,
        Self::ActiveConnections,
        Self::QueueLength,
    ];

    /// SysManage's metric name, e.g. `"cpu_utilization"`.
    pub fn name(self) -> &'static str {
        match self {
            Self::CpuUtilization => "cpu_utilization",
            Self::MemoryUtilization => "memory_utilization",
            Self::DiskUtilization => "disk_utilization",
            Self::NetworkThroughput => "network_throughput",
            Self::RequestRate => "request_rate",
            Self::ResponseTime => "response_time",
            Self::ActiveConnections => "active_connections",
            Self::QueueLength => "queue_length",
            Self::Custom => "custom",
        }
    }

    /// SysManage's default limit: cpu 0.8, memory 0.85, disk 0.9, response
    /// time 2.0 s, queue 1000; `None` for the others.
    pub fn default_limit(self) -> Option<f64> {
        match self {
            Self::CpuUtilization => Some(0.8),
            Self::MemoryUtilization => Some(0.85),
            Self::DiskUtilization => Some(0.9),
            Self::ResponseTime => Some(2.0),
            Self::QueueLength => Some(1000.0),
            _ => None,
        }
    }

    /// Physical bounds: utilisations in `[0, 1]`, everything else `≥ 0`,
    /// custom metrics unbounded.
    pub fn bounds(self) -> Bounds {
        match self {
            Self::CpuUtilization | Self::MemoryUtilization | Self::DiskUtilization => Bounds::UNIT,
            Self::Custom => Bounds::UNBOUNDED,
            _ => Bounds::NON_NEGATIVE,
        }
    }

    /// The unit of this kind's values (for custom metrics [`Unit::None`]).
    pub fn unit(self) -> Unit {
        match self {
            Self::CpuUtilization | Self::MemoryUtilization | Self::DiskUtilization => Unit::Ratio,
            Self::NetworkThroughput => Unit::BytesPerSecond,
            Self::RequestRate => Unit::RequestsPerSecond,
            Self::ResponseTime => Unit::Seconds,
            Self::ActiveConnections | Self::QueueLength => Unit::Count,
            Self::Custom => Unit::None,
        }
    }

    /// SysManage's recommended action text.
    pub fn default_action(self) -> &'static str {
        match self {
            Self::CpuUtilization => "Scale out application servers",
            Self::MemoryUtilization => "Scale up instance memory or scale out",
            Self::DiskUtilization => "Add storage capacity or implement data archiving",
            Self::ResponseTime => "Scale out application servers or optimize queries",
            Self::QueueLength => "Scale out worker processes",
            _ => "Review capacity requirements",
        }
    }
}

/// One metric the planner tracks.
///
/// # Examples
/// ```
/// use sysmanage_capacity::{Direction, MetricKind, MetricSpec};
/// let cpu = MetricSpec::builtin(MetricKind::CpuUtilization);
/// assert_eq!(cpu.limit, Some(0.8));
/// let free = MetricSpec::custom("free_inodes", 10_000.0, Direction::Floor)?;
/// assert_eq!(free.bounds.min, Some(0.0));
/// # Ok::<(), sysmanage_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MetricSpec {
    /// Unique name, e.g. `"cpu_utilization"`.
    pub name: String,
    /// Kind (for defaults and action text).
    pub kind: MetricKind,
    /// The limit, if any. Without one the metric is forecast but never recommended on.
    pub limit: Option<f64>,
    /// Which side of the limit is bad.
    pub direction: Direction,
    /// Physical bounds for clamping forecasts.
    pub bounds: Bounds,
    /// What to do when the limit is near.
    pub action: String,
    /// Unit of the values, for reports and chart axes. Default: the kind's
    /// ([`MetricKind::unit`]).
    #[serde(default)]
    pub unit: Unit,
}

/// Longest metric name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 256;

/// The unit of a metric's values: how reports and chart axes print them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Unit {
    /// A plain number.
    #[default]
    None,
    /// A fraction in `[0, 1]`, printed as a percentage.
    Ratio,
    /// Bytes (SI prefixes: kB, MB, GB).
    Bytes,
    /// Bytes per second.
    BytesPerSecond,
    /// Requests per second.
    RequestsPerSecond,
    /// Seconds (printed as ms below one second).
    Seconds,
    /// A count (k and M suffixes).
    Count,
    /// Any other unit, printed after the number (at most 32 bytes).
    Other(String),
}

impl Unit {
    /// `v` with this unit, with as many decimals as `resolution` (the
    /// smallest difference that matters, e.g. a tick step) needs (at most
    /// six); a non-finite `v` prints as `–`.
    ///
    /// # Examples
    /// ```
    /// use sysmanage_capacity::metric::Unit;
    /// assert_eq!(Unit::Ratio.format(0.613, 0.1), "61 %");
    /// assert_eq!(Unit::BytesPerSecond.format(3.2e7, 1e7), "32 MB/s");
    /// assert_eq!(Unit::Seconds.format(0.25, 0.05), "250 ms");
    /// assert_eq!(Unit::Other("ppm".into()).format(412.5, 0.5), "412.5 ppm");
    /// ```
    pub fn format(&self, v: f64, resolution: f64) -> String {
        if !v.is_finite() {
            return "–".to_owned();
        }
        if v.abs() >= 1e15 {
            // Beyond any prefix: scientific notation with the unit's name.
            let name = match self {
                Self::None => "",
                Self::Ratio => " (ratio)",
                Self::Bytes => " B",
                Self::BytesPerSecond => " B/s",
                Self::RequestsPerSecond => " req/s",
                Self::Seconds => " s",
                Self::Count => "",
                Self::Other(u) => u.as_str(),
            };
            let sep = if matches!(self, Self::Other(_)) {
                " "
            } else {
                ""
            };
            return format!("{v:.3e}{sep}{name}");
        }
        let res = if resolution.is_finite() && resolution > 0.0 {
            resolution
        } else {
            (v.abs() * 1e-3).max(f64::MIN_POSITIVE)
        };
        let decimals = |scaled_res: f64| -> usize {
            if scaled_res >= 1.0 {
                0
            } else {
                ((-scaled_res.log10()).ceil() as usize).min(6)
            }
        };
        let num = |x: f64, r: f64| format!("{:.*}", decimals(r), x);
        let si = |x: f64, r: f64, suffix: &str| {
            let a = x.abs().max(r.abs());
            let (div, p) = if a >= 1e12 {
                (1e12, "T")
            } else if a >= 1e9 {
                (1e9, "G")
            } else if a >= 1e6 {
                (1e6, "M")
            } else if a >= 1e3 {
                (1e3, "k")
            } else {
                (1.0, "")
            };
            format!("{} {p}{suffix}", num(x / div, r / div))
                .trim_end()
                .to_owned()
        };
        match self {
            Self::None => num(v, res),
            Self::Ratio => format!("{} %", num(v * 100.0, res * 100.0)),
            Self::Bytes => si(v, res, "B"),
            Self::BytesPerSecond => si(v, res, "B/s"),
            Self::RequestsPerSecond => format!("{} req/s", num(v, res)),
            Self::Seconds if v.abs().max(res) < 1.0 => {
                format!("{} ms", num(v * 1e3, res * 1e3))
            }
            Self::Seconds => format!("{} s", num(v, res)),
            Self::Count => si(v, res, ""),
            Self::Other(u) => format!("{} {u}", num(v, res)),
        }
    }
}

impl MetricSpec {
    /// A built-in SysManage metric with its default limit, bounds and action.
    pub fn builtin(kind: MetricKind) -> Self {
        Self {
            name: kind.name().to_owned(),
            kind,
            limit: kind.default_limit(),
            direction: Direction::Ceiling,
            bounds: kind.bounds(),
            action: kind.default_action().to_owned(),
            unit: kind.unit(),
        }
    }

    /// A custom metric with a limit and a direction, bounded below by zero.
    ///
    /// # Errors
    /// [`Error::NonFinite`] for a NaN/infinite limit, [`Error::InvalidConfig`]
    /// for an empty name.
    pub fn custom(name: impl Into<String>, limit: f64, direction: Direction) -> Result<Self> {
        let name = name.into();
        if name.is_empty() {
            return Err(Error::invalid("metric.name", "must not be empty"));
        }
        ensure_finite("metric.limit", limit)?;
        let spec = Self {
            name,
            kind: MetricKind::Custom,
            limit: Some(limit),
            direction,
            bounds: Bounds::NON_NEGATIVE,
            action: MetricKind::Custom.default_action().to_owned(),
            unit: Unit::None,
        };
        spec.validate()?;
        Ok(spec)
    }

    /// Replaces the limit.
    ///
    /// # Errors
    /// [`Error::NonFinite`] for a NaN/infinite limit, [`Error::InvalidConfig`]
    /// for a limit the metric can never reach or is always past (see
    /// [`validate`](Self::validate)).
    pub fn with_limit(mut self, limit: f64) -> Result<Self> {
        self.limit = Some(ensure_finite("metric.limit", limit)?);
        self.validate()?;
        Ok(self)
    }

    /// Checks that the spec can be planned on: a non-empty name, bounds with
    /// `min ≤ max`, and a limit strictly inside the physical bounds on the
    /// side the direction watches. A ceiling must lie above `bounds.min` (at
    /// or below it the metric is always over) and at most `bounds.max`
    /// (above it the metric can never reach it); a floor the other way round.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] / [`Error::NonFinite`] naming the problem.
    ///
    /// # Examples
    /// ```
    /// use sysmanage_capacity::{Direction, MetricKind, MetricSpec};
    /// let cpu = MetricSpec::builtin(MetricKind::CpuUtilization);
    /// assert!(cpu.clone().with_limit(1.5).is_err()); // utilisation never exceeds 1
    /// assert!(cpu.with_limit(0.0).is_err()); // always "over"
    /// assert!(MetricSpec::custom("free_gb", -1.0, Direction::Floor).is_err());
    /// ```
    pub fn validate(&self) -> Result<()> {
        if self.name.is_empty() {
            return Err(Error::invalid("metric.name", "must not be empty"));
        }
        if self.name.len() > MAX_NAME_LEN || self.name.chars().any(char::is_control) {
            return Err(Error::invalid(
                "metric.name",
                format!(
                    "must be 1 to {MAX_NAME_LEN} bytes without control characters, got {} bytes",
                    self.name.len()
                ),
            ));
        }
        if let Unit::Other(u) = &self.unit
            && (u.len() > 32 || u.chars().any(char::is_control))
        {
            return Err(Error::invalid(
                "metric.unit",
                "a custom unit must be at most 32 bytes without control characters",
            ));
        }
        let (min, max) = (self.bounds.min, self.bounds.max);
        for b in [min, max].into_iter().flatten() {
            if b.is_nan() {
                return Err(Error::invalid("metric.bounds", "must not be NaN"));
            }
        }
        if let (Some(lo), Some(hi)) = (min, max)
            && lo > hi
        {
            return Err(Error::invalid(
                "metric.bounds",
                format!("min {lo} exceeds max {hi}"),
            ));
        }
        let Some(limit) = self.limit else {
            return Ok(());
        };
        ensure_finite("metric.limit", limit)?;
        let bad = match self.direction {
            Direction::Ceiling => min.is_some_and(|m| limit <= m) || max.is_some_and(|m| limit > m),
            Direction::Floor => min.is_some_and(|m| limit < m) || max.is_some_and(|m| limit >= m),
        };
        if bad {
            return Err(Error::invalid(
                "metric.limit",
                format!(
                    "{}: a {:?} limit of {limit} with bounds [{}, {}] is always crossed or never reachable",
                    self.name,
                    self.direction,
                    min.map_or("-inf".to_owned(), |m| m.to_string()),
                    max.map_or("inf".to_owned(), |m| m.to_string()),
                ),
            ));
        }
        Ok(())
    }

    /// Replaces the unit.
    #[must_use]
    pub fn with_unit(mut self, unit: Unit) -> Self {
        self.unit = unit;
        self
    }

    /// Replaces the physical bounds.
    #[must_use]
    pub fn with_bounds(mut self, bounds: Bounds) -> Self {
        self.bounds = bounds;
        self
    }

    /// Replaces the action text.
    #[must_use]
    pub fn with_action(mut self, action: impl Into<String>) -> Self {
        self.action = action.into();
        self
    }

    /// Whether `value` is at or beyond the limit on the bad side.
    pub fn is_over(&self, value: f64) -> bool {
        match (self.limit, self.direction) {
            (Some(l), Direction::Ceiling) => value >= l,
            (Some(l), Direction::Floor) => value <= l,
            (None, _) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_follow_sysmanage() {
        let limits: Vec<Option<f64>> = MetricKind::BUILT_IN
            .iter()
            .map(|k| k.default_limit())
            .collect();
        assert_eq!(
            limits,
            [
                Some(0.8),
                Some(0.85),
                Some(0.9),
                None,
                None,
                Some(2.0),
                None,
                Some(1000.0)
            ]
        );
        assert_eq!(Bounds::UNIT.clamp(1.3), 1.0);
        assert_eq!(Bounds::NON_NEGATIVE.clamp(-3.0), 0.0);
        assert!(MetricSpec::custom("x", f64::NAN, Direction::Floor).is_err());
        assert!(MetricSpec::custom("", 1.0, Direction::Floor).is_err());
        let floor = MetricSpec::custom("free", 10.0, Direction::Floor).unwrap();
        assert!(floor.is_over(10.0) && !floor.is_over(11.0));
    }

    #[test]
    fn unreachable_or_always_crossed_limits_are_rejected() {
        let cpu = MetricSpec::builtin(MetricKind::CpuUtilization);
        for bad in [0.0, -0.5, 1.5] {
            let e = cpu.clone().with_limit(bad).unwrap_err();
            assert_eq!(e.label(), "invalid_config", "{bad}");
        }
        assert!(cpu.clone().with_limit(1.0).is_ok());
        assert!(MetricSpec::custom("q", 0.0, Direction::Ceiling).is_err());
        assert!(MetricSpec::custom("q", -3.0, Direction::Ceiling).is_err());
        assert!(MetricSpec::custom("free", -1.0, Direction::Floor).is_err());
        assert!(MetricSpec::custom("free", 0.0, Direction::Floor).is_ok());
        let inverted = cpu.with_bounds(Bounds {
            min: Some(1.0),
            max: Some(0.0),
        });
        assert!(inverted.validate().is_err());
        for kind in MetricKind::BUILT_IN {
            MetricSpec::builtin(kind).validate().unwrap();
        }
    }
}
