//! The compiler: SLS names → rendered high data (with `include` and `extend`) → low
//! chunks in run order. Requisites are resolved here, so a requisite that names no
//! state, a conflicting ID or a requisite cycle is an error before anything runs,
//! worded as Salt 3007+ words it.

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::sync::Arc;

use indexmap::IndexMap;
use serde::Serialize;
use serde_json::{Map, Value};
use yaml_serde::Value as Yaml;

use super::limits::{MAX_CHUNKS, MAX_INCLUDE_DEPTH, MAX_SLS};
use super::render::{render, Source};
use super::yaml::{key_text, to_json, Ordered};
use super::{Host, Opts, StateError};
use crate::fileserver::FileSource;
use crate::fnmatch::fnmatch;

/// Requisite kinds Drover runs, as they are spelled in SLS files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReqKind {
    Require,
    RequireAny,
    Watch,
    WatchAny,
    Onchanges,
    OnchangesAny,
    Onfail,
    OnfailAny,
    OnfailAll,
    Prereq,
}

impl ReqKind {
    fn parse(key: &str) -> Option<(ReqKind, bool)> {
        let (base, inverted) = match key.strip_suffix("_in") {
            Some(b) => (b, true),
            None => (key, false),
        };
        let kind = match base {
            "require" => ReqKind::Require,
            "require_any" => ReqKind::RequireAny,
            "watch" => ReqKind::Watch,
            "watch_any" => ReqKind::WatchAny,
            "onchanges" => ReqKind::Onchanges,
            "onchanges_any" => ReqKind::OnchangesAny,
            "onfail" => ReqKind::Onfail,
            "onfail_any" => ReqKind::OnfailAny,
            "onfail_all" => ReqKind::OnfailAll,
            "prereq" => ReqKind::Prereq,
            _ => return None,
        };
        Some((kind, inverted))
    }

    pub fn name(self) -> &'static str {
        match self {
            ReqKind::Require => "require",
            ReqKind::RequireAny => "require_any",
            ReqKind::Watch => "watch",
            ReqKind::WatchAny => "watch_any",
            ReqKind::Onchanges => "onchanges",
            ReqKind::OnchangesAny => "onchanges_any",
            ReqKind::Onfail => "onfail",
            ReqKind::OnfailAny => "onfail_any",
            ReqKind::OnfailAll => "onfail_all",
            ReqKind::Prereq => "prereq",
        }
    }
}

/// Keys a state declaration may carry that Drover does not run; refused by name
/// rather than silently ignored.
const UNSUPPORTED: &[&str] = &["listen", "listen_in", "use", "use_in", "parallel", "retry"];

/// One state to run: Salt's low chunk.
#[derive(Debug, Clone, Serialize)]
pub struct Chunk {
    pub state: String,
    pub fun: String,
    #[serde(rename = "__id__")]
    pub id: String,
    pub name: String,
    #[serde(rename = "__sls__")]
    pub sls: String,
    #[serde(rename = "__env__")]
    pub env: String,
    pub order: f64,
    /// The state function's arguments (with `name`), requisites removed; flat in
    /// `show_lowstate`, as Salt's low chunks are.
    #[serde(flatten)]
    pub args: Map<String, Value>,
    pub failhard: bool,
    /// Resolved requisites: kind and the indices (into `Compiled::chunks`) of the
    /// states it names.
    #[serde(skip)]
    pub reqs: Vec<(ReqKind, Vec<usize>)>,
}

impl Chunk {
    /// Salt's `_gen_tag`: `<state>_|-<id>_|-<name>_|-<fun>`.
    pub fn tag(&self) -> String {
        format!(
            "{}_|-{}_|-{}_|-{}",
            self.state, self.id, self.name, self.fun
        )
    }
}

/// A compiled run: chunks in the order they run, and the high data for `show_sls`.
#[derive(Debug, Clone, Default)]
pub struct Compiled {
    pub chunks: Vec<Chunk>,
    pub high: Map<String, Value>,
}

