//! `at` values of a call log: Unix seconds, or RFC 3339 date-times, from the Unix epoch to the
//! end of the year 2500.
//!
//! The engine's timestamps are nanoseconds in a `u64`, which end in the year 2554; a time past
//! that saturated, and a saturated clock stops fixed windows from counting (issue 10). A replay
//! therefore refuses any time outside [`EARLIEST`, `END`) instead of clamping it.

use mcp_policy::Timestamp;
use serde_json::{Number, Value};

/// Unix seconds of 2501-01-01T00:00:00Z: every accepted time is before it.
const END_SECONDS: u64 = 16_756_761_600;

const NANOS_PER_SECOND: u64 = 1_000_000_000;

/// What a valid `at` is, for error messages.
const RANGE: &str = "from 1970-01-01T00:00:00Z (Unix seconds 0) to the end of the year 2500 \
                     (Unix seconds below 16756761600)";

/// The `at` of a call: Unix seconds (a number) or an RFC 3339 string, inside the replayable range.
pub(crate) fn parse_at(v: &Value) -> Result<Timestamp, String> {
    match v {
        Value::Number(n) => {
            from_seconds(n).ok_or_else(|| format!("`at` must be Unix seconds {RANGE}, found `{n}`"))
        }
        Value::String(s) => parse_rfc3339(s),
        other => Err(format!(
            "`at` must be Unix seconds or an RFC 3339 date-time, found {}",
            type_name(other)
        )),
    }
}

/// Unix seconds, to the nanosecond (digits beyond the ninth decimal are dropped), when in range.
fn from_seconds(n: &Number) -> Option<Timestamp> {
    if let Some(s) = n.as_u64() {
        return (s < END_SECONDS).then(|| Timestamp::from_unix_nanos(s * NANOS_PER_SECOND));
    }
    let f = n.as_f64()?;
    if !(f.is_finite() && (0.0..END_SECONDS as f64).contains(&f)) {
        return None;
    }
    // The shortest decimal that reads back as `f`, read exactly: `1767225600.1` is 1767225600 s
    // and 100,000,000 ns, not a float product's rounding (1767225600.0999999046 s).
    let mut buf = ryu::Buffer::new();
    let nanos = decimal_nanos(buf.format_finite(f))?;
    u64::try_from(nanos)
        .ok()
        .filter(|n| *n < END_SECONDS * NANOS_PER_SECOND)
        .map(Timestamp::from_unix_nanos)
}

