//! The `sys` module with the selection rules of Salt's `sysmod`: `sys.doc`,
//! `sys.list_functions`, `sys.list_modules` and `sys.argspec`. An argument with `*`
//! (or, where Salt says so, a `.`) is a glob; a bare name selects that module
//! (`sys` matches `sys.*`, never `sysctl.*`).
//!
//! `sys.doc` always answers a dict of function → docstring, possibly empty: the salt
//! CLI indexes its return as one, and a string crashes it.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::{as_text, available, Call, FunctionError, Spec};
use crate::fnmatch::fnmatch;

pub(super) fn run(name: &str, call: &Call) -> Result<Value, FunctionError> {
    let words: Vec<String> = call.job.args.arg.iter().filter_map(as_text).collect();
    let offered = || available(&call.driver);
    match name {
        "doc" => {
            let mut out = Map::new();
            for s in offered().filter(|s| doc_selects(&words, s.name)) {
                out.insert(s.name.to_owned(), Value::String(s.doc.to_owned()));
            }
            Ok(Value::Object(out))
        }
        "list_functions" => Ok(Value::Array(
            offered()
                .filter(|s| list_selects(&words, s.name))
                .map(|s| Value::String(s.name.to_owned()))
                .collect(),
        )),
        "list_modules" => {
            let modules: BTreeSet<&str> = offered()
                .map(|s| s.name)
                .filter(|f| {
                    words.is_empty()
                        || words.iter().any(|w| {
                            if w.contains('*') {
                                fnmatch(w, f)
                            } else {
                                module_of(f) == w
                            }
                        })
                })
                .map(module_of)
                .collect();
            Ok(Value::Array(
                modules
                    .into_iter()
                    .map(|m| Value::String(m.into()))
                    .collect(),
            ))
        }
        "argspec" => {
            let module = call
                .job
                .args
                .arg
                .first()
                .or_else(|| call.job.args.kwarg.get("module"))
                .and_then(as_text)
                .unwrap_or_default();
            let mut out = Map::new();
            for s in offered().filter(|s| argspec_selects(&module, s)) {
                out.insert(s.name.to_owned(), s.argspec.to_json());
            }
            Ok(Value::Object(out))
        }
        _ => Err(FunctionError::NotAvailable(format!("sys.{name}"))),
    }
}

fn module_of(fun: &str) -> &str {
    fun.split_once('.').map_or(fun, |(m, _)| m)
}

/// `sysmod.doc`: no words → everything; a word with `*` → glob; else the exact name
/// or its module.
fn doc_selects(words: &[String], fun: &str) -> bool {
    words.is_empty()
        || words.iter().any(|w| {
            if w.contains('*') {
                fnmatch(w, fun)
            } else {
                fun == w
                    || fun
                        .strip_prefix(w.as_str())
                        .is_some_and(|r| r.starts_with('.'))
            }
        })
}

/// `sysmod.list_functions`: a word with `*` or `.` is a glob; else a module.
fn list_selects(words: &[String], fun: &str) -> bool {
    words.is_empty()
        || words.iter().any(|w| {
            if w.contains('*') || w.contains('.') {
                fnmatch(w, fun)
            } else {
                module_of(fun) == w
            }
        })
}

/// `salt.utils.args.argspec_report`: a glob with `*` or `.`; else a module prefix
/// (the empty module selects nothing, as in Salt).
fn argspec_selects(module: &str, s: &Spec) -> bool {
    if module.contains('*') || module.contains('.') {
        fnmatch(module, s.name)
    } else {
        s.name
            .strip_prefix(module)
            .is_some_and(|r| r.starts_with('.'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(words: &[&str]) -> Vec<String> {
        words.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn selection_follows_sysmod() {
        assert!(doc_selects(&w(&[]), "test.ping"));
        assert!(doc_selects(&w(&["test.ping"]), "test.ping"));
        assert!(!doc_selects(&w(&["test.ping"]), "test.pingx"));
        assert!(doc_selects(&w(&["test"]), "test.ping"));
        assert!(!doc_selects(&w(&["tes"]), "test.ping"));
        assert!(doc_selects(&w(&["test.p*"]), "test.ping"));
        assert!(list_selects(&w(&["sys"]), "sys.doc"));
        assert!(!list_selects(&w(&["sy"]), "sys.doc"));
        assert!(list_selects(&w(&["test.ping"]), "test.ping"));
        assert!(list_selects(&w(&["grains.*"]), "grains.get"));
    }
}
