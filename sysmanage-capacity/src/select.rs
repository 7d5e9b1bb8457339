//! Model selection by rolling-origin holdout error.
//!
//! For each candidate the series is cut at `folds` origins, one test window
//! apart, counting back from the end. At each origin the model is fitted on
//! everything before it and forecasts the test window; its error is the mean
//! absolute error over the window, averaged over the origins (Hyndman's
//! "evaluation on a rolling forecasting origin"). The candidate with the
//! lowest error wins, except that a simpler candidate (earlier in
//! [`ModelKind::ALL`]) whose error is within `tolerance` of the best is
//! preferred: the simplest adequate model. The choice, every candidate's
//! error and why a candidate was skipped are recorded in [`Selection`].

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sysmanage_core::{Error, Result};

use crate::hygiene::RegularSeries;
use crate::model::{FittedModel, Forecaster, ModelKind};

/// Most rolling origins [`SelectionConfig::folds`] may ask for.
pub const MAX_FOLDS: usize = 1000;

/// Model-selection settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct SelectionConfig {
    /// Models to consider. Default: all of [`ModelKind::ALL`].
    pub candidates: Vec<ModelKind>,
    /// Rolling origins, 1 to [`MAX_FOLDS`]. Default: 3.
    pub folds: usize,
    /// Length of each test window. Default: 1 day (shortened for short series).
    pub test_window: Duration,
    /// Prefer a simpler model whose error is within this fraction of the
    /// best. Default: 0.05 (5 %).
    pub tolerance: f64,
}

impl Default for SelectionConfig {
    fn default() -> Self {
        Self {
            candidates: ModelKind::ALL.to_vec(),
            folds: 3,
            test_window: Duration::from_secs(86_400),
            tolerance: 0.05,
        }
    }
}

impl SelectionConfig {
    /// Checks the settings.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] / [`Error::Empty`] naming the bad field.
    pub fn validate(&self) -> Result<()> {
        if self.candidates.is_empty() {
            return Err(Error::Empty {
                field: "selection.candidates",
            });
        }
        if !(1..=MAX_FOLDS).contains(&self.folds) {
            return Err(Error::invalid(
                "selection.folds",
                format!("must be in 1..={MAX_FOLDS}, got {}", self.folds),
            ));
        }
        sysmanage_core::ensure_nonzero("selection.test_window", self.test_window)?;
        if !(self.tolerance.is_finite() && self.tolerance >= 0.0) {
            return Err(Error::invalid(
                "selection.tolerance",
                "must be a finite number ≥ 0",
            ));
        }
        Ok(())
    }
}

/// One candidate's holdout result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CandidateScore {
    /// The model.
    pub model: ModelKind,
    /// Mean absolute holdout error, when the model could be evaluated.
    pub holdout_mae: Option<f64>,
    /// Origins it was evaluated on.
    pub folds: usize,
    /// Why it was not evaluated (or could not be fitted), if so.
    pub skipped: Option<String>,
}

/// The model chosen for a metric and the evidence for the choice.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Selection {
    /// The chosen model.
    pub model: ModelKind,
    /// Its mean absolute holdout error (`None` when the series was too short
    /// to hold anything out and the simplest model was used).
    pub holdout_mae: Option<f64>,
    /// `holdout_mae` relative to the series' mean absolute value.
    pub relative_error: Option<f64>,
    /// Test window length in steps.
    pub test_steps: usize,
    /// Every candidate's score.
    pub candidates: Vec<CandidateScore>,
}

