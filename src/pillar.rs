//! Salt pillar import: reads a pillar tree (`top.sls` plus `<name>.sls` or
//! `<name>/init.sls` files, plain YAML) and turns every imported minion's `proxy:`
//! block into a Drover inventory (`[[device]]` tables, TOML). The future
//! `drover import-pillar DIR` command is a thin wrapper around [`import_pillar`].
//!
//! What is understood, following Salt's own pillar compiler:
//! - `top.sls`: targets under `base:` (other saltenvs are reported and ignored), each a
//!   list of sls names plus optional `- match: glob|list` and `- ignore_missing: true`
//!   items. Targets of other match types (grain, pcre, compound, ...) need a live
//!   minion and are reported and skipped.
//! - Only ids a top file names can be enumerated: a literal glob target (no `*?[`) is
//!   one id, a `match: list` target names several. A real glob such as `'rest-*'`
//!   still applies to those ids, and to the caller's `known_ids`, matched with Python's
//!   `fnmatch` rules as Salt does; without known ids it is reported as a warning.
//! - sls files: `include:` (names, relative `.name`, `{name: {key: k}}`), merged
//!   recursively in Salt's order (later sls over earlier; an included file over the
//!   file that includes it), lists replaced rather than appended.
//! - Jinja is not rendered: a file containing `{%` or `{{` is reported with its path,
//!   and the minions whose pillar needs it are skipped (a partial pillar could yield a
//!   device with the wrong address or credentials). A Jinja `top.sls` is an error.
//! - `proxytype: rest_sample` (needs `url`) and `proxytype: snmp` (`host`, `port`,
//!   `version`, `community`, `user`, `auth_protocol`, `auth_password`,
//!   `priv_protocol`, `priv_password`) become devices; a block of Drover's other
//!   proxytypes (`ovs`, `netconf`, `rest`) is taken whole for its driver to check;
//!   other proxytypes are skipped with a warning.
//!
//! Warnings name files, minion ids, proxytypes and key names, never a value that
//! could be a secret (communities, passwords, URLs with credentials).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use serde_json::{Map, Value};

use crate::fnmatch::fnmatch;

/// The result of an import: the inventory text and what could not be imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportReport {
    /// A Drover inventory file: one `[[device]]` table per imported minion, by id.
    pub inventory_toml: String,
    /// How many `[[device]]` tables `inventory_toml` holds.
    pub devices: usize,
    /// One line per thing skipped or not understood; never holds a secret.
    pub warnings: Vec<String>,
}

/// A pillar tree that cannot be imported at all: the file and why.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PillarError {
    #[error("{}: cannot read{what}: {source}", file.display())]
    Read {
        file: PathBuf,
        /// What the file is, when it is not an ordinary SLS (" the top file").
        what: &'static str,
        #[source]
        source: std::sync::Arc<std::io::Error>,
    },
    #[error("{}: not valid YAML: {source}", file.display())]
    Yaml {
        file: PathBuf,
        #[source]
        source: std::sync::Arc<yaml_serde::Error>,
    },
    #[error("{}: {reason}", file.display())]
    Invalid { file: PathBuf, reason: String },
}

impl PillarError {
    fn new(file: &Path, reason: impl Into<String>) -> PillarError {
        PillarError::Invalid {
            file: file.to_owned(),
            reason: reason.into(),
        }
    }

    fn read(file: &Path, what: &'static str) -> impl FnOnce(std::io::Error) -> PillarError {
        let file = file.to_owned();
        move |e| PillarError::Read {
            file,
            what,
            source: std::sync::Arc::new(e),
        }
    }

    fn yaml(file: &Path) -> impl FnOnce(yaml_serde::Error) -> PillarError {
        let file = file.to_owned();
        move |e| PillarError::Yaml {
            file,
            source: std::sync::Arc::new(e),
        }
    }

    /// The file the problem is in.
    pub fn file(&self) -> &Path {
        match self {
            PillarError::Read { file, .. }
            | PillarError::Yaml { file, .. }
            | PillarError::Invalid { file, .. } => file,
        }
    }
}

/// Deepest `include:` chain followed; deeper is reported, not a stack overflow.
const MAX_INCLUDE_DEPTH: usize = 64;
/// Ids listed in one summarising warning before "and N more".
const IDS_SHOWN: usize = 5;