/// A requisite as written: `- pkg: vim`, `- id: x`, `- sls: web`, or a bare id.
#[derive(Debug, Clone)]
struct RawRef {
    module: String,
    target: String,
}

/// One `module.fun` under a state id, before it becomes chunks.
#[derive(Debug, Clone)]
struct Entry {
    module: String,
    fun: Option<String>,
    items: Vec<(String, Yaml)>,
}

#[derive(Debug, Clone)]
struct Decl {
    id: String,
    sls: String,
    env: String,
    entries: Vec<Entry>,
}

#[derive(Default)]
struct High {
    decls: IndexMap<String, Decl>,
    extends: Vec<(String, String, Yaml)>,
    errors: Vec<String>,
}

impl High {
    /// Adds one rendered SLS's declarations; returns its includes as (env, sls).
    fn add(&mut self, env: &str, sls: &str, init: bool, data: Ordered) -> Vec<(String, String)> {
        let mut includes = Vec::new();
        for (id, body) in data {
            match id.as_str() {
                "include" => includes = self.includes(env, sls, init, &body),
                "extend" => self.extends.push((env.to_owned(), sls.to_owned(), body)),
                _ if id.starts_with("__") => {}
                _ => match parse_decl(&id, sls, env, body) {
                    Ok(d) => {
                        if let Some(prev) = self.decls.get(&id) {
                            self.errors.push(format!(
                                "Detected conflicting IDs, SLS IDs need to be globally unique.\n    The conflicting ID is '{id}' and is found in SLS '{}:{}' and SLS '{env}:{sls}'",
                                prev.env, prev.sls
                            ));
                        } else {
                            self.decls.insert(id, d);
                        }
                    }
                    Err(e) => self.errors.push(e),
                },
            }
        }
        includes
    }

    fn includes(&mut self, env: &str, sls: &str, init: bool, body: &Yaml) -> Vec<(String, String)> {
        let Yaml::Sequence(items) = body else {
            self.errors.push(format!(
                "Include Declaration in SLS '{sls}' is not formed as a list"
            ));
            return Vec::new();
        };
        let mut out = Vec::new();
        for item in items {
            let (ienv, name) = match item {
                Yaml::String(s) => (env.to_owned(), s.clone()),
                Yaml::Mapping(m) if m.len() == 1 => match m.iter().next() {
                    Some((k, Yaml::String(v))) => (key_text(k).unwrap_or_default(), v.clone()),
                    _ => continue,
                },
                _ => continue,
            };
            let name = if let Some(rel) = name.strip_prefix('.') {
                // `.x` is relative to the including SLS's package; each further dot
                // climbs one level, as Salt's `resolve_relative`.
                let mut base: Vec<&str> = sls.split('.').collect();
                if !init {
                    base.pop();
                }
                let mut rel = rel;
                while let Some(r) = rel.strip_prefix('.') {
                    base.pop();
                    rel = r;
                }
                if rel.is_empty() {
                    base.join(".")
                } else if base.is_empty() {
                    rel.to_owned()
                } else {
                    format!("{}.{rel}", base.join("."))
                }
            } else {
                name
            };
            out.push((ienv, name));
        }
        out
    }
}

fn parse_decl(id: &str, sls: &str, env: &str, body: Yaml) -> Result<Decl, String> {
    let mut entries = Vec::new();
    match body {
        // `vim: pkg.installed`: a function with no arguments.
        Yaml::String(s) => {
            let (m, f) = s
                .split_once('.')
                .ok_or_else(|| format!("ID '{id}' in SLS '{sls}' is not a dictionary"))?;
            entries.push(Entry {
                module: m.to_owned(),
                fun: Some(f.to_owned()),
                items: Vec::new(),
            });
        }
        Yaml::Mapping(m) => {
            for (k, v) in m {
                let key = key_text(&k)?;
                if key.starts_with("__") {
                    continue;
                }
                entries.push(parse_entry(id, sls, &key, v)?);
            }
        }
        _ => return Err(format!("ID '{id}' in SLS '{sls}' is not a dictionary")),
    }
    Ok(Decl {
        id: id.to_owned(),
        sls: sls.to_owned(),
        env: env.to_owned(),
        entries,
    })
}

