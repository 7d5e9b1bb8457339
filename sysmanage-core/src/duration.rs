//! Durations as people write them (`"250ms"`, `"5m"`, `"1h30m"`), as
//! configuration files carry them, and the ranges every setting of the
//! sysmanage crates is checked against.
//!
//! Every `Duration` a sysmanage config accepts is validated when the config
//! is built against a documented range ([`check_duration`]), so that no
//! accepted value can overflow later (`Instant + Duration::MAX` panics).
//!
//! # Examples
//! ```
//! use std::time::Duration;
//! use sysmanage_core::duration::{format_duration, parse_duration, check_duration, DAY};
//! assert_eq!(parse_duration("1h30m")?, Duration::from_secs(5400));
//! assert_eq!(parse_duration("250ms")?, Duration::from_millis(250));
//! assert_eq!(parse_duration("1.5s")?, Duration::from_millis(1500));
//! assert_eq!(format_duration(Duration::from_millis(90_250)), "1m30s250ms");
//! assert!(check_duration("timeout", Duration::MAX, Duration::ZERO, DAY).is_err());
//! # Ok::<(), sysmanage_core::Error>(())
//! ```
//!
//! In a serde config, `#[serde(with = "sysmanage_core::duration::serde_human")]`
//! reads and writes these strings (a bare number is read as seconds), and
//! `serde_human_opt` does the same for an `Option<Duration>`.

use std::time::Duration;

use crate::error::{Error, Result};

/// One day: the upper bound of most timeouts, intervals and windows.
pub const DAY: Duration = Duration::from_secs(24 * 3600);

/// 365 days: the upper bound of long-lived settings (retention, session
/// lifetimes, TTLs).
pub const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

/// One millisecond: the resolution of Redis TTLs and the smallest timeout
/// that means anything on a network.
pub const MILLISECOND: Duration = Duration::from_millis(1);

const UNITS: [(&str, u128); 8] = [
    ("d", 86_400_000_000_000),
    ("h", 3_600_000_000_000),
    ("m", 60_000_000_000),
    ("s", 1_000_000_000),
    ("ms", 1_000_000),
    ("us", 1_000),
    ("µs", 1_000),
    ("ns", 1),
];

/// Formats `d` as the sum of its largest whole units, e.g. `"1h30m"`,
/// `"250ms"`, `"0s"`. The output parses back to `d` exactly.
pub fn format_duration(d: Duration) -> String {
    let mut left = d.as_nanos();
    if left == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (unit, nanos) in UNITS {
        if unit == "µs" {
            continue;
        }
        let n = left / nanos;
        if n > 0 {
            out.push_str(&n.to_string());
            out.push_str(unit);
            left -= n * nanos;
        }
    }
    out
}

/// Parses a duration written as one or more `<number><unit>` parts (units
/// `d`, `h`, `m`, `s`, `ms`, `us`/`µs`, `ns`; numbers may have a fraction,
/// e.g. `"1.5s"`), or a bare number of seconds. Surrounding whitespace is
/// ignored.
///
/// # Errors
/// [`Error::InvalidConfig`] (field `"duration"`) naming what is wrong:
/// an empty string, a missing or unknown unit, a negative or non-finite
/// number, or a value beyond [`Duration::MAX`].
pub fn parse_duration(text: &str) -> Result<Duration> {
    let bad = |why: &str| {
        Error::invalid(
            "duration",
            format!(
                "{why} in {:?} (expected e.g. \"250ms\", \"5m\", \"1h30m\" or seconds)",
                text.chars().take(40).collect::<String>()
            ),
        )
    };
    let s = text.trim();
    if s.is_empty() {
        return Err(bad("nothing to parse"));
    }
    if let Ok(secs) = s.parse::<f64>() {
        if !secs.is_finite() || secs < 0.0 {
            return Err(bad("not a finite, non-negative number"));
        }
        return Duration::try_from_secs_f64(secs).map_err(|_| bad("out of range"));
    }
    let mut total: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| bad("a number without a unit"))?;
        if digits == 0 {
            return Err(bad("expected a number"));
        }
        let (number, after) = rest.split_at(digits);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let nanos = UNITS
            .iter()
            .find(|(u, _)| *u == unit.trim())
            .map(|(_, n)| *n)
            .ok_or_else(|| bad("unknown unit"))?;
        let part = match number.split_once('.') {
            None => number
                .parse::<u128>()
                .ok()
                .and_then(|n| n.checked_mul(nanos)),
            Some((whole, frac)) => {
                if frac.contains('.') || (whole.is_empty() && frac.is_empty()) {
                    return Err(bad("a malformed number"));
                }
                let whole = if whole.is_empty() {
                    0
                } else {
                    whole
                        .parse::<u128>()
                        .map_err(|_| bad("a malformed number"))?
                };
                let frac_digits = frac.len().min(18);
                let frac_value: u128 = if frac_digits == 0 {
                    0
                } else {
                    frac[..frac_digits]
                        .parse()
                        .map_err(|_| bad("a malformed number"))?
                };
                let scale = 10u128.pow(u32::try_from(frac_digits).unwrap_or(18));
                whole
                    .checked_mul(nanos)
                    .and_then(|w| w.checked_add(frac_value.checked_mul(nanos)? / scale))
            }
        }
        .ok_or_else(|| bad("out of range"))?;
        total = total.checked_add(part).ok_or_else(|| bad("out of range"))?;
        rest = next.trim_start();
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| bad("out of range"))?;
    let nanos = u32::try_from(total % 1_000_000_000).unwrap_or(0);
    Ok(Duration::new(secs, nanos))
}

