//! Kubernetes `resource.Quantity`: `500m`, `1Gi`, `1.5k`, `2e3`, `100`.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A Kubernetes quantity, parsed from its canonical text (`"500m"`, `"1Gi"`,
/// `"1.5k"`, `"2e3"`) or from a plain number, as the API server accepts both.
///
/// The grammar is `resource.Quantity`'s: an optionally signed decimal number
/// followed by a binary suffix (`Ki Mi Gi Ti Pi Ei`), a decimal suffix
/// (`n u m "" k M G T P E`) or a decimal exponent (`e3`, `E-2`).
///
/// # Examples
/// ```
/// use sysmanage_scaling::manifest::Quantity;
/// assert_eq!(Quantity::parse("500m")?.value(), 0.5);
/// assert_eq!(Quantity::parse("1Gi")?.value(), 1024.0 * 1024.0 * 1024.0);
/// assert_eq!(Quantity::parse("1.5k")?.value(), 1500.0);
/// assert_eq!(Quantity::parse("2e3")?.value(), 2000.0);
/// assert_eq!(Quantity::parse("500m")?.milli_value(), 500);
/// assert!(Quantity::parse("1.5 Gi").is_err());
/// # Ok::<(), sysmanage_scaling::ScalingError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Quantity {
    text: String,
    value: f64,
}

impl Quantity {
    /// Parses the text form.
    ///
    /// # Errors
    /// [`ScalingError::InvalidSpec`](crate::ScalingError::InvalidSpec) with
    /// field `quantity` for anything `resource.ParseQuantity` rejects, or a
    /// value that does not fit an `f64`.
    pub fn parse(text: &str) -> crate::Result<Self> {
        parse(text)
            .map(|value| Self {
                text: text.to_owned(),
                value,
            })
            .map_err(|why| crate::ScalingError::invalid("quantity", format!("{text:?}: {why}")))
    }

    /// The value in base units (cores, bytes, the metric's unit).
    pub fn value(&self) -> f64 {
        self.value
    }

    /// The text it was parsed from.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the value is greater than zero (`Quantity.Sign() == 1`).
    pub fn is_positive(&self) -> bool {
        self.value > 0.0
    }

    /// `Quantity.MilliValue()`: the value in thousandths, rounded up as
    /// Kubernetes rounds when it scales a quantity, saturating at the ends of `i64`.
    pub fn milli_value(&self) -> i64 {
        // `as` saturates; the value is finite by construction
        (self.value * 1000.0).ceil() as i64
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Quantity;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a quantity such as \"500m\", \"1Gi\" or 100")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Quantity, E> {
                Quantity::parse(v).map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Quantity, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Quantity, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Quantity, E> {
                if !v.is_finite() {
                    return Err(E::custom(format!("quantity {v} is not a finite number")));
                }
                // shortest round-trip text, e.g. 1.5 or 1e300
                self.visit_str(&format!("{v:?}"))
            }
        }
        d.deserialize_any(V)
    }
}

const DECIMAL: [(&str, i32); 9] = [
    ("n", -9),
    ("u", -6),
    ("m", -3),
    ("k", 3),
    ("M", 6),
    ("G", 9),
    ("T", 12),
    ("P", 15),
    ("E", 18),
];
const BINARY: [(&str, i32); 6] = [
    ("Ki", 10),
    ("Mi", 20),
    ("Gi", 30),
    ("Ti", 40),
    ("Pi", 50),
    ("Ei", 60),
];

/// Splits a signed decimal number off the front: `(number text, rest)`.
fn split_number(s: &str) -> Option<(&str, &str)> {
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        i += 1;
    }
    let digits_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let mut digits = i - digits_start;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let frac = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        digits += i - frac;
    }
    (digits > 0).then(|| (&s[..i], &s[i..]))
}

fn parse(s: &str) -> Result<f64, String> {
    if s.is_empty() {
        return Err("quantities must not be empty".into());
    }
    let (num, suffix) = split_number(s).ok_or("quantities must start with a number")?;
    let base: f64 = num
        .parse()
        .map_err(|_| format!("{num:?} is not a decimal number"))?;
    let scale = if suffix.is_empty() {
        1.0
    } else if let Some((_, p)) = BINARY.iter().find(|(n, _)| *n == suffix) {
        2f64.powi(*p)
    } else if let Some((_, p)) = DECIMAL.iter().find(|(n, _)| *n == suffix) {
        10f64.powi(*p)
    } else if let Some(exp) = suffix.strip_prefix(['e', 'E']) {
        let ok = split_number(exp).is_some_and(|(n, rest)| rest.is_empty() && !n.contains('.'));
        if !ok {
            return Err(format!("{suffix:?} is not a decimal exponent"));
        }
        let e: i32 = exp
            .parse()
            .map_err(|_| format!("exponent {exp:?} is out of range"))?;
        10f64.powi(e)
    } else {
        return Err(format!(
            "unknown suffix {suffix:?} (expected Ki Mi Gi Ti Pi Ei, n u m k M G T P E, or an exponent)"
        ));
    };
    let v = base * scale;
    if !v.is_finite() {
        return Err("the value does not fit a 64-bit float".into());
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_quantity_grammar() {
        for (text, want) in [
            ("100", 100.0),
            ("500m", 0.5),
            ("1Gi", 1073741824.0),
            ("16Gi", 17179869184.0),
            ("1.5k", 1500.0),
            ("2e3", 2000.0),
            ("2E-3", 0.002),
            ("+4", 4.0),
            ("-1", -1.0),
            (".5", 0.5),
            ("5.", 5.0),
            ("250u", 0.00025),
            ("3n", 3e-9),
            ("1Ki", 1024.0),
            ("1M", 1e6),
        ] {
            let q = Quantity::parse(text).unwrap();
            assert!(
                (q.value() - want).abs() <= want.abs() * 1e-12,
                "{text}: {}",
                q.value()
            );
        }
        for bad in [
            "", "m", "1.5 Gi", "1x", "1e", "1e1.5", "1ki", "Gi1", "1e99999", "--1", ".",
        ] {
            assert!(Quantity::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Quantity::parse("100u").unwrap().milli_value(), 1);
        assert_eq!(Quantity::parse("1.5").unwrap().milli_value(), 1500);
    }
}
