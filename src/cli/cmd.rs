//! `drover cmd`: the client of `POST /v1/jobs`. Salt's CLI habits: target flags
//! (`-E -L -G -P -S -C`), `key=value` keyword arguments, YAML-typed arguments, a
//! progress bar on a terminal, and Salt-like, JSON or YAML output. Exits 1 when any
//! device failed or did not return, 2 when the job could not be submitted.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::Duration;

use clap::{ArgGroup, Args};
use serde_json::{Map, Value};

use drover::fleet::target::TargetType;
use drover::job::{Batch, JobRequest, Return, Tgt};

use super::output::{self, OutputFormat};

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("tgt_type").args(["pcre", "list", "grain", "grain_pcre", "pillar", "pillar_pcre", "ipcidr", "compound"])))]
pub struct CmdArgs {
    /// Target expression (glob by default).
    pub tgt: String,
    /// Function, e.g. test.ping.
    pub fun: String,
    /// Arguments; `key=value` becomes a keyword argument. Values are YAML-typed.
    pub args: Vec<String>,
    /// Target is a PCRE regular expression on the id.
    #[arg(short = 'E', long)]
    pub pcre: bool,
    /// Target is a comma-separated list of ids.
    #[arg(short = 'L', long)]
    pub list: bool,
    /// Target is a grain glob: `key:value` (`:` nests).
    #[arg(short = 'G', long)]
    pub grain: bool,
    /// Target is a grain PCRE: `key:regex`.
    #[arg(short = 'P', long = "grain-pcre")]
    pub grain_pcre: bool,
    /// Target is a pillar glob: `key:value` (`:` nests).
    #[arg(short = 'I', long)]
    pub pillar: bool,
    /// Target is a pillar PCRE: `key:regex`.
    #[arg(short = 'J', long = "pillar-pcre")]
    pub pillar_pcre: bool,
    /// Target is an IP address or CIDR on the device address.
    #[arg(short = 'S', long)]
    pub ipcidr: bool,
    /// Target is a compound expression (`G@os:x and web* or not L@a,b`).
    #[arg(short = 'C', long)]
    pub compound: bool,
    /// Run on at most this many devices at once (count or percentage).
    #[arg(short = 'b', long = "batch-size")]
    pub batch: Option<Batch>,
    /// Job timeout: seconds, or a duration like 1m30s.
    #[arg(short = 't', long)]
    pub timeout: Option<String>,
    /// Output: nested (Salt-like text), json, yaml.
    #[arg(long = "out", default_value = "nested")]
    pub out: OutputFormat,
    /// Do not show the progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// Base URL of the daemon's HTTP API.
    #[arg(long, env = "DROVER_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// File holding the bearer token (or set DROVER_TOKEN).
    #[arg(long, env = "DROVER_TOKEN_FILE")]
    pub token_file: Option<std::path::PathBuf>,
}

impl CmdArgs {
    fn tgt_type(&self) -> TargetType {
        match () {
            _ if self.pcre => TargetType::Pcre,
            _ if self.list => TargetType::List,
            _ if self.grain => TargetType::Grain,
            _ if self.grain_pcre => TargetType::GrainPcre,
            _ if self.pillar => TargetType::Pillar,
            _ if self.pillar_pcre => TargetType::PillarPcre,
            _ if self.ipcidr => TargetType::Ipcidr,
            _ if self.compound => TargetType::Compound,
            _ => TargetType::Glob,
        }
    }
}

pub fn main(a: CmdArgs) -> i32 {
    let timeout = match a.timeout.as_deref().map(parse_timeout).transpose() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("drover cmd: {e}");
            return 2;
        }
    };
    let (arg, kwarg) = parse_args(&a.args);
    let req = JobRequest {
        tgt: Tgt::Expr(a.tgt.clone()),
        tgt_type: a.tgt_type(),
        fun: a.fun.clone(),
        arg,
        kwarg,
        batch: a.batch,
        timeout,
        jid: None,
    };
    let (token, rt) = match super::devices::client_setup("cmd", a.token_file.as_deref()) {
        Ok(setup) => setup,
        Err(code) => return code,
    };
    let progress = !a.no_progress && std::io::stderr().is_terminal();
    match rt.block_on(submit(&a.url, token.as_deref(), &req, progress)) {
        Ok(result) => {
            out!("{}", output::render(&result.returns, a.out));
            for id in &result.missing {
                eprintln!("{id}: Minion did not return. [No response]");
            }
            if result.missing.is_empty() && result.returns.values().all(|r| r.success) {
                0
            } else {
                1
            }
        }
        Err(e) => {
            eprintln!("drover cmd: {e}");
            2
        }
    }
}