/// `now + d`, or the latest representable moment no further than a
/// century ahead when `d` is too large for the platform's `Instant`:
/// a deadline that never panics.
///
/// # Examples
/// ```
/// use std::time::{Duration, Instant};
/// use sysmanage_core::duration::deadline;
/// let now = Instant::now();
/// assert!(deadline(now, Duration::MAX) > now + Duration::from_secs(3600));
/// assert_eq!(deadline(now, Duration::from_secs(1)), now + Duration::from_secs(1));
/// ```
pub fn deadline(now: std::time::Instant, d: Duration) -> std::time::Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    now.checked_add(d)
        .or_else(|| now.checked_add(d.min(CENTURY)))
        .or_else(|| now.checked_add(d.min(YEAR)))
        .unwrap_or(now)
}

/// Checks that setting `field` lies in `[min, max]`.
///
/// # Errors
/// [`Error::InvalidConfig`] naming the field and the range, e.g.
/// `invalid redis.refresh_interval: must be between 1ms and 1d, got 584942417355y…`.
pub fn check_duration(
    field: &'static str,
    value: Duration,
    min: Duration,
    max: Duration,
) -> Result<Duration> {
    if value < min || value > max {
        return Err(Error::invalid(
            field,
            format!(
                "must be between {} and {}, got {}",
                format_duration(min),
                format_duration(max),
                format_duration(value)
            ),
        ));
    }
    Ok(value)
}

/// Checks that count `field` lies in `[min, max]`.
///
/// # Errors
/// [`Error::InvalidConfig`] naming the field and the range.
pub fn check_count<T>(field: &'static str, value: T, min: T, max: T) -> Result<T>
where
    T: PartialOrd + std::fmt::Display + Copy,
{
    if value < min || value > max {
        return Err(Error::invalid(
            field,
            format!("must be between {min} and {max}, got {value}"),
        ));
    }
    Ok(value)
}

/// Serde support for `Duration` fields as human-readable strings (see the
/// [module documentation](self)).
pub mod serde_human {
    use std::time::Duration;

    /// Writes the duration as [`format_duration`](super::format_duration) does.
    ///
    /// # Errors
    /// Those of the serializer.
    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_duration(*d))
    }

    /// Reads a string as [`parse_duration`](super::parse_duration) does, or
    /// a number of seconds.
    ///
    /// # Errors
    /// A custom error with the parse failure.
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_any(Visitor)
    }

    struct Visitor;

    impl serde::de::Visitor<'_> for Visitor {
        type Value = Duration;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a duration such as \"250ms\", \"5m\" or \"1h30m\", or a number of seconds")
        }

        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Duration, E> {
            super::parse_duration(v).map_err(E::custom)
        }

        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Duration, E> {
            Ok(Duration::from_secs(v))
        }

        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Duration, E> {
            u64::try_from(v)
                .map(Duration::from_secs)
                .map_err(|_| E::custom(format!("a duration cannot be negative, got {v}")))
        }

        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Duration, E> {
            if v.is_finite() && v >= 0.0 {
                Duration::try_from_secs_f64(v).map_err(E::custom)
            } else {
                Err(E::custom(format!(
                    "a duration must be a finite, non-negative number of seconds, got {v}"
                )))
            }
        }
    }
}

