//! The renderer: an SLS or top file's text → its ordered data, through the pipe its
//! shebang names (`jinja|yaml` by default, `yaml`, `json`). Jinja is minijinja in
//! strict-undefined mode with Salt's context (`grains`, `pillar`, `opts`, `saltenv`,
//! `sls`, `tpldir`, ..., `salt['mod.fun'](...)`), Salt's serializer filters and
//! `import_yaml`/`import_json`/`import_text`.
//!
//! minijinja is synchronous while files and functions are async, so a render runs on
//! the blocking pool and asks for what it needs over a channel that the calling task
//! serves ([`Bridge`]); the device's session stays on its own task.

use std::borrow::Cow;
use std::sync::{Arc, LazyLock};

use minijinja::value::{Object, ObjectRepr, Serde};
use minijinja::{Environment, Error, ErrorKind, State, UndefinedBehavior, Value as JValue};
use regex::Regex;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};

use super::limits::{INLINE_FUEL, JINJA_FUEL, MAX_RENDERED_BYTES};
use super::yaml::{self, Ordered};
use super::{Host, Opts};
use crate::fileserver::clean_path;

/// Which file is being rendered, for its context variables and error messages.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    pub saltenv: String,
    /// Dotted SLS name; `""` for a top file.
    pub sls: String,
    /// Path relative to the env root (`web/init.sls`).
    pub tplfile: String,
}

/// What the blocking render asks of the task that owns the device.
enum Req {
    File(String, oneshot::Sender<Result<Option<Arc<str>>, String>>),
    Call(
        String,
        Vec<Value>,
        Map<String, Value>,
        oneshot::Sender<Result<Value, String>>,
    ),
}

/// The render's side of the channel.
#[derive(Clone, Debug)]
struct Bridge {
    tx: Option<mpsc::Sender<Req>>,
    /// Set when a render without a channel (the inline try) needed the device.
    needed: Arc<std::sync::atomic::AtomicBool>,
}

fn jerr(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidOperation, msg.into())
}

impl Bridge {
    fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Req) -> Result<T, Error> {
        let Some(tx) = self.tx.as_ref() else {
            self.needed
                .store(true, std::sync::atomic::Ordering::Relaxed);
            return Err(jerr("no device to ask"));
        };
        let (otx, orx) = oneshot::channel();
        tx.blocking_send(make(otx))
            .map_err(|_| jerr("the state run was cancelled"))?;
        orx.blocking_recv()
            .map_err(|_| jerr("the state run was cancelled"))
    }

    fn file(&self, path: &str) -> Result<Option<String>, Error> {
        let got = self.ask(|o| Req::File(path.to_owned(), o))?;
        got.map(|o| o.map(|t| preprocess(&t).into_owned()))
            .map_err(|e| Error::new(ErrorKind::TemplateNotFound, e))
    }

    fn call(&self, fun: &str, args: &[JValue]) -> Result<JValue, Error> {
        let (pos, kw) = split_kwargs(args)?;
        let got = self.ask(|o| Req::Call(fun.to_owned(), pos, kw, o))?;
        got.map(|v| JValue::from(Serde(&v)))
            .map_err(|e| jerr(format!("{fun}: {e}")))
    }
}

