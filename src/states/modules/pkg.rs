//! Salt's `pkg` states (`salt/states/pkg.py`): installed (with `version` or a `pkgs`
//! list), removed and latest. Devices report one version per package and no
//! repository, so `latest` installs what is missing and keeps what is there.

use serde_json::{json, Map, Value};

use super::{Args, Ctx, StateRet};
use crate::functions::as_text;

/// `(name, wanted version)` from `pkgs` (names or `{name: version}`) or `name`.
fn targets(args: &Args<'_>) -> Vec<(String, Option<String>)> {
    match args.get("pkgs") {
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(|p| match p {
                Value::Object(m) => m.iter().next().map(|(k, v)| (k.clone(), as_text(v))),
                other => as_text(other).map(|n| (n, None)),
            })
            .collect(),
        _ => vec![(args.name().to_owned(), args.text("version"))],
    }
}

async fn version(ctx: &Ctx<'_>, pkg: &str) -> Result<String, String> {
    Ok(as_text(&ctx.call("pkg.version", vec![Value::from(pkg)]).await?).unwrap_or_default())
}

pub(super) async fn run(
    ctx: &Ctx<'_>,
    fun: &str,
    args: &Args<'_>,
) -> Option<Result<StateRet, String>> {
    let res = match fun {
        "installed" | "latest" => installed(ctx, args, fun == "latest").await,
        "removed" | "purged" => removed(ctx, args).await,
        _ => return None,
    };
    Some(res)
}

async fn installed(ctx: &Ctx<'_>, args: &Args<'_>, latest: bool) -> Result<StateRet, String> {
    let mut r = StateRet::new(args.name());
    let wanted = targets(args);
    let versioned = wanted.iter().any(|(_, v)| v.is_some());
    let mut todo = Vec::new();
    for (pkg, want) in &wanted {
        let have = version(ctx, pkg).await?;
        let ok = !have.is_empty() && want.as_ref().is_none_or(|w| *w == have || latest);
        if !ok {
            todo.push((pkg.clone(), want.clone(), have));
        }
    }
    if todo.is_empty() {
        r.comment = if latest {
            "All packages are up-to-date".into()
        } else if versioned {
            "All specified packages are already installed and are at the desired version".into()
        } else {
            "All specified packages are already installed".into()
        };
        return Ok(r);
    }
    let names: Vec<&str> = todo.iter().map(|(p, _, _)| p.as_str()).collect();
    if ctx.test {
        r.result = None;
        r.comment = format!(
            "The following packages would be installed/updated: {}",
            names.join(", ")
        );
        return Ok(r);
    }
    let mut failed = Vec::new();
    for (pkg, want, old) in &todo {
        let mut kw = Map::new();
        if let Some(v) = want {
            kw.insert("version".into(), Value::from(v.clone()));
        }
        ctx.call_kw("pkg.install", vec![Value::from(pkg.clone())], kw)
            .await?;
        let new = version(ctx, pkg).await?;
        if new.is_empty() || want.as_ref().is_some_and(|w| *w != new) {
            failed.push(pkg.clone());
        } else {
            r.changes
                .insert(pkg.clone(), json!({"old": old, "new": new}));
        }
    }
    if failed.is_empty() {
        r.comment = format!(
            "The following packages were installed/updated: {}",
            names.join(", ")
        );
    } else {
        r.result = Some(false);
        r.comment = format!(
            "The following packages failed to install/update: {}",
            failed.join(", ")
        );
    }
    Ok(r)
}

async fn removed(ctx: &Ctx<'_>, args: &Args<'_>) -> Result<StateRet, String> {
    let mut r = StateRet::new(args.name());
    let mut todo = Vec::new();
    for (pkg, _) in targets(args) {
        let have = version(ctx, &pkg).await?;
        if !have.is_empty() {
            todo.push((pkg, have));
        }
    }
    if todo.is_empty() {
        r.comment = "All specified packages are already absent".into();
        return Ok(r);
    }
    let names: Vec<&str> = todo.iter().map(|(p, _)| p.as_str()).collect();
    if ctx.test {
        r.result = None;
        r.comment = format!(
            "The following packages will be removed: {}",
            names.join(", ")
        );
        return Ok(r);
    }
    for (pkg, old) in &todo {
        ctx.call("pkg.remove", vec![Value::from(pkg.clone())])
            .await?;
        if version(ctx, pkg).await?.is_empty() {
            r.changes
                .insert(pkg.clone(), json!({"old": old, "new": ""}));
        }
    }
    if r.changes.len() == todo.len() {
        r.comment = "All targeted packages were removed.".into();
    } else {
        r.result = Some(false);
        r.comment = "The following packages were not removed: ".to_owned()
            + &todo
                .iter()
                .filter(|(p, _)| !r.changes.contains_key(p))
                .map(|(p, _)| p.as_str())
                .collect::<Vec<_>>()
                .join(", ");
    }
    Ok(r)
}
