//! The top file: which SLS files a device gets in which saltenv. Each env's
//! `top.sls` is rendered like an SLS (with `sls = ""`), and its targets are matched
//! with Drover's own target engine (compound by default, `- match: grain` etc.), as
//! Salt's `confirm_top` does; `_master_tops` data is merged after.

use indexmap::IndexMap;
use serde_json::Value;
use yaml_serde::Value as Yaml;

use super::render::{render, Source};
use super::yaml::key_text;
use super::{Host, Opts, StateError};
use crate::fileserver::FileSource;
use crate::fleet::target::{Candidate, Target, NO_PILLAR};
use crate::job::TargetType;

/// `{saltenv: [sls, ...]}` in the order Salt would apply them.
pub(crate) type TopMatches = IndexMap<String, Vec<String>>;

/// The SLS files the top files give this device.
pub(crate) async fn matches(
    host: &dyn Host,
    files: &dyn FileSource,
    opts: &Opts,
) -> Result<TopMatches, StateError> {
    let mut envs = vec!["base".to_owned()];
    if opts.saltenv != "base" {
        envs = vec![opts.saltenv.clone()];
    } else {
        for e in files.envs().await? {
            if !envs.contains(&e) {
                envs.push(e);
            }
        }
    }
    let mut out = TopMatches::new();
    // Which env sections were already defined by an earlier top file (Salt's
    // `merge` strategy: the first top file that defines an env wins it).
    let mut claimed: Vec<String> = Vec::new();
    let mut errors = Vec::new();
    for env in &envs {
        let Some(text) = files.get(env, "top.sls").await? else {
            continue;
        };
        let src = Source {
            saltenv: env.clone(),
            sls: String::new(),
            tplfile: "top.sls".into(),
        };
        let top = match render(host, &src, text, opts).await {
            Ok(t) => t,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let mut defined_here = Vec::new();
        for (section_env, targets) in top {
            if section_env == "include" || claimed.contains(&section_env) {
                continue;
            }
            defined_here.push(section_env.clone());
            let Yaml::Mapping(targets) = targets else {
                continue;
            };
            for (expr, items) in targets {
                let expr = key_text(&expr).map_err(|e| StateError::Compile(vec![e]))?;
                match matches_target(host, &expr, &items) {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(e) => {
                        errors.push(format!("top file {env}:top.sls, target {expr:?}: {e}"));
                        continue;
                    }
                }
                let list = out.entry(section_env.clone()).or_default();
                if let Yaml::Sequence(items) = items {
                    for item in items {
                        if let Yaml::String(sls) = item {
                            if !list.contains(&sls) {
                                list.push(sls);
                            }
                        }
                    }
                }
            }
        }
        claimed.extend(defined_here);
    }
    if !errors.is_empty() {
        return Err(StateError::Compile(errors));
    }
    for (env, sls) in files.master_tops(host.id(), &host.grains()).await? {
        let list = out.entry(env).or_default();
        for s in sls {
            if !list.contains(&s) {
                list.push(s);
            }
        }
    }
    out.retain(|_, v| !v.is_empty());
    Ok(out)
}

fn matches_target(host: &dyn Host, expr: &str, items: &Yaml) -> Result<bool, String> {
    let mut kind = TargetType::Compound;
    if let Yaml::Sequence(items) = items {
        for item in items {
            if let Yaml::Mapping(m) = item {
                for (k, v) in m {
                    if matches!(k, Yaml::String(s) if s == "match") {
                        let name = v.as_str().unwrap_or_default();
                        kind = match name {
                            "nodegroup" | "data" => {
                                return Err(format!("match: {name} is not supported by Drover"))
                            }
                            n => n.parse().map_err(|e| format!("{e}"))?,
                        };
                    }
                }
            }
        }
    }
    let target = Target::parse(expr, kind).map_err(|e| e.to_string())?;
    let grains: std::sync::Arc<Value> = host.grains();
    let pillar = target.uses_pillar().then(|| host.pillar());
    Ok(target.matches(&Candidate {
        id: host.id(),
        grains: &grains,
        pillar: pillar.as_deref().unwrap_or(&NO_PILLAR),
        address: None,
    }))
}
