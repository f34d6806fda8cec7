//! The `service` module as Salt's `rest_service` shapes it: `service.list` and
//! start/stop/restart return the device's answer; `service.status` is a boolean
//! (`None` when the device does not know the service).

use serde_json::Value;

use super::{ArgReader, Call, FunctionError};
use crate::drivers::DriverError;

pub(super) async fn run(name: &str, call: &Call) -> Result<Value, FunctionError> {
    let args = ArgReader::new(call);
    let services = call.driver.services()?;
    match name {
        "list" => Ok(services.service_list().await?),
        "start" | "stop" | "restart" => {
            let svc = args.string(0, "name")?;
            Ok(services.service_action(name, &svc).await?)
        }
        "status" => {
            let svc = args.string(0, "name")?;
            let resp = services.service_action("status", &svc).await?;
            match resp.get("comment").and_then(Value::as_str) {
                Some("running") => Ok(Value::Bool(true)),
                Some("stopped") => Ok(Value::Bool(false)),
                Some(_) => Ok(Value::Null),
                None => Err(DriverError::Decode("service status has no comment".into()).into()),
            }
        }
        _ => Err(FunctionError::NotAvailable(format!("service.{name}"))),
    }
}
