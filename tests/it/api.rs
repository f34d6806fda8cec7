//! The local master end to end: the HTTP API (NDJSON streaming, job history, devices,
//! bearer token, bad input, /metrics) and `drover cmd` as a Salt user would run it.

use std::process::Command;

use serde_json::{json, Value};

use drover::config::Config;
use drover::run::Daemon;

use crate::support::*;

fn drover_bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_drover"))
}

async fn cli(args: Vec<String>) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || {
        let out = drover_bin().args(&args).output().expect("run drover");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

/// Writes the test's bearer token to `dir/name` with `mode`.
fn token_with_mode(dir: &std::path::Path, name: &str, mode: u32) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, "s3cret-token\n").unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
    path
}

#[actix_rt::test]
async fn http_api_and_cli() {
    logs();
    let sim = sim(12);
    let dir = tempfile::tempdir().unwrap();
    // A token file others can read is refused (see secrets.rs).
    let token_file = token_with_mode(dir.path(), "token", 0o600);
    let mut cfg = Config {
        fleet: fast_fleet(),
        ..Config::default()
    };
    cfg.http.listen = "127.0.0.1:0".parse().unwrap();
    cfg.http.token_file = Some(token_file.clone());
    let daemon = Daemon::start(&cfg, sim.inventory(), None)
        .await
        .expect("daemon");
    within(30, "settle", daemon.fleet.settled()).await;
    let base = format!("http://{}", daemon.http_addr);
    let client = reqwest::Client::new();

    // Without the token: refused.
    let r = client
        .post(format!("{base}/v1/jobs"))
        .json(&json!({"tgt": "*", "fun": "test.ping"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client
        .get(format!("{base}/v1/devices"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // NDJSON: header, one line per device, done.
    let r = client
        .post(format!("{base}/v1/jobs"))
        .bearer_auth("s3cret-token")
        .json(&json!({"tgt": "rest-000*", "fun": "test.ping"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/x-ndjson");
    let body = r.text().await.unwrap();
    let lines: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let jid = lines[0]["jid"].as_str().unwrap().to_owned();
    assert_eq!(lines[0]["minions"].as_array().unwrap().len(), 9);
    assert_eq!(lines.len(), 11);
    assert!(lines[1..10]
        .iter()
        .all(|l| l["return"] == json!(true) && l["jid"] == json!(jid)));
    assert_eq!(lines[10]["done"], json!(true));
    assert_eq!(lines[10]["returned"], json!(9));

    // The job is kept.
    let rec: Value = client
        .get(format!("{base}/v1/jobs/{jid}"))
        .bearer_auth("s3cret-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rec["returns"].as_array().unwrap().len(), 9);
    assert_eq!(rec["done"], json!(true));

    let devices: Value = client
        .get(format!("{base}/v1/devices"))
        .bearer_auth("s3cret-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(devices.as_array().unwrap().len(), 12);
    assert_eq!(devices[0]["state"], json!("up"));

    // Garbage and bad requests get a clear 4xx, not a dropped connection.
    for body in [
        "{not json",
        "{\"tgt\": \"*\"}",
        "{\"tgt\": \"*\", \"fun\": \"test.ping\", \"extra\": 1}",
    ] {
        let r = client
            .post(format!("{base}/v1/jobs"))
            .bearer_auth("s3cret-token")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{body}");
        let v: Value = r.json().await.unwrap();
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    let r = client
        .post(format!("{base}/v1/jobs"))
        .bearer_auth("s3cret-token")
        .json(&json!({"tgt": "E@(", "tgt_type": "compound", "fun": "test.ping"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("bad target"));

    // Admin plane: open, no token needed.
    let m = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // The gauge is process-wide and other tests' fleets share this process, so it
    // holds at least our 12; the exact sum is pinned by the registry's unit test.
    let up: f64 = m
        .lines()
        .find_map(|l| l.strip_prefix("drover_devices{driver=\"rest_sample\",state=\"up\"} "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no rest_sample up gauge in {m}"));
    assert!(up >= 12.0, "{m}");
    assert!(m.contains("drover_dispatch_admitted_total"));
    assert!(m.contains("drover_process_resident_memory_bytes"));
    assert!(!m.contains("s3cret"));
    assert_eq!(
        client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // The CLI, as a Salt user runs it.
    let common = [
        "--url".to_string(),
        base.clone(),
        "--token-file".into(),
        token_file.display().to_string(),
    ];
    let with = |extra: &[&str]| {
        let mut v = vec!["cmd".to_string()];
        v.extend(common.iter().cloned());
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let (code, out, err) = cli(with(&["--out", "json", "rest-0*", "test.ping"])).await;
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v.as_object().unwrap().len(), 12);
    assert!(v.as_object().unwrap().values().all(|x| *x == json!(true)));

    // The CLI, like the daemon, refuses a token file that others can read.
    let open_token = token_with_mode(dir.path(), "token-open", 0o644);
    let (code, _, err) = cli(vec![
        "cmd".into(),
        "--url".into(),
        base.clone(),
        "--token-file".into(),
        open_token.display().to_string(),
        "*".into(),
        "test.ping".into(),
    ])
    .await;
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("chmod 600") && !err.contains("s3cret"),
        "{err}"
    );

    let (code, out, err) = cli(with(&[
        "--out",
        "json",
        "-G",
        "os:RestExampleOS",
        "grains.items",
    ]))
    .await;
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["rest-0003"]["os"], json!("RestExampleOS"));

    sim.sim
        .set_fault_and_wait("rest-0002", drover::devsim::Fault::None)
        .await;
    let (code, out, err) = cli(with(&[
        "-L",
        "rest-0001,rest-0002",
        "service.start",
        "postgresql",
    ]))
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "rest-0001:\n    ----------\n    comment:\n        running\n    ret:\n        True\nrest-0002:\n    ----------\n    comment:\n        running\n    ret:\n        True\n"
    );
    assert_eq!(
        sim.sim.service_state("rest-0002", "postgresql").as_deref(),
        Some("running")
    );

    let (code, out, _) = cli(with(&[
        "--out",
        "yaml",
        "-L",
        "rest-0001",
        "pkg.install",
        "vim",
        "version=9.1",
    ]))
    .await;
    assert_eq!(code, 0);
    assert!(out.contains("rest-0001:"), "{out}");
    assert_eq!(
        sim.sim.package_version("rest-0001", "vim").as_deref(),
        Some("9.1")
    );

    // A failing device makes the exit code non-zero.
    let (code, out, _) = cli(with(&["--out", "json", "-L", "rest-0001", "nosuch.fun"])).await;
    assert_eq!(code, 1);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["rest-0001"],
        json!("'nosuch.fun' is not available.")
    );

    // Unreachable daemon: exit 2 with a message.
    let (code, _, err) = cli(vec![
        "cmd".into(),
        "--url".into(),
        "http://127.0.0.1:1".into(),
        "*".into(),
        "test.ping".into(),
    ])
    .await;
    assert_eq!(code, 2);
    assert!(err.contains("cannot reach"), "{err}");

    daemon.stop().await;
}

/// The job history's byte bound: a job bigger than it streams every return but keeps
/// only what fits (and says so), and the next job's returns push it out.
#[actix_rt::test]
async fn the_job_history_is_bounded_by_the_bytes_of_its_returns() {
    logs();
    let sim = sim(12);
    let mut cfg = Config {
        fleet: fast_fleet(),
        ..Config::default()
    };
    cfg.http.listen = "127.0.0.1:0".parse().unwrap();
    // Room for a few test.ping returns (a few hundred bytes each), not nine.
    cfg.fleet.job_history_bytes = 1500;
    let daemon = Daemon::start(&cfg, sim.inventory(), None)
        .await
        .expect("daemon");
    within(30, "settle", daemon.fleet.settled()).await;
    let base = format!("http://{}", daemon.http_addr);
    let client = reqwest::Client::new();
    let run = |tgt: &'static str| {
        let (client, base) = (client.clone(), base.clone());
        async move {
            let body = client
                .post(format!("{base}/v1/jobs"))
                .json(&json!({"tgt": tgt, "fun": "test.ping"}))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let lines: Vec<Value> = body
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            let jid = lines[0]["jid"].as_str().unwrap().to_owned();
            (jid, lines.len() - 2)
        }
    };
    let get = |jid: String| {
        let (client, base) = (client.clone(), base.clone());
        async move {
            client
                .get(format!("{base}/v1/jobs/{jid}"))
                .send()
                .await
                .unwrap()
        }
    };
    let (first, streamed) = run("rest-000*").await;
    assert_eq!(streamed, 9, "every return streams");
    let rec: Value = get(first.clone()).await.json().await.unwrap();
    let kept = rec["returns"].as_array().unwrap().len();
    assert!((1..9).contains(&kept), "kept {kept} of 9: {rec}");
    assert_eq!(rec["truncated"], json!(true));
    let (second, _) = run("rest-0001").await;
    assert_eq!(get(first).await.status(), 404, "the older job made room");
    let rec: Value = get(second).await.json().await.unwrap();
    assert_eq!(rec["returns"].as_array().unwrap().len(), 1);
    assert_eq!(rec["truncated"], json!(false));
    daemon.stop().await;
}

#[test]
fn check_config_reports_bad_files_with_exit_64() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("d.toml");
    let inv = dir.path().join("inv.toml");
    std::fs::write(&cfg, "inventory = [\"inv.toml\"]\n").unwrap();
    std::fs::write(&inv, "[[device]]\nid = \"a\"\nproxytype = \"rest\"\nurl = \"ftp://x/\"\n[[device]]\nid = \"a\"\nproxytype = \"rest\"\nurl = \"http://x/\"\n").unwrap();
    let out = drover_bin()
        .args(["check-config", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("inv.toml: device[0].url"), "{err}");
    assert!(
        err.contains("device[1].id: duplicate device id \"a\""),
        "{err}"
    );

    std::fs::write(
        &inv,
        "[[device]]\nid = \"a\"\nproxytype = \"rest\"\nurl = \"http://x/\"\n",
    )
    .unwrap();
    let out = drover_bin()
        .args(["check-config", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    std::fs::write(&cfg, "[fleet]\nbogus = 1\n").unwrap();
    let out = drover_bin()
        .args(["check-config", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bogus"));
}

#[actix_rt::test]
async fn demo_runs_end_to_end() {
    let (code, out, err) = cli(vec![
        "demo".into(),
        "-n".into(),
        "100".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--exit".into(),
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("test.ping: 100/100 returned, 100 True"),
        "{out}"
    );
    assert!(
        out.contains("service.status: 100/100 returned, 100 True"),
        "{out}"
    );
    assert!(out.contains("/metrics"), "{out}");
}