fn parse_entry(id: &str, sls: &str, key: &str, v: Yaml) -> Result<Entry, String> {
    let (module, mut fun) = match key.split_once('.') {
        Some((m, f)) => (m.to_owned(), Some(f.to_owned())),
        None => (key.to_owned(), None),
    };
    let list = match v {
        Yaml::Null => Vec::new(),
        Yaml::Sequence(s) => s,
        _ => {
            return Err(format!(
            "The {module} statement in state '{id}' in SLS '{sls}' needs to be formed as a list"
        ))
        }
    };
    let mut items = Vec::new();
    for item in list {
        match item {
            Yaml::String(f) => {
                if fun.is_some() {
                    return Err(format!("Too many functions declared in state '{id}' in SLS '{sls}'. Please choose one of the following: {}, {f}", fun.unwrap_or_default()));
                }
                fun = Some(f);
            }
            Yaml::Mapping(m) if m.len() == 1 => {
                for (k, x) in m {
                    items.push((key_text(&k)?, x));
                }
            }
            _ => {
                return Err(format!(
                    "In SLS '{sls}', state '{id}': an argument of {key} is not a single-key dict"
                ))
            }
        }
    }
    Ok(Entry { module, fun, items })
}

fn parse_refs(v: &Yaml) -> Vec<RawRef> {
    let one = |y: &Yaml| -> Option<RawRef> {
        match y {
            Yaml::String(s) => Some(RawRef {
                module: "id".into(),
                target: s.clone(),
            }),
            Yaml::Mapping(m) => m.iter().next().and_then(|(k, t)| {
                let module = key_text(k).ok()?;
                // `mod.fun: x` names the module only.
                let module = module.split('.').next().unwrap_or_default().to_owned();
                Some(RawRef {
                    module,
                    target: key_text(t).ok()?,
                })
            }),
            _ => None,
        }
    };
    match v {
        Yaml::Sequence(s) => s.iter().filter_map(one).collect(),
        other => one(other).into_iter().collect(),
    }
}

fn ref_matches(r: &RawRef, c: &Chunk) -> bool {
    match r.module.as_str() {
        "sls" => fnmatch(&r.target, &c.sls),
        "id" => fnmatch(&r.target, &c.id),
        m => c.state == m && (fnmatch(&r.target, &c.id) || fnmatch(&r.target, &c.name)),
    }
}

/// A chunk before requisites are resolved.
struct Pending {
    chunk: Chunk,
    raw: Vec<(ReqKind, bool, Vec<RawRef>)>,
    order: Option<Value>,
}

fn apply_extends(high: &mut High) {
    let extends = std::mem::take(&mut high.extends);
    for (env, sls, body) in extends {
        let Yaml::Mapping(m) = body else {
            high.errors.push(format!(
                "Extension value in SLS '{sls}' is not a dictionary"
            ));
            continue;
        };
        for (k, v) in m {
            let Ok(id) = key_text(&k) else { continue };
            let Some(decl) = high.decls.get_mut(&id) else {
                high.errors.push(format!(
                    "Cannot extend ID '{id}' in '{env}:{sls}'. It is not part of the high state.\nThis is likely due to a missing include statement or an incorrectly typed ID.\nEnsure that a state with an ID of '{id}' is available\nin environment '{env}' and to SLS '{sls}'"
                ));
                continue;
            };
            let Yaml::Mapping(body) = v else { continue };
            for (mk, mv) in body {
                let Ok(key) = key_text(&mk) else { continue };
                let ext = match parse_entry(&id, &sls, &key, mv) {
                    Ok(e) => e,
                    Err(e) => {
                        high.errors.push(e);
                        continue;
                    }
                };
                match decl.entries.iter_mut().find(|e| e.module == ext.module) {
                    Some(entry) => {
                        if ext.fun.is_some() {
                            entry.fun = ext.fun;
                        }
                        for (ak, av) in ext.items {
                            let is_req = ReqKind::parse(&ak).is_some();
                            match entry.items.iter_mut().find(|(k, _)| *k == ak) {
                                Some((_, Yaml::Sequence(old))) if is_req => {
                                    if let Yaml::Sequence(new) = av {
                                        old.extend(new);
                                    }
                                }
                                Some(slot) => slot.1 = av,
                                None => entry.items.push((ak, av)),
                            }
                        }
                    }
                    None => decl.entries.push(ext),
                }
            }
        }
    }
}