/// Reads the pillar tree at `dir` and builds a Drover inventory from the `proxy:`
/// block of every minion `top.sls` names, plus every id of `known_ids` (which lets
/// glob targets be expanded). Errors are a missing or malformed `top.sls`, an
/// unreadable file, or a file that is not valid YAML; everything else that cannot be
/// imported is a warning in the report.
pub fn import_pillar(dir: &Path, known_ids: &[String]) -> Result<ImportReport, PillarError> {
    let top_path = dir.join("top.sls");
    let text = std::fs::read_to_string(&top_path)
        .map_err(PillarError::read(&top_path, " the top file"))?;
    if is_jinja(&text) {
        return Err(PillarError::new(
            &top_path,
            "uses Jinja templating ({% or {{), which import does not render",
        ));
    }
    let mut warnings = Vec::new();
    let top = parse_top(&text, &top_path, &mut warnings)?;

    // The ids that can be imported: named in top.sls, or known to the caller.
    let mut candidates: BTreeSet<String> = known_ids.iter().cloned().collect();
    for entry in &top {
        match &entry.matcher {
            Matcher::Glob if !is_glob(&entry.target) => {
                candidates.insert(entry.target.clone());
            }
            Matcher::Glob => {
                if known_ids.is_empty() {
                    warnings.push(format!(
                        "top.sls: target {:?} is a glob; its minion ids cannot be listed, \
                         so it applies only to ids named elsewhere in top.sls (pass the \
                         known minion ids to expand it)",
                        entry.target
                    ));
                } else if !known_ids.iter().any(|id| fnmatch(&entry.target, id)) {
                    warnings.push(format!(
                        "top.sls: target {:?} matches none of the {} known ids",
                        entry.target,
                        known_ids.len()
                    ));
                }
            }
            Matcher::List(ids) => candidates.extend(ids.iter().cloned()),
            Matcher::Other(kind) => warnings.push(format!(
                "top.sls: target {:?} uses match: {kind}, which needs a live minion; skipped",
                entry.target
            )),
        }
    }

    let mut loader = Loader {
        dir: dir.to_owned(),
        cache: HashMap::new(),
    };
    let mut devices: Vec<Device> = Vec::new();
    let mut unmatched: Vec<String> = Vec::new();
    let mut no_proxy: Vec<String> = Vec::new();
    let mut broken: BTreeMap<String, Vec<String>> = BTreeMap::new();
    // Ids a deltaproxy control minion lists are imported too, once each.
    let mut queue: VecDeque<String> = candidates.iter().cloned().collect();
    let mut seen: BTreeSet<String> = candidates.clone();
    while let Some(id) = queue.pop_front() {
        let sls = sls_for(&top, &id);
        if sls.is_empty() {
            unmatched.push(id);
            continue;
        }
        let pillar = match loader.compile(&sls)? {
            Ok(p) => p,
            Err(problem) => {
                broken.entry(problem).or_default().push(id);
                continue;
            }
        };
        let Some(proxy) = pillar.get("proxy") else {
            no_proxy.push(id);
            continue;
        };
        let Value::Object(proxy) = proxy else {
            warnings.push(format!("minion {id:?}: proxy: is not a mapping; skipped"));
            continue;
        };
        match proxy.get("proxytype").and_then(Value::as_str) {
            // deltaproxy: this control id runs the listed ids, each with a pillar
            // (and a proxy: block) of its own.
            Some("deltaproxy") => {
                let ids = proxy.get("ids").and_then(Value::as_array);
                for sub in ids.into_iter().flatten().filter_map(Value::as_str) {
                    if seen.insert(sub.to_owned()) {
                        queue.push_back(sub.to_owned());
                    }
                }
            }
            Some(_) => match convert(&id, proxy, &mut warnings) {
                Ok(device) => devices.push(device),
                Err(warning) => warnings.push(warning),
            },
            // The 2014 layout: `proxy: {<name>: {proxytype, id, ...}}`, one minion
            // naming the proxies it runs; each one's `id` is its minion id.
            None if !proxy.is_empty() && proxy.values().all(Value::is_object) => {
                for (name, block) in proxy {
                    let Value::Object(block) = block else {
                        continue;
                    };
                    let sub = block.get("id").and_then(Value::as_str).unwrap_or(name);
                    let mut fields = block.clone();
                    fields.remove("id");
                    match convert(sub, &fields, &mut warnings) {
                        Ok(device) => devices.push(device),
                        Err(warning) => warnings.push(warning),
                    }
                }
            }
            None => warnings.push(format!("minion {id:?}: proxy: has no proxytype; skipped")),
        }
    }
    for (problem, ids) in &broken {
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        warnings.push(format!(
            "{problem}; skipped the minions whose pillar needs it: {}",
            list_ids(&ids)
        ));
    }
    if !no_proxy.is_empty() {
        let ids: Vec<&str> = no_proxy.iter().map(String::as_str).collect();
        warnings.push(format!(
            "no proxy: block in the pillar of {} minion(s), skipped: {}",
            ids.len(),
            list_ids(&ids)
        ));
    }
    if !unmatched.is_empty() {
        let ids: Vec<&str> = unmatched.iter().map(String::as_str).collect();
        warnings.push(format!(
            "{} known id(s) match no base target in top.sls: {}",
            ids.len(),
            list_ids(&ids)
        ));
    }

    Ok(ImportReport {
        inventory_toml: render_toml(&devices),
        devices: devices.len(),
        warnings,
    })
}

// ---------------------------------------------------------------------------
// top.sls

/// One target of the `base` environment, in file order.
#[derive(Debug)]
struct TopEntry {
    target: String,
    matcher: Matcher,
    sls: Vec<String>,
    ignore_missing: bool,
}

#[derive(Debug)]
enum Matcher {
    Glob,
    List(Vec<String>),
    Other(String),
}

impl TopEntry {
    fn matches(&self, id: &str) -> bool {
        match &self.matcher {
            Matcher::Glob => fnmatch(&self.target, id),
            Matcher::List(ids) => ids.iter().any(|i| i == id),
            Matcher::Other(_) => false,
        }
    }
}

