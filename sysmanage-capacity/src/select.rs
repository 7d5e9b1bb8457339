//! Model selection by rolling-origin holdout error.
//!
//! The series is cut at up to `folds` origins, one test window apart,
//! counting back from the end; every candidate is scored on the same
//! origins (as many as the most demanding evaluable candidate allows), and a
//! candidate that fails to fit at any of them, or gives a non-finite error,
//! is skipped with the reason recorded. At each origin the model is fitted on
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
use crate::validate::{MAX_DURATION, count_in, duration_in, finite_in};

/// Most rolling origins [`SelectionConfig::folds`] may ask for.
pub const MAX_FOLDS: usize = 1000;

/// Largest [`SelectionConfig::tolerance`] (a simpler model within 10× the
/// best error).
pub const MAX_TOLERANCE: f64 = 10.0;

/// Model-selection settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct SelectionConfig {
    /// Models to consider, 1 to 32 entries. Default: all of [`ModelKind::ALL`].
    pub candidates: Vec<ModelKind>,
    /// Rolling origins, 1 to [`MAX_FOLDS`]. Default: 3.
    pub folds: usize,
    /// Length of each test window, 1 ms to 100 years. Default: 1 day
    /// (shortened for short series).
    pub test_window: Duration,
    /// Prefer a simpler model whose error is within this fraction of the
    /// best, 0 to [`MAX_TOLERANCE`]. Default: 0.05 (5 %).
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
        count_in("selection.candidates", self.candidates.len(), 1, 32)?;
        count_in("selection.folds", self.folds, 1, MAX_FOLDS)?;
        duration_in(
            "selection.test_window",
            self.test_window,
            Duration::from_millis(1),
            MAX_DURATION,
        )?;
        finite_in("selection.tolerance", self.tolerance, 0.0, MAX_TOLERANCE)?;
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
    /// Origins it was evaluated on: the same latest origins for every
    /// candidate that was evaluated, 0 when it was not.
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
/// [`Error::Empty`] (field `forecasters`) with no candidate,
/// [`Error::InsufficientData`] when no candidate can be fitted (fewer than
/// three buckets for the simplest; the simplest candidate's error is
/// returned), or an invalid configuration.
pub fn select(
    series: &RegularSeries,
    forecasters: &[Box<dyn Forecaster>],
    config: &SelectionConfig,
) -> Result<(FittedModel, Selection)> {
    select_inner(series, None, forecasters, config)
}

/// [`select`], scoring holdout errors only on buckets where `measured` is
/// true (e.g. buckets that held samples, not interpolated ones). An origin
/// whose test window holds no measured bucket is left out for every
/// candidate.
///
/// # Errors
/// As [`select`]; [`Error::InvalidConfig`] when `measured` is not as long as
/// the series.
pub fn select_measured(
    series: &RegularSeries,
    measured: &[bool],
    forecasters: &[Box<dyn Forecaster>],
    config: &SelectionConfig,
) -> Result<(FittedModel, Selection)> {
    if measured.len() != series.len() {
        return Err(Error::invalid(
            "selection.measured",
            format!("has {} flags for {} buckets", measured.len(), series.len()),
        ));
    }
    select_inner(series, Some(measured), forecasters, config)
}

