//! Sample hygiene: validation, ordering, de-duplication, resampling to a
//! regular grid (keeping mean and max) and robust outlier damping.
//!
//! Forecasting models want evenly spaced, finite values. Real scrapes arrive
//! late, twice, out of order, with gaps and with the occasional absurd value,
//! so every series goes through [`prepare`] first:
//!
//! 1. non-finite values are rejected with [`Error::NonFinite`];
//! 2. samples are sorted by time and samples sharing a timestamp are averaged;
//! 3. samples are bucketed on a grid aligned to multiples of the step since the
//!    Unix epoch (so daily phases line up between runs), keeping each bucket's
//!    mean, max and count; empty buckets are filled by linear interpolation;
//! 4. isolated spikes are damped with a Hampel filter (rolling median ± k
//!    robust standard deviations, the MAD scaled by 1.4826). A point that is
//!    also extreme one season earlier or later is a recurring peak, not an
//!    outlier, and is kept: daily peaks must survive hygiene. So are a
//!    level shift of two or more buckets at either end of the series, and a
//!    high bucket mean resting on several samples whose max is close to
//!    their mean (a sustained hour is not a spike). Damping only ever moves
//!    a value to the median of its neighbours, never past it.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sysmanage_core::{Error, Result, Sample, Timestamp};

use crate::stats::median_in_place;
use crate::validate::{MAX_DURATION, count_in, duration_in, finite_in};

/// Evenly spaced values: value `i` stands for the time `start + i·step`.
///
/// After [`prepare`], `start` is the first bucket's start plus the mean
/// position of the samples within their buckets (0 for samples on bucket
/// boundaries, about half a step for dense samples), so forecasts are not
/// shifted by half a step.
///
/// Fields are private: every series was checked by [`new`](Self::new) (or
/// by deserialisation, which runs the same checks), so models never see a
/// zero step or a non-finite value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RegularSeriesRaw")]
pub struct RegularSeries {
    /// The time value 0 stands for.
    pub(crate) start: Timestamp,
    /// Bucket width.
    pub(crate) step: Duration,
    /// One value per bucket, oldest first.
    pub(crate) values: Vec<f64>,
}

/// The serialised form of a [`RegularSeries`], checked on restore.
#[derive(Deserialize)]
struct RegularSeriesRaw {
    start: Timestamp,
    step: Duration,
    values: Vec<f64>,
}

impl TryFrom<RegularSeriesRaw> for RegularSeries {
    type Error = Error;

    fn try_from(raw: RegularSeriesRaw) -> Result<Self> {
        Self::new(raw.start, raw.step, raw.values)
    }
}

impl RegularSeries {
    /// A series of `values` on buckets of `step` from `start`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a step outside 1 ms to 100 years
    /// (field `series.step`), [`Error::NonFinite`] for a NaN or infinite
    /// value.
    pub fn new(start: Timestamp, step: Duration, values: Vec<f64>) -> Result<Self> {
        duration_in("series.step", step, MIN_STEP, MAX_DURATION)?;
        for v in &values {
            sysmanage_core::ensure_finite("series value", *v)?;
        }
        Ok(Self {
            start,
            step,
            values,
        })
    }

    /// The time value 0 stands for.
    pub fn start(&self) -> Timestamp {
        self.start
    }

    /// Bucket width (1 ms to 100 years).
    pub fn step(&self) -> Duration {
        self.step
    }

    /// One finite value per bucket, oldest first.
    pub fn values(&self) -> &[f64] {
        &self.values
    }

    /// The values, consuming the series.
    pub fn into_values(self) -> Vec<f64> {
        self.values
    }

    /// Number of buckets.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether there are no buckets.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The time a (possibly fractional, possibly future) index stands for.
    pub fn time_at(&self, index: f64) -> Timestamp {
        let ms = self.start.as_millis() as f64 + index * self.step_millis();
        Timestamp::from_millis(ms.round() as i64)
    }

    /// Fractional index of time `t` (inverse of [`time_at`](Self::time_at)).
    pub fn index_of(&self, t: Timestamp) -> f64 {
        crate::validate::diff_ms(t.as_millis(), self.start.as_millis()) / self.step_millis()
    }

    /// The step in milliseconds.
    pub fn step_millis(&self) -> f64 {
        self.step.as_millis() as f64
    }

    /// The step in seconds.
    pub fn step_secs(&self) -> f64 {
        self.step.as_secs_f64()
    }

    /// Buckets per `period`, when the period is a whole number (≥ 2) of steps.
    pub fn season_len(&self, period: Duration) -> Option<usize> {
        let step = self.step.as_millis();
        let p = period.as_millis();
        (step > 0 && p.is_multiple_of(step) && p / step >= 2).then(|| (p / step) as usize)
    }

    /// The first `n` buckets.
    pub fn prefix(&self, n: usize) -> Self {
        Self {
            start: self.start,
            step: self.step,
            values: self.values[..n.min(self.values.len())].to_vec(),
        }
    }
}

