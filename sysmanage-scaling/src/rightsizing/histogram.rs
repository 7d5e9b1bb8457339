//! The VPA recommender's histograms (`pkg/recommender/util`): linear and
//! exponential bucketing, plain and exponentially decaying histograms, and
//! their compact checkpoints.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sysmanage_core::Timestamp;

use crate::error::{Result, ScalingError};

/// Largest bucket weight stored in a [`HistogramCheckpoint`] (`MaxCheckpointWeight`).
pub const MAX_CHECKPOINT_WEIGHT: u32 = 10_000;

/// Most buckets a histogram may have (the VPA's defaults use 176 and 290).
const MAX_BUCKETS: usize = 1 << 16;

/// How values map to buckets (`HistogramOptions`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistogramOptions {
    kind: Bucketing,
    num_buckets: usize,
    epsilon: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
enum Bucketing {
    Linear { bucket_size: f64 },
    Exponential { first_bucket_size: f64, ratio: f64 },
}

fn positive(field: &'static str, v: f64) -> Result<f64> {
    crate::limits::number(field, v, f64::MIN_POSITIVE, 1e300)
}

impl HistogramOptions {
    /// `NewLinearHistogramOptions`: buckets of `bucket_size` up to `max_value`.
    ///
    /// # Errors
    /// [`ScalingError::OutOfRange`] for non-positive or non-finite sizes, or more than 65,536 buckets.
    pub fn linear(max_value: f64, bucket_size: f64, epsilon: f64) -> Result<Self> {
        positive("histogram.maxValue", max_value)?;
        positive("histogram.bucketSize", bucket_size)?;
        positive("histogram.epsilon", epsilon)?;
        let n = (max_value / bucket_size).ceil() + 1.0;
        Self::checked(Bucketing::Linear { bucket_size }, n, epsilon)
    }

    /// `NewExponentialHistogramOptions`: bucket `n` starts at
    /// `first_bucket_size × (ratio^n − 1) / (ratio − 1)`.
    ///
    /// # Errors
    /// [`ScalingError::OutOfRange`] for non-positive sizes, a ratio not above
    /// 1, or more than 65,536 buckets.
    pub fn exponential(
        max_value: f64,
        first_bucket_size: f64,
        ratio: f64,
        epsilon: f64,
    ) -> Result<Self> {
        positive("histogram.maxValue", max_value)?;
        positive("histogram.firstBucketSize", first_bucket_size)?;
        positive("histogram.epsilon", epsilon)?;
        if !(ratio.is_finite() && ratio > 1.0 + 1e-9) {
            return Err(ScalingError::OutOfRange {
                field: "histogram.ratio",
                value: ratio.to_string(),
                range: "(1, inf) (finite)".into(),
            });
        }
        let n =
            ((max_value * (ratio - 1.0) / first_bucket_size + 1.0).ln() / ratio.ln()).ceil() + 1.0;
        Self::checked(
            Bucketing::Exponential {
                first_bucket_size,
                ratio,
            },
            n,
            epsilon,
        )
    }

    fn checked(kind: Bucketing, n: f64, epsilon: f64) -> Result<Self> {
        if !(n.is_finite() && n >= 1.0 && n <= MAX_BUCKETS as f64) {
            return Err(ScalingError::OutOfRange {
                field: "histogram.numBuckets",
                value: n.to_string(),
                range: format!("1..={MAX_BUCKETS}"),
            });
        }
        Ok(Self {
            kind,
            num_buckets: n as usize,
            epsilon,
        })
    }

    /// The VPA's CPU histogram: up to 1000 cores, first bucket 0.01 cores, ratio 1.05.
    pub fn vpa_cpu() -> Self {
        // constants, known to be valid
        Self::exponential(1000.0, 0.01, 1.05, 1e-4).unwrap_or(Self {
            kind: Bucketing::Linear { bucket_size: 1.0 },
            num_buckets: 1,
            epsilon: 1e-4,
        })
    }

    /// The VPA's memory histogram: up to 1 TB, first bucket 10 MB, ratio 1.05.
    pub fn vpa_memory() -> Self {
        Self::exponential(1e12, 1e7, 1.05, 1e-4).unwrap_or(Self {
            kind: Bucketing::Linear { bucket_size: 1.0 },
            num_buckets: 1,
            epsilon: 1e-4,
        })
    }

    /// The number of buckets.
    pub fn num_buckets(&self) -> usize {
        self.num_buckets
    }

    /// Weights below this count as zero.
    pub fn epsilon(&self) -> f64 {
        self.epsilon
    }