/// Returns by device id, plus ids the daemon targeted that never answered.
pub struct JobResult {
    pub returns: BTreeMap<String, Return>,
    pub missing: Vec<String>,
}

/// Posts the job and reads the NDJSON stream to its end.
pub async fn submit(
    url: &str,
    token: Option<&str>,
    req: &JobRequest,
    progress: bool,
) -> Result<JobResult, String> {
    let client = reqwest::Client::new();
    let mut rb = client
        .post(format!("{}/v1/jobs", url.trim_end_matches('/')))
        .json(req);
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    let mut resp = rb
        .send()
        .await
        .map_err(|e| format!("cannot reach {url}: {e}"))?;
    if !resp.status().is_success() {
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        let msg = body.get("error").and_then(Value::as_str).unwrap_or("");
        return Err(format!("{status}: {msg}"));
    }
    let mut buf: Vec<u8> = Vec::new();
    let mut minions: Vec<String> = Vec::new();
    let mut returns = BTreeMap::new();
    let mut bar: Option<indicatif::ProgressBar> = None;
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("stream broken: {e}"))?
    {
        buf.extend_from_slice(&chunk);
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let v: Value =
                serde_json::from_slice(&line).map_err(|e| format!("bad line from daemon: {e}"))?;
            if let Some(m) = v.get("minions").and_then(Value::as_array) {
                minions = m
                    .iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect();
                if progress && !minions.is_empty() {
                    let b = indicatif::ProgressBar::new(minions.len() as u64);
                    b.set_style(
                        indicatif::ProgressStyle::with_template(
                            "{bar:40} {pos}/{len} returned, {elapsed}",
                        )
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                    );
                    bar = Some(b);
                }
            } else if v.get("done").is_some() {
                break;
            } else {
                let r: Return = serde_json::from_value(v)
                    .map_err(|e| format!("bad return from daemon: {e}"))?;
                if let Some(b) = &bar {
                    b.inc(1);
                }
                returns.insert(r.id.clone(), r);
            }
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let missing = minions
        .into_iter()
        .filter(|m| !returns.contains_key(m))
        .collect();
    Ok(JobResult { returns, missing })
}

/// `30` is seconds (Salt's `-t`); anything else is a humantime duration.
fn parse_timeout(s: &str) -> Result<Duration, String> {
    if let Ok(secs) = s.trim().parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s).map_err(|e| format!("timeout {s:?}: {e}"))
}

/// Salt's CLI rule: `key=value` (key an identifier) is a keyword argument; values are
/// read as YAML, so `1` is a number and `True` a boolean.
pub fn parse_args(raw: &[String]) -> (Vec<Value>, Map<String, Value>) {
    let mut arg = Vec::new();
    let mut kwarg = Map::new();
    for a in raw {
        if let Some((k, v)) = a.split_once('=') {
            if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                kwarg.insert(k.to_owned(), yamlify(v));
                continue;
            }
        }
        arg.push(yamlify(a));
    }
    (arg, kwarg)
}

fn yamlify(s: &str) -> Value {
    match yaml_serde::from_str::<Value>(s) {
        Ok(Value::Null) if !s.is_empty() && s != "null" && s != "~" => Value::String(s.to_owned()),
        Ok(v) => v,
        Err(_) => Value::String(s.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_are_typed_and_split() {
        let (a, k) = parse_args(&[
            "apache".into(),
            "1".into(),
            "True".into(),
            "version=2.4".into(),
            "a=b=c".into(),
            "x y=z".into(),
        ]);
        assert_eq!(
            a,
            vec![
                Value::from("apache"),
                Value::from(1),
                Value::from(true),
                Value::from("x y=z")
            ]
        );
        assert_eq!(k["version"], Value::from(2.4));
        assert_eq!(k["a"], Value::from("b=c"));
    }

    #[test]
    fn timeouts() {
        assert_eq!(parse_timeout("30").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_timeout("1m").unwrap(), Duration::from_secs(60));
        assert!(parse_timeout("soon").is_err());
    }
}
