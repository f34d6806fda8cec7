//! Salt states for devices: render SLS files (`jinja|yaml`), compile them (top file,
//! include, extend, requisites, order) into low chunks, and run those chunks against
//! one device, with or without `test=True`, giving Salt's highstate-shaped return.
//!
//! The state system sees its device through [`Host`] (grains, pillar, execution
//! functions, the file server), which `functions::state` implements, so imports stay
//! one-way: functions → states → (fileserver, job).

mod compile;
mod modules;
mod render;
mod run;
mod top;
mod yaml;

use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::{Map, Value};

use crate::fileserver::{FileError, FileSource};
pub use compile::{Chunk, Compiled};
pub use run::Outcome;

/// Bounds that keep hostile state trees finite.
pub mod limits {
    /// SLS files one run may render (includes count).
    pub const MAX_SLS: usize = 1_000;
    /// Depth of nested includes.
    pub const MAX_INCLUDE_DEPTH: usize = 64;
    /// Low chunks one run may hold.
    pub const MAX_CHUNKS: usize = 10_000;
    /// Nesting of YAML data in one SLS.
    pub const MAX_YAML_DEPTH: usize = 64;
    /// Jinja instructions per template render (minijinja's fuel).
    pub const JINJA_FUEL: u64 = 20_000_000;
    /// Fuel of the first, inline try of a render on the device's own thread; a
    /// template that needs more renders on the blocking pool instead.
    pub const INLINE_FUEL: u64 = 100_000;
    /// Largest text one template may produce.
    pub const MAX_RENDERED_BYTES: usize = 8 * 1024 * 1024;
}

/// What the state system may ask of the device it runs for.
pub trait Host: Send + Sync {
    fn id(&self) -> &str;
    fn grains(&self) -> Arc<Value>;
    fn pillar(&self) -> Arc<Value>;
    fn files(&self) -> Option<&dyn FileSource>;
    /// Runs an execution function on this device; `Err` is the function's error text.
    fn call<'a>(
        &'a self,
        fun: &'a str,
        arg: Vec<Value>,
        kwarg: Map<String, Value>,
    ) -> BoxFuture<'a, Result<Value, String>>;
}

/// A state run's options, from the call's keyword arguments.
#[derive(Debug, Clone)]
pub struct Opts {
    pub test: bool,
    pub saltenv: String,
    pub failhard: bool,
}

impl Default for Opts {
    fn default() -> Opts {
        Opts {
            test: false,
            saltenv: "base".into(),
            failhard: false,
        }
    }
}

/// Why a state run could not start: Salt answers these as a list of strings with
/// retcode 1.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("no file server: set master.file_roots, or connect a Salt master")]
    NoFileServer,
    #[error(transparent)]
    File(#[from] FileError),
    /// Render, compile or requisite errors, each one line as Salt words it.
    #[error("{}", .0.join("\n"))]
    Compile(Vec<String>),
}

impl StateError {
    /// The return Salt gives for a run that failed before anything ran.
    pub fn to_return(&self) -> Value {
        match self {
            StateError::Compile(v) => Value::Array(v.iter().cloned().map(Value::String).collect()),
            e => Value::Array(vec![Value::String(e.to_string())]),
        }
    }
}

/// `state.show_top`: `{saltenv: [sls, ...]}` for this device.
pub async fn show_top(host: &dyn Host, opts: &Opts) -> Result<Value, StateError> {
    let files = host.files().ok_or(StateError::NoFileServer)?;
    let matches = top::matches(host, files, opts).await?;
    Ok(serde_json::to_value(matches).unwrap_or(Value::Null))
}

/// Compiles the highstate (no `mods`) or the named SLS files into ordered chunks.
pub async fn compile(
    host: &dyn Host,
    mods: &[String],
    opts: &Opts,
) -> Result<Compiled, StateError> {
    let files = host.files().ok_or(StateError::NoFileServer)?;
    let targets: Vec<(String, String)> = if mods.is_empty() {
        top::matches(host, files, opts)
            .await?
            .into_iter()
            .flat_map(|(env, sls)| sls.into_iter().map(move |s| (env.clone(), s)))
            .collect()
    } else {
        mods.iter()
            .map(|m| (opts.saltenv.clone(), m.clone()))
            .collect()
    };
    if targets.is_empty() && mods.is_empty() {
        return Ok(Compiled::default());
    }
    compile::compile(host, files, &targets, opts).await
}

/// Runs compiled chunks: the highstate return and its retcode.
pub async fn execute(host: &dyn Host, compiled: &Compiled, opts: &Opts) -> Outcome {
    run::run(host, compiled, opts).await
}

/// `state.single`: one state function with its arguments, no file server needed.
pub async fn single(
    host: &dyn Host,
    fun: &str,
    args: Map<String, Value>,
    opts: &Opts,
) -> Result<Outcome, StateError> {
    let compiled = compile::single(fun, args)?;
    Ok(run::run(host, &compiled, opts).await)
}

/// The highstate return for a highstate that matched nothing (retcode 2).
pub fn no_top_match() -> Outcome {
    let mut m = Map::new();
    m.insert(
        "no_|-states_|-states_|-None".into(),
        serde_json::json!({
            "result": false,
            "comment": "No Top file or master_tops data matches found. Please see master log for details.",
            "name": "No States",
            "changes": {},
            "__run_num__": 0,
        }),
    );
    Outcome {
        ret: Value::Object(m),
        retcode: 2,
    }
}

/// Turns untrusted YAML/Jinja/compile input into chunks without a device, for the
/// fuzz target: render with empty grains and pillar, compile, never run.
pub fn fuzz_pipeline(sls: &str) {
    render::fuzz_one(sls);
}

#[cfg(test)]
mod tests;