/// [`serde_human`] for `Option<Duration>` (`null` or absent is `None`; use
/// with `#[serde(default)]`).
pub mod serde_human_opt {
    use std::time::Duration;

    /// Writes `None` as null.
    ///
    /// # Errors
    /// Those of the serializer.
    pub fn serialize<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::serde_human::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    /// Reads null as `None`, anything else as [`serde_human`](super::serde_human).
    ///
    /// # Errors
    /// A custom error with the parse failure.
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        #[derive(serde::Deserialize)]
        struct Wrap(#[serde(with = "super::serde_human")] Duration);
        Ok(<Option<Wrap> as serde::Deserialize>::deserialize(d)?.map(|w| w.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_usual_forms() {
        for (text, want) in [
            ("250ms", Duration::from_millis(250)),
            ("5m", Duration::from_secs(300)),
            ("1h30m", Duration::from_secs(5400)),
            ("1h 30m", Duration::from_secs(5400)),
            ("2d", Duration::from_secs(172_800)),
            ("1.5s", Duration::from_millis(1500)),
            (".5s", Duration::from_millis(500)),
            ("10us", Duration::from_micros(10)),
            ("10µs", Duration::from_micros(10)),
            ("7ns", Duration::from_nanos(7)),
            ("30", Duration::from_secs(30)),
            ("0.25", Duration::from_millis(250)),
            (" 1s ", Duration::from_secs(1)),
            ("0s", Duration::ZERO),
        ] {
            assert_eq!(parse_duration(text).unwrap(), want, "{text}");
        }
    }

    #[test]
    fn rejects_garbage_with_a_message() {
        for bad in [
            "",
            " ",
            "ms",
            "5x",
            "-1s",
            "1..5s",
            "1s2",
            "NaN",
            "inf",
            "-3",
            "1e400",
            "99999999999999999999999d",
        ] {
            let err = parse_duration(bad).unwrap_err().to_string();
            assert!(err.starts_with("invalid duration:"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn ranges_name_the_field_and_the_bounds() {
        let err = check_duration("redis.refresh_interval", Duration::MAX, MILLISECOND, DAY)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("invalid redis.refresh_interval: must be between 1ms and 1d, got"),
            "{err}"
        );
        assert!(check_duration("t", DAY, MILLISECOND, DAY).is_ok());
        assert!(check_count("n", 0u32, 1, 10).is_err());
        assert_eq!(check_count("n", 5u32, 1, 10).unwrap(), 5);
    }

    #[test]
    fn serde_reads_strings_and_seconds() {
        #[derive(serde::Deserialize, serde::Serialize, PartialEq, Debug)]
        struct C {
            #[serde(with = "serde_human")]
            t: Duration,
            #[serde(with = "serde_human_opt", default)]
            o: Option<Duration>,
        }
        let c: C = serde_json::from_str(r#"{"t": "1m30s", "o": 2}"#).unwrap();
        assert_eq!(
            c,
            C {
                t: Duration::from_secs(90),
                o: Some(Duration::from_secs(2))
            }
        );
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"t":"1m30s","o":"2s"}"#
        );
        let c: C = serde_json::from_str(r#"{"t": 0.5}"#).unwrap();
        assert_eq!(c.o, None);
        assert_eq!(c.t, Duration::from_millis(500));
        assert!(serde_json::from_str::<C>(r#"{"t": -1}"#).is_err());
        assert!(serde_json::from_str::<C>(r#"{"t": "soon"}"#).is_err());
    }

    proptest! {
        #[test]
        fn formatting_round_trips(secs in any::<u64>(), nanos in 0u32..1_000_000_000) {
            let d = Duration::new(secs, nanos);
            prop_assert_eq!(parse_duration(&format_duration(d)).unwrap(), d);
        }

        #[test]
        fn parsing_never_panics(text in ".{0,40}") {
            let _ = parse_duration(&text);
        }
    }
}