/// Nanoseconds in a non-negative decimal (`1767225600.1`, `1e9`, `1.5e-7`), digits beyond the
/// ninth decimal dropped; `None` when it is not such a decimal or too large.
fn decimal_nanos(text: &str) -> Option<u128> {
    let (mantissa, exponent) = match text.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().ok()?),
        None => (text, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if whole.is_empty() || !whole.bytes().chain(fraction.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut digits: u128 = 0;
    for b in whole.bytes().chain(fraction.bytes()) {
        digits = digits.checked_mul(10)?.checked_add(u128::from(b - b'0'))?;
    }
    let scale = exponent.checked_add(9)?.checked_sub(i32::try_from(fraction.len()).ok()?)?;
    if scale >= 0 {
        digits.checked_mul(10u128.checked_pow(u32::try_from(scale).ok()?)?)
    } else {
        Some(10u128.checked_pow(scale.unsigned_abs()).map_or(0, |p| digits / p))
    }
}

/// Parses an RFC 3339 date-time (`2026-01-01T00:00:00Z`, `2026-01-01T01:30:00.5+01:30`; `t` or a
/// space may separate date and time). A leap second (`:60`) reads as the second after `:59`.
pub(crate) fn parse_rfc3339(s: &str) -> Result<Timestamp, String> {
    let t = chrono::DateTime::parse_from_rfc3339(s).map_err(|e| {
        format!("`at` must be Unix seconds or an RFC 3339 date-time, found `{s}` ({e})")
    })?;
    let nanos = i128::from(t.timestamp()) * i128::from(NANOS_PER_SECOND)
        + i128::from(t.timestamp_subsec_nanos());
    match u64::try_from(nanos) {
        Ok(n) if n < END_SECONDS * NANOS_PER_SECOND => Ok(Timestamp::from_unix_nanos(n)),
        _ => Err(format!("`at` must be a time {RANGE}, found `{s}`")),
    }
}

/// The JSON type of a value, with its article, for error messages.
pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nanos(v: Value) -> Result<u64, String> {
        parse_at(&v).map(Timestamp::as_unix_nanos)
    }

    #[test]
    fn parses_rfc3339() {
        let s = |t: &str| nanos(json!(t)).map(|n| n as f64 / 1e9);
        assert_eq!(s("1970-01-01T00:00:00Z"), Ok(0.0));
        assert_eq!(s("2026-01-01T00:00:00Z"), Ok(1_767_225_600.0));
        assert_eq!(s("2026-01-01T00:00:00.5Z"), Ok(1_767_225_600.5));
        assert_eq!(s("2026-01-01t00:00:00.5z"), Ok(1_767_225_600.5));
        assert_eq!(s("2026-01-01 00:00:00Z"), Ok(1_767_225_600.0));
        assert_eq!(s("2026-01-01T01:30:00+01:30"), Ok(1_767_225_600.0));
        assert_eq!(s("2025-12-31T23:00:00-01:00"), Ok(1_767_225_600.0));
        assert_eq!(s("2024-02-29T00:00:00Z"), Ok(1_709_164_800.0));
        assert_eq!(s("2016-12-31T23:59:60Z"), Ok(1_483_228_800.0));
        for bad in [
            "2026-01-01",
            "2026-13-01T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2026-01-01T00:00:00",
            "2026-01-01T00:00:00.Z",
            "x",
            "2026-01-01T00:00:00+0100",
        ] {
            let e = s(bad).unwrap_err();
            assert!(e.contains(&format!("found `{bad}`")), "{e}");
        }
    }

    #[test]
    fn unix_seconds_are_read_to_the_nanosecond() {
        assert_eq!(nanos(json!(0)), Ok(0));
        assert_eq!(nanos(json!(1_767_225_600u64)), Ok(1_767_225_600_000_000_000));
        assert_eq!(nanos(json!(1_767_225_600.1)), Ok(1_767_225_600_100_000_000));
        assert_eq!(nanos(json!(0.000_000_001)), Ok(1));
        assert_eq!(nanos(json!(16_756_761_599u64)), Ok(16_756_761_599_000_000_000));
    }

    #[test]
    fn decimals_to_nanoseconds() {
        assert_eq!(decimal_nanos("1767225600.1"), Some(1_767_225_600_100_000_000));
        assert_eq!(decimal_nanos("1e9"), Some(1_000_000_000_000_000_000));
        assert_eq!(decimal_nanos("1.5e-7"), Some(150));
        assert_eq!(decimal_nanos("1e-10"), Some(0));
        assert_eq!(decimal_nanos("1e-400"), Some(0));
        assert_eq!(decimal_nanos("0.0"), Some(0));
        assert_eq!(decimal_nanos("1e300"), None);
        assert_eq!(decimal_nanos("-1.0"), None);
        assert_eq!(decimal_nanos(".5"), None);
    }

    #[test]
    fn times_outside_the_range_are_refused_not_clamped() {
        for bad in [
            json!(1e300),
            json!(-1),
            json!(-0.5),
            json!(16_756_761_600u64),
            json!(16_756_761_600.5),
            json!(u64::MAX),
            json!(1.8446744073709552e19),
        ] {
            let e = nanos(bad.clone()).unwrap_err();
            assert!(e.contains("the end of the year 2500"), "{bad}: {e}");
            assert!(e.contains(&format!("found `{bad}`")), "{bad}: {e}");
        }
        for bad in ["2501-01-01T00:00:00Z", "2600-01-01T00:00:00Z", "1969-12-31T23:59:59Z"] {
            let e = nanos(json!(bad)).unwrap_err();
            assert!(e.contains("the end of the year 2500"), "{bad}: {e}");
        }
        assert_eq!(
            nanos(json!("2500-12-31T23:59:59.999999999Z")),
            Ok(END_SECONDS * NANOS_PER_SECOND - 1)
        );
        let e = nanos(json!(true)).unwrap_err();
        assert!(e.contains("found a boolean"), "{e}");
    }

    #[test]
    fn the_end_is_2501_01_01() {
        let t = chrono::DateTime::parse_from_rfc3339("2501-01-01T00:00:00Z").unwrap();
        assert_eq!(t.timestamp(), END_SECONDS as i64);
    }
}