/// Hygiene settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct HygieneConfig {
    /// Grid step, 1 ms to 100 years. Default: 1 hour (SysManage forecasts hourly).
    pub step: Duration,
    /// Damp points more than this many robust standard deviations from the
    /// rolling median, in `[0, 1e6]`; `0` disables damping. Default: 5.
    pub outlier_threshold: f64,
    /// Half-width of the rolling-median window, in buckets, at most
    /// `max_buckets / 2`. Default: 3 (7 buckets).
    pub outlier_half_window: usize,
    /// Largest grid allowed (bounds memory), 2 to [`MAX_BUCKETS`]. Default: 100 000 buckets.
    pub max_buckets: usize,
}

/// Smallest [`HygieneConfig::step`] (and [`RegularSeries`] step): 1 ms.
pub const MIN_STEP: Duration = Duration::from_millis(1);
/// Largest [`HygieneConfig::max_buckets`]: 10 million buckets (80 MB per
/// series of means).
pub const MAX_BUCKETS: usize = 10_000_000;
/// Largest [`HygieneConfig::outlier_threshold`].
pub const MAX_OUTLIER_THRESHOLD: f64 = 1e6;

impl Default for HygieneConfig {
    fn default() -> Self {
        Self {
            step: Duration::from_secs(3600),
            outlier_threshold: 5.0,
            outlier_half_window: 3,
            max_buckets: 100_000,
        }
    }
}

impl HygieneConfig {
    /// Checks the settings.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the bad field.
    pub fn validate(&self) -> Result<()> {
        duration_in("hygiene.step", self.step, MIN_STEP, MAX_DURATION)?;
        finite_in(
            "hygiene.outlier_threshold",
            self.outlier_threshold,
            0.0,
            MAX_OUTLIER_THRESHOLD,
        )?;
        count_in("hygiene.max_buckets", self.max_buckets, 2, MAX_BUCKETS)?;
        count_in(
            "hygiene.outlier_half_window",
            self.outlier_half_window,
            0,
            self.max_buckets / 2,
        )?;
        Ok(())
    }
}

/// What hygiene found and changed; reported as evidence with every forecast.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DataQuality {
    /// Samples given.
    pub raw_samples: usize,
    /// Samples merged into another with the same timestamp.
    pub duplicates_merged: usize,
    /// Buckets on the grid.
    pub buckets: usize,
    /// Empty buckets filled by interpolation.
    pub gaps_filled: usize,
    /// Bucket means damped as outliers.
    pub outliers_damped: usize,
    /// Bucket maxima damped as outliers.
    pub max_outliers_damped: usize,
    /// The newest bucket held too few samples (still filling) and was left
    /// out of the fit (set by the planner, not by [`prepare`]).
    #[serde(default)]
    pub partial_bucket_dropped: bool,
}

impl DataQuality {
    /// Short flags for reports, e.g. `["gaps_filled=3"]`; empty when clean.
    pub fn flags(&self) -> Vec<String> {
        let mut f = Vec::new();
        for (name, n) in [
            ("duplicates_merged", self.duplicates_merged),
            ("gaps_filled", self.gaps_filled),
            ("outliers_damped", self.outliers_damped),
            ("max_outliers_damped", self.max_outliers_damped),
        ] {
            if n > 0 {
                f.push(format!("{name}={n}"));
            }
        }
        if self.partial_bucket_dropped {
            f.push("partial_bucket_dropped".to_owned());
        }
        f
    }
}

/// A series after hygiene.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Resampled {
    /// Bucket means (what the models fit).
    pub mean: RegularSeries,
    /// Bucket maxima (peaks within a bucket).
    pub max: RegularSeries,
    /// Samples per bucket (0 for interpolated buckets).
    pub counts: Vec<u32>,
    /// What hygiene did.
    pub quality: DataQuality,
}

/// Validates, sorts and de-duplicates samples, averaging values that share a
/// timestamp. Returns the cleaned samples and the number merged away.
///
/// # Errors
/// [`Error::NonFinite`] for a NaN or infinite value.
///
/// # Examples
/// ```
/// use sysmanage_capacity::hygiene::clean;
/// use sysmanage_core::{Sample, Timestamp};
/// let t = Timestamp::from_secs;
/// let (s, merged) = clean([Sample::new(t(2), 4.0), Sample::new(t(1), 1.0), Sample::new(t(2), 2.0)])?;
/// assert_eq!(merged, 1);
/// assert_eq!(s, [Sample::new(t(1), 1.0), Sample::new(t(2), 3.0)]);
/// assert!(clean([Sample::new(t(1), f64::NAN)]).is_err());
/// # Ok::<(), sysmanage_core::Error>(())
/// ```
pub fn clean(samples: impl IntoIterator<Item = Sample>) -> Result<(Vec<Sample>, usize)> {
    let mut v: Vec<Sample> = samples.into_iter().collect();
    for s in &v {
        sysmanage_core::ensure_finite("sample value", s.value)?;
    }
    if !v.is_sorted_by_key(|s| s.at) {
        v.sort_by_key(|s| s.at);
    }
    let mut out: Vec<Sample> = Vec::with_capacity(v.len());
    let mut merged = 0;
    let mut run = 1.0_f64;
    for s in v {
        match out.last_mut() {
            Some(last) if last.at == s.at => {
                // Running mean of the samples sharing this timestamp.
                run += 1.0;
                last.value += (s.value - last.value) / run;
                merged += 1;
            }
            _ => {
                run = 1.0;
                out.push(s);
            }
        }
    }
    Ok((out, merged))
}

