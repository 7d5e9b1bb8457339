//! The Prometheus API's JSON responses, parsed into typed results (pure).

use std::collections::BTreeMap;

use serde_json::Value;

use super::error::{PrometheusError, short};
use crate::{Sample, Timestamp};

/// A series' labels (`__name__` included when Prometheus kept it).
pub type Labels = BTreeMap<String, String>;

/// One element of an instant vector.
#[derive(Clone, Debug, PartialEq)]
pub struct VectorSample {
    /// The series' labels.
    pub labels: Labels,
    /// Its value at the evaluation time (NaN and ±∞ as sent).
    pub sample: Sample,
}

/// One series of a range query's matrix.
#[derive(Clone, Debug, PartialEq)]
pub struct RangeSeries {
    /// The series' labels.
    pub labels: Labels,
    /// Its points in time order, one per step at most; steps where the
    /// series had no value (a gap, a series gone stale) have no point.
    pub samples: Vec<Sample>,
}

/// The `data` of a successful query.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum QueryResult {
    /// `resultType: vector` (instant queries).
    Vector(Vec<VectorSample>),
    /// `resultType: matrix` (range queries, and instant queries of a range selector).
    Matrix(Vec<RangeSeries>),
    /// `resultType: scalar`.
    Scalar(Sample),
    /// `resultType: string`: the time and the text.
    String(Timestamp, String),
}

impl QueryResult {
    /// The result type's name as Prometheus spells it.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Vector(_) => "vector",
            Self::Matrix(_) => "matrix",
            Self::Scalar(_) => "scalar",
            Self::String(..) => "string",
        }
    }

    /// The vector, or a scalar as a vector of one unlabelled sample.
    ///
    /// # Errors
    /// [`PrometheusError::UnexpectedType`] for a matrix or a string.
    pub fn vector(&self) -> Result<Vec<VectorSample>, PrometheusError> {
        match self {
            Self::Vector(v) => Ok(v.clone()),
            Self::Scalar(s) => Ok(vec![VectorSample {
                labels: Labels::new(),
                sample: *s,
            }]),
            other => Err(PrometheusError::UnexpectedType {
                query: String::new(),
                expected: "vector",
                found: other.type_name(),
            }),
        }
    }

    /// The matrix.
    ///
    /// # Errors
    /// [`PrometheusError::UnexpectedType`] for any other type.
    pub fn matrix(&self) -> Result<&[RangeSeries], PrometheusError> {
        match self {
            Self::Matrix(m) => Ok(m),
            other => Err(PrometheusError::UnexpectedType {
                query: String::new(),
                expected: "matrix",
                found: other.type_name(),
            }),
        }
    }
}

/// A successful response: the result and what the server warned about.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct QueryResponse {
    /// The query it answers.
    pub query: String,
    /// The result.
    pub result: QueryResult,
    /// `warnings` (e.g. a query that hit a partial-response limit).
    pub warnings: Vec<String>,
    /// `infos` (Prometheus 3: annotations such as "metric might not be a counter").
    pub infos: Vec<String>,
}

impl QueryResponse {
    /// [`QueryResult::vector`], with the error naming this response's query.
    ///
    /// # Errors
    /// [`PrometheusError::UnexpectedType`] for a matrix or a string.
    pub fn vector(&self) -> Result<Vec<VectorSample>, PrometheusError> {
        self.result.vector().map_err(|e| self.name(e))
    }

    /// [`QueryResult::matrix`], with the error naming this response's query.
    ///
    /// # Errors
    /// [`PrometheusError::UnexpectedType`] for any other type.
    pub fn matrix(&self) -> Result<&[RangeSeries], PrometheusError> {
        let query = &self.query;
        self.result.matrix().map_err(|e| match e {
            PrometheusError::UnexpectedType {
                expected, found, ..
            } => PrometheusError::UnexpectedType {
                query: short(query),
                expected,
                found,
            },
            e => e,
        })
    }

