//! Python's view of grain values, which Salt matches as text: `str()` and `repr()` of
//! the JSON-equivalent value, `str.lower()` and `str.isspace()`.

use std::borrow::Cow;
use std::fmt::Write as _;

use serde_json::Value;

/// Python's `repr()` of absurdly nested grains is not worth a deep recursion.
const MAX_REPR_DEPTH: usize = 64;

/// Python's `str.isspace()`, which `str.split()` and `str.strip()` use: Unicode
/// whitespace plus the ASCII file/group/record/unit separators.
pub fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

/// Python `str(value)`.
pub fn py_str(value: &Value) -> Cow<'_, str> {
    match value {
        Value::String(s) => Cow::Borrowed(s),
        other => {
            let mut out = String::new();
            py_repr(other, &mut out, 0);
            Cow::Owned(out)
        }
    }
}

/// Python `str.lower()`, without allocating for text that is already lower case.
pub fn py_lower(s: &str) -> Cow<'_, str> {
    if s.is_ascii() {
        if s.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(s.to_ascii_lowercase())
        } else {
            Cow::Borrowed(s)
        }
    } else {
        Cow::Owned(s.to_lowercase())
    }
}

/// Python `repr()` of the JSON-equivalent Python value (dicts in serde_json's
/// key order, which may differ from Python's insertion order).
pub fn py_repr(value: &Value, out: &mut String, depth: usize) {
    if depth > MAX_REPR_DEPTH {
        out.push_str("...");
        return;
    }
    match value {
        Value::Null => out.push_str("None"),
        Value::Bool(true) => out.push_str("True"),
        Value::Bool(false) => out.push_str("False"),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                let _ = write!(out, "{i}");
            } else if let Some(u) = n.as_u64() {
                let _ = write!(out, "{u}");
            } else if let Some(f) = n.as_f64() {
                py_float(f, out);
            }
        }
        Value::String(s) => py_repr_str(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                py_repr(item, out, depth + 1);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                py_repr_str(k, out);
                out.push_str(": ");
                py_repr(v, out, depth + 1);
            }
            out.push('}');
        }
    }
}

/// Python `repr(float)`: shortest round-trip digits, scientific notation
/// outside 1e-4 <= |x| < 1e16, always a `.0` or an exponent.
fn py_float(f: f64, out: &mut String) {
    if f.is_nan() {
        out.push_str("nan");
        return;
    }
    if f.is_infinite() {
        out.push_str(if f > 0.0 { "inf" } else { "-inf" });
        return;
    }
    let sci = format!("{f:e}");
    let Some((mantissa, exp)) = sci.split_once('e') else {
        out.push_str(&sci);
        return;
    };
    let exp: i32 = exp.parse().unwrap_or(0);
    if mantissa.starts_with('-') {
        out.push('-');
    }
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    if (-4..16).contains(&exp) {
        if let Ok(exp) = usize::try_from(exp) {
            let int_len = exp + 1;
            match (digits.get(..int_len), digits.get(int_len..)) {
                (Some(int), Some(frac)) if !frac.is_empty() => {
                    let _ = write!(out, "{int}.{frac}");
                }
                _ => {
                    let _ = write!(out, "{digits:0<int_len$}.0");
                }
            }
        } else {
            let zeros = usize::try_from(-exp - 1).unwrap_or(0);
            let _ = write!(out, "0.{}{digits}", "0".repeat(zeros));
        }
    } else {
        let (lead, rest) = digits.split_at(digits.len().min(1));
        out.push_str(lead);
        if !rest.is_empty() {
            let _ = write!(out, ".{rest}");
        }
        let sign = if exp < 0 { '-' } else { '+' };
        let _ = write!(out, "e{sign}{:02}", exp.unsigned_abs());
    }
}

/// Python `repr(str)`; `isprintable()` is approximated without Unicode tables.
fn py_repr_str(s: &str, out: &mut String) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if py_printable(c) => out.push(c),
            c => {
                let n = u32::from(c);
                let _ = if n < 0x100 {
                    write!(out, "\\x{n:02x}")
                } else if n < 0x10000 {
                    write!(out, "\\u{n:04x}")
                } else {
                    write!(out, "\\U{n:08x}")
                };
            }
        }
    }
    out.push(quote);
}

fn py_printable(c: char) -> bool {
    !(c.is_control()
        || (c.is_whitespace() && c != ' ')
        || matches!(
            c,
            '\u{ad}'
                | '\u{200b}'..='\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2060}'..='\u{2064}'
                | '\u{feff}'
                | '\u{e000}'..='\u{f8ff}'
        ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn python_value_strings() {
        let cases: &[(Value, &str)] = &[
            (json!(1.5), "1.5"),
            (json!(1.0), "1.0"),
            (json!(1e16), "1e+16"),
            (json!(1e15), "1000000000000000.0"),
            (json!(1.5e-5), "1.5e-05"),
            (json!(0.0001), "0.0001"),
            (json!(-0.0), "-0.0"),
            (json!(42), "42"),
            (json!(u64::MAX), "18446744073709551615"),
            (json!(null), "None"),
            (json!(false), "False"),
            (json!(["a", 1, true]), "['a', 1, True]"),
            (json!({"k": "it's"}), "{'k': \"it's\"}"),
            (json!(["tab\there"]), "['tab\\there']"),
        ];
        for (v, want) in cases {
            assert_eq!(py_str(v), *want, "{v}");
        }
    }
}