fn select_inner(
    series: &RegularSeries,
    measured: Option<&[bool]>,
    forecasters: &[Box<dyn Forecaster>],
    config: &SelectionConfig,
) -> Result<(FittedModel, Selection)> {
    config.validate()?;
    if forecasters.is_empty() {
        return Err(Error::Empty {
            field: "forecasters",
        });
    }
    let n = series.len();
    let window = (config.test_window.as_millis() / series.step.as_millis().max(1)).max(1) as usize;
    // Keep at least half of the series for training at the earliest origin.
    let test_steps = window.min(n / (2 * config.folds)).max(1);
    let scale = series.values.iter().map(|v| v.abs()).sum::<f64>() / n.max(1) as f64;
    // Every candidate is scored on the same origins: the latest `common`
    // of them, as many as the most demanding candidate that can be
    // evaluated at all allows. Comparing averages over different origins
    // would favour whichever model happened to skip the hard ones.
    let mins: Vec<usize> = forecasters.iter().map(|f| f.min_points(series)).collect();
    let feasible = |min: usize| {
        (1..=config.folds)
            .take_while(|&k| {
                n.checked_sub(k * test_steps)
                    .is_some_and(|origin| origin >= min.max(3))
            })
            .count()
    };
    let common = mins
        .iter()
        .map(|&m| feasible(m))
        .filter(|&k| k > 0)
        .min()
        .unwrap_or(0);
    // Length-dependent designs are fixed from the shortest training prefix,
    // and the same design is fitted on the whole series afterwards.
    let shortest = if common == 0 {
        series.clone()
    } else {
        series.prefix(n - common * test_steps)
    };
    let fixed: Vec<Option<Box<dyn Forecaster>>> = forecasters
        .iter()
        .map(|f| f.with_design_for(&shortest))
        .collect();
    let forecasters: Vec<&dyn Forecaster> = forecasters
        .iter()
        .zip(&fixed)
        .map(|(f, x)| x.as_deref().unwrap_or(&**f))
        .collect();
    let forecasters = forecasters.as_slice();
    let mut scores = Vec::with_capacity(forecasters.len());
    for (f, &min) in forecasters.iter().zip(&mins) {
        let mut total = 0.0;
        let mut folds = 0;
        let mut skipped = None;
        if min == usize::MAX {
            // The model cannot be fitted on this grid at all (e.g. a season
            // that is not a whole number ≥ 2 of steps).
            skipped = Some(f.fit(series).err().map_or_else(
                || "cannot be fitted on this grid".to_owned(),
                |e| e.to_string(),
            ));
        } else if feasible(min) == 0 {
            skipped = Some(format!(
                "needs {} buckets before a holdout origin, have {n}",
                min.max(3).saturating_add(test_steps)
            ));
        } else {
            let origins: Vec<usize> = (1..=common).map(|k| n - k * test_steps).collect();
            let fits = f.fit_prefixes(series, &origins);
            for (&origin, fit) in origins.iter().zip(fits) {
                match fit {
                    Ok(fit) => {
                        let scored = |h: &usize| measured.is_none_or(|m| m[origin + h - 1]);
                        let count = (1..=test_steps).filter(scored).count();
                        if count == 0 {
                            continue;
                        }
                        let mae = (1..=test_steps)
                            .filter(scored)
                            .map(|h| (series.values[origin + h - 1] - fit.predict(h).point).abs())
                            .sum::<f64>()
                            / count as f64;
                        if !mae.is_finite() {
                            skipped = Some(format!("non-finite holdout error at origin {origin}"));
                            break;
                        }
                        total += mae;
                        folds += 1;
                    }
                    Err(e) => {
                        skipped = Some(format!("fit failed at origin {origin}: {e}"));
                        break;
                    }
                }
            }
        }
        if skipped.is_none() && folds == 0 && min != usize::MAX {
            skipped = Some("no measured bucket in any holdout window".to_owned());
        }
        let ok = skipped.is_none() && folds > 0;
        scores.push(CandidateScore {
            model: f.kind(),
            holdout_mae: ok.then(|| total / folds as f64),
            folds: if ok { folds } else { 0 },
            skipped,
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

/// The simplest candidate that fits the whole series; when none does, the
/// simplest candidate's error (the least demanding: what more data would
/// fix first).
fn fallback(
    series: &RegularSeries,
    forecasters: &[&dyn Forecaster],
    order: &[usize],
) -> Result<(FittedModel, Option<usize>)> {
    let mut first_err = None;
    for &i in order {
        match forecasters[i].fit(series) {
            Ok(fit) => return Ok((fit, None)),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    Err(first_err.unwrap_or(Error::InsufficientData {
        what: "forecast",
        needed: 3,
        have: series.len(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_candidate_is_scored_on_the_same_origins() {
        use std::time::Duration;
        use sysmanage_core::Timestamp;

        use crate::model::{Fourier, HoltWinters, Linear};
        let y: Vec<f64> = (0..72)
            .map(|i| 0.5 + 0.2 * (i as f64 * std::f64::consts::TAU / 24.0).sin() + 0.001 * i as f64)
            .collect();
        let s = RegularSeries::new(Timestamp::EPOCH, Duration::from_secs(3600), y).unwrap();
        let fs: Vec<Box<dyn Forecaster>> = vec![
            Box::new(Linear),
            Box::new(Fourier::default()),
            Box::new(HoltWinters::default()),
        ];
        let cfg = SelectionConfig {
            test_window: Duration::from_secs(12 * 3600),
            ..SelectionConfig::default()
        };
        let (_, sel) = select(&s, &fs, &cfg).unwrap();
        let folds: Vec<usize> = sel
            .candidates
            .iter()
            .filter(|c| c.holdout_mae.is_some())
            .map(|c| c.folds)
            .collect();
        assert!(folds.len() >= 2, "{sel:#?}");
        assert!(folds.iter().all(|f| *f == folds[0]), "{sel:#?}");
    }

    #[test]
    fn the_deployed_fourier_design_is_the_one_scored() {
        use std::time::Duration;
        use sysmanage_core::Timestamp;

        use crate::model::Fourier;
        // 15 days: the final fit alone would add weekly terms, but the
        // holdout prefixes (12–14 days) have none; the deployed model must
        // be the scored one.
        let y: Vec<f64> = (0..24 * 15)
            .map(|i| 0.5 + 0.2 * (i as f64 * std::f64::consts::TAU / 24.0).sin())
            .collect();
        let s = RegularSeries::new(Timestamp::EPOCH, Duration::from_secs(3600), y).unwrap();
        let fs: Vec<Box<dyn Forecaster>> = vec![Box::new(Fourier::default())];
        let (fit, sel) = select(&s, &fs, &SelectionConfig::default()).unwrap();
        assert_eq!(sel.candidates[0].folds, 3);
        let names: Vec<String> = fit.parameters().into_iter().map(|(n, _)| n).collect();
        assert!(names.iter().all(|n| !n.starts_with("weekly")), "{names:?}");
        assert!(names.iter().any(|n| n.starts_with("daily")), "{names:?}");
    }

    #[test]
    fn interpolated_buckets_are_not_scored() {
        use std::time::Duration;
        use sysmanage_core::Timestamp;

        use crate::model::Linear;
        // A line, except that the buckets flagged as interpolated hold junk.
        let mut y: Vec<f64> = (0..96).map(|i| 1.0 + 0.01 * i as f64).collect();
        let mut measured = vec![true; 96];
        for i in 90..96 {
            y[i] = 50.0;
            measured[i] = false;
        }
        let s = RegularSeries::new(Timestamp::EPOCH, Duration::from_secs(3600), y).unwrap();
        let fs: Vec<Box<dyn Forecaster>> = vec![Box::new(Linear)];
        let cfg = SelectionConfig {
            test_window: Duration::from_secs(6 * 3600),
            folds: 2,
            ..SelectionConfig::default()
        };
        let (_, all) = select(&s, &fs, &cfg).unwrap();
        assert!(all.holdout_mae.unwrap() > 10.0);
        let (_, sel) = select_measured(&s, &measured, &fs, &cfg).unwrap();
        // The last window is all junk: left out; the one before is exact.
        assert_eq!(sel.candidates[0].folds, 1);
        assert!(sel.holdout_mae.unwrap() < 1e-9, "{sel:?}");
        assert!(select_measured(&s, &measured[1..], &fs, &cfg).is_err());
    }

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
