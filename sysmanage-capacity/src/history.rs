//! Capacity history imported from Prometheus (`query_range`) into a
//! planner.
//!
//! * **Step.** [`HistoryQuery::step`] (default one minute) is the
//!   resolution asked of Prometheus; the planner then resamples to its own
//!   grid as for any samples.
//! * **Long ranges** are split into consecutive range queries of at most
//!   [`MAX_POINTS_PER_SERIES`] points each (Prometheus refuses more per
//!   series); chunk `k + 1` starts one step after chunk `k` ends, so no point
//!   is fetched twice ([`plan_chunks`]).
//! * **Gauges** are read as `last_over_time(q[step − 1ms])` (a subquery
//!   `(q)[step − 1ms:step]` for an expression): the sample of each
//!   step, and *nothing* where the series had none. A bare selector would
//!   repeat the last value for up to five minutes (Prometheus' lookback)
//!   across a gap, inventing samples. This holds for a selector; inside an
//!   expression (`sum(x)`) each selector is still evaluated with the
//!   lookback, so prefer a selector of one series, or aggregate series whose
//!   gaps coincide.
//! * **Counters** are read as `rate(q[window])` (per second; window default
//!   5 min, at least four scrapes), which handles counter resets of a
//!   selector; for an aggregate (`sum(c)`) a reset in one series looks like
//!   a reset of the sum, so prefer `sum(rate(c[…]))` as a gauge query.
//! * **Gaps and staleness.** Staleness markers never leave Prometheus: a
//!   series that went stale (its target vanished) simply has no points
//!   until it comes back. Missing steps are counted as gaps in the
//!   [`Imported`] summary; NaN and ±∞ points are left out and counted.
//! * The query must select **one series** (aggregate with `sum`/`max` …);
//!   more is an error naming the query.
//!
//! The planning of chunks and the merging of results are pure functions;
//! [`import`] is the thin driver.

use std::time::Duration;

use sysmanage_core::prometheus::{
    MAX_POINTS_PER_SERIES, PrometheusClient, PrometheusError, QueryResponse, RangeQuery,
};
use sysmanage_core::{Error, Result, Sample, Timestamp};

use crate::planner::CapacityPlanner;

/// How the series is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SeriesKind {
    /// A gauge: the value at each step.
    Gauge,
    /// A counter: its per-second rate over `window`.
    Counter {
        /// The `rate` window.
        window: Duration,
    },
}

/// What to import.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct HistoryQuery {
    /// The PromQL expression selecting one series (a selector, or an
    /// aggregation such as `sum(node_cpu_busy)`).
    pub query: String,
    /// Gauge or counter. Default: gauge.
    pub kind: SeriesKind,
    /// The first time imported.
    pub start: Timestamp,
    /// The last time imported.
    pub end: Timestamp,
    /// The resolution, 1 s to 1 day. Default: 60 s.
    pub step: Duration,
}

impl HistoryQuery {
    /// A gauge from `start` to `end` at one-minute steps.
    pub fn gauge(query: impl Into<String>, start: Timestamp, end: Timestamp) -> Self {
        Self {
            query: query.into(),
            kind: SeriesKind::Gauge,
            start,
            end,
            step: Duration::from_secs(60),
        }
    }

    /// A counter's rate over 5-minute windows, from `start` to `end` at one-minute steps.
    pub fn counter(query: impl Into<String>, start: Timestamp, end: Timestamp) -> Self {
        Self {
            kind: SeriesKind::Counter {
                window: Duration::from_secs(300),
            },
            ..Self::gauge(query, start, end)
        }
    }

    /// This query with `step`.
    #[must_use]
    pub fn step(mut self, step: Duration) -> Self {
        self.step = step;
        self
    }

    /// This query as a counter with `rate` window `window`.
    #[must_use]
    pub fn rate_window(mut self, window: Duration) -> Self {
        self.kind = SeriesKind::Counter { window };
        self
    }

    /// The PromQL actually sent.
    ///
    /// ```
    /// use sysmanage_capacity::history::HistoryQuery;
    /// use sysmanage_core::Timestamp;
    /// let t = Timestamp::from_secs(0);
    /// assert_eq!(HistoryQuery::gauge("cpu{host=\"a\"}", t, t).promql(), "last_over_time(cpu{host=\"a\"}[59999ms])");
    /// assert_eq!(HistoryQuery::counter("req_total", t, t).promql(), "rate(req_total[300000ms])");
    /// // an expression becomes a subquery
    /// assert_eq!(HistoryQuery::gauge("sum(cpu)", t, t).promql(), "last_over_time((sum(cpu))[59999ms:60000ms])");
    /// ```
    pub fn promql(&self) -> String {
        let step = self.step.as_millis();
        let range = |window: u128| {
            if is_selector(&self.query) {
                format!("{}[{window}ms]", self.query.trim())
            } else {
                // an expression: a subquery evaluated every step
                format!("({})[{window}ms:{step}ms]", self.query.trim())
            }
        };
        match self.kind {
            // one millisecond short of a step: Prometheus 2 closes ranges at
            // both ends, and a full step would carry a sample into the next
            // step's empty window across a gap
            SeriesKind::Gauge => {
                format!("last_over_time({})", range(step.saturating_sub(1).max(1)))
            }
            SeriesKind::Counter { window } => format!("rate({})", range(window.as_millis())),
        }
    }