/// Runs the full hygiene pipeline (see the module docs) on samples in any order.
///
/// Samples already in time order are read in place; others are copied and
/// sorted first. `season` is the period whose repeats protect peaks from
/// damping (usually one day).
///
/// # Errors
/// [`Error::Empty`] with no samples, [`Error::NonFinite`] for a bad value
/// (or values so large that a bucket's sum overflows `f64`),
/// [`Error::InvalidConfig`] for bad settings or a grid over `max_buckets`.
pub fn prepare(
    samples: &[Sample],
    config: &HygieneConfig,
    season: Option<Duration>,
) -> Result<Resampled> {
    config.validate()?;
    if samples.is_empty() {
        return Err(Error::Empty { field: "samples" });
    }
    // Optimistic single pass for the usual, time-ordered input; a sorted
    // copy only when that pass meets an out-of-order sample.
    let acc = match Buckets::accumulate(samples, config)? {
        Some(acc) => acc,
        None => {
            let mut sorted = samples.to_vec();
            sorted.sort_by_key(|s| s.at);
            Buckets::accumulate(&sorted, config)?
                .ok_or_else(|| Error::invalid("samples", "could not be ordered by time"))?
        }
    };
    let Buckets {
        sum,
        mut max,
        counts,
        origin,
        offset_sum,
        deduped,
        duplicates_merged,
    } = acc;
    let raw_samples = samples.len();
    let n = counts.len();
    let mut mean: Vec<f64> = sum
        .iter()
        .zip(&counts)
        .map(|(s, c)| if *c > 0 { s / f64::from(*c) } else { f64::NAN })
        .collect();
    // Finite samples near ±f64::MAX can overflow a bucket's sum (to ±∞, or
    // NaN when partial sums overflow both ways): a typed error, never a
    // silent ∞ or NaN in the grid.
    if let Some((m, _)) = mean
        .iter()
        .zip(&counts)
        .find(|(m, c)| **c > 0 && !m.is_finite())
    {
        return Err(Error::NonFinite {
            field: "bucket value (samples too large to average)",
            value: *m,
        });
    }
    let gaps_filled = fill_gaps(&mut mean);
    for (m, c) in max.iter_mut().zip(&counts) {
        if *c == 0 {
            *m = f64::NAN;
        }
    }
    fill_gaps(&mut max);
    let offset = (offset_sum as f64 / deduped as f64).round() as i128;
    // The mean sample position lies between the first and the last sample,
    // so it is a valid timestamp; the check is for the rounding.
    let start = Timestamp::from_millis(
        i64::try_from(origin + offset)
            .map_err(|_| Error::invalid("samples", "timestamps are outside the i64 range"))?,
    );
    let mut mean = RegularSeries {
        start,
        step: config.step,
        values: mean,
    };
    let season_len = season.and_then(|p| mean.season_len(p));
    // A bucket mean is a sustained excursion, not a spike, when it rests on
    // several samples whose peak is not far above their mean: most of the
    // bucket was high, not one sample in it.
    let (raw_mean, raw_max) = (mean.values.clone(), max.clone());
    let sustained = |i: usize, median: f64| {
        counts[i] >= 2
            && raw_mean[i] > median
            && raw_max[i] - raw_mean[i] <= 0.5 * (raw_mean[i] - median)
    };
    let outliers_damped = damp_with(&mut mean.values, season_len, config, sustained);
    let mut max = RegularSeries {
        start,
        step: config.step,
        values: max,
    };
    let max_outliers_damped = damp_outliers(&mut max.values, season_len, config);
    // Finite samples near ±f64::MAX can still overflow a bucket's sum or an
    // interpolation: a typed error, never a silent ∞ or NaN in the grid.
    if let Some(bad) = mean
        .values
        .iter()
        .chain(&max.values)
        .find(|v| !v.is_finite())
    {
        return Err(Error::NonFinite {
            field: "bucket value (samples too large to average)",
            value: *bad,
        });
    }
    Ok(Resampled {
        mean,
        max,
        counts,
        quality: DataQuality {
            raw_samples,
            duplicates_merged,
            buckets: n,
            gaps_filled,
            outliers_damped,
            max_outliers_damped,
            partial_bucket_dropped: false,
        },
    })
}

