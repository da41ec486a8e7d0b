//! Canonical JSON (RFC 8785, the JSON Canonicalization Scheme) and digests over it.
//!
//! Object keys are sorted by their UTF-16 code units, strings use the minimal escapes, and
//! numbers are written as ECMAScript writes them, so `1.0` and `1` are one value. One deliberate
//! difference: an integer that a 64-bit float cannot hold exactly (above 2^53) keeps all of its
//! digits instead of being rounded, so that two different large integers never share a digest.

use std::fmt::Write as _;

use serde_json::{Number, Value};
use sha2::{Digest, Sha256};

/// Appends the canonical form of `v` to `out`.
pub(crate) fn write(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_number(n, out),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(k, out);
                out.push(':');
                write(v, out);
            }
            out.push('}');
        }
    }
}

/// The canonical form of `v` as a string.
pub(crate) fn to_string(v: &Value) -> String {
    let mut out = String::new();
    write(v, &mut out);
    out
}

/// The SHA-256 of the canonical form of `v`, in lowercase hex.
pub(crate) fn digest_hex(v: &Value) -> String {
    hex(&Sha256::digest(to_string(v).as_bytes()))
}

/// Lowercase hex of bytes.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

pub(crate) fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn write_number(n: &Number, out: &mut String) {
    if let Some(i) = n.as_i64() {
        let _ = write!(out, "{i}");
    } else if let Some(u) = n.as_u64() {
        let _ = write!(out, "{u}");
    } else if let Some(f) = n.as_f64() {
        out.push_str(&es_number(f));
    }
}

/// A finite float as ECMAScript's `Number.prototype.toString` writes it.
///
/// The digits are the fewest that read back as `f`; when several such digit strings exist,
/// the one closest to `f`, ties to the even one (ECMA-262, Number::toString): so
/// `1424953923781206.25` is written `1424953923781206.2`.
pub(crate) fn es_number(f: f64) -> String {
    if f == 0.0 || !f.is_finite() {
        return "0".to_owned();
    }
    let (digits, exp) = shortest_digits(f.abs());
    let k = i64::try_from(digits.len()).unwrap_or(1);
    let n = exp + 1;
    let mut s = String::new();
    if f < 0.0 {
        s.push('-');
    }
    if k <= n && n <= 21 {
        s.push_str(&digits);
        s.extend(std::iter::repeat_n('0', usize::try_from(n - k).unwrap_or(0)));
    } else if 0 < n && n <= 21 {
        let (a, b) = digits.split_at(usize::try_from(n).unwrap_or(0).min(digits.len()));
        s.push_str(a);
        s.push('.');
        s.push_str(b);
    } else if -6 < n && n <= 0 {
        s.push_str("0.");
        s.extend(std::iter::repeat_n('0', usize::try_from(-n).unwrap_or(0)));
        s.push_str(&digits);
    } else {
        let (first, rest) = digits.split_at(1.min(digits.len()));
        s.push_str(first);
        if !rest.is_empty() {
            s.push('.');
            s.push_str(rest);
        }
        let e = n - 1;
        let _ = write!(s, "e{}{}", if e >= 0 { "+" } else { "-" }, e.abs());
    }
    s
}

/// The shortest round-trip significant digits of a positive finite `f` and the decimal exponent
/// of the first digit, choosing among equally short candidates the closest to `f` (ties to
/// even).
fn shortest_digits(f: f64) -> (String, i64) {
    // Rust's shortest formatting gives the fewest digits that round-trip, but between two
    // equally short candidates it does not always pick the closer one, nor the even one on a
    // tie. Rounding the exact binary value to that many digits (which Rust does exactly,
    // ties to even) gives the closest candidate; it is kept when it reads back as `f` (it may
    // not, next to a power of two, where the interval of `f` is narrower below than above).
    let (short, short_exp) = split_exp(&format!("{f:e}"));
    let precision = short.len().saturating_sub(1);
    let rounded = format!("{f:.precision$e}");
    let reads_back = rounded.parse::<f64>().is_ok_and(|g| g == f);
    let (close, close_exp) = split_exp(&rounded);
    if reads_back && close.len() == short.len() { (close, close_exp) } else { (short, short_exp) }
}