fn split_kwargs(args: &[JValue]) -> Result<(Vec<Value>, Map<String, Value>), Error> {
    let to_json = |v: &JValue| serde_json::to_value(v).map_err(|e| jerr(e.to_string()));
    let (pos, kw) = match args.split_last() {
        Some((last, rest)) if last.is_kwargs() => (rest, Some(last)),
        _ => (args, None),
    };
    let pos = pos.iter().map(to_json).collect::<Result<Vec<_>, _>>()?;
    let kw = match kw.map(to_json).transpose()? {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    Ok((pos, kw))
}

/// `salt`: `salt['mod.fun'](...)`, `salt.mod.fun(...)`.
#[derive(Debug)]
struct SaltFns(Bridge);

impl Object for SaltFns {
    fn get_value(self: &Arc<Self>, key: &JValue) -> Option<JValue> {
        let name = key.as_str()?;
        Some(JValue::from_object(SaltFn(name.to_owned(), self.0.clone())))
    }
}

/// One function name, or a module name waiting for its function.
#[derive(Debug)]
struct SaltFn(String, Bridge);

impl Object for SaltFn {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &JValue) -> Option<JValue> {
        if self.0.contains('.') {
            return None;
        }
        let fun = format!("{}.{}", self.0, key.as_str()?);
        Some(JValue::from_object(SaltFn(fun, self.1.clone())))
    }

    fn call(self: &Arc<Self>, _: &mut State<'_, '_>, args: &[JValue]) -> Result<JValue, Error> {
        self.1.call(&self.0, args)
    }

    fn call_method(
        self: &Arc<Self>,
        _: &mut State<'_, '_>,
        method: &str,
        args: &[JValue],
    ) -> Result<JValue, Error> {
        if self.0.contains('.') {
            return Err(Error::from(ErrorKind::UnknownMethod));
        }
        self.1.call(&format!("{}.{method}", self.0), args)
    }
}

static IMPORT_TAG: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\{%(-?)\s*import_(yaml|json|text)\s+(.+?)\s+as\s+([A-Za-z_][A-Za-z0-9_]*)(?:\s+with\s+context)?\s*(-?)%\}")
        .unwrap_or_else(|_| unreachable!("constant pattern"))
});
static LOAD_TAG: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\{%(-?)\s*load_(yaml|json|text)\s+as\s+([A-Za-z_][A-Za-z0-9_]*)\s*(-?)%\}((?s:.*?))\{%(-?)\s*endload\s*(-?)%\}")
        .unwrap_or_else(|_| unreachable!("constant pattern"))
});

/// Salt's serializer tags (`{% import_yaml 'x' as y %}`, `{% load_yaml as y %}...{%
/// endload %}`) have no minijinja counterpart; they are rewritten into `set`
/// statements over functions and filters that do the same, keeping every newline so
/// error lines stay right.
fn preprocess(src: &str) -> Cow<'_, str> {
    if !src.contains("import_") && !src.contains("load_") {
        return Cow::Borrowed(src);
    }
    let once = IMPORT_TAG.replace_all(src, "{%$1 set $4 = import_$2($3) $5%}");
    let twice = LOAD_TAG.replace_all(
        &once,
        "{%$1 set $3 %}$5{% endset %}{% set $3 = $3 | load_$2 $7%}",
    );
    Cow::Owned(twice.into_owned())
}

fn load_yaml(text: &str) -> Result<JValue, Error> {
    let v: yaml_serde::Value =
        yaml_serde::from_str(text).map_err(|e| jerr(format!("load_yaml: {e}")))?;
    let j = yaml::to_json(&v).map_err(jerr)?;
    Ok(JValue::from(Serde(&j)))
}

fn load_json(text: &str) -> Result<JValue, Error> {
    // JSON is YAML, and the YAML reader keeps key order.
    load_yaml(text).map_err(|e| jerr(format!("load_json: {e}")))
}

fn dump_json(v: &JValue) -> Result<String, Error> {
    serde_json::to_string(v).map_err(|e| jerr(e.to_string()))
}

#[derive(Clone)]
struct Vars {
    grains: Arc<Value>,
    pillar: Arc<Value>,
    opts: Value,
    src: Source,
}