/// Per-bucket sums, maxima and counts of one pass over samples.
struct Buckets {
    sum: Vec<f64>,
    max: Vec<f64>,
    counts: Vec<u32>,
    /// Start of the first bucket, in ms (may lie before `i64::MIN` when the
    /// first sample is within a step of it).
    origin: i128,
    offset_sum: i128,
    deduped: usize,
    duplicates_merged: usize,
}

impl Buckets {
    /// One pass: validates values, averages runs sharing a timestamp and adds
    /// them to their buckets (the open bucket lives in locals). Returns
    /// `None` at the first sample that is out of time order.
    fn accumulate(samples: &[Sample], config: &HygieneConfig) -> Result<Option<Self>> {
        let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
            return Err(Error::Empty { field: "samples" });
        };
        // Grid arithmetic in i128: timestamps anywhere in i64 milliseconds
        // (and a step of up to 100 years) cannot overflow it.
        let step_ms = i128::try_from(config.step.as_millis()).unwrap_or(i128::MAX);
        let origin = i128::from(first.at.as_millis()).div_euclid(step_ms) * step_ms;
        if last.at < first.at {
            return Ok(None);
        }
        let n = usize::try_from((i128::from(last.at.as_millis()) - origin) / step_ms + 1)
            .unwrap_or(usize::MAX);
        if n > config.max_buckets {
            return Err(Error::invalid(
                "hygiene.step",
                format!(
                    "the samples span {n} buckets, more than max_buckets = {}; use a larger step",
                    config.max_buckets
                ),
            ));
        }
        let mut sum = vec![0.0; n];
        let mut max = vec![f64::NEG_INFINITY; n];
        let mut counts = vec![0u32; n];
        let (mut offset_sum, mut deduped, mut duplicates_merged) = (0i128, 0usize, 0usize);
        let (mut prev, mut i, mut guess) = (i128::MIN, 0, 0);
        // One bucket per iteration. Where the bucket ends, if the samples
        // are in order, is guessed from the previous bucket's length (else
        // found by binary search); one pass over the bucket then checks
        // that guess (strictly increasing times, all finite) while summing
        // the values (four partial sums, so the adds do not wait on each
        // other) and taking their maximum. A bucket that fails the check
        // (duplicate timestamps, a bad value, disorder) takes the careful
        // sample-by-sample path.
        while i < samples.len() {
            let first_at = i128::from(samples[i].at.as_millis());
            if first_at < prev {
                return out_of_order(&samples[..i]);
            }
            let bucket = usize::try_from((first_at - origin) / step_ms).unwrap_or(usize::MAX);
            if bucket >= n {
                // Past the last sample's bucket: the input is not ordered.
                return out_of_order(&samples[..=i]);
            }
            let bucket_start = origin + bucket as i128 * step_ms;
            let end = bucket_start + step_ms;
            let rest = &samples[i..];
            let before_end = |s: &Sample| i128::from(s.at.as_millis()) < end;
            let len = if guess > 0
                && rest.get(guess - 1).is_some_and(before_end)
                && rest.get(guess).is_none_or(|s| !before_end(s))
            {
                guess
            } else {
                rest.partition_point(before_end)
            };
            let fast = if len > 0 && rest.get(len).is_none_or(|s| !before_end(s)) {
                fast_bucket(&rest[..len], bucket_start, end)
            } else {
                None
            };
            let (b_sum, b_max, b_count, j) = match fast {
                Some((b_sum, b_max, at_sum)) => {
                    offset_sum += at_sum;
                    (b_sum, b_max, len, i + len)
                }
                None => {
                    let mut j = i + 1;
                    let (mut last_at, mut at_sum, mut dup) = (first_at, 0i128, false);
                    while let Some(s) = samples.get(j) {
                        let at = i128::from(s.at.as_millis());
                        if at >= end {
                            break;
                        }
                        if at <= last_at {
                            if at < last_at {
                                return out_of_order(&samples[..j]);
                            }
                            dup = true;
                        }
                        at_sum += at - bucket_start;
                        last_at = at;
                        j += 1;
                    }
                    let run = &samples[i..j];
                    if dup {
                        let (b_sum, b_max, b_count) = bucket_with_duplicates(
                            run,
                            bucket_start,
                            &mut offset_sum,
                            &mut duplicates_merged,
                        )?;
                        (b_sum, b_max, b_count, j)
                    } else {
                        if run.iter().any(|s| !s.value.is_finite()) {
                            return Err(first_non_finite(run));
                        }
                        offset_sum += at_sum + (first_at - bucket_start);
                        let (b_sum, b_max) = sum_and_max(run);
                        (b_sum, b_max, run.len(), j)
                    }
                }
            };
            sum[bucket] = b_sum;
            max[bucket] = b_max;
            counts[bucket] = u32::try_from(b_count).unwrap_or(u32::MAX);
            deduped += b_count;
            prev = i128::from(samples[j - 1].at.as_millis());
            guess = j - i;
            i = j;
        }
        Ok(Some(Self {
            sum,
            max,
            counts,
            origin,
            offset_sum,
            deduped,
            duplicates_merged,
        }))
    }
}