/// Parses top.sls as `yaml_serde::Value`, whose mappings keep file order: the order
/// of targets decides which sls wins a merge.
fn parse_top(
    text: &str,
    path: &Path,
    warnings: &mut Vec<String>,
) -> Result<Vec<TopEntry>, PillarError> {
    use yaml_serde::Value as Y;
    let doc: Y = yaml_serde::from_str(text).map_err(PillarError::yaml(path))?;
    let Y::Mapping(envs) = untag(doc) else {
        return Err(PillarError::new(
            path,
            "expected a mapping of saltenvs (base: ...)",
        ));
    };
    let mut base = None;
    for (env, targets) in envs {
        let env = scalar_text(&env).unwrap_or_default();
        if env == "base" {
            base = Some(targets);
        } else {
            warnings.push(format!(
                "top.sls: saltenv {env:?} is not imported (only base is)"
            ));
        }
    }
    let Some(base) = base else {
        return Err(PillarError::new(path, "no base: environment"));
    };
    let targets = match untag(base) {
        Y::Null => return Ok(Vec::new()),
        Y::Mapping(m) => m,
        _ => {
            return Err(PillarError::new(
                path,
                "base: must map targets to lists of sls names",
            ))
        }
    };
    let mut entries = Vec::new();
    for (target, items) in targets {
        let Some(target) = scalar_text(&target) else {
            return Err(PillarError::new(
                path,
                "a target under base: is not a string",
            ));
        };
        let items = match untag(items) {
            Y::Null => Vec::new(),
            Y::Sequence(s) => s,
            _ => {
                return Err(PillarError::new(
                    path,
                    format!("target {target:?} must be followed by a list of sls names"),
                ))
            }
        };
        let mut entry = TopEntry {
            target,
            matcher: Matcher::Glob,
            sls: Vec::new(),
            ignore_missing: false,
        };
        let mut kind = String::from("glob");
        for item in items {
            match untag(item) {
                Y::Mapping(options) => {
                    for (k, v) in options {
                        match scalar_text(&k).as_deref() {
                            Some("match") => kind = scalar_text(&v).unwrap_or_default(),
                            Some("ignore_missing") => {
                                entry.ignore_missing = matches!(untag(v), Y::Bool(true));
                            }
                            _ => {}
                        }
                    }
                }
                other => match scalar_text(&other) {
                    Some(name) => entry.sls.push(name),
                    None => {
                        return Err(PillarError::new(
                            path,
                            format!("target {:?}: an sls entry is not a name", entry.target),
                        ))
                    }
                },
            }
        }
        entry.matcher = match kind.as_str() {
            "glob" => Matcher::Glob,
            "list" => Matcher::List(
                entry
                    .target
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect(),
            ),
            _ => Matcher::Other(kind),
        };
        entries.push(entry);
    }
    Ok(entries)
}

/// The sls names a minion gets, in top order, each once, with its `ignore_missing`.
fn sls_for(top: &[TopEntry], id: &str) -> Vec<(String, bool)> {
    let mut out: Vec<(String, bool)> = Vec::new();
    for entry in top.iter().filter(|e| e.matches(id)) {
        for name in &entry.sls {
            if !out.iter().any(|(n, _)| n == name) {
                out.push((name.clone(), entry.ignore_missing));
            }
        }
    }
    out
}

fn untag(v: yaml_serde::Value) -> yaml_serde::Value {
    match v {
        yaml_serde::Value::Tagged(t) => untag(t.value),
        other => other,
    }
}