fn environment(bridge: &Bridge, fuel: u64) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(fuel));
    minijinja_contrib::add_to_environment(&mut env);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    let b = bridge.clone();
    env.set_loader(move |name| {
        let path = match clean_path(name) {
            Ok(p) => p,
            Err(_) => return Ok(None),
        };
        b.file(&path)
    });
    env.set_path_join_callback(|name, parent| {
        if name.starts_with("./") || name.starts_with("../") {
            let dir = parent.rsplit_once('/').map_or("", |(d, _)| d);
            let mut parts: Vec<&str> = dir.split('/').filter(|s| !s.is_empty()).collect();
            for seg in name.split('/') {
                match seg {
                    "." | "" => {}
                    // Climbing above the root leaves `..`, which the loader refuses.
                    ".." if parts.last().is_some_and(|p| *p != "..") => {
                        parts.pop();
                    }
                    s => parts.push(s),
                }
            }
            Cow::Owned(parts.join("/"))
        } else {
            Cow::Borrowed(name)
        }
    });
    env.add_filter("json", |v: JValue| {
        dump_json(&v).map(JValue::from_safe_string)
    });
    // JSON is YAML's flow style, so it pastes into an SLS as Salt's `yaml` filter does.
    env.add_filter("yaml", |v: JValue| {
        dump_json(&v).map(JValue::from_safe_string)
    });
    env.add_filter("yaml_encode", |v: JValue| {
        dump_json(&v).map(JValue::from_safe_string)
    });
    env.add_filter("yaml_dquote", |v: String| {
        dump_json(&JValue::from(v)).map(JValue::from_safe_string)
    });
    env.add_filter("yaml_squote", |v: String| {
        format!("'{}'", v.replace('\'', "''"))
    });
    env.add_filter("load_yaml", |v: String| load_yaml(&v));
    env.add_filter("load_json", |v: String| load_json(&v));
    env.add_function("raise", |msg: String| -> Result<JValue, Error> {
        Err(jerr(msg))
    });
    let b = bridge.clone();
    env.add_function("import_yaml", move |p: String| -> Result<JValue, Error> {
        let text = b.file(&clean_path(&p).map_err(|e| jerr(e.to_string()))?)?;
        load_yaml(&text.ok_or_else(|| Error::new(ErrorKind::TemplateNotFound, p))?)
    });
    let b = bridge.clone();
    env.add_function("import_json", move |p: String| -> Result<JValue, Error> {
        let text = b.file(&clean_path(&p).map_err(|e| jerr(e.to_string()))?)?;
        load_json(&text.ok_or_else(|| Error::new(ErrorKind::TemplateNotFound, p))?)
    });
    let b = bridge.clone();
    env.add_function("import_text", move |p: String| -> Result<JValue, Error> {
        let text = b.file(&clean_path(&p).map_err(|e| jerr(e.to_string()))?)?;
        text.map(JValue::from)
            .ok_or_else(|| Error::new(ErrorKind::TemplateNotFound, p))
    });
    env
}

fn context(vars: &Vars, bridge: &Bridge) -> JValue {
    let src = &vars.src;
    let tpldir = src
        .tplfile
        .rsplit_once('/')
        .map_or("", |(d, _)| d)
        .to_owned();
    let slspath = tpldir.clone();
    let mut ctx = std::collections::BTreeMap::new();
    let mut put = |k: &str, v: JValue| {
        ctx.insert(k.to_owned(), v);
    };
    put("grains", JValue::from(Serde(&*vars.grains)));
    put("pillar", JValue::from(Serde(&*vars.pillar)));
    put("opts", JValue::from(Serde(&vars.opts)));
    put("saltenv", JValue::from(src.saltenv.clone()));
    put("sls", JValue::from(src.sls.clone()));
    put("tplfile", JValue::from(src.tplfile.clone()));
    put(
        "tpldir",
        JValue::from(if tpldir.is_empty() {
            ".".to_owned()
        } else {
            tpldir.clone()
        }),
    );
    put("tpldot", JValue::from(tpldir.replace('/', ".")));
    put("slspath", JValue::from(slspath.clone()));
    put("slsdotpath", JValue::from(slspath.replace('/', ".")));
    put("slscolonpath", JValue::from(slspath.replace('/', ":")));
    put("sls_path", JValue::from(slspath.replace('/', "_")));
    put("salt", JValue::from_object(SaltFns(bridge.clone())));
    JValue::from(Serde(&ctx))
}