/// `None` for input out of time order, unless a sample before the point
/// where that showed holds a bad value (reported first, as a sequential
/// pass would).
fn out_of_order(before: &[Sample]) -> Result<Option<Buckets>> {
    if before.iter().any(|s| !s.value.is_finite()) {
        return Err(first_non_finite(before));
    }
    Ok(None)
}

/// [`Error::NonFinite`] for the first bad value in `samples` (which holds one).
fn first_non_finite(samples: &[Sample]) -> Error {
    samples
        .iter()
        .find_map(|s| sysmanage_core::ensure_finite("sample value", s.value).err())
        .unwrap_or(Error::NonFinite {
            field: "sample value",
            value: f64::NAN,
        })
}

/// Sum, maximum and offset sum (milliseconds from `bucket_start`) of a
/// bucket's samples, or `None` unless their times strictly increase and
/// stay below `end` and every value is finite.
fn fast_bucket(run: &[Sample], bucket_start: i128, end: i128) -> Option<(f64, f64, i128)> {
    let (mut s, mut m) = ([0.0; 4], [f64::NEG_INFINITY; 4]);
    let (mut at_sum, mut last, mut ordered, mut finite) = (0i128, i128::MIN, true, true);
    let mut add = |x: &Sample, s: &mut f64, m: &mut f64| {
        let at = i128::from(x.at.as_millis());
        ordered &= at > last;
        last = at;
        at_sum += at - bucket_start;
        finite &= x.value.is_finite();
        *s += x.value;
        if x.value > *m {
            *m = x.value;
        }
    };
    let mut chunks = run.chunks_exact(4);
    for c in &mut chunks {
        for ((s, m), x) in s.iter_mut().zip(&mut m).zip(c) {
            add(x, s, m);
        }
    }
    let (mut total, mut top) = (0.0, f64::NEG_INFINITY);
    for x in chunks.remainder() {
        add(x, &mut total, &mut top);
    }
    let total = ((s[0] + s[1]) + (s[2] + s[3])) + total;
    let top = m[0].max(m[1]).max(m[2].max(m[3])).max(top);
    (ordered && finite && last < end).then_some((total, top, at_sum))
}

/// Sum and maximum of finite values, in four independent lanes.
fn sum_and_max(run: &[Sample]) -> (f64, f64) {
    let (mut s, mut m) = ([0.0; 4], [f64::NEG_INFINITY; 4]);
    let mut chunks = run.chunks_exact(4);
    for c in &mut chunks {
        for ((s, m), x) in s.iter_mut().zip(&mut m).zip(c) {
            *s += x.value;
            if x.value > *m {
                *m = x.value;
            }
        }
    }
    let mut total = (s[0] + s[1]) + (s[2] + s[3]);
    let mut top = m[0].max(m[1]).max(m[2].max(m[3]));
    for x in chunks.remainder() {
        total += x.value;
        if x.value > top {
            top = x.value;
        }
    }
    (total, top)
}

/// One bucket's sum, maximum and count when some of its samples share a
/// timestamp: each such run counts once, at the mean of its values.
fn bucket_with_duplicates(
    run: &[Sample],
    bucket_start: i128,
    offset_sum: &mut i128,
    duplicates_merged: &mut usize,
) -> Result<(f64, f64, usize)> {
    let (mut b_sum, mut b_max, mut b_count) = (0.0, f64::NEG_INFINITY, 0usize);
    let mut i = 0;
    while i < run.len() {
        let at = i128::from(run[i].at.as_millis());
        let mut run_sum = sysmanage_core::ensure_finite("sample value", run[i].value)?;
        let mut j = i + 1;
        while j < run.len() && i128::from(run[j].at.as_millis()) == at {
            run_sum += sysmanage_core::ensure_finite("sample value", run[j].value)?;
            j += 1;
        }
        *duplicates_merged += j - i - 1;
        let v = if j - i == 1 {
            run_sum
        } else {
            run_sum / (j - i) as f64
        };
        b_sum += v;
        if v > b_max {
            b_max = v;
        }
        b_count += 1;
        *offset_sum += at - bucket_start;
        i = j;
    }
    Ok((b_sum, b_max, b_count))
}

/// Linear interpolation over NaN runs (the first and last values are never NaN here).
fn fill_gaps(v: &mut [f64]) -> usize {
    let mut filled = 0;
    let mut i = 0;
    while i < v.len() {
        if v[i].is_nan() {
            // Bounded by measured buckets on both sides (the first and last
            // buckets always hold samples); anything else is left alone.
            let Some(lo) = i.checked_sub(1) else {
                i += 1;
                continue;
            };
            let mut hi = i;
            while hi < v.len() && v[hi].is_nan() {
                hi += 1;
            }
            if hi == v.len() {
                break;
            }
            let (a, b) = (v[lo], v[hi]);
            for (k, x) in v.iter_mut().enumerate().take(hi).skip(i) {
                let f = (k - lo) as f64 / (hi - lo) as f64;
                *x = a + (b - a) * f;
                filled += 1;
            }
            i = hi;
        }
        i += 1;
    }
    filled
}