fn scalar_text(v: &yaml_serde::Value) -> Option<String> {
    use yaml_serde::Value as Y;
    match v {
        Y::String(s) => Some(s.clone()),
        Y::Number(n) => Some(n.to_string()),
        Y::Bool(b) => Some(b.to_string()),
        Y::Tagged(t) => scalar_text(&t.value),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// sls files

/// One parsed sls file: its data without `include`, and its includes resolved to
/// absolute sls names.
#[derive(Debug)]
struct Loaded {
    data: Map<String, Value>,
    includes: Vec<(String, Option<String>)>,
}

/// What loading one sls name gave, cached per name.
#[derive(Debug, Clone)]
enum Slot {
    Found(Rc<Loaded>),
    /// Neither `<name>.sls` nor `<name>/init.sls` exists (the message says where).
    Missing(String),
    /// Exists but cannot be imported (Jinja, a bad name); the message names the file.
    Unsupported(String),
}

/// A compiled pillar, or the reason (naming a file) why a minion's pillar is incomplete.
enum Rendered {
    Found(Map<String, Value>),
    Missing(String),
    Broken(String),
}

struct Loader {
    dir: PathBuf,
    cache: HashMap<String, Slot>,
}

impl Loader {
    /// Merges a minion's sls in order, as Salt's `render_pillar` does. `Ok(Err(_))`
    /// is a reason to skip this minion; `Err` a tree that cannot be imported.
    fn compile(
        &mut self,
        sls: &[(String, bool)],
    ) -> Result<Result<Map<String, Value>, String>, PillarError> {
        let mut pillar = Map::new();
        let mut mods = BTreeSet::new();
        for (name, ignore_missing) in sls {
            match self.render(name, &mut mods, 0)? {
                Rendered::Found(state) => merge(&mut pillar, state),
                Rendered::Missing(_) if *ignore_missing => {}
                Rendered::Missing(why) | Rendered::Broken(why) => return Ok(Err(why)),
            }
        }
        Ok(Ok(pillar))
    }

    /// One sls with its includes merged in (an included file wins, as in Salt's
    /// `render_pstate`); `mods` keeps each file to one visit and breaks cycles.
    fn render(
        &mut self,
        name: &str,
        mods: &mut BTreeSet<String>,
        depth: usize,
    ) -> Result<Rendered, PillarError> {
        mods.insert(name.to_owned());
        let loaded = match self.load(name)? {
            Slot::Found(l) => l,
            Slot::Missing(why) => return Ok(Rendered::Missing(why)),
            Slot::Unsupported(why) => return Ok(Rendered::Broken(why)),
        };
        let mut state = loaded.data.clone();
        for (inc, key) in &loaded.includes {
            if mods.contains(inc) {
                continue;
            }
            if depth >= MAX_INCLUDE_DEPTH {
                return Ok(Rendered::Broken(format!(
                    "sls {name:?}: includes nest deeper than {MAX_INCLUDE_DEPTH}"
                )));
            }
            match self.render(inc, mods, depth + 1)? {
                Rendered::Found(sub) => {
                    let sub = match key {
                        Some(k) => Map::from_iter([(k.clone(), Value::Object(sub))]),
                        None => sub,
                    };
                    merge(&mut state, sub);
                }
                Rendered::Missing(why) | Rendered::Broken(why) => {
                    return Ok(Rendered::Broken(format!("{why} (included by {name:?})")))
                }
            }
        }
        Ok(Rendered::Found(state))
    }

    fn load(&mut self, name: &str) -> Result<Slot, PillarError> {
        if let Some(slot) = self.cache.get(name) {
            return Ok(slot.clone());
        }
        let slot = self.read(name)?;
        self.cache.insert(name.to_owned(), slot.clone());
        Ok(slot)
    }

    fn read(&self, name: &str) -> Result<Slot, PillarError> {
        if name.contains(['*', '?', '[']) {
            return Ok(Slot::Unsupported(format!(
                "sls {name:?}: glob sls names are not supported"
            )));
        }
        let comps: Vec<&str> = name.split(['.', '/']).collect();
        if comps.iter().any(|c| c.is_empty()) {
            return Ok(Slot::Unsupported(format!(
                "sls {name:?}: not a valid sls name"
            )));
        }
        let base = comps.iter().fold(self.dir.clone(), |p, c| p.join(c));
        let flat = base.with_extension("sls");
        let init = base.join("init.sls");
        let (path, is_init) = if flat.is_file() {
            (flat, false)
        } else if init.is_file() {
            (init, true)
        } else {
            return Ok(Slot::Missing(format!(
                "sls {name:?} not found (looked for {} and {})",
                flat.display(),
                init.display()
            )));
        };
        let text = std::fs::read_to_string(&path).map_err(PillarError::read(&path, ""))?;
        if is_jinja(&text) {
            return Ok(Slot::Unsupported(format!(
                "{}: uses Jinja templating ({{% or {{{{), which import does not render",
                path.display()
            )));
        }
        let doc: yaml_serde::Value =
            yaml_serde::from_str(&text).map_err(PillarError::yaml(&path))?;
        let mut data = match yaml_to_json(doc) {
            Value::Null => Map::new(),
            Value::Object(m) => m,
            _ => return Err(PillarError::new(&path, "does not hold a mapping")),
        };
        let mut includes = Vec::new();
        if let Some(inc) = data.remove("include") {
            let Value::Array(items) = inc else {
                return Err(PillarError::new(&path, "include: must be a list"));
            };
            let dotted = comps.join(".");
            for item in items {
                let (inc_name, key) = match item {
                    Value::String(s) => (s, None),
                    Value::Object(m) if m.len() == 1 => {
                        let Some((n, opts)) = m.into_iter().next() else {
                            continue;
                        };
                        let key = opts.get("key").and_then(text_of);
                        (n, key)
                    }
                    _ => {
                        return Err(PillarError::new(
                            &path,
                            "an include: entry is neither a name nor {name: {key: ...}}",
                        ))
                    }
                };
                match resolve_relative(&dotted, is_init, &inc_name) {
                    Some(abs) => includes.push((abs, key)),
                    None => {
                        return Ok(Slot::Unsupported(format!(
                            "{}: include {inc_name:?} climbs above the pillar root",
                            path.display()
                        )))
                    }
                }
            }
        }
        Ok(Slot::Found(Rc::new(Loaded { data, includes })))
    }
}

/// Salt's relative include: `.b` from `a.x` (a/x.sls) is `a.b`; from a/x/init.sls it
/// is `a.x.b`; each further dot climbs one level.
fn resolve_relative(current: &str, is_init: bool, inc: &str) -> Option<String> {
    let rest = inc.trim_start_matches('.');
    let levels = inc.len() - rest.len();
    if levels == 0 {
        return Some(inc.to_owned());
    }
    let mut comps: Vec<&str> = current.split('.').collect();
    if is_init {
        comps.push("init");
    }
    if levels > comps.len() || rest.is_empty() {
        return None;
    }
    comps.truncate(comps.len() - levels);
    comps.push(rest);
    Some(comps.join("."))
}

/// Salt's pillar merge (strategy `smart` with the YAML renderer): mappings merge key
/// by key, anything else (lists included) is replaced by the later value.
fn merge(dest: &mut Map<String, Value>, upd: Map<String, Value>) {
    for (k, v) in upd {
        match (dest.get_mut(&k), v) {
            (Some(Value::Object(d)), Value::Object(u)) => merge(d, u),
            (_, v) => {
                dest.insert(k, v);
            }
        }
    }
}

/// YAML to JSON values; non-string keys (`161: x`) become their text, as they would
/// print in Salt, instead of failing the whole file.
fn yaml_to_json(v: yaml_serde::Value) -> Value {
    use yaml_serde::Value as Y;
    match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map_or_else(|| Value::String(n.to_string()), Value::Number)
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(s) => Value::Array(s.into_iter().map(yaml_to_json).collect()),
        Y::Mapping(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    let key = scalar_text(&k).unwrap_or_else(|| format!("{k:?}"));
                    (key, yaml_to_json(v))
                })
                .collect(),
        ),
        Y::Tagged(t) => yaml_to_json(t.value),
    }
}

fn is_jinja(text: &str) -> bool {
    text.contains("{%") || text.contains("{{")
}