    /// `FindBucket`: the bucket holding `value` (out-of-range values go to the first or last).
    pub fn find_bucket(&self, value: f64) -> usize {
        let last = self.num_buckets - 1;
        let b = match self.kind {
            Bucketing::Linear { bucket_size } => value / bucket_size,
            Bucketing::Exponential {
                first_bucket_size,
                ratio,
            } => {
                if value < first_bucket_size {
                    return 0;
                }
                (value * (ratio - 1.0) / first_bucket_size + 1.0).ln() / ratio.ln()
            }
        };
        // `as` saturates (NaN → 0)
        (b.max(0.0) as usize).min(last)
    }

    /// `GetBucketStart`: the smallest value in bucket `bucket`.
    pub fn bucket_start(&self, bucket: usize) -> f64 {
        let b = bucket.min(self.num_buckets - 1);
        match self.kind {
            Bucketing::Linear { bucket_size } => b as f64 * bucket_size,
            Bucketing::Exponential {
                first_bucket_size,
                ratio,
            } => {
                if b == 0 {
                    0.0
                } else {
                    first_bucket_size * (ratio.powi(b as i32) - 1.0) / (ratio - 1.0)
                }
            }
        }
    }
}

/// A histogram of weighted samples (`histogram`).
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    options: HistogramOptions,
    weights: Vec<f64>,
    total: f64,
    min_bucket: usize,
    max_bucket: usize,
}

/// A histogram's compact, serialisable form (`HistogramCheckpoint`): bucket
/// weights scaled so the largest is [`MAX_CHECKPOINT_WEIGHT`], plus the total.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistogramCheckpoint {
    /// The reference timestamp of a decaying histogram.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_timestamp: Option<Timestamp>,
    /// Scaled bucket weights by bucket index.
    pub bucket_weights: BTreeMap<i64, u32>,
    /// The total weight.
    pub total_weight: f64,
}

fn safe_subtract(value: f64, sub: f64, epsilon: f64) -> f64 {
    let v = value - sub;
    if v < epsilon { 0.0 } else { v }
}

impl Histogram {
    /// An empty histogram.
    pub fn new(options: HistogramOptions) -> Self {
        Self {
            options,
            weights: vec![0.0; options.num_buckets],
            total: 0.0,
            min_bucket: options.num_buckets - 1,
            max_bucket: 0,
        }
    }

    /// The bucketing.
    pub fn options(&self) -> &HistogramOptions {
        &self.options
    }

    /// The total weight.
    pub fn total_weight(&self) -> f64 {
        self.total
    }

    /// `AddSample`. A weight that is negative or not finite is ignored
    /// (the VPA panics); a value that is not finite lands in the first bucket.
    pub fn add_sample(&mut self, value: f64, weight: f64) {
        if !(weight.is_finite() && weight >= 0.0) {
            return;
        }
        let b = self.options.find_bucket(value);
        self.weights[b] += weight;
        self.total += weight;
        if b < self.min_bucket && self.weights[b] >= self.options.epsilon {
            self.min_bucket = b;
        }
        if b > self.max_bucket && self.weights[b] >= self.options.epsilon {
            self.max_bucket = b;
        }
    }

    /// `SubtractSample`: weights that fall below epsilon become zero.
    pub fn subtract_sample(&mut self, value: f64, weight: f64) {
        if !(weight.is_finite() && weight >= 0.0) {
            return;
        }
        let b = self.options.find_bucket(value);
        let eps = self.options.epsilon;
        self.total = safe_subtract(self.total, weight, eps);
        self.weights[b] = safe_subtract(self.weights[b], weight, eps);
        self.update_min_max();
    }

    fn update_min_max(&mut self) {
        let eps = self.options.epsilon;
        let last = self.options.num_buckets - 1;
        while self.weights[self.min_bucket] < eps && self.min_bucket < last {
            self.min_bucket += 1;
        }
        while self.weights[self.max_bucket] < eps && self.max_bucket > 0 {
            self.max_bucket -= 1;
        }
    }

    /// `IsEmpty`: no bucket holds at least epsilon.
    pub fn is_empty(&self) -> bool {
        self.weights[self.min_bucket] < self.options.epsilon
    }

    /// `Percentile`: the end of the bucket where the cumulative weight reaches
    /// `p × total` (the start of the last bucket, which has no end); 0 when empty.
    pub fn percentile(&self, p: f64) -> f64 {
        if self.is_empty() {
            return 0.0;
        }
        let threshold = p * self.total;
        let mut sum = 0.0;
        let mut b = self.min_bucket;
        while b < self.max_bucket {
            sum += self.weights[b];
            if sum >= threshold {
                break;
            }
            b += 1;
        }
        if b < self.options.num_buckets - 1 {
            self.options.bucket_start(b + 1)
        } else {
            self.options.bucket_start(b)
        }
    }

