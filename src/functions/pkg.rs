//! The `pkg` module as Salt's `rest_package` shapes it: `pkg.list_pkgs` (name →
//! version), `pkg.install` / `pkg.remove` (the device's answer), `pkg.version` (a
//! version string, `""` when not installed, or name → version for several names).

use serde_json::{Map, Value};

use super::{as_text, ArgReader, Call, FunctionError};

/// The version `pkg.install` asks for when none is given (as `rest_sample` does).
const DEFAULT_VERSION: &str = "1.0";

pub(super) async fn run(name: &str, call: &Call) -> Result<Value, FunctionError> {
    let args = ArgReader::new(call);
    let pkgs = call.driver.packages()?;
    match name {
        "list_pkgs" => Ok(pkgs.package_list().await?),
        "install" => {
            let pkg = args.string(0, "name")?;
            let version = args
                .opt_string(usize::MAX, "version")?
                .unwrap_or_else(|| DEFAULT_VERSION.into());
            Ok(pkgs.package_install(&pkg, &version).await?)
        }
        "remove" => {
            let pkg = args.string(0, "name")?;
            Ok(pkgs.package_remove(&pkg).await?)
        }
        "version" => {
            let names: Vec<String> = call.job.args.arg.iter().filter_map(as_text).collect();
            if names.is_empty() || names.len() != call.job.args.arg.len() {
                return Err(FunctionError::InvalidArgs(
                    "pkg.version(): give one or more package names".into(),
                ));
            }
            let mut out = Map::new();
            for n in &names {
                let resp = pkgs.package_status(n).await?;
                let installed = resp.get("ret").and_then(Value::as_bool).unwrap_or(false);
                let version = match resp.get("comment") {
                    Some(v) if installed => as_text(v).unwrap_or_default(),
                    _ => String::new(),
                };
                out.insert(n.clone(), Value::String(version));
            }
            if names.len() == 1 {
                Ok(out.into_iter().next().map(|(_, v)| v).unwrap_or_default())
            } else {
                Ok(Value::Object(out))
            }
        }
        _ => Err(FunctionError::NotAvailable(format!("pkg.{name}"))),
    }
}