// ---------------------------------------------------------------------------
// proxy: blocks to devices

/// One `[[device]]` table: `id` and then its keys in the order they are written.
#[derive(Debug)]
struct Device {
    id: String,
    fields: Vec<(String, Value)>,
}

const REST_KEYS: &[&str] = &["url"];
const SNMP_KEYS: &[&str] = &[
    "host",
    "port",
    "version",
    "community",
    "user",
    "auth_protocol",
    "auth_password",
    "priv_protocol",
    "priv_password",
];

/// A minion's `proxy:` block as an inventory device table (`id`, `proxytype`, then
/// the driver's keys), the shape [`crate::inventory::Inventory::from_tables`] reads.
/// `rest_sample` and `snmp` blocks keep the keys Drover uses (Salt's own blocks carry
/// others) with YAML's loose scalars normalised; a block of another Drover proxytype
/// (`ovs`, `netconf`, `rest`) is taken whole, for its driver to check. The error, or
/// the warnings pushed, name keys and never their values.
pub fn device_table(
    id: &str,
    proxy: &Map<String, Value>,
    warnings: &mut Vec<String>,
) -> Result<Map<String, Value>, String> {
    let d = convert(id, proxy, warnings)?;
    let mut t = Map::new();
    t.insert("id".into(), Value::String(d.id));
    t.extend(d.fields);
    Ok(t)
}

/// A minion's `proxy:` block as a device, or the warning saying why not. Keys Drover
/// does not import are named (not their values) in an extra warning.
fn convert(
    id: &str,
    proxy: &Map<String, Value>,
    warnings: &mut Vec<String>,
) -> Result<Device, String> {
    let Some(proxytype) = proxy.get("proxytype").and_then(Value::as_str) else {
        return Err(format!("minion {id:?}: proxy: has no proxytype; skipped"));
    };
    let (proxytype, keys): (&str, &[&'static str]) = match proxytype {
        "rest_sample" => ("rest_sample", REST_KEYS),
        "snmp" => ("snmp", SNMP_KEYS),
        other if crate::drivers::is_proxytype(other) => {
            let mut fields = vec![("proxytype".to_owned(), Value::String(other.to_owned()))];
            fields.extend(
                proxy
                    .iter()
                    .filter(|(k, v)| *k != "proxytype" && !v.is_null())
                    .map(|(k, v)| (k.clone(), v.clone())),
            );
            return Ok(Device {
                id: id.to_owned(),
                fields,
            });
        }
        other => {
            return Err(format!(
                "minion {id:?}: proxytype {other:?} is not supported by Drover; skipped"
            ))
        }
    };
    let mut fields = vec![("proxytype".to_owned(), Value::String(proxytype.to_owned()))];
    for &key in keys {
        let Some(value) = proxy.get(key).filter(|v| !v.is_null()) else {
            continue;
        };
        let converted = match key {
            "port" => port_of(value).map(Value::from),
            "version" => version_of(value).map(|v| Value::String(v.to_owned())),
            _ => text_of(value).map(Value::String),
        };
        match converted {
            Some(v) => fields.push((key.to_owned(), v)),
            None => {
                let expected = match key {
                    "port" => "a port number",
                    "version" => "1, 2c or 3",
                    _ => "a string",
                };
                return Err(format!(
                    "minion {id:?}: proxy.{key} is not {expected}; skipped"
                ));
            }
        }
    }
    let has = |k: &str| fields.iter().any(|(f, _)| f == k);
    let required: &[&str] = match proxytype {
        "rest_sample" => &["url"],
        _ if fields
            .iter()
            .any(|(f, v)| f == "version" && v.as_str() == Some("3")) =>
        {
            &["host", "user"]
        }
        _ => &["host"],
    };
    if let Some(missing) = required.iter().find(|k| !has(k)) {
        return Err(format!(
            "minion {id:?}: proxytype {proxytype:?} needs proxy.{missing}; skipped"
        ));
    }
    let ignored: Vec<&str> = proxy
        .keys()
        .map(String::as_str)
        .filter(|k| *k != "proxytype" && !keys.contains(k))
        .collect();
    if !ignored.is_empty() {
        warnings.push(format!(
            "minion {id:?}: proxy keys not imported: {}",
            ignored.join(", ")
        ));
    }
    Ok(Device {
        id: id.to_owned(),
        fields,
    })
}

/// A string, or a number or boolean written unquoted in YAML (`community: 12345`).
fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn port_of(v: &Value) -> Option<u16> {
    let n = match v {
        Value::Number(n) => n.as_u64()?,
        Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    u16::try_from(n).ok().filter(|p| *p != 0)
}

/// SNMP version as Drover writes it: "1", "2c" or "3" (from 1, 2, "v2c", "V3", ...).
fn version_of(v: &Value) -> Option<&'static str> {
    let text = text_of(v)?.trim().to_ascii_lowercase();
    match text.strip_prefix('v').unwrap_or(&text) {
        "1" => Some("1"),
        "2" | "2c" => Some("2c"),
        "3" => Some("3"),
        _ => None,
    }
}

/// The inventory text; each value goes through `toml::Value`'s writer, so quotes,
/// backslashes and control characters in ids and passwords are escaped correctly.
fn render_toml(devices: &[Device]) -> String {
    let mut out = String::from(
        "# Drover inventory imported from a Salt pillar tree (drover import-pillar).\n",
    );
    let _ = writeln!(out, "# {} device(s).", devices.len());
    for d in devices {
        out.push_str("\n[[device]]\n");
        let _ = writeln!(out, "id = {}", toml::Value::String(d.id.clone()));
        for (key, value) in &d.fields {
            let Some(value) = json_to_toml(value) else {
                continue;
            };
            let _ = writeln!(out, "{} = {value}", toml_key(key));
        }
    }
    out
}

/// A key as TOML writes it: bare when it can be, quoted otherwise.
fn toml_key(key: &str) -> String {
    if !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        key.to_owned()
    } else {
        toml::Value::String(key.to_owned()).to_string()
    }
}

