//! `drover devices`: the devices of a running daemon, their state and last error.

use std::path::Path;

use clap::Args;
use serde_json::Value;

#[derive(Args, Debug)]
pub struct DevicesArgs {
    /// Base URL of the daemon's HTTP API.
    #[arg(long, env = "DROVER_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// File holding the bearer token (or set DROVER_TOKEN).
    #[arg(long, env = "DROVER_TOKEN_FILE")]
    pub token_file: Option<std::path::PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Read this inventory file instead of asking a daemon (nothing is started).
    #[arg(long)]
    pub inventory: Option<std::path::PathBuf>,
    /// With --inventory: show the shard of each device, or only shard I of N.
    #[arg(long)]
    pub shard: Option<drover::inventory::Shard>,
}

/// The offline view: which devices an inventory holds and which shard owns each.
fn offline(path: &Path, shard: Option<drover::inventory::Shard>, json: bool) -> i32 {
    let inv = match drover::inventory::Inventory::load(&[path.to_owned()]) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("drover devices: {e}");
            return super::EXIT_CONFIG;
        }
    };
    let rows: Vec<(String, &str, Option<u32>)> = inv
        .devices
        .iter()
        .filter(|d| shard.is_none_or(|s| s.owns(&d.id)))
        .map(|d| {
            let owner = shard.map(|s| drover::inventory::Shard::owner(&d.id, s.count));
            (d.id.clone(), d.proxytype(), owner)
        })
        .collect();
    if json {
        let v: Vec<Value> = rows
            .iter()
            .map(|(id, p, o)| serde_json::json!({"id": id, "proxytype": p, "shard": o}))
            .collect();
        outln!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        outln!("{:<32} {:<12} SHARD", "ID", "PROXYTYPE");
        for (id, p, o) in &rows {
            let o = o.map(|o| o.to_string()).unwrap_or_else(|| "-".into());
            outln!("{id:<32} {p:<12} {o}");
        }
        eprintln!("{} of {} device(s)", rows.len(), inv.len());
    }
    0
}

/// The bearer token from a file or `DROVER_TOKEN`. A token file is refused when others
/// can read it, as the daemon refuses its own.
pub fn token(file: Option<&Path>) -> Result<Option<String>, String> {
    if let Some(f) = file {
        let bytes = drover::secrets::read(f).map_err(|e| format!("token file {e}"))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| format!("token file {}: not UTF-8", f.display()))?;
        return Ok(Some(text.trim().to_owned()));
    }
    Ok(std::env::var("DROVER_TOKEN").ok().filter(|t| !t.is_empty()))
}

/// What an API client command needs before it talks to the daemon: the token and a
/// one-thread runtime. `Err` is the exit code, with the reason already printed.
pub fn client_setup(
    tool: &str,
    token_file: Option<&Path>,
) -> Result<(Option<String>, tokio::runtime::Runtime), i32> {
    let token = token(token_file).map_err(|e| {
        eprintln!("drover {tool}: {e}");
        2
    })?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("drover {tool}: {e}");
            2
        })?;
    Ok((token, rt))
}

pub fn main(a: DevicesArgs) -> i32 {
    if let Some(path) = &a.inventory {
        return offline(path, a.shard, a.json);
    }
    let (token, rt) = match client_setup("devices", a.token_file.as_deref()) {
        Ok(setup) => setup,
        Err(code) => return code,
    };
    let res: Result<Value, String> = rt.block_on(async {
        let mut rb =
            reqwest::Client::new().get(format!("{}/v1/devices", a.url.trim_end_matches('/')));
        if let Some(t) = &token {
            rb = rb.bearer_auth(t);
        }
        let resp = rb
            .send()
            .await
            .map_err(|e| format!("cannot reach {}: {e}", a.url))?;
        let status = resp.status();
        let v: Value = resp.json().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!(
                "{status}: {}",
                v.get("error").and_then(Value::as_str).unwrap_or("")
            ));
        }
        Ok(v)
    });
    match res {
        Ok(v) if a.json => {
            outln!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            0
        }
        Ok(v) => {
            outln!(
                "{:<24} {:<12} {:<9} {:<16} {:>8}  LAST ERROR",
                "ID",
                "PROXYTYPE",
                "STATE",
                "ADDRESS",
                "RESTARTS"
            );
            for d in v.as_array().into_iter().flatten() {
                let s = |k: &str| d.get(k).and_then(Value::as_str).unwrap_or("-").to_owned();
                outln!(
                    "{:<24} {:<12} {:<9} {:<16} {:>8}  {}",
                    s("id"),
                    s("proxytype"),
                    s("state"),
                    s("address"),
                    d.get("restarts").and_then(Value::as_u64).unwrap_or(0),
                    s("last_error")
                );
            }
            0
        }
        Err(e) => {
            eprintln!("drover devices: {e}");
            2
        }
    }
}