/// Hampel filter with a seasonal guard; returns the number of points damped.
///
/// A point is damped when it is more than `outlier_threshold` robust
/// standard deviations (1.4826 × the MAD of the residuals from the rolling
/// median of its neighbours, floored at 1 % of the 5–95 % range) away from
/// that median, and the same phase one season earlier or later is not
/// similarly extreme.
///
/// Within `outlier_half_window` buckets of either end the window is
/// one-sided (the `w` neighbours on the side that exists), never an
/// extrapolation. A damped point is replaced by its window median, so a
/// value only ever moves towards values actually measured next to it and
/// never leaves their range. A run of outliers that lasts to the end (or
/// from the start) of the series, every one of them on the same side of
/// the median by more than the threshold, is a level shift, not a spike,
/// and is kept when it is at least two buckets long.
pub fn damp_outliers(values: &mut [f64], season: Option<usize>, config: &HygieneConfig) -> usize {
    damp_with(values, season, config, |_, _| false)
}

/// [`damp_outliers`], keeping any point `i` for which `keep(i, median)` holds.
fn damp_with(
    values: &mut [f64],
    season: Option<usize>,
    config: &HygieneConfig,
    keep: impl Fn(usize, f64) -> bool,
) -> usize {
    let n = values.len();
    let w = config.outlier_half_window;
    if config.outlier_threshold == 0.0 || w == 0 || w >= n / 2 || n < 2 * w + 2 {
        return 0;
    }
    let mut window = Vec::with_capacity(2 * w + 1);
    let mut med = vec![0.0; n];
    for (i, m) in med.iter_mut().enumerate() {
        window.clear();
        if i >= w && i + w < n {
            // The point's neighbours only: with the point itself in the
            // window, a sixth of the residuals would be exactly zero and the
            // MAD would understate the noise.
            window.extend_from_slice(&values[i - w..i]);
            window.extend_from_slice(&values[i + 1..=i + w]);
        } else if i < w {
            // One-sided at the edges: an extrapolated line through window
            // medians overshoots (above the data, above physical bounds).
            window.extend_from_slice(&values[i + 1..=i + w]);
        } else {
            window.extend_from_slice(&values[i - w..i]);
        }
        *m = median_in_place(&mut window);
    }
    let resid: Vec<f64> = values.iter().zip(&med).map(|(v, m)| v - m).collect();
    let mut abs: Vec<f64> = resid.iter().map(|r| r.abs()).collect();
    let mut sigma = 1.4826 * median_in_place(&mut abs);
    if sigma <= 0.0 {
        // More than half the residuals are exactly zero (a flat or perfectly
        // smooth series): fall back to the mean absolute residual, and to a
        // scale-relative epsilon if that is zero too.
        let mean_abs = resid.iter().map(|r| r.abs()).sum::<f64>() / n as f64;
        let scale = values.iter().map(|v| v.abs()).fold(0.0, f64::max);
        sigma = (1.2533 * mean_abs).max(scale * 1e-9).max(f64::MIN_POSITIVE);
    }
    // Floor the scale at 1 % of the 5–95 % range so that a series that is
    // smooth up to rounding does not have its ordinary wiggles damped.
    let mut sorted = values.to_vec();
    let q = |v: &mut [f64], p: f64| {
        let idx = ((v.len() - 1) as f64 * p).round() as usize;
        *v.select_nth_unstable_by(idx, f64::total_cmp).1
    };
    let spread = q(&mut sorted, 0.95) - q(&mut sorted, 0.05);
    let sigma = sigma.max(0.01 * spread);
    let k = config.outlier_threshold * sigma;
    // A level shift at either end: a point beyond the threshold from which
    // every point to the end (or from the start) lies beyond the threshold
    // on the same side of its median, two points or more in all. Every point
    // of such a run is kept.
    let beyond = |i: usize, j: usize| {
        let d = values[j] - med[i];
        d.signum() == resid[i].signum() && d.abs() > k
    };
    let tail_from = (0..n.saturating_sub(1))
        .filter(|&i| resid[i].abs() > k && (i..n).all(|j| beyond(i, j)))
        .min()
        .unwrap_or(n);
    let head_to = (1..n)
        .filter(|&i| resid[i].abs() > k && (0..=i).all(|j| beyond(i, j)))
        .max();
    let shift = |i: usize| i >= tail_from || head_to.is_some_and(|h| i <= h);
    let mut damped = 0;
    let mut replace = Vec::new();
    for i in 0..n {
        let r = resid[i];
        if r.abs() <= k || shift(i) || keep(i, med[i]) {
            continue;
        }
        let edge = i < w || i + w >= n;
        let recurring = season.is_some_and(|p| {
            let same_phase = |j: usize| {
                // At the edges the expected value comes from one side only,
                // so compare with the value itself one season away as well.
                (resid[j].signum() == r.signum() && resid[j].abs() > k / 2.0)
                    || (edge && (values[i] - values[j]).abs() <= k)
            };
            (i >= p && same_phase(i - p)) || (i + p < n && same_phase(i + p))
        });
        if !recurring {
            replace.push(i);
        }
    }
    // Replace after deciding, so one damped point does not change the
    // decision for the next.
    for i in replace {
        values[i] = med[i];
        damped += 1;
    }
    damped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: i64, v: f64) -> Sample {
        Sample::new(Timestamp::from_secs(secs), v)
    }

    #[test]
    fn resample_keeps_mean_and_max_and_fills_gaps() {
        let cfg = HygieneConfig {
            step: Duration::from_secs(60),
            ..HygieneConfig::default()
        };
        let r = prepare(
            &[s(0, 1.0), s(30, 3.0), s(60, 5.0), s(180, 9.0)],
            &cfg,
            None,
        )
        .unwrap();
        assert_eq!(r.mean.values, [2.0, 5.0, 7.0, 9.0]);
        assert_eq!(r.max.values, [3.0, 5.0, 7.0, 9.0]);
        assert_eq!(r.counts, [2, 1, 0, 1]);
        assert_eq!(r.quality.gaps_filled, 1);
        // Offsets within buckets are 0, 30, 0 and 0 s: value 0 stands for 7.5 s.
        assert_eq!(r.mean.time_at(0.0), Timestamp::from_millis(7_500));
        assert_eq!(r.mean.time_at(3.0), Timestamp::from_millis(187_500));
        assert!((r.mean.index_of(Timestamp::from_millis(67_500)) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn buckets_of_uneven_length_duplicates_and_disorder_match_a_naive_pass() {
        let cfg = HygieneConfig {
            outlier_threshold: 0.0,
            ..HygieneConfig::default()
        };
        // Irregular spacing (bucket lengths vary, so the end guess misses),
        // a gap of several hours and a few timestamps seen twice.
        let mut samples = Vec::new();
        let mut t = 10;
        for i in 0..900i64 {
            t += 1 + (i * i) % 97 + if i == 400 { 20_000 } else { 0 };
            samples.push(s(t, (i % 7) as f64));
            if i % 50 == 3 {
                samples.push(s(t, (i % 5) as f64));
            }
        }
        let r = prepare(&samples, &cfg, None).unwrap();
        // Naive: average duplicates, then bucket means and maxima.
        let mut dedup: Vec<(i64, f64, f64)> = Vec::new();
        for x in &samples {
            match dedup.last_mut() {
                Some(l) if l.0 == x.at.as_millis() => {
                    l.1 += x.value;
                    l.2 += 1.0;
                }
                _ => dedup.push((x.at.as_millis(), x.value, 1.0)),
            }
        }
        let first = samples[0].at.as_millis() / 3_600_000;
        let n = r.counts.len();
        let (mut sum, mut max, mut count) = (vec![0.0; n], vec![f64::MIN; n], vec![0u32; n]);
        for (at, v, c) in dedup {
            let b = (at / 3_600_000 - first) as usize;
            sum[b] += v / c;
            max[b] = max[b].max(v / c);
            count[b] += 1;
        }
        assert_eq!(r.counts, count);
        assert_eq!(r.quality.duplicates_merged, 18);
        assert!(r.quality.gaps_filled > 0);
        for b in (0..n).filter(|&b| count[b] > 0) {
            assert!((r.mean.values[b] - sum[b] / f64::from(count[b])).abs() < 1e-12);
            assert_eq!(r.max.values[b], max[b]);
        }
        // Any order gives the same result.
        let mut shuffled = samples.clone();
        shuffled.reverse();
        shuffled.swap(5, 700);
        assert_eq!(prepare(&shuffled, &cfg, None).unwrap(), r);
        // A bad value is reported wherever it sits, in order or not.
        for at in [0, 1, 500, samples.len() - 1] {
            let mut bad = samples.clone();
            bad[at].value = f64::NAN;
            assert_eq!(prepare(&bad, &cfg, None).unwrap_err().label(), "non_finite");
            bad.reverse();
            assert_eq!(prepare(&bad, &cfg, None).unwrap_err().label(), "non_finite");
        }
    }

    #[test]
    fn grid_is_aligned_to_the_epoch() {
        let r = prepare(
            &[s(7300, 2.0), s(3601, 1.0)],
            &HygieneConfig::default(),
            None,
        )
        .unwrap();
        assert_eq!(r.mean.start, Timestamp::from_millis(3_600_000 + 50_500));
        assert_eq!(r.mean.len(), 2);
    }

    #[test]
    fn empty_and_non_finite_are_typed_errors() {
        let cfg = HygieneConfig::default();
        assert_eq!(prepare(&[], &cfg, None).unwrap_err().label(), "empty");
        let e = prepare(&[s(0, f64::INFINITY)], &cfg, None).unwrap_err();
        assert_eq!(e.label(), "non_finite");
        let huge = prepare(&[s(0, 1.0), s(1_000_000_000, 1.0)], &cfg, None).unwrap_err();
        assert_eq!(huge.label(), "invalid_config");
    }

    #[test]
    fn series_ending_on_a_steep_daily_slope_is_not_damped() {
        let cfg = HygieneConfig::default();
        let busy = |h: f64| (-(h - 14.0f64).powi(2) / 10.0).exp();
        // Ends at 23:00, on the tail of the evening fall-off.
        let v: Vec<f64> = (0..24 * 10)
            .map(|i| 400.0 + 500.0 * busy((i % 24) as f64 + 0.5))
            .collect();
        let mut w = v.clone();
        assert_eq!(damp_outliers(&mut w, Some(24), &cfg), 0);
        // A spike in the last bucket that yesterday did not have is damped.
        let mut w = v.clone();
        *w.last_mut().unwrap() = 5000.0;
        assert_eq!(damp_outliers(&mut w, Some(24), &cfg), 1);
    }

    fn calm_cpu() -> Vec<f64> {
        let peak = |h: f64| (-(h - 14.0f64).powi(2) / 8.0).exp();
        let noise = |i: usize| (i as f64 * 0.618_033_988_749_894_9).fract() - 0.5;
        (0..24 * 14)
            .map(|h| 0.35 + 0.1 * peak((h % 24) as f64) + 0.01 * noise(h))
            .collect()
    }

    #[test]
    fn a_level_shift_at_the_end_is_kept_and_nothing_overshoots() {
        let cfg = HygieneConfig::default();
        let base = calm_cpu();
        for k in 1..=6 {
            let mut v = base.clone();
            let n = v.len();
            for x in &mut v[n - k..] {
                *x = 0.95;
            }
            let before = v.clone();
            damp_outliers(&mut v, Some(24), &cfg);
            // Never above what was measured.
            assert!(v.iter().all(|x| *x <= 0.95), "k={k}: {:?}", &v[n - 8..]);
            // Normal neighbours are never overwritten.
            for i in 0..n - k {
                assert!(
                    (v[i] - before[i]).abs() < 0.05,
                    "k={k}: bucket {i} moved from {} to {}",
                    before[i],
                    v[i]
                );
            }
            if k >= 2 {
                assert_eq!(
                    &v[n - k..],
                    &before[n - k..],
                    "k={k}: a level shift is kept"
                );
            } else {
                // A single last bucket is damped to its neighbours' median.
                assert!(v[n - 1] < 0.5, "{}", v[n - 1]);
            }
        }
    }

    #[test]
    fn a_sustained_last_bucket_is_not_a_spike() {
        // Two calm weeks of minute samples, the final hour all at 0.95.
        let mut samples = Vec::new();
        let base = calm_cpu();
        for (h, v) in base.iter().enumerate() {
            for m in 0..60 {
                let last = h == base.len() - 1;
                let v = if last { 0.95 } else { *v };
                samples.push(s((h * 3600 + m * 60) as i64, v));
            }
        }
        let r = prepare(
            &samples,
            &HygieneConfig::default(),
            Some(Duration::from_secs(86_400)),
        )
        .unwrap();
        assert_eq!(r.quality.outliers_damped, 0);
        assert!((r.mean.values.last().unwrap() - 0.95).abs() < 1e-12);
        // One absurd minute in an otherwise calm last hour is still damped.
        let n = samples.len();
        for x in &mut samples[n - 60..] {
            x.value = 0.4;
        }
        samples[n - 30].value = 50.0;
        let r = prepare(
            &samples,
            &HygieneConfig::default(),
            Some(Duration::from_secs(86_400)),
        )
        .unwrap();
        assert_eq!(r.quality.outliers_damped, 1);
        assert!(*r.mean.values.last().unwrap() < 0.5);
    }

    #[test]
    fn huge_half_window_does_not_panic() {
        let cfg = HygieneConfig {
            outlier_half_window: usize::MAX,
            ..HygieneConfig::default()
        };
        assert_eq!(cfg.validate().unwrap_err().label(), "invalid_config");
        let mut v = calm_cpu();
        assert_eq!(damp_outliers(&mut v, Some(24), &cfg), 0);
    }

    #[test]
    fn isolated_spike_is_damped_but_daily_peaks_are_kept() {
        let cfg = HygieneConfig::default();
        let mut flat: Vec<f64> = (0..100).map(|i| 0.5 + 0.001 * (i % 3) as f64).collect();
        flat[50] = 5.0;
        assert_eq!(damp_outliers(&mut flat, Some(24), &cfg), 1);
        assert!(flat[50] < 0.6);
        let mut peaks: Vec<f64> = (0..24 * 5)
            .map(|i| if i % 24 == 12 { 0.9 } else { 0.3 })
            .collect();
        assert_eq!(damp_outliers(&mut peaks, Some(24), &cfg), 0);
        assert_eq!(peaks[36], 0.9);
    }
}