/// A pillar value as TOML; `None` for a null, which TOML cannot write (and which
/// means "not set" in a `proxy:` block anyway).
fn json_to_toml(v: &Value) -> Option<toml::Value> {
    Some(match v {
        Value::Null => return None,
        Value::Bool(b) => toml::Value::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => toml::Value::Integer(i),
            None => toml::Value::Float(n.as_f64()?),
        },
        Value::String(s) => toml::Value::String(s.clone()),
        Value::Array(a) => toml::Value::Array(a.iter().filter_map(json_to_toml).collect()),
        Value::Object(o) => toml::Value::Table(
            o.iter()
                .filter_map(|(k, v)| Some((k.clone(), json_to_toml(v)?)))
                .collect(),
        ),
    })
}

fn list_ids(ids: &[&str]) -> String {
    let mut s = ids
        .iter()
        .take(IDS_SHOWN)
        .map(|id| format!("{id:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    if ids.len() > IDS_SHOWN {
        let _ = write!(s, " and {} more", ids.len() - IDS_SHOWN);
    }
    s
}

// ---------------------------------------------------------------------------
// glob targets

/// Whether a top-file target is a glob that can name more than one id.
fn is_glob(target: &str) -> bool {
    target.contains(['*', '?', '['])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `files` (path relative to the tree, contents) into a fresh temp dir.
    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (rel, text) in files {
            let path = dir.path().join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        dir
    }

    fn import(files: &[(&str, &str)], known: &[&str]) -> ImportReport {
        let dir = tree(files);
        let known: Vec<String> = known.iter().map(|s| s.to_string()).collect();
        import_pillar(dir.path(), &known).unwrap()
    }

    /// The inventory parsed back: id → its table.
    fn devices(report: &ImportReport) -> BTreeMap<String, toml::Table> {
        let doc: toml::Table = toml::from_str(&report.inventory_toml).unwrap();
        let list = doc
            .get("device")
            .and_then(|d| d.as_array())
            .cloned()
            .unwrap_or_default();
        assert_eq!(list.len(), report.devices, "{}", report.inventory_toml);
        list.into_iter()
            .map(|d| {
                let t = d.as_table().unwrap().clone();
                (t["id"].as_str().unwrap().to_owned(), t)
            })
            .collect()
    }

    fn warned(report: &ImportReport, needle: &str) -> bool {
        report.warnings.iter().any(|w| w.contains(needle))
    }

    #[test]
    fn rest_sample_device() {
        let r = import(
            &[
                ("top.sls", "base:\n  'rest-0001':\n    - devices.rest0001\n"),
                (
                    "devices/rest0001.sls",
                    "proxy:\n  proxytype: rest_sample\n  url: http://10.0.0.1:8000/\n",
                ),
            ],
            &[],
        );
        assert_eq!(r.devices, 1);
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        let d = &devices(&r)["rest-0001"];
        assert_eq!(d["proxytype"].as_str(), Some("rest_sample"));
        assert_eq!(d["url"].as_str(), Some("http://10.0.0.1:8000/"));
        assert_eq!(d.len(), 3);
        assert!(r
            .inventory_toml
            .contains("[[device]]\nid = \"rest-0001\"\nproxytype"));
    }

    #[test]
    fn snmp_v2c_and_v3_from_nested_dirs() {
        let r = import(
            &[
                (
                    "top.sls",
                    "base:\n  core-sw1:\n    - snmp.core\n  edge-sw1:\n    - snmp.edge.v3\n",
                ),
                // snmp/core/init.sls: the `init.sls` form of a nested name.
                (
                    "snmp/core/init.sls",
                    "proxy:\n  proxytype: snmp\n  host: 10.1.0.1\n  port: 1161\n  \
                     version: 2c\n  community: 'pa\"ss\\word'\n",
                ),
                (
                    "snmp/edge/v3.sls",
                    "proxy:\n  proxytype: snmp\n  host: edge1.example.net\n  version: 3\n  \
                     user: ops\n  auth_protocol: SHA256\n  auth_password: authpass123\n  \
                     priv_protocol: AES\n  priv_password: privpass123\n",
                ),
            ],
            &[],
        );
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        let d = devices(&r);
        let core = &d["core-sw1"];
        assert_eq!(core["proxytype"].as_str(), Some("snmp"));
        assert_eq!(core["host"].as_str(), Some("10.1.0.1"));
        assert_eq!(core["port"].as_integer(), Some(1161));
        assert_eq!(core["version"].as_str(), Some("2c"));
        assert_eq!(core["community"].as_str(), Some("pa\"ss\\word"));
        let edge = &d["edge-sw1"];
        assert_eq!(edge["version"].as_str(), Some("3"));
        for (k, v) in [
            ("host", "edge1.example.net"),
            ("user", "ops"),
            ("auth_protocol", "SHA256"),
            ("auth_password", "authpass123"),
            ("priv_protocol", "AES"),
            ("priv_password", "privpass123"),
        ] {
            assert_eq!(edge[k].as_str(), Some(v), "{k}");
        }
        assert!(edge.get("community").is_none());
    }

    #[test]
    fn snmp_values_are_normalised_and_checked() {
        let r = import(
            &[
                ("top.sls", "base:\n  a:\n    - a\n  b:\n    - b\n  c:\n    - c\n  d:\n    - d\n"),
                (
                    "a.sls",
                    "proxy: {proxytype: snmp, host: h, port: '161', version: v2c, community: 12345}\n",
                ),
                (
                    "b.sls",
                    "proxy: {proxytype: snmp, host: h, version: 9, community: topsecret}\n",
                ),
                ("c.sls", "proxy: {proxytype: snmp, host: h, version: 3}\n"),
                ("d.sls", "proxy: {proxytype: snmp, host: h, port: 70000}\n"),
            ],
            &[],
        );
        let d = devices(&r);
        assert_eq!(d.len(), 1);
        assert_eq!(d["a"]["port"].as_integer(), Some(161));
        assert_eq!(d["a"]["version"].as_str(), Some("2c"));
        assert_eq!(d["a"]["community"].as_str(), Some("12345"));
        assert!(warned(&r, "minion \"b\": proxy.version is not 1, 2c or 3"));
        assert!(warned(
            &r,
            "minion \"c\": proxytype \"snmp\" needs proxy.user"
        ));
        assert!(warned(&r, "minion \"d\": proxy.port is not a port number"));
        assert!(!r.warnings.iter().any(|w| w.contains("topsecret")));
    }

    #[test]
    fn jinja_file_is_reported_with_its_path() {
        let r = import(
            &[
                (
                    "top.sls",
                    "base:\n  ok:\n    - ok\n  templ:\n    - site.templated\n",
                ),
                (
                    "ok.sls",
                    "proxy:\n  proxytype: rest_sample\n  url: http://ok/\n",
                ),
                (
                    "site/templated.sls",
                    "proxy:\n  proxytype: rest_sample\n  url: {{ salt['pillar.get']('x') }}\n",
                ),
            ],
            &[],
        );
        assert_eq!(r.devices, 1);
        let w = r
            .warnings
            .iter()
            .find(|w| w.contains("Jinja"))
            .expect("a Jinja warning");
        assert!(w.contains("site/templated.sls"), "{w}");
        assert!(w.contains("\"templ\""), "{w}");
    }

    #[test]
    fn jinja_top_file_is_an_error() {
        let dir = tree(&[(
            "top.sls",
            "base:\n{% for i in range(3) %}\n  'r{{ i }}':\n    - r\n{% endfor %}\n",
        )]);
        let err = import_pillar(dir.path(), &[]).unwrap_err();
        assert_eq!(err.file(), dir.path().join("top.sls"));
        assert!(err.to_string().contains("Jinja"), "{err}");
    }

    #[test]
    fn unknown_proxytype_is_skipped_with_a_warning() {
        let r = import(
            &[
                ("top.sls", "base:\n  junos1:\n    - junos\n"),
                (
                    "junos.sls",
                    "proxy:\n  proxytype: junos\n  host: 10.0.0.9\n  passwd: hunter2\n",
                ),
            ],
            &[],
        );
        assert_eq!(r.devices, 0);
        assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
        assert!(r.warnings[0].contains("\"junos1\""));
        assert!(r.warnings[0].contains("proxytype \"junos\""));
        assert!(!r.warnings[0].contains("hunter2"));
        assert!(toml::from_str::<toml::Table>(&r.inventory_toml).is_ok());
    }

    const GLOB_TREE: &[(&str, &str)] = &[
        (
            "top.sls",
            "base:\n  'lab-*':\n    - lab\n  'lab-01':\n    - lab01\n  'x,y':\n    - match: list\n    - lab\n",
        ),
        (
            "lab.sls",
            "proxy:\n  proxytype: rest_sample\n  url: http://lab/\n",
        ),
        ("lab01.sls", "proxy:\n  url: http://lab01/\n"),
    ];

    #[test]
    fn glob_targets_without_known_ids_warn() {
        let r = import(GLOB_TREE, &[]);
        let d = devices(&r);
        // lab-01 is named; the glob still applies to it and lab01 overrides its url.
        assert_eq!(d.keys().collect::<Vec<_>>(), ["lab-01", "x", "y"]);
        assert_eq!(d["lab-01"]["url"].as_str(), Some("http://lab01/"));
        assert_eq!(d["lab-01"]["proxytype"].as_str(), Some("rest_sample"));
        assert_eq!(d["x"]["url"].as_str(), Some("http://lab/"));
        assert!(warned(&r, "target \"lab-*\" is a glob"), "{:?}", r.warnings);
    }

    #[test]
    fn glob_targets_expand_against_known_ids() {
        let r = import(GLOB_TREE, &["lab-02", "lab-03", "db-1"]);
        let d = devices(&r);
        assert_eq!(
            d.keys().collect::<Vec<_>>(),
            ["lab-01", "lab-02", "lab-03", "x", "y"]
        );
        assert_eq!(d["lab-03"]["url"].as_str(), Some("http://lab/"));
        assert!(!warned(&r, "is a glob"), "{:?}", r.warnings);
        assert!(
            warned(&r, "1 known id(s) match no base target"),
            "{:?}",
            r.warnings
        );
        assert!(warned(&r, "\"db-1\""));
    }

    #[test]
    fn includes_merge_in_salt_order() {
        let r = import(
            &[
                (
                    "top.sls",
                    "base:\n  '*':\n    - common\n    - ghost\n    - ignore_missing: true\n  \
                     r1:\n    - devs.r1\n  r2:\n    - devs.r2\n",
                ),
                ("common.sls", "proxy:\n  proxytype: rest_sample\n  url: http://common/\n"),
                // `.creds` is devs.creds; the included file wins over the includer.
                (
                    "devs/r1.sls",
                    "include:\n  - .creds\n  - wrapped:\n      key: extra\nproxy:\n  url: http://r1/\n",
                ),
                ("devs/creds.sls", "proxy:\n  url: http://from-include/\n"),
                ("wrapped.sls", "a: 1\n"),
                ("devs/r2.sls", "include:\n  - nowhere\nproxy:\n  url: http://r2/\n"),
                ("other.sls", "top: []\n"),
            ],
            &[],
        );
        let d = devices(&r);
        assert_eq!(d.len(), 1, "{:?}", r.warnings);
        assert_eq!(d["r1"]["url"].as_str(), Some("http://from-include/"));
        // The missing top-level `ghost` is ignored; the missing include is not.
        assert!(!warned(&r, "\"ghost\""), "{:?}", r.warnings);
        assert!(warned(&r, "sls \"nowhere\" not found"), "{:?}", r.warnings);
        assert!(warned(&r, "included by \"devs.r2\""), "{:?}", r.warnings);
    }

    #[test]
    fn other_matchers_envs_and_no_proxy_warn() {
        let r = import(
            &[
                (
                    "top.sls",
                    "base:\n  'G@os:Junos':\n    - match: compound\n    - x\n  plain:\n    - plain\n\
                     dev:\n  r1:\n    - r1\n",
                ),
                ("plain.sls", "ntp: [pool.ntp.org]\n"),
            ],
            &[],
        );
        assert_eq!(r.devices, 0);
        assert!(warned(&r, "match: compound"));
        assert!(warned(&r, "saltenv \"dev\""));
        assert!(warned(
            &r,
            "no proxy: block in the pillar of 1 minion(s), skipped: \"plain\""
        ));
    }

    #[test]
    fn broken_trees_are_errors_naming_the_file() {
        let empty = tempfile::tempdir().unwrap();
        let err = import_pillar(empty.path(), &[]).unwrap_err();
        assert_eq!(err.file(), empty.path().join("top.sls"));

        let dir = tree(&[
            ("top.sls", "base:\n  a:\n    - bad\n"),
            ("bad.sls", "proxy: [unclosed\n"),
        ]);
        let err = import_pillar(dir.path(), &[]).unwrap_err();
        assert_eq!(err.file(), dir.path().join("bad.sls"));
        assert!(err.to_string().contains("not valid YAML"), "{err}");

        let dir = tree(&[("top.sls", "prod:\n  a: [a]\n")]);
        let err = import_pillar(dir.path(), &[]).unwrap_err();
        assert!(err.to_string().contains("no base"), "{err}");
    }

    #[test]
    fn include_cycles_terminate() {
        let r = import(
            &[
                ("top.sls", "base:\n  a:\n    - a\n"),
                (
                    "a.sls",
                    "include: [b]\nproxy: {proxytype: rest_sample, url: 'http://a/'}\n",
                ),
                ("b.sls", "include: [a]\n"),
            ],
            &[],
        );
        assert_eq!(r.devices, 1);
    }

    #[test]
    fn relative_includes_resolve_like_salt() {
        assert_eq!(resolve_relative("a.x", false, ".b").as_deref(), Some("a.b"));
        assert_eq!(
            resolve_relative("a.x", true, ".b").as_deref(),
            Some("a.x.b")
        );
        assert_eq!(resolve_relative("a.x", false, "..b").as_deref(), Some("b"));
        assert_eq!(resolve_relative("a", false, "...b"), None);
        assert_eq!(
            resolve_relative("a.x", false, "c.d").as_deref(),
            Some("c.d")
        );
    }

    #[test]
    fn the_2014_layout_names_its_proxies_inside() {
        // The seed's own pillar: the controller minion `docker` runs one rest_sample
        // proxy whose minion id is `proxy_docker`.
        let r = import(
            &[
                ("top.sls", "base:\n  docker:\n    - proxyminion\n"),
                (
                    "proxyminion.sls",
                    "proxy:\n  rest_sample:\n    proxytype: rest_sample\n    url: http://127.0.0.1:8080/\n    id: proxy_docker\n",
                ),
            ],
            &[],
        );
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        let d = &devices(&r)["proxy_docker"];
        assert_eq!(d["proxytype"].as_str(), Some("rest_sample"));
        assert_eq!(d["url"].as_str(), Some("http://127.0.0.1:8080/"));
        assert!(crate::inventory::Inventory::parse(&r.inventory_toml, Path::new("x.toml")).is_ok());
    }

    #[test]
    fn deltaproxy_control_ids_bring_their_listed_ids() {
        let r = import(
            &[
                (
                    "top.sls",
                    "base:\n  control:\n    - control\n  'dev-*':\n    - devices\n",
                ),
                (
                    "control.sls",
                    "proxy:\n  proxytype: deltaproxy\n  ids:\n    - dev-1\n    - dev-2\n",
                ),
                (
                    "devices.sls",
                    "proxy:\n  proxytype: rest_sample\n  url: http://10.0.0.1/\n",
                ),
            ],
            &[],
        );
        let ds = devices(&r);
        assert_eq!(
            ds.keys().collect::<Vec<_>>(),
            ["dev-1", "dev-2"],
            "{:?}",
            r.warnings
        );
        assert!(!warned(&r, "deltaproxy"), "{:?}", r.warnings);
    }
}