    /// `Scale`: multiplies every weight by `factor` (ignored unless finite and `>= 0`).
    pub fn scale(&mut self, factor: f64) {
        if !(factor.is_finite() && factor >= 0.0) {
            return;
        }
        for w in &mut self.weights[self.min_bucket.min(self.max_bucket)..=self.max_bucket] {
            *w *= factor;
        }
        self.total *= factor;
        self.update_min_max();
    }

    /// `Merge`: adds another histogram's weights.
    ///
    /// # Errors
    /// [`ScalingError::InvalidSpec`] when the bucketing differs.
    pub fn merge(&mut self, other: &Self) -> Result<()> {
        if self.options != other.options {
            return Err(ScalingError::invalid(
                "histogram",
                "cannot merge histograms with different bucketing",
            ));
        }
        if other.is_empty() {
            return Ok(());
        }
        for b in other.min_bucket..=other.max_bucket {
            self.weights[b] += other.weights[b];
        }
        self.total += other.total;
        self.min_bucket = self.min_bucket.min(other.min_bucket);
        self.max_bucket = self.max_bucket.max(other.max_bucket);
        Ok(())
    }

    /// `Equals`: same bucketing, same non-empty range, weights within 1e-15.
    pub fn approx_eq(&self, other: &Self) -> bool {
        if self.options != other.options || self.is_empty() != other.is_empty() {
            return false;
        }
        if self.is_empty() {
            return true;
        }
        self.min_bucket == other.min_bucket
            && self.max_bucket == other.max_bucket
            && (self.min_bucket..=self.max_bucket)
                .all(|b| (self.weights[b] - other.weights[b]).abs() <= 1e-15)
    }

    /// The weight held by `bucket`.
    pub fn bucket_weight(&self, bucket: usize) -> f64 {
        self.weights.get(bucket).copied().unwrap_or(0.0)
    }

    /// `SaveToChekpoint`.
    pub fn checkpoint(&self) -> HistogramCheckpoint {
        let mut out = HistogramCheckpoint {
            total_weight: self.total,
            ..HistogramCheckpoint::default()
        };
        if self.min_bucket > self.max_bucket {
            return out;
        }
        let max = self.weights[self.min_bucket..=self.max_bucket]
            .iter()
            .copied()
            .fold(0.0, f64::max);
        if max <= 0.0 {
            return out;
        }
        let ratio = f64::from(MAX_CHECKPOINT_WEIGHT) / max;
        for b in self.min_bucket..=self.max_bucket {
            // `as` saturates; the value is at most MAX_CHECKPOINT_WEIGHT
            let w = (self.weights[b] * ratio).round() as u32;
            if w > 0 {
                out.bucket_weights.insert(b as i64, w);
            }
        }
        out
    }

    /// `LoadFromCheckpoint`: adds the checkpoint's weights, scaled so they sum to its total.
    ///
    /// # Errors
    /// [`ScalingError::InvalidSpec`] for a negative or non-finite total or a
    /// bucket outside the bucketing.
    pub fn load_checkpoint(&mut self, cp: &HistogramCheckpoint) -> Result<()> {
        if !(cp.total_weight.is_finite() && cp.total_weight >= 0.0) {
            return Err(ScalingError::invalid(
                "checkpoint.totalWeight",
                format!("must be finite and >= 0, got {}", cp.total_weight),
            ));
        }
        let mut sum = 0u64;
        for (&b, &w) in &cp.bucket_weights {
            if b < 0 || b as u64 >= self.options.num_buckets as u64 {
                return Err(ScalingError::invalid(
                    "checkpoint.bucketWeights",
                    format!("bucket {b} outside 0..{}", self.options.num_buckets),
                ));
            }
            sum += u64::from(w);
        }
        if sum == 0 {
            return Ok(());
        }
        let ratio = cp.total_weight / sum as f64;
        for (&b, &w) in &cp.bucket_weights {
            let b = b as usize;
            self.weights[b] += f64::from(w) * ratio;
            self.min_bucket = self.min_bucket.min(b);
            self.max_bucket = self.max_bucket.max(b);
        }
        self.total += cp.total_weight;
        Ok(())
    }
}

/// The largest decay exponent before the reference timestamp moves (`maxDecayExponent`).
const MAX_DECAY_EXPONENT: f64 = 100.0;

/// A histogram whose samples lose half their weight every `half_life`
/// (`decayingHistogram`): newer samples weigh `2^((t − reference) / half_life)`.
#[derive(Clone, Debug, PartialEq)]
pub struct DecayingHistogram {
    histogram: Histogram,
    half_life_ms: i64,
    reference: Option<Timestamp>,
}