fn high_json(high: &High) -> Map<String, Value> {
    let mut out = Map::new();
    for d in high.decls.values() {
        let mut m = Map::new();
        m.insert("__sls__".into(), Value::String(d.sls.clone()));
        m.insert("__env__".into(), Value::String(d.env.clone()));
        for e in &d.entries {
            let mut list = Vec::new();
            if let Some(f) = &e.fun {
                list.push(Value::String(f.clone()));
            }
            for (k, v) in &e.items {
                let mut one = Map::new();
                one.insert(k.clone(), to_json(v).unwrap_or(Value::Null));
                list.push(Value::Object(one));
            }
            m.insert(e.module.clone(), Value::Array(list));
        }
        out.insert(d.id.clone(), Value::Object(m));
    }
    out
}

fn to_pending(high: &High) -> Result<Vec<Pending>, Vec<String>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for d in high.decls.values() {
        for e in &d.entries {
            let Some(fun) = &e.fun else {
                errors.push(format!(
                    "No function declared in state '{}' in SLS '{}'",
                    d.id, d.sls
                ));
                continue;
            };
            let mut args = Map::new();
            let mut raw = Vec::new();
            let mut order = None;
            let mut names = None;
            let mut failhard = false;
            for (k, v) in &e.items {
                if UNSUPPORTED.contains(&k.as_str()) {
                    errors.push(format!(
                        "State '{}' in SLS '{}' uses '{k}', which Drover does not support",
                        d.id, d.sls
                    ));
                    continue;
                }
                if let Some((kind, inv)) = ReqKind::parse(k) {
                    raw.push((kind, inv, parse_refs(v)));
                    continue;
                }
                let j = match to_json(v) {
                    Ok(j) => j,
                    Err(err) => {
                        errors.push(format!("State '{}' in SLS '{}': {k}: {err}", d.id, d.sls));
                        continue;
                    }
                };
                match k.as_str() {
                    "order" => order = Some(j),
                    "names" => names = Some(j),
                    "failhard" => failhard = j.as_bool().unwrap_or(false),
                    _ => {
                        args.insert(k.clone(), j);
                    }
                }
            }
            let base_name = args
                .get("name")
                .and_then(crate::functions::as_text)
                .unwrap_or_else(|| d.id.clone());
            // `names:` makes one chunk per name, each with its own extra arguments.
            let expanded: Vec<(String, Map<String, Value>)> = match names {
                Some(Value::Array(list)) => list
                    .into_iter()
                    .filter_map(|n| match n {
                        Value::Object(m) if m.len() == 1 => {
                            m.into_iter().next().map(|(name, extra)| {
                                let mut a = Map::new();
                                if let Value::Array(items) = extra {
                                    for i in items {
                                        if let Value::Object(kv) = i {
                                            a.extend(kv);
                                        }
                                    }
                                }
                                (name, a)
                            })
                        }
                        other => crate::functions::as_text(&other).map(|s| (s, Map::new())),
                    })
                    .collect(),
                _ => vec![(base_name, Map::new())],
            };
            for (name, extra) in expanded {
                let mut a = args.clone();
                a.extend(extra);
                a.insert("name".into(), Value::String(name.clone()));
                out.push(Pending {
                    chunk: Chunk {
                        state: e.module.clone(),
                        fun: fun.clone(),
                        id: d.id.clone(),
                        name,
                        sls: d.sls.clone(),
                        env: d.env.clone(),
                        order: 0.0,
                        args: a,
                        failhard,
                        reqs: Vec::new(),
                    },
                    raw: raw.clone(),
                    order: order.clone(),
                });
                if out.len() > MAX_CHUNKS {
                    return Err(vec![format!("more than {MAX_CHUNKS} states in one run")]);
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Salt's `order_chunks`: auto order is definition order (from 10000), `first` is 0,
/// `last` and negatives go after everything, then sort by (order, state+name+fun).
fn order(pending: &mut [Pending]) {
    let mut cap = 1.0f64;
    for (i, p) in pending.iter_mut().enumerate() {
        p.chunk.order = match &p.order {
            Some(Value::Number(n)) => n.as_f64().unwrap_or(0.0),
            _ => 10_000.0 + i as f64,
        };
        if p.chunk.order > cap - 1.0 && p.chunk.order > 0.0 {
            cap = p.chunk.order + 100.0;
        }
    }
    for p in pending.iter_mut() {
        match &p.order {
            Some(Value::String(s)) if s == "first" => p.chunk.order = 0.0,
            Some(Value::String(s)) if s == "last" => p.chunk.order = cap + 1_000_000.0,
            Some(Value::Number(_)) if p.chunk.order < 0.0 => {
                p.chunk.order += cap + 1_000_000.0;
            }
            Some(Value::String(_)) => p.chunk.order = cap,
            _ => {}
        }
    }
}

fn resolve(pending: Vec<Pending>) -> Result<Vec<Chunk>, Vec<String>> {
    let mut chunks: Vec<Chunk> = pending.iter().map(|p| p.chunk.clone()).collect();
    let mut errors = Vec::new();
    for (i, p) in pending.iter().enumerate() {
        for (kind, inverted, refs) in &p.raw {
            let mut targets = Vec::new();
            for r in refs {
                let hit: Vec<usize> = (0..chunks.len())
                    .filter(|&j| j != i && ref_matches(r, &chunks[j]))
                    .collect();
                if hit.is_empty() {
                    let k = if *inverted {
                        format!("{}_in", kind.name())
                    } else {
                        kind.name().to_owned()
                    };
                    errors.push(format!(
                        "Referenced state does not exist for requisite [{k}: ({}: {})] in state [{}] in SLS [{}]",
                        r.module, r.target, p.chunk.name, p.chunk.sls
                    ));
                }
                targets.extend(hit);
            }
            if *inverted {
                for t in targets {
                    chunks[t].reqs.push((*kind, vec![i]));
                }
            } else if !targets.is_empty() {
                chunks[i].reqs.push((*kind, targets));
            }
        }
    }
    if errors.is_empty() {
        Ok(chunks)
    } else {
        Err(errors)
    }
}

/// Run order: the (order, state+name+fun) sort, then a topological sort that keeps
/// that order wherever requisites allow (prereq runs the requiring state first).
fn run_order(mut chunks: Vec<Chunk>) -> Result<Vec<Chunk>, Vec<String>> {
    let n = chunks.len();
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by(|&a, &b| {
        let (x, y) = (&chunks[a], &chunks[b]);
        x.order
            .total_cmp(&y.order)
            .then_with(|| {
                (x.state.as_str(), x.name.as_str(), x.fun.as_str()).cmp(&(
                    y.state.as_str(),
                    y.name.as_str(),
                    y.fun.as_str(),
                ))
            })
            .then(a.cmp(&b))
    });
    let mut rank = vec![0usize; n];
    for (r, &i) in idx.iter().enumerate() {
        rank[i] = r;
    }
    // after[i]: chunks that must wait for i.
    let mut after: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut waits = vec![0usize; n];
    for (i, c) in chunks.iter().enumerate() {
        for (kind, targets) in &c.reqs {
            for &t in targets {
                let (first, second) = if *kind == ReqKind::Prereq {
                    (i, t)
                } else {
                    (t, i)
                };
                after[first].push(second);
                waits[second] += 1;
            }
        }
    }
    let mut ready: BTreeSet<(usize, usize)> = (0..n)
        .filter(|&i| waits[i] == 0)
        .map(|i| (rank[i], i))
        .collect();
    let mut out = Vec::with_capacity(n);
    while let Some(&(r, i)) = ready.iter().next() {
        ready.remove(&(r, i));
        out.push(i);
        for &j in &after[i] {
            waits[j] -= 1;
            if waits[j] == 0 {
                ready.insert((rank[j], j));
            }
        }
    }
    if out.len() < n {
        let stuck: Vec<String> = (0..n)
            .filter(|&i| waits[i] > 0)
            .map(|i| format!("{}: {}", chunks[i].state, chunks[i].id))
            .collect();
        return Err(vec![format!(
            "Recursive requisites were found: {}",
            stuck.join(", ")
        )]);
    }
    // Renumber requisite targets to the new positions.
    let mut pos = vec![0usize; n];
    for (p, &i) in out.iter().enumerate() {
        pos[i] = p;
    }
    for c in &mut chunks {
        for (_, targets) in &mut c.reqs {
            for t in targets.iter_mut() {
                *t = pos[*t];
            }
        }
    }
    let mut slots: Vec<Option<Chunk>> = chunks.into_iter().map(Some).collect();
    Ok(out.iter().filter_map(|&i| slots[i].take()).collect())
}

fn finish(mut high: High) -> Result<Compiled, StateError> {
    apply_extends(&mut high);
    if !high.errors.is_empty() {
        return Err(StateError::Compile(high.errors));
    }
    let json = high_json(&high);
    let mut pending = to_pending(&high).map_err(StateError::Compile)?;
    order(&mut pending);
    let chunks = resolve(pending).map_err(StateError::Compile)?;
    let chunks = run_order(chunks).map_err(StateError::Compile)?;
    Ok(Compiled { chunks, high: json })
}

/// Renders the named SLS files and everything they include, then compiles them.
pub(crate) async fn compile(
    host: &dyn Host,
    files: &dyn FileSource,
    targets: &[(String, String)],
    opts: &Opts,
) -> Result<Compiled, StateError> {
    let mut high = High::default();
    let mut seen: HashSet<(String, String)> = HashSet::new();
    let mut queue: VecDeque<(String, String, usize, bool)> = targets
        .iter()
        .map(|(e, s)| (e.clone(), s.clone(), 0, false))
        .collect();
    while let Some((env, sls, depth, included)) = queue.pop_front() {
        if !seen.insert((env.clone(), sls.clone())) {
            continue;
        }
        if seen.len() > MAX_SLS || depth > MAX_INCLUDE_DEPTH {
            return Err(StateError::Compile(vec![format!(
                "Too many SLS files or includes nested too deep (limit {MAX_SLS} files, depth {MAX_INCLUDE_DEPTH}) at SLS '{env}:{sls}'"
            )]));
        }
        let base = sls.replace('.', "/");
        let mut found = None;
        for (path, init) in [
            (format!("{base}.sls"), false),
            (format!("{base}/init.sls"), true),
        ] {
            if let Some(text) = files.get(&env, &path).await? {
                found = Some((path, init, text));
                break;
            }
        }
        let Some((tplfile, init, text)) = found else {
            high.errors.push(if included {
                format!("Specified SLS {sls} in saltenv {env} is not available on the salt master or through a configured fileserver")
            } else {
                format!("No matching sls found for '{sls}' in env '{env}'")
            });
            continue;
        };
        let src = Source {
            saltenv: env.clone(),
            sls: sls.clone(),
            tplfile,
        };
        let data = match render(host, &src, Arc::clone(&text), opts).await {
            Ok(d) => d,
            Err(e) => {
                high.errors.push(e);
                continue;
            }
        };
        for (ienv, isls) in high.add(&env, &sls, init, data) {
            queue.push_back((ienv, isls, depth + 1, true));
        }
    }
    finish(high)
}

/// Compiles one already-rendered SLS without its includes (the fuzz target).
pub(crate) fn compile_one(env: &str, sls: &str, data: Ordered) -> Result<Compiled, StateError> {
    let mut high = High::default();
    high.add(env, sls, false, data);
    finish(high)
}

/// `state.single`: one chunk from `mod.fun` and keyword arguments.
pub(crate) fn single(fun: &str, args: Map<String, Value>) -> Result<Compiled, StateError> {
    let Some((state, f)) = fun.split_once('.') else {
        return Err(StateError::Compile(vec![format!(
            "Invalid function passed: {fun}"
        )]));
    };
    let Some(name) = args.get("name").and_then(crate::functions::as_text) else {
        return Err(StateError::Compile(vec![format!(
            "Missing parameter name for state {fun}"
        )]));
    };
    Ok(Compiled {
        chunks: vec![Chunk {
            state: state.to_owned(),
            fun: f.to_owned(),
            id: name.clone(),
            name,
            sls: String::new(),
            env: "base".into(),
            order: 10_000.0,
            args,
            failhard: false,
            reqs: Vec::new(),
        }],
        high: Map::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::states::yaml::parse;

    fn compile_text(text: &str) -> Result<Compiled, StateError> {
        compile_one("base", "web", parse(text).unwrap())
    }

    fn ids(c: &Compiled) -> Vec<String> {
        c.chunks.iter().map(|c| c.name.clone()).collect()
    }

    #[test]
    fn definition_order_with_first_last_and_requisites() {
        let c = compile_text(
            "a:\n  test.nop: []\nb:\n  test.nop:\n    - order: last\nc:\n  test.nop:\n    - require:\n      - test: d\nd:\n  test.nop: []\ne:\n  test.nop:\n    - order: first\n",
        )
        .unwrap();
        assert_eq!(ids(&c), ["e", "a", "d", "c", "b"]);
        let c_chunk = &c.chunks[3];
        assert_eq!(c_chunk.reqs, vec![(ReqKind::Require, vec![2])]);
    }

    #[test]
    fn require_in_and_watch_in_are_rewritten() {
        let c =
            compile_text("pkg:\n  test.nop:\n    - watch_in:\n      - svc\nsvc:\n  test.nop: []\n")
                .unwrap();
        let svc = c.chunks.iter().find(|c| c.id == "svc").unwrap();
        assert_eq!(svc.reqs[0].0, ReqKind::Watch);
    }

    #[test]
    fn missing_requisite_is_salts_compile_error() {
        let Err(StateError::Compile(e)) = compile_text(
            "x:\n  service.running:\n    - name: web\n    - require:\n      - pkg: nope\n",
        ) else {
            panic!("compiled");
        };
        assert_eq!(e, ["Referenced state does not exist for requisite [require: (pkg: nope)] in state [web] in SLS [web]"]);
    }

    #[test]
    fn cycles_names_and_shorthand() {
        let Err(StateError::Compile(e)) = compile_text(
            "a:\n  test.nop:\n    - require: [b]\nb:\n  test.nop:\n    - require: [a]\n",
        ) else {
            panic!("compiled");
        };
        assert!(e[0].starts_with("Recursive requisites were found"), "{e:?}");
        let c = compile_text("pkgs:\n  pkg.installed:\n    - names:\n      - vim\n      - curl:\n        - version: '2'\nping: test.nop\n").unwrap();
        assert_eq!(ids(&c), ["vim", "curl", "ping"]);
        let curl = c.chunks.iter().find(|c| c.name == "curl").unwrap();
        assert_eq!(curl.args["version"], "2");
        assert_eq!(
            c.chunks.iter().find(|c| c.id == "ping").unwrap().tag(),
            "test_|-ping_|-ping_|-nop"
        );
    }

    #[test]
    fn malformed_declarations_are_errors_not_panics() {
        for bad in [
            "a:\n  test.nop: 5\n",
            "a: 5\n",
            "a:\n  test.nop:\n    - [1, 2]\n",
            "a:\n  test:\n    - nop\n    - succeed\n",
            "a:\n  test: []\n",
            "extend:\n  zz:\n    test.nop: []\n",
            "a:\n  test.nop:\n    - listen: [b]\n",
        ] {
            assert!(compile_text(bad).is_err(), "{bad}");
        }
    }
}
