//! The `test` module: `test.ping` (asks the device, as a Salt proxy does), `test.echo`,
//! `test.version`, `test.sleep`.

use std::time::Duration;

use serde_json::Value;

use super::{ArgReader, Call, FunctionError};

/// Longest `test.sleep` accepted: a day, so a typo cannot park a device for ever.
const MAX_SLEEP: f64 = 86_400.0;

pub(super) async fn run(name: &str, call: &Call) -> Result<Value, FunctionError> {
    let args = ArgReader::new(call);
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