impl DecayingHistogram {
    /// An empty decaying histogram.
    ///
    /// # Errors
    /// [`ScalingError::OutOfRange`] for a half-life outside 1 s ..= 365 days.
    pub fn new(options: HistogramOptions, half_life: Duration) -> Result<Self> {
        crate::limits::duration(
            "histogram.halfLife",
            half_life,
            Duration::from_secs(1),
            Duration::from_secs(365 * 86_400),
        )?;
        Ok(Self {
            histogram: Histogram::new(options),
            half_life_ms: i64::try_from(half_life.as_millis()).unwrap_or(i64::MAX),
            reference: None,
        })
    }

    /// The underlying weights.
    pub fn histogram(&self) -> &Histogram {
        &self.histogram
    }

    /// The current reference timestamp.
    pub fn reference(&self) -> Option<Timestamp> {
        self.reference
    }

    fn round_to_half_life(&self, t: Timestamp) -> Timestamp {
        let h = self.half_life_ms;
        let ms = t.as_millis();
        // round half away from zero, as Go's Time.Round
        let q = ms.div_euclid(h);
        let r = ms.rem_euclid(h);
        let q = if r.saturating_mul(2) >= h {
            q.saturating_add(1)
        } else {
            q
        };
        Timestamp::from_millis(q.saturating_mul(h))
    }

    fn shift_reference(&mut self, to: Timestamp) {
        let new_ref = self.round_to_half_life(to);
        if let Some(old) = self.reference {
            let exp = ((old.as_millis() as f64 - new_ref.as_millis() as f64)
                / self.half_life_ms as f64)
                .round();
            self.histogram.scale(2f64.powf(exp));
        }
        self.reference = Some(new_ref);
    }

    fn decay_factor(&mut self, t: Timestamp) -> f64 {
        let too_late = match self.reference {
            None => true,
            Some(r) => {
                (t.as_millis() as f64 - r.as_millis() as f64)
                    > self.half_life_ms as f64 * MAX_DECAY_EXPONENT
            }
        };
        if too_late {
            self.shift_reference(t);
        }
        let r = self.reference.unwrap_or(t);
        2f64.powf((t.as_millis() as f64 - r.as_millis() as f64) / self.half_life_ms as f64)
    }

    /// `AddSample` at time `t`.
    pub fn add_sample(&mut self, value: f64, weight: f64, t: Timestamp) {
        let f = self.decay_factor(t);
        self.histogram.add_sample(value, weight * f);
    }

    /// `SubtractSample` at time `t`.
    pub fn subtract_sample(&mut self, value: f64, weight: f64, t: Timestamp) {
        let f = self.decay_factor(t);
        self.histogram.subtract_sample(value, weight * f);
    }

    /// See [`Histogram::percentile`].
    pub fn percentile(&self, p: f64) -> f64 {
        self.histogram.percentile(p)
    }

    /// See [`Histogram::is_empty`].
    pub fn is_empty(&self) -> bool {
        self.histogram.is_empty()
    }

    /// `Merge`: aligns the older reference timestamp with the younger one, then adds.
    ///
    /// # Errors
    /// [`ScalingError::InvalidSpec`] for different half-lives or bucketing.
    pub fn merge(&mut self, other: &Self) -> Result<()> {
        if self.half_life_ms != other.half_life_ms {
            return Err(ScalingError::invalid(
                "histogram.halfLife",
                "cannot merge decaying histograms with different half-lives",
            ));
        }
        let mut o = other.clone();
        match (self.reference, o.reference) {
            (Some(a), Some(b)) if a < b => self.shift_reference(b),
            (Some(a), Some(b)) if b < a => o.shift_reference(a),
            (None, Some(b)) => self.reference = Some(b),
            _ => {}
        }
        self.histogram.merge(&o.histogram)
    }

    /// `Equals`.
    pub fn approx_eq(&self, other: &Self) -> bool {
        self.half_life_ms == other.half_life_ms
            && self.reference == other.reference
            && self.histogram.approx_eq(&other.histogram)
    }

    /// `SaveToChekpoint`, with the reference timestamp.
    pub fn checkpoint(&self) -> HistogramCheckpoint {
        let mut cp = self.histogram.checkpoint();
        cp.reference_timestamp = self.reference;
        cp
    }

    /// `LoadFromCheckpoint`.
    ///
    /// # Errors
    /// As [`Histogram::load_checkpoint`].
    pub fn load_checkpoint(&mut self, cp: &HistogramCheckpoint) -> Result<()> {
        self.histogram.load_checkpoint(cp)?;
        self.reference = cp.reference_timestamp;
        Ok(())
    }
}