    fn name(&self, e: PrometheusError) -> PrometheusError {
        match e {
            PrometheusError::UnexpectedType {
                expected, found, ..
            } => PrometheusError::UnexpectedType {
                query: short(&self.query),
                expected,
                found,
            },
            e => e,
        }
    }
}

/// Longest error text from a server kept in a [`PrometheusError::Api`].
const MAX_MESSAGE: usize = 500;

fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(max).collect();
        out.push('…');
        out
    }
}

/// Parses a Prometheus value string: a decimal number, `NaN`, `+Inf` or
/// `-Inf` (Go's `strconv.ParseFloat` spellings, which Rust's parser
/// accepts too, case-insensitively).
fn parse_value(s: &str) -> Option<f64> {
    s.parse::<f64>().ok()
}

/// Formats a value as Prometheus does in its API (`NaN`, `+Inf`, `-Inf`,
/// else the shortest decimal that reads back to the same `f64`).
///
/// ```
/// use sysmanage_core::prometheus::format_value;
/// assert_eq!(format_value(f64::INFINITY), "+Inf");
/// assert_eq!(format_value(0.1), "0.1");
/// assert_eq!(format_value(f64::NAN), "NaN");
/// ```
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v == f64::INFINITY {
        "+Inf".to_owned()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        format!("{v}")
    }
}

/// Converts Prometheus' float seconds to a millisecond [`Timestamp`].
fn timestamp(v: &Value) -> Option<Timestamp> {
    let secs = v.as_f64()?;
    if !secs.is_finite() {
        return None;
    }
    let ms = (secs * 1000.0).round();
    // Prometheus' own range is ±292 million years; refuse what i64 ms cannot hold.
    if ms.abs() >= 9.0e15 {
        return None;
    }
    Some(Timestamp::from_millis(ms as i64))
}

fn point(v: &Value) -> Result<Sample, String> {
    let pair = v.as_array().filter(|a| a.len() == 2).ok_or_else(|| {
        format!(
            "a point must be [time, \"value\"], got {}",
            cut(&v.to_string(), 80)
        )
    })?;
    let at = timestamp(&pair[0]).ok_or_else(|| format!("bad timestamp {}", pair[0]))?;
    let text = pair[1].as_str().ok_or_else(|| {
        format!(
            "a value must be a string, got {}",
            cut(&pair[1].to_string(), 80)
        )
    })?;
    let value = parse_value(text).ok_or_else(|| format!("bad value {:?}", cut(text, 80)))?;
    Ok(Sample::new(at, value))
}

fn labels(v: Option<&Value>) -> Result<Labels, String> {
    let Some(v) = v else {
        return Ok(Labels::new());
    };
    let map = v.as_object().ok_or("\"metric\" must be an object")?;
    map.iter()
        .map(|(k, v)| {
            v.as_str()
                .map(|s| (k.clone(), s.to_owned()))
                .ok_or_else(|| format!("label {k:?} must be a string"))
        })
        .collect()
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|w| w.as_str().map_or_else(|| w.to_string(), str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn data(data: &Value) -> Result<QueryResult, String> {
    let kind = data
        .get("resultType")
        .and_then(Value::as_str)
        .ok_or("\"data.resultType\" is missing")?;
    let result = data.get("result").ok_or("\"data.result\" is missing")?;
    match kind {
        "vector" => {
            let items = result
                .as_array()
                .ok_or("a vector result must be an array")?;
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                if item.get("histogram").is_some() {
                    return Err("native histogram samples are not supported".to_owned());
                }
                out.push(VectorSample {
                    labels: labels(item.get("metric"))?,
                    sample: point(
                        item.get("value")
                            .ok_or("a vector sample has no \"value\"")?,
                    )?,
                });
            }
            Ok(QueryResult::Vector(out))
        }
        "matrix" => {
            let items = result
                .as_array()
                .ok_or("a matrix result must be an array")?;
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                if item.get("histograms").is_some() {
                    return Err("native histogram samples are not supported".to_owned());
                }
                let values = item
                    .get("values")
                    .and_then(Value::as_array)
                    .ok_or("a matrix series has no \"values\" array")?;
                let samples = values.iter().map(point).collect::<Result<Vec<_>, _>>()?;
                out.push(RangeSeries {
                    labels: labels(item.get("metric"))?,
                    samples,
                });
            }
            Ok(QueryResult::Matrix(out))
        }
        "scalar" => Ok(QueryResult::Scalar(point(result)?)),
        "string" => {
            let pair = result
                .as_array()
                .filter(|a| a.len() == 2)
                .ok_or("a string result must be [time, \"text\"]")?;
            let at = timestamp(&pair[0]).ok_or("bad timestamp")?;
            let text = pair[1]
                .as_str()
                .ok_or("a string result's text must be a string")?;
            Ok(QueryResult::String(at, text.to_owned()))
        }
        other => Err(format!("unknown resultType {:?}", cut(other, 40))),
    }
}