/// `d.ddde±x` → (`dddd`, x): the digits without the point, and the exponent.
fn split_exp(sci: &str) -> (String, i64) {
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci, "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    // `{:.Ne}` may pad with trailing zeros; the shortest digits never end in zero.
    let digits = match digits.trim_end_matches('0') {
        "" => "0".to_owned(),
        d => d.to_owned(),
    };
    (digits, exp.parse().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_as_ecmascript() {
        for (f, s) in [
            (1.0, "1"),
            (-1.5, "-1.5"),
            (1e21, "1e+21"),
            (1e20, "100000000000000000000"),
            (123456789.125, "123456789.125"),
            (0.000001, "0.000001"),
            (1e-7, "1e-7"),
            (-0.0, "0"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (0.1, "0.1"),
            (333_333_333.333_333_3, "333333333.3333333"),
        ] {
            assert_eq!(es_number(f), s, "{f}");
        }
    }

    #[test]
    fn canonical_form() {
        let v = json!({"b": [1.0, "é\n\u{1}"], "a": {"z": null, "y": true}, "\u{e000}": 1, "\u{1f600}": 2});
        // U+1F600 sorts before U+E000 by UTF-16 code units (a surrogate pair starts with 0xD83D).
        assert_eq!(
            to_string(&v),
            "{\"a\":{\"y\":true,\"z\":null},\"b\":[1,\"é\\n\\u0001\"],\"\u{1f600}\":2,\"\u{e000}\":1}"
        );
        assert_eq!(to_string(&json!(9_007_199_254_740_993u64)), "9007199254740993");
        assert_eq!(digest_hex(&json!({"a": 1})), digest_hex(&json!({"a": 1.0})));
    }
}

/// The reference implementation's published test vectors (tests/data/jcs, see its README).
#[cfg(test)]
mod vectors {
    use super::*;

    const NUMBERS: &[u8] = include_bytes!("../../tests/data/jcs/es6testfile10k.txt");

    macro_rules! docs {
        ($($name:literal),*) => {
            [$((
                $name,
                include_str!(concat!("../../tests/data/jcs/input/", $name, ".json")),
                include_str!(concat!("../../tests/data/jcs/output/", $name, ".json")),
            )),*]
        };
    }

    #[test]
    fn reference_documents_canonicalise_to_the_published_bytes() {
        let docs = docs!("arrays", "french", "structures", "unicode", "values", "weird");
        for (name, input, expected) in docs {
            let v: Value = serde_json::from_str(input).unwrap();
            assert_eq!(to_string(&v), expected, "{name}");
        }
    }

    #[test]
    fn reference_number_file_sample() {
        // The file is the published one: its SHA-256 is the value the reference README gives
        // for the first 10,000 lines of `es6testfile100m.txt`.
        assert_eq!(
            hex(&Sha256::digest(NUMBERS)),
            "b9f7a8e75ef22a835685a52ccba7f7d6bdc99e34b010992cbc5864cd12be6892"
        );
        let text = std::str::from_utf8(NUMBERS).unwrap();
        let mut lines = 0;
        let mut wrong = Vec::new();
        for line in text.lines() {
            let (bits, expected) = line.split_once(',').unwrap();
            let f = f64::from_bits(u64::from_str_radix(bits, 16).unwrap());
            let got = to_string(&serde_json::json!(f));
            if got != expected {
                wrong.push(format!("{bits}: expected {expected}, got {got}"));
            }
            lines += 1;
        }
        assert_eq!(lines, 10_000);
        assert!(
            wrong.is_empty(),
            "{} wrong, first: {:?}",
            wrong.len(),
            &wrong[..wrong.len().min(5)]
        );
    }

    #[test]
    #[allow(clippy::excessive_precision)]
    fn rfc_8785_examples() {
        // Both literals are exact floats; the first is the tie of RFC 8785's own example.
        assert_eq!(1424953923781206.25, 1424953923781206.0 + 0.25);
        for (f, s) in [
            (1424953923781206.25, "1424953923781206.2"),
            (333333333.33333329, "333333333.3333333"),
            (1e30, "1e+30"),
            (4.50, "4.5"),
            (2e-3, "0.002"),
            (0.000000000000000000000000001, "1e-27"),
            (-0.0, "0"),
            (9007199254740994.0, "9007199254740994"),
            (1e21, "1e+21"),
            (9.999999999999997e-7, "9.999999999999997e-7"),
        ] {
            assert_eq!(to_string(&serde_json::json!(f)), s, "{f}");
        }
    }
}