    /// Checks the query.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the field: an empty query, a step
    /// outside 1 s – 1 day, an end before the start, a rate window shorter
    /// than the step.
    pub fn validate(&self) -> Result<()> {
        if self.query.trim().is_empty() {
            return Err(Error::invalid("history.query", "must not be empty"));
        }
        sysmanage_core::duration::check_duration(
            "history.step",
            self.step,
            Duration::from_secs(1),
            sysmanage_core::duration::DAY,
        )?;
        if self.end < self.start {
            return Err(Error::invalid(
                "history.end",
                format!("{} is before the start {}", self.end, self.start),
            ));
        }
        if let SeriesKind::Counter { window } = self.kind
            && window < self.step
        {
            return Err(Error::invalid(
                "history.rate_window",
                format!("{window:?} is shorter than the step {:?}", self.step),
            ));
        }
        Ok(())
    }
}

/// Whether `q` is a plain vector selector (`name`, `name{…}`, `{…}`),
/// which takes a range directly; anything else needs a subquery.
fn is_selector(q: &str) -> bool {
    let q = q.trim();
    let name_end = q.find('{').unwrap_or(q.len());
    let (name, rest) = q.split_at(name_end);
    name.chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        && (rest.is_empty() || (rest.ends_with('}') && !rest[..rest.len() - 1].contains('}')))
        && !(name.is_empty() && rest.is_empty())
}

/// Consecutive range queries covering `start..=end` at `step`, each with
/// at most `max_points` points (pure). Empty when `end < start` or `step`
/// or `max_points` is zero.
///
/// ```
/// use std::time::Duration;
/// use sysmanage_capacity::history::plan_chunks;
/// use sysmanage_core::Timestamp;
/// let day = Timestamp::from_secs(86_400);
/// let chunks = plan_chunks(Timestamp::from_secs(0), day, Duration::from_secs(60), 11_000);
/// assert_eq!(chunks.len(), 1); // 1441 points
/// let month = plan_chunks(Timestamp::from_secs(0), Timestamp::from_secs(30 * 86_400), Duration::from_secs(60), 11_000);
/// assert_eq!(month.len(), 4); // 43,201 points
/// assert_eq!(month.iter().map(|c| c.points()).sum::<u64>(), 43_201);
/// ```
pub fn plan_chunks(
    start: Timestamp,
    end: Timestamp,
    step: Duration,
    max_points: u64,
) -> Vec<RangeQuery> {
    let step_ms = i64::try_from(step.as_millis()).unwrap_or(i64::MAX);
    if end < start || step_ms == 0 || max_points == 0 {
        return Vec::new();
    }
    let per_chunk = i64::try_from(max_points - 1)
        .unwrap_or(i64::MAX)
        .saturating_mul(step_ms);
    let mut out = Vec::new();
    let mut from = start.as_millis();
    let last = end.as_millis();
    while from <= last {
        let to = from.saturating_add(per_chunk).min(last);
        // the chunk's last point on the grid
        let to = from + (to - from) / step_ms * step_ms;
        out.push(RangeQuery::new(
            Timestamp::from_millis(from),
            Timestamp::from_millis(to),
            step,
        ));
        match to.checked_add(step_ms) {
            Some(next) => from = next,
            None => break,
        }
    }
    out
}

/// What an import found.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct Imported {
    /// The finite samples, in time order.
    pub samples: Vec<Sample>,
    /// Steps of the range without a point (gaps, stale or absent series).
    pub gaps: u64,
    /// Points left out for being NaN or ±∞.
    pub non_finite: u64,
    /// Range queries sent.
    pub queries: usize,
    /// Warnings the server returned.
    pub warnings: Vec<String>,
    /// Samples the planner stored (set by [`import`]).
    pub stored: usize,
}

/// Merges the responses of the chunks of `q` (pure).
///
/// # Errors
/// [`Error::InvalidConfig`] (field `history.query`) when a response holds
/// more than one series or is not a matrix.
pub fn merge(
    q: &HistoryQuery,
    chunks: &[RangeQuery],
    responses: &[QueryResponse],
) -> Result<Imported> {
    let mut out = Imported {
        queries: responses.len(),
        ..Imported::default()
    };
    for r in responses {
        let m = r
            .matrix()
            .map_err(|e| Error::invalid("history.query", e.to_string()))?;
        if m.len() > 1 {
            return Err(Error::invalid(
                "history.query",
                format!(
                    "{:?} selects {} series; import needs one (aggregate it, e.g. with sum())",
                    q.query,
                    m.len()
                ),
            ));
        }
        out.warnings.extend(r.warnings.iter().cloned());
        for s in m.iter().flat_map(|s| &s.samples) {
            if s.value.is_finite() {
                out.samples.push(*s);
            } else {
                out.non_finite += 1;
            }
        }
    }
    out.samples.sort_by_key(|s| s.at);
    out.samples.dedup_by_key(|s| s.at);
    let expected: u64 = chunks.iter().map(RangeQuery::points).sum();
    out.gaps = expected.saturating_sub(out.samples.len() as u64 + out.non_finite);
    Ok(out)
}