/// The Jinja stage on the blocking pool. Errors are `(message, file, line)`.
fn render_jinja(
    text: &str,
    vars: &Vars,
    bridge: &Bridge,
    fuel: u64,
) -> Result<String, (String, String, Option<usize>)> {
    let env = environment(bridge, fuel);
    let name = vars.src.tplfile.clone();
    let fail = |e: &Error| {
        let mut msg = match e.detail() {
            Some(d) => format!("{}: {d}", e.kind()),
            None => e.kind().to_string(),
        };
        let mut src = std::error::Error::source(e);
        while let Some(s) = src {
            msg.push_str(&format!(": {s}"));
            src = s.source();
        }
        (msg, e.name().unwrap_or(&name).to_owned(), e.line())
    };
    let source = preprocess(text);
    let tmpl = env
        .template_from_named_str(&name, &source)
        .map_err(|e| fail(&e))?;
    // Written through a cap, so a template that loops over huge strings stops at
    // the cap instead of growing until the process runs out of memory.
    let mut out = Capped(Vec::new());
    tmpl.render_captured_to(context(vars, bridge), &mut out)
        .map_err(|e| fail(&e))?;
    String::from_utf8(out.0).map_err(|_| ("rendered text is not UTF-8".to_owned(), name, None))
}

/// Rendered text, refused past [`MAX_RENDERED_BYTES`].
struct Capped(Vec<u8>);

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + buf.len() > MAX_RENDERED_BYTES {
            return Err(std::io::Error::other(format!(
                "rendered text is over {MAX_RENDERED_BYTES} bytes"
            )));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Serves the blocking render's requests until it finishes.
async fn serve(host: &dyn Host, saltenv: &str, req: Req) {
    match req {
        Req::File(path, reply) => {
            let got = match host.files() {
                Some(f) => f.get(saltenv, &path).await.map_err(|e| e.to_string()),
                None => Err("no file server".into()),
            };
            let _ = reply.send(got);
        }
        Req::Call(fun, arg, kwarg, reply) => {
            let _ = reply.send(host.call(&fun, arg, kwarg).await);
        }
    }
}

fn pipeline(text: &str) -> Result<Vec<String>, String> {
    let first = text.lines().next().unwrap_or("");
    let pipe = match first.strip_prefix("#!") {
        Some(p) if !p.starts_with('/') => p.trim(),
        _ => "jinja|yaml",
    };
    let stages: Vec<String> = pipe.split('|').map(|s| s.trim().to_owned()).collect();
    for s in &stages {
        if !matches!(s.as_str(), "jinja" | "yaml" | "json") {
            return Err(format!(
                "The renderer \"{s}\" is not available in Drover (jinja, yaml and json are)"
            ));
        }
    }
    Ok(stages)
}

/// Renders one file for `host`. The error is Salt's wording plus the file, the line
/// and the device.
pub(crate) async fn render(
    host: &dyn Host,
    src: &Source,
    text: Arc<str>,
    opts: &Opts,
) -> Result<Ordered, String> {
    let what = if src.sls.is_empty() {
        format!("top file '{}:{}'", src.saltenv, src.tplfile)
    } else {
        format!("SLS '{}:{}'", src.saltenv, src.sls)
    };
    let failed = |msg: &str, file: &str, line: Option<usize>| {
        let at = line.map(|l| format!("; line {l}")).unwrap_or_default();
        format!(
            "Rendering {what} failed: {msg}{at} of {file} (device {})",
            host.id()
        )
    };
    let stages = pipeline(&text).map_err(|m| failed(&m, &src.tplfile, None))?;
    let mut body: String = text.to_string();
    for stage in &stages {
        match stage.as_str() {
            "jinja" => {
                let vars = Vars {
                    grains: host.grains(),
                    pillar: host.pillar(),
                    opts: serde_json::json!({
                        "id": host.id(),
                        "test": opts.test,
                        "saltenv": src.saltenv,
                        "renderer": "jinja|yaml",
                        "state_top": "salt://top.sls",
                    }),
                    src: src.clone(),
                };
                // Most templates only read grains and pillar: render those here, on a
                // small fuel budget. One that asks the device for a file or a function,
                // or needs more work, renders again on the blocking pool, where it may
                // wait for answers without holding up the device's thread.
                let inline = Bridge {
                    tx: None,
                    needed: Arc::default(),
                };
                let first = render_jinja(&body, &vars, &inline, INLINE_FUEL);
                let retry = inline.needed.load(std::sync::atomic::Ordering::Relaxed)
                    || matches!(&first, Err((m, _, _)) if m.starts_with(&ErrorKind::OutOfFuel.to_string()));
                if !retry {
                    body = first.map_err(|(msg, file, line)| failed(&msg, &file, line))?;
                    continue;
                }
                let (tx, mut rx) = mpsc::channel(1);
                let bridge = Bridge {
                    tx: Some(tx),
                    needed: Arc::default(),
                };
                let input = std::mem::take(&mut body);
                let mut job = tokio::task::spawn_blocking(move || {
                    render_jinja(&input, &vars, &bridge, JINJA_FUEL)
                });
                let res = loop {
                    tokio::select! {
                        Some(req) = rx.recv() => serve(host, &src.saltenv, req).await,
                        res = &mut job => break res,
                    }
                };
                body = match res {
                    Ok(Ok(out)) => out,
                    Ok(Err((msg, file, line))) => return Err(failed(&msg, &file, line)),
                    Err(e) => {
                        return Err(failed(
                            &format!("the renderer stopped: {e}"),
                            &src.tplfile,
                            None,
                        ))
                    }
                };
            }
            _ => {
                return yaml::parse(&body).map_err(|(msg, line)| failed(&msg, &src.tplfile, line));
            }
        }
    }
    yaml::parse(&body).map_err(|(msg, line)| failed(&msg, &src.tplfile, line))
}

/// The fuzz target's body: the whole pipeline on one text, no device behind it (every
/// file and function request fails), never a panic.
pub(crate) fn fuzz_one(text: &str) {
    let vars = Vars {
        grains: Arc::new(serde_json::json!({"id": "fuzz", "os": "Junos"})),
        pillar: Arc::new(serde_json::json!({"vlans": {"10": "users"}})),
        opts: serde_json::json!({"id": "fuzz", "test": true}),
        src: Source {
            saltenv: "base".into(),
            sls: "fuzz".into(),
            tplfile: "fuzz.sls".into(),
        },
    };
    let bridge = Bridge {
        tx: None,
        needed: Arc::default(),
    };
    let rendered = match pipeline(text) {
        Ok(_) => render_jinja(text, &vars, &bridge, JINJA_FUEL).ok(),
        Err(_) => None,
    };
    if let Some(out) = rendered {
        if let Ok(high) = yaml::parse(&out) {
            let _ = super::compile::compile_one(&vars.src.saltenv, &vars.src.sls, high);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializer_tags_become_set_statements() {
        let src = "{% import_yaml 'x/defaults.yaml' as d %}\n{%- load_json as j -%}\n{\"a\": 1}\n{% endload %}";
        let out = preprocess(src);
        assert!(
            out.contains("{% set d = import_yaml('x/defaults.yaml') %}"),
            "{out}"
        );
        assert!(out.contains("| load_json"), "{out}");
        assert_eq!(out.lines().count(), src.lines().count());
    }

    #[test]
    fn shebang_picks_the_pipe() {
        assert_eq!(pipeline("a: 1").unwrap(), ["jinja", "yaml"]);
        assert_eq!(pipeline("#!yaml\na: 1").unwrap(), ["yaml"]);
        assert_eq!(pipeline("#!/usr/bin/env x\na").unwrap(), ["jinja", "yaml"]);
        assert!(pipeline("#!py\ndef run(): pass")
            .unwrap_err()
            .contains("\"py\""));
    }

    #[test]
    fn fuzz_body_survives_hostile_templates() {
        for t in [
            "{% for i in range(100000000) %}{{ i }}{% endfor %}",
            "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
            "{{ salt['test.ping']() }}",
            "{% import 'fuzz.sls' as x %}",
            &"[".repeat(10_000),
            &"a:\n  ".repeat(2_000),
            "{% for i in range(1000) %}{{ 'x' * 99999999 }}{% endfor %}",
            "{{ undefined_thing }}",
        ] {
            fuzz_one(t);
        }
    }
}
