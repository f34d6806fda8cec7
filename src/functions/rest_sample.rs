//! The `rest_sample` module: what Salt's `rest_sample` proxy module and its
//! `rest_sample_utils` execution module offer, under the same names and with the
//! same returns (the device's JSON answer as a dict; `ping` a boolean;
//! `fix_outage` the `{"body": text}` of an undecoded `salt.utils.http.query`).

use serde_json::{json, Value};

use super::{ArgReader, Call, FunctionError};

pub(super) async fn run(name: &str, call: &Call) -> Result<Value, FunctionError> {
    let dev = call.driver.rest_sample()?;
    let reader = ArgReader::new(call);
    let args = &reader;
    let path = |verb: &'static str, noun: &'static str| async move {
        let name = args.string(0, "name")?;
        Ok::<Value, FunctionError>(dev.get(&[noun, verb, &name]).await?)
    };
    match name {
        "fix_outage" => {
            let body = dev.get_raw(&["fix_outage"]).await?;
            Ok(json!({"body": String::from_utf8_lossy(&body)}))
        }
        "get_test_string" => Ok(json!("testvalue")),
        "ping" => Ok(json!(dev.ping().await.unwrap_or(false))),
        "grains" | "grains_refresh" => Ok(Value::Object(dev.info().await?)),
        "service_start" => path("start", "service").await,
        "service_stop" => path("stop", "service").await,
        "service_restart" => path("restart", "service").await,
        "service_status" => path("status", "service").await,
        "service_list" => Ok(dev.get(&["service", "list"]).await?),
        "package_list" => Ok(dev.get(&["package", "list"]).await?),
        "package_remove" => path("remove", "package").await,
        "package_status" => path("status", "package").await,
        "package_install" => {
            let pkg = args.string(0, "name")?;
            // As the proxy module: a falsy or missing version installs 1.0.
            let version = args
                .opt_string(usize::MAX, "version")?
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| "1.0".into());
            Ok(dev.get(&["package", "install", &pkg, &version]).await?)
        }
        _ => Err(FunctionError::NotAvailable(format!("rest_sample.{name}"))),
    }
}