/// Parses the body of an `/api/v1/query` or `/api/v1/query_range` answer
/// with HTTP status `status` for `query`.
///
/// # Errors
/// [`PrometheusError::Unauthorized`] for HTTP 401/403,
/// [`PrometheusError::Api`] for `"status": "error"` or another non-2xx
/// status, [`PrometheusError::Decode`] for anything that is not a
/// Prometheus response of a known result type.
///
/// # Examples
/// ```
/// use sysmanage_core::prometheus::parse_response;
/// let body = br#"{"status":"success","data":{"resultType":"vector","result":[
///     {"metric":{"pod":"a"},"value":[1700000000.5,"+Inf"]}]},"warnings":["partial"]}"#;
/// let r = parse_response("up", 200, body)?;
/// let v = r.vector()?;
/// assert_eq!(v[0].labels["pod"], "a");
/// assert_eq!(v[0].sample.value, f64::INFINITY);
/// assert_eq!(v[0].sample.at.as_millis(), 1_700_000_000_500);
/// assert_eq!(r.warnings, ["partial"]);
/// # Ok::<(), sysmanage_core::prometheus::PrometheusError>(())
/// ```
pub fn parse_response(
    query: &str,
    status: u16,
    body: &[u8],
) -> Result<QueryResponse, PrometheusError> {
    if status == 401 || status == 403 {
        return Err(PrometheusError::Unauthorized {
            query: short(query),
            status,
        });
    }
    let decode = |reason: String| PrometheusError::Decode {
        query: short(query),
        reason,
    };
    let json: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) if !(200..300).contains(&status) => {
            return Err(PrometheusError::Api {
                query: short(query),
                status,
                error_type: "http".to_owned(),
                message: cut(String::from_utf8_lossy(body).trim(), MAX_MESSAGE),
            });
        }
        Err(e) => return Err(decode(format!("not JSON: {e}"))),
    };
    let ok_http = (200..300).contains(&status);
    match (json.get("status").and_then(Value::as_str), ok_http) {
        (Some("success"), true) => {}
        (Some("error"), _) | (_, false) => {
            return Err(PrometheusError::Api {
                query: short(query),
                status,
                error_type: json
                    .get("errorType")
                    .and_then(Value::as_str)
                    .unwrap_or("http")
                    .to_owned(),
                message: cut(
                    json.get("error").and_then(Value::as_str).unwrap_or(""),
                    MAX_MESSAGE,
                ),
            });
        }
        _ => {
            return Err(decode(
                "\"status\" is neither \"success\" nor \"error\"".to_owned(),
            ));
        }
    }
    let result = data(
        json.get("data")
            .ok_or_else(|| decode("\"data\" is missing".to_owned()))?,
    )
    .map_err(decode)?;
    Ok(QueryResponse {
        query: query.to_owned(),
        result,
        warnings: strings(json.get("warnings")),
        infos: strings(json.get("infos")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(status: u16, body: &str) -> Result<QueryResponse, PrometheusError> {
        parse_response("q", status, body.as_bytes())
    }

    #[test]
    fn special_values_are_kept() {
        let r = parse(
            200,
            r#"{"status":"success","data":{"resultType":"matrix","result":[
              {"metric":{"__name__":"x"},"values":[[1,"NaN"],[2,"+Inf"],[3,"-Inf"],[4,"1e-3"],[5.25,"-0"]]}]}}"#,
        )
        .unwrap();
        let m = r.matrix().unwrap();
        let v: Vec<f64> = m[0].samples.iter().map(|s| s.value).collect();
        assert!(v[0].is_nan());
        assert_eq!(&v[1..4], &[f64::INFINITY, f64::NEG_INFINITY, 0.001]);
        assert_eq!(m[0].samples[4].at.as_millis(), 5250);
        assert_eq!(m[0].labels["__name__"], "x");
    }

    #[test]
    fn scalars_read_as_vectors_and_types_are_checked() {
        let r = parse(
            200,
            r#"{"status":"success","data":{"resultType":"scalar","result":[10,"2.5"]}}"#,
        )
        .unwrap();
        assert_eq!(r.vector().unwrap()[0].sample.value, 2.5);
        let e = r.matrix().unwrap_err();
        assert!(
            e.to_string()
                .contains("returned a scalar, expected a matrix"),
            "{e}"
        );
        assert!(e.to_string().contains("\"q\""), "{e}");
        let s = parse(
            200,
            r#"{"status":"success","data":{"resultType":"string","result":[10,"hi"]}}"#,
        )
        .unwrap();
        assert_eq!(
            s.result,
            QueryResult::String(Timestamp::from_secs(10), "hi".to_owned())
        );
    }

    #[test]
    fn errors_are_typed_and_name_the_query() {
        let e = parse(
            400,
            r#"{"status":"error","errorType":"bad_data","error":"parse error at char 3"}"#,
        )
        .unwrap_err();
        match &e {
            PrometheusError::Api {
                status,
                error_type,
                message,
                query,
            } => {
                assert_eq!(
                    (*status, error_type.as_str(), query.as_str()),
                    (400, "bad_data", "q")
                );
                assert!(message.contains("parse error"));
            }
            other => panic!("{other:?}"),
        }
        assert!(!e.is_transient());
        let e = parse(503, "upstream down").unwrap_err();
        assert!(matches!(e, PrometheusError::Api { status: 503, .. }) && e.is_transient());
        assert!(matches!(
            parse(401, "").unwrap_err(),
            PrometheusError::Unauthorized { status: 401, .. }
        ));
        for bad in [
            "",
            "[]",
            r#"{"status":"success"}"#,
            r#"{"status":"success","data":{"resultType":"vector","result":[{"value":[1,2]}]}}"#,
            r#"{"status":"success","data":{"resultType":"vector","result":[{"value":[1,"x"]}]}}"#,
            r#"{"status":"success","data":{"resultType":"vector","result":[{"value":["a","1"]}]}}"#,
            r#"{"status":"success","data":{"resultType":"vector","result":[{"value":[1e300,"1"]}]}}"#,
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":1},"values":[]}]}}"#,
            r#"{"status":"success","data":{"resultType":"vector","result":[{"histogram":[1,{}]}]}}"#,
            r#"{"status":"success","data":{"resultType":"streams","result":[]}}"#,
            r#"{"status":"maybe","data":{}}"#,
        ] {
            let e = parse(200, bad).unwrap_err();
            assert!(matches!(e, PrometheusError::Decode { .. }), "{bad}: {e:?}");
            assert_eq!(e.query(), Some("q"));
        }
    }

    #[test]
    fn warnings_and_infos_are_kept() {
        let r = parse(
            200,
            r#"{"status":"success","data":{"resultType":"vector","result":[]},"warnings":["w1"],"infos":["i1"]}"#,
        )
        .unwrap();
        assert_eq!(
            (r.warnings, r.infos),
            (vec!["w1".to_owned()], vec!["i1".to_owned()])
        );
    }

    #[test]
    fn long_queries_are_shortened_in_errors() {
        let q = "x".repeat(1000);
        let e = parse_response(&q, 200, b"nope").unwrap_err();
        assert!(e.to_string().len() < 400, "{e}");
        assert!(e.query().unwrap().ends_with('…'));
    }
}
