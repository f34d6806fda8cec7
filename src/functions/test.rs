//! The `test` module with the names and return shapes of Salt's `modules/test.py`:
//! `test.ping` (asks the device, as a Salt proxy does), `echo`, `version`, `sleep`,
//! `rand_sleep`, `true`, `false`, `arg`, `arg_repr`, `kwarg`, `fib`, `outputter`,
//! `retcode`, `exception`, `versions_report`.
//!
//! Differences from Salt: `arg`, `arg_repr` and `kwarg` return the caller's
//! arguments without Salt's `__pub_*` publication keys; `exception` has no Python
//! traceback in its message; `fib` stops at 93 (the largest that fits 64 bits).

use std::fmt::Write as _;
use std::time::Duration;

use rand::RngExt as _;
use serde_json::{json, Map, Value};

use super::{ArgReader, Call, FunctionError, Output};
use crate::pyrepr::py_repr;

/// Longest `test.sleep` accepted: a day, so a typo cannot park a device for ever.
const MAX_SLEEP: f64 = 86_400.0;

pub(super) async fn run(name: &str, call: &Call) -> Result<Output, FunctionError> {
    let args = ArgReader::new(call);
    let given = &call.job.args;
    let value = match name {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        "arg" => json!({"args": given.arg, "kwargs": given.kwarg}),
        "arg_repr" => json!({"args": tuple_repr(&given.arg), "kwargs": dict_repr(&given.kwarg)}),
        "kwarg" => Value::Object(given.kwarg.clone()),
        "outputter" => args.required(0, "data")?.clone(),
        "fib" => {
            let num = int_arg(&args, 0, "num", None)?;
            let n = u32::try_from(num)
                .ok()
                .filter(|n| *n <= 93)
                .ok_or_else(|| {
                    FunctionError::InvalidArgs("test.fib(): 'num' must be from 0 to 93".into())
                })?;
            let started = std::time::Instant::now();
            let (mut a, mut b) = (0u64, 1u64);
            for _ in 0..n {
                (a, b) = (b, a.saturating_add(b));
            }
            json!([a, started.elapsed().as_secs_f64()])
        }
        "retcode" => {
            let code = int_arg(&args, 0, "code", Some(42))?;
            let code = i32::try_from(code).map_err(|_| {
                FunctionError::InvalidArgs("test.retcode(): 'code' out of range".into())
            })?;
            return Ok(Output {
                retcode: code,
                ..Output::from(Value::Bool(true))
            });
        }
        "exception" => {
            let message = args
                .opt_string(0, "message")?
                .unwrap_or_else(|| "Test Exception".into());
            return Err(FunctionError::Raised {
                class: "Exception",
                message,
            });
        }
        "rand_sleep" => {
            let max = int_arg(&args, 0, "max", Some(60))?;
            let max = u64::try_from(max)
                .ok()
                .filter(|m| *m as f64 <= MAX_SLEEP)
                .ok_or_else(|| {
                    FunctionError::InvalidArgs(format!(
                        "test.rand_sleep(): 'max' must be from 0 to {MAX_SLEEP}"
                    ))
                })?;
            let secs = rand::rng().random_range(0..=max);
            tokio::time::sleep(Duration::from_secs(secs)).await;
            Value::Bool(true)
        }
        "versions_report" => Value::String(versions_report()),
        _ => return legacy(name, call, &args).await.map(Output::from),
    };
    Ok(value.into())
}

async fn legacy(name: &str, call: &Call, args: &ArgReader<'_>) -> Result<Value, FunctionError> {
    match name {
        "ping" => Ok(Value::Bool(call.driver.ping().await?)),
        "echo" => Ok(Value::String(args.string(0, "text")?)),
        "version" => Ok(Value::String(env!("CARGO_PKG_VERSION").to_owned())),
        "sleep" => {
            let v = args.required(0, "length")?;
            let secs = match v {
                Value::Number(n) => n.as_f64(),
                Value::String(s) => s.trim().parse::<f64>().ok(),
                _ => None,
            }
            .filter(|s| s.is_finite() && (0.0..=MAX_SLEEP).contains(s))
            .ok_or_else(|| {
                FunctionError::InvalidArgs(format!(
                    "test.sleep(): 'length' must be a number of seconds from 0 to {MAX_SLEEP}"
                ))
            })?;
            tokio::time::sleep(Duration::from_secs_f64(secs)).await;
            Ok(Value::Bool(true))
        }
        _ => Err(FunctionError::NotAvailable(format!("test.{name}"))),
    }
}

/// An integer argument, as Python's `int()` takes it (numbers and numeric text).
fn int_arg(
    args: &ArgReader<'_>,
    pos: usize,
    name: &str,
    default: Option<i64>,
) -> Result<i64, FunctionError> {
    let v = match (args.opt(pos, name), default) {
        (None | Some(Value::Null), Some(d)) => return Ok(d),
        (None, None) => args.required(pos, name)?,
        (Some(v), _) => v,
    };
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or_else(|| FunctionError::InvalidArgs(format!("'{name}' must be an integer, not {v}")))
}

/// Python's `repr()` of a tuple: `()`, `(1,)`, `(1, 'two')`.
fn tuple_repr(items: &[Value]) -> String {
    let mut out = String::from("(");
    for (i, v) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        py_repr(v, &mut out, 0);
    }
    if items.len() == 1 {
        out.push(',');
    }
    out.push(')');
    out
}

fn dict_repr(m: &Map<String, Value>) -> String {
    let mut out = String::new();
    py_repr(&Value::Object(m.clone()), &mut out, 0);
    out
}

/// The shape of Salt's report (a title, then aligned `name: version` lines), with
/// what Drover is made of.
fn versions_report() -> String {
    let mut out = String::from("Drover Version:\n");
    let _ = writeln!(out, "{:>12}: {}", "drover", env!("CARGO_PKG_VERSION"));
    out.push_str("\nSystem Versions:\n");
    let _ = writeln!(out, "{:>12}: {}", "os", std::env::consts::OS);
    let _ = write!(out, "{:>12}: {}", "arch", std::env::consts::ARCH);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_reprs() {
        assert_eq!(tuple_repr(&[]), "()");
        assert_eq!(tuple_repr(&[json!("x")]), "('x',)");
        assert_eq!(
            tuple_repr(&[json!(1), json!("two"), json!(3.1)]),
            "(1, 'two', 3.1)"
        );
        let mut m = Map::new();
        m.insert("txt".into(), json!("hello"));
        assert_eq!(dict_repr(&m), "{'txt': 'hello'}");
    }
}