/// Imports `q` from `client` into `planner` as `metric` (registered
/// beforehand): plans the chunks, queries them in order, merges, records.
///
/// # Errors
/// [`Error::InvalidConfig`] for a bad query ([`HistoryQuery::validate`],
/// more than one series), [`Error::Backend`] (`"prometheus"`, with the
/// [`PrometheusError`] naming the query as source) when a range query
/// fails, and the planner's errors when recording.
pub async fn import(
    client: &PrometheusClient,
    planner: &mut dyn CapacityPlanner,
    metric: &str,
    q: &HistoryQuery,
) -> Result<Imported> {
    q.validate()?;
    let chunks = plan_chunks(q.start, q.end, q.step, MAX_POINTS_PER_SERIES);
    let promql = q.promql();
    let mut responses = Vec::with_capacity(chunks.len());
    for chunk in &chunks {
        let r = client
            .query_range(&promql, *chunk)
            .await
            .map_err(|e: PrometheusError| Error::Backend {
                backend: "prometheus",
                source: Box::new(e),
            })?;
        responses.push(r);
    }
    let mut imported = merge(q, &chunks, &responses)?;
    imported.stored = planner.record_all(metric, &imported.samples)?;
    Ok(imported)
}

#[cfg(test)]
mod tests {
    use sysmanage_core::prometheus::parse_response;

    use super::*;

    #[test]
    fn chunks_tile_the_range_without_overlap() {
        let step = Duration::from_secs(60);
        for (span_min, max) in [
            (0_i64, 11_000_u64),
            (10, 3),
            (43_200, 11_000),
            (43_199, 11_000),
            (7, 1),
        ] {
            let end = Timestamp::from_secs(span_min * 60);
            let c = plan_chunks(Timestamp::from_secs(0), end, step, max);
            assert!(
                c.iter().all(
                    |q| q.points() <= max && q.validate().is_ok() || max < 2 && q.points() == 1
                )
            );
            assert_eq!(
                c.iter().map(|q| q.points()).sum::<u64>(),
                span_min as u64 + 1
            );
            assert!(c.windows(2).all(|w| w[1].start == w[0].end + step));
            assert_eq!(c.last().unwrap().end, end);
        }
        assert!(plan_chunks(Timestamp::from_secs(10), Timestamp::from_secs(0), step, 5).is_empty());
        assert!(
            plan_chunks(
                Timestamp::from_secs(0),
                Timestamp::from_secs(10),
                Duration::ZERO,
                5
            )
            .is_empty()
        );
    }

    fn matrix(points: &[(i64, &str)]) -> QueryResponse {
        let values: Vec<String> = points
            .iter()
            .map(|(t, v)| format!("[{t},\"{v}\"]"))
            .collect();
        let body = format!(
            r#"{{"status":"success","data":{{"resultType":"matrix","result":[{{"metric":{{}},"values":[{}]}}]}},"warnings":["w"]}}"#,
            values.join(",")
        );
        parse_response("q", 200, body.as_bytes()).unwrap()
    }

    #[test]
    fn merging_counts_gaps_and_non_finite_points() {
        let q = HistoryQuery::gauge("x", Timestamp::from_secs(0), Timestamp::from_secs(540));
        let chunks = plan_chunks(q.start, q.end, q.step, 5); // 10 points in 2 chunks
        assert_eq!(chunks.len(), 2);
        let r = merge(
            &q,
            &chunks,
            &[
                matrix(&[(0, "1"), (60, "NaN"), (240, "2")]),
                matrix(&[(300, "3"), (540, "+Inf")]),
            ],
        )
        .unwrap();
        assert_eq!(r.samples.len(), 3);
        assert_eq!((r.non_finite, r.gaps, r.queries), (2, 5, 2));
        assert_eq!(r.warnings, ["w", "w"]);
        let two = parse_response(
            "q",
            200,
            br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":"1"},"values":[]},{"metric":{"a":"2"},"values":[]}]}}"#,
        )
        .unwrap();
        let e = merge(&q, &chunks, &[two]).unwrap_err().to_string();
        assert!(e.contains("2 series") && e.contains("\"x\""), "{e}");
    }

    #[test]
    fn queries_are_validated() {
        let t = Timestamp::from_secs(100);
        assert!(HistoryQuery::gauge("", t, t).validate().is_err());
        assert!(
            HistoryQuery::gauge("x", t, Timestamp::from_secs(0))
                .validate()
                .is_err()
        );
        assert!(
            HistoryQuery::gauge("x", t, t)
                .step(Duration::from_millis(10))
                .validate()
                .is_err()
        );
        assert!(
            HistoryQuery::counter("x", t, t)
                .rate_window(Duration::from_secs(30))
                .validate()
                .is_err()
        );
        HistoryQuery::counter("x", t, t).validate().unwrap();
    }
}
