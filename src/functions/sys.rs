//! The `sys` module: `sys.list_functions`, optionally narrowed to modules
//! (`sys.list_functions test grains`) as Salt does.

use serde_json::Value;

use super::{as_text, available, Call, FunctionError};

pub(super) fn run(name: &str, call: &Call) -> Result<Value, FunctionError> {
    match name {
        "list_functions" => {
            let modules: Vec<String> = call.job.args.arg.iter().filter_map(as_text).collect();
            let funs = available(&call.driver)
                .into_iter()
                .filter(|f| {
                    modules.is_empty()
                        || modules.iter().any(|m| {
                            f.strip_prefix(m.trim_end_matches('.'))
                                .is_some_and(|rest| rest.starts_with('.'))
                                || *f == m
                        })
                })
                .map(|f| Value::String(f.to_owned()))
                .collect();
            Ok(Value::Array(funs))
        }
        _ => Err(FunctionError::NotAvailable(format!("sys.{name}"))),
    }
}
