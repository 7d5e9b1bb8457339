//! Captures what the crates record through the `metrics` facade, without a
//! global recorder: [`Capture::run`] installs a thread-local one for the
//! duration of a closure (a current-thread runtime's tasks run inside it).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

/// One recorded series.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The metric name.
    pub name: String,
    /// Its labels, sorted by name.
    pub labels: Vec<(String, String)>,
    /// A counter's count, a gauge's value or a histogram's number of
    /// observations.
    pub value: f64,
}

/// A series' identity: its name and sorted labels.
type SeriesKey = (String, Vec<(String, String)>);

/// A thread-local recorder and its snapshots.
pub struct Capture {
    recorder: DebuggingRecorder,
    snapshotter: Snapshotter,
    /// What earlier snapshots drained (a snapshot resets counters and
    /// histograms).
    seen: Mutex<BTreeMap<SeriesKey, f64>>,
}

impl std::fmt::Debug for Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capture").finish_non_exhaustive()
    }
}

impl Default for Capture {
    fn default() -> Self {
        Self::new()
    }
}

impl Capture {
    /// An empty capture.
    pub fn new() -> Self {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        Capture {
            recorder,
            snapshotter,
            seen: Mutex::new(BTreeMap::new()),
        }
    }

    /// Runs `f` with this capture as the thread's recorder, then takes in
    /// what it recorded (a snapshot drains the recorder, so it is taken
    /// once per run: counters and histograms add up over runs, gauges keep
    /// their last value).
    pub fn run<T>(&self, f: impl FnOnce() -> T) -> T {
        let out = metrics::with_local_recorder(&self.recorder, f);
        self.drain();
        out
    }

    fn drain(&self) {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (key, _, _, value) in self.snapshotter.snapshot().into_vec() {
            let (_, key) = key.into_parts();
            let mut labels: Vec<(String, String)> = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            labels.sort();
            let slot = seen.entry((key.name().to_owned(), labels)).or_insert(0.0);
            #[allow(clippy::cast_precision_loss)]
            match value {
                DebugValue::Counter(c) => *slot += c as f64,
                DebugValue::Gauge(g) => *slot = g.into_inner(),
                DebugValue::Histogram(h) => *slot += h.len() as f64,
            }
        }
    }

    /// Every series recorded by the runs so far.
    pub fn series(&self) -> Vec<Series> {
        let seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        seen.iter()
            .map(|((name, labels), value)| Series {
                name: name.clone(),
                labels: labels.clone(),
                value: *value,
            })
            .collect()
    }

    /// Fails unless every series recorded is one of `defs`, with exactly
    /// its documented label names.
    #[track_caller]
    pub fn assert_documented(&self, defs: &[sysmanage_core::telemetry::MetricDef]) {
        for s in self.series() {
            let def = defs
                .iter()
                .find(|d| d.name == s.name)
                .unwrap_or_else(|| panic!("undocumented metric {}", s.name));
            let mut labels: Vec<&str> = s.labels.iter().map(|(k, _)| k.as_str()).collect();
            let mut documented = def.labels.to_vec();
            labels.sort_unstable();
            documented.sort_unstable();
            assert_eq!(labels, documented, "{}", s.name);
        }
    }

    /// The names of every series recorded.
    pub fn names(&self) -> BTreeSet<String> {
        self.series().into_iter().map(|s| s.name).collect()
    }

    /// The value of the series `name` whose labels include `labels`, summed
    /// over the series that match; `None` when none does.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let matching: Vec<f64> = self
            .series()
            .into_iter()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|s| s.value)
            .collect();
        (!matching.is_empty()).then(|| matching.iter().sum())
    }
}