/// Chooses a model for `series` and fits it on the whole series.
///
/// # Errors
/// [`Error::InsufficientData`] when no candidate can be fitted (fewer than
/// three buckets for the simplest), or an invalid configuration.
pub fn select(
    series: &RegularSeries,
    forecasters: &[Box<dyn Forecaster>],
    config: &SelectionConfig,
) -> Result<(FittedModel, Selection)> {
    config.validate()?;
    let n = series.len();
    let window = (config.test_window.as_millis() / series.step.as_millis().max(1)).max(1) as usize;
    // Keep at least half of the series for training at the earliest origin.
    let test_steps = window.min(n / (2 * config.folds)).max(1);
    let scale = series.values.iter().map(|v| v.abs()).sum::<f64>() / n.max(1) as f64;
    let mut scores = Vec::with_capacity(forecasters.len());
    for f in forecasters {
        let min = f.min_points(series);
        let mut total = 0.0;
        let mut folds = 0;
        let mut skipped = None;
        if min == usize::MAX {
            // The model cannot be fitted on this grid at all (e.g. a season
            // that is not a whole number ≥ 2 of steps).
            let reason = f.fit(series).err().map_or_else(
                || "cannot be fitted on this grid".to_owned(),
                |e| e.to_string(),
            );
            scores.push(CandidateScore {
                model: f.kind(),
                holdout_mae: None,
                folds: 0,
                skipped: Some(reason),
            });
            continue;
        }
        for k in 1..=config.folds {
            let Some(origin) = n.checked_sub(k * test_steps) else {
                break;
            };
            if origin < min.max(3) {
                break;
            }
            match f.fit(&series.prefix(origin)) {
                Ok(fit) => {
                    let mae = (1..=test_steps)
                        .map(|h| (series.values[origin + h - 1] - fit.predict(h).point).abs())
                        .sum::<f64>()
                        / test_steps as f64;
                    if mae.is_finite() {
                        total += mae;
                        folds += 1;
                    }
                }
                Err(e) => {
                    skipped = Some(e.to_string());
                    break;
                }
            }
        }
        if folds == 0 && skipped.is_none() {
            skipped = Some(format!(
                "needs {} buckets before a holdout origin, have {n}",
                min.max(3).saturating_add(test_steps)
            ));
        }
        scores.push(CandidateScore {
            model: f.kind(),
            holdout_mae: (folds > 0).then(|| total / folds as f64),
            folds,
            skipped: if folds > 0 { None } else { skipped },
        });
    }
    let best = scores
        .iter()
        .filter_map(|s| s.holdout_mae)
        .fold(f64::INFINITY, f64::min);
    let mut order: Vec<usize> = (0..forecasters.len()).collect();
    order.sort_by_key(|&i| forecasters[i].kind());
    let chosen = if best.is_finite() {
        let slack = best * config.tolerance + 1e-12 * scale;
        order
            .iter()
            .copied()
            .find(|&i| scores[i].holdout_mae.is_some_and(|e| e <= best + slack))
    } else {
        None
    };
    let (fit, idx) = match chosen {
        Some(i) => match forecasters[i].fit(series) {
            Ok(fit) => (fit, Some(i)),
            Err(e) => {
                tracing::debug!(target: "sysmanage_capacity", error = %e, "sysmanage.capacity.select.refit_failed");
                fallback(series, forecasters, &order)?
            }
        },
        None => fallback(series, forecasters, &order)?,
    };
    let holdout_mae = idx.and_then(|i| scores[i].holdout_mae);
    let selection = Selection {
        model: fit.kind(),
        holdout_mae,
        relative_error: holdout_mae.map(|e| if scale > 0.0 { e / scale } else { 0.0 }),
        test_steps,
        candidates: scores,
    };
    tracing::debug!(
        target: "sysmanage_capacity",
        model = %selection.model,
        holdout_mae = selection.holdout_mae,
        buckets = n,
        "sysmanage.capacity.model_selected"
    );
    Ok((fit, selection))
}

/// The simplest candidate that fits the whole series.
fn fallback(
    series: &RegularSeries,
    forecasters: &[Box<dyn Forecaster>],
    order: &[usize],
) -> Result<(FittedModel, Option<usize>)> {
    let mut last_err = None;
    for &i in order {
        match forecasters[i].fit(series) {
            Ok(fit) => return Ok((fit, None)),
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.unwrap_or(Error::InsufficientData {
        what: "forecast",
        needed: 3,
        have: series.len(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_are_bounded() {
        let cfg = SelectionConfig {
            folds: 1 << 63,
            ..SelectionConfig::default()
        };
        assert_eq!(cfg.validate().unwrap_err().label(), "invalid_config");
        let cfg = SelectionConfig {
            folds: MAX_FOLDS,
            ..SelectionConfig::default()
        };
        assert!(cfg.validate().is_ok());
    }
}
