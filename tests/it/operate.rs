//! Operating the daemon: live inventory reload (HTTP and SIGHUP), graceful shutdown
//! that delivers every due return, shards, and `drover run` exiting 0 on SIGTERM.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use drover::config::Config;
use drover::devsim::Fault;
use drover::fleet::dispatcher::SHUTDOWN_MESSAGE;
use drover::fleet::registry::DeviceState;
use drover::fleet::target::TargetType;
use drover::inventory::Shard;
use drover::job::Outcome;
use drover::run::Daemon;

use crate::support::*;

/// The `[[device]]` tables for these simulated devices, with extra grains.
fn inventory_for(sim: &SimThread, ids: &[&str], site: &str) -> String {
    sim.sim
        .devices()
        .iter()
        .filter(|d| ids.contains(&d.id.as_str()))
        .map(|d| {
            format!(
                "[[device]]\nid = \"{}\"\nproxytype = \"rest_sample\"\nurl = \"{}\"\ngrains = {{ site = \"{site}\" }}\n",
                d.id, d.url
            )
        })
        .collect()
}

fn daemon_config(dir: &Path) -> Config {
    let mut cfg = Config {
        fleet: fast_fleet(),
        inventory: vec!["inv.toml".into()],
        ..Config::default()
    };
    cfg.http.listen = "127.0.0.1:0".parse().unwrap();
    cfg.base_dir = dir.to_owned();
    cfg
}

#[actix_rt::test]
async fn reload_applies_a_diff_and_leaves_running_jobs_alone() {
    let sim = sim(3);
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("inv.toml");
    std::fs::write(&inv, inventory_for(&sim, &["rest-0001", "rest-0002"], "a")).unwrap();
    let cfg = daemon_config(dir.path());
    let source = drover::inventory::InventorySource::from_config(&cfg);
    let daemon = Daemon::start(&cfg, source.load().unwrap(), Some(source))
        .await
        .unwrap();
    within(30, "settle", daemon.fleet.settled()).await;
    let base = format!("http://{}", daemon.http_addr);
    let client = reqwest::Client::new();

    // A job is running on rest-0001 while the inventory changes around it.
    sim.sim
        .set_fault("rest-0001", Fault::Slow(Duration::from_millis(700)));
    let mut req = request("rest-0001", "test.ping", vec![]);
    req.tgt_type = TargetType::List;
    let mut running = daemon.fleet.submit(req).await.unwrap();

    std::fs::write(&inv, inventory_for(&sim, &["rest-0001", "rest-0003"], "a")).unwrap();
    let r = client
        .post(format!("{base}/v1/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let diff: Value = r.json().await.unwrap();
    assert_eq!(
        diff,
        json!({"added": ["rest-0003"], "removed": ["rest-0002"], "changed": []})
    );

    let ret = within(10, "running job", running.returns.recv())
        .await
        .unwrap();
    assert_eq!(
        ret.ret,
        json!(true),
        "the unaffected device's job finished normally: {ret:?}"
    );
    assert_eq!(daemon.fleet.registry.get("rest-0001").unwrap().restarts, 0);
    within(
        10,
        "new device up",
        daemon
            .fleet
            .registry
            .wait_for(|r| r.state("rest-0003") == Some(DeviceState::Up)),
    )
    .await;
    assert!(daemon.fleet.registry.get("rest-0002").is_none());

    // A bad inventory is rejected as a whole; the running fleet keeps its own.
    std::fs::write(
        &inv,
        "[[device]]\nid = \"x\"\nproxytype = \"rest\"\nurl = \"http://h/\"\nbogus = 1\n",
    )
    .unwrap();
    let r = client
        .post(format!("{base}/v1/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let err = r.text().await.unwrap();
    assert!(err.contains("inv.toml") && err.contains("bogus"), "{err}");
    let mut ids: Vec<String> = daemon
        .fleet
        .registry
        .views()
        .into_iter()
        .map(|v| v.id)
        .collect();
    ids.sort();
    assert_eq!(ids, ["rest-0001", "rest-0003"]);

    // A changed device restarts with its new settings.
    std::fs::write(
        &inv,
        inventory_for(&sim, &["rest-0001"], "a") + &inventory_for(&sim, &["rest-0003"], "b"),
    )
    .unwrap();
    let diff = daemon.master.reload().await.unwrap();
    assert_eq!(diff.changed, ["rest-0003"]);
    within(
        10,
        "changed device up",
        daemon
            .fleet
            .registry
            .wait_for(|r| r.state("rest-0003") == Some(DeviceState::Up)),
    )
    .await;
    assert_eq!(
        one(
            &daemon.fleet,
            "rest-0003",
            "grains.get",
            vec![json!("site")]
        )
        .await
        .ret,
        json!("b")
    );
    daemon.stop().await;
}

#[actix_rt::test]
async fn graceful_shutdown_lets_jobs_finish_within_the_grace_period() {
    let sim = sim(4);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = daemon_config(dir.path());
    cfg.fleet.shutdown_grace = Duration::from_secs(10);
    let daemon = Daemon::start(&cfg, sim.inventory(), None).await.unwrap();
    within(30, "settle", daemon.fleet.settled()).await;
    for id in sim.ids() {
        sim.sim
            .set_fault(&id, Fault::Slow(Duration::from_millis(300)));
    }
    let fleet = daemon.fleet.clone();
    let mut h = fleet
        .submit(request("*", "test.ping", vec![]))
        .await
        .unwrap();
    let stopping = actix_rt::spawn(daemon.stop());
    let mut rets = Vec::new();
    within(20, "returns", async {
        while let Some(r) = h.returns.recv().await {
            rets.push(r);
        }
    })
    .await;
    assert_exactly_one_each(&h.minions, &rets);
    assert!(rets.iter().all(|r| r.ret == json!(true)), "{rets:?}");
    within(20, "stop", stopping).await.unwrap();
    let refused = fleet.submit(request("*", "test.ping", vec![])).await;
    assert!(refused.is_err_and(|e| e.to_string().contains("shutting down")));
}

#[actix_rt::test]
async fn graceful_shutdown_cuts_long_jobs_short_with_error_returns() {
    let sim = sim(3);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = daemon_config(dir.path());
    cfg.fleet.shutdown_grace = Duration::from_millis(200);
    let daemon = Daemon::start(&cfg, sim.inventory(), None).await.unwrap();
    within(30, "settle", daemon.fleet.settled()).await;
    for id in sim.ids() {
        sim.sim.set_fault(&id, Fault::Slow(Duration::from_secs(30)));
    }
    let mut h = daemon
        .fleet
        .submit(request("*", "test.ping", vec![]))
        .await
        .unwrap();
    let stopping = actix_rt::spawn(daemon.stop());
    let mut rets = Vec::new();
    // Far less than the devices' 30 s: the grace period, not the devices, ends it.
    within(10, "cut-short returns", async {
        while let Some(r) = h.returns.recv().await {
            rets.push(r);
        }
    })
    .await;
    assert_exactly_one_each(&h.minions, &rets);
    for r in &rets {
        assert!(!r.success);
        assert_eq!(r.outcome, Outcome::Rejected, "{r:?}");
        assert_eq!(r.ret, json!(SHUTDOWN_MESSAGE));
    }
    within(10, "stop", stopping).await.unwrap();
}

#[actix_rt::test]
async fn a_shard_serves_only_its_devices() {
    let sim = sim(30);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("inv.toml"), sim.sim.inventory_toml()).unwrap();
    let mut cfg = daemon_config(dir.path());
    cfg.shard = Some("1/3".parse().unwrap());
    let source = drover::inventory::InventorySource::from_config(&cfg);
    let daemon = Daemon::start(&cfg, source.load().unwrap(), Some(source))
        .await
        .unwrap();
    within(30, "settle", daemon.fleet.settled()).await;
    let mine: Vec<String> = sim
        .ids()
        .into_iter()
        .filter(|id| Shard::owner(id, 3) == 1)
        .collect();
    assert!(!mine.is_empty() && mine.len() < 30);
    let (minions, rets) = run_job(&daemon.fleet, request("*", "test.ping", vec![])).await;
    assert_eq!(minions, mine);
    assert_exactly_one_each(&minions, &rets);
    daemon.stop().await;
}

#[test]
fn drover_run_reloads_on_sighup_and_exits_zero_on_sigterm() {
    let sim = sim(2);
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("inv.toml");
    std::fs::write(&inv, inventory_for(&sim, &["rest-0001"], "a")).unwrap();
    let cfg = dir.path().join("drover.toml");
    std::fs::write(
        &cfg,
        "inventory = [\"inv.toml\"]\n[http]\nlisten = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_drover"))
        .args(["run", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut wait_for = |needle: &str| {
        for line in lines.by_ref() {
            let line = line.unwrap();
            if line.contains(needle) {
                return line;
            }
        }
        panic!("drover exited before logging {needle:?}");
    };
    wait_for("Drover started");
    std::fs::write(&inv, inventory_for(&sim, &["rest-0001", "rest-0002"], "a")).unwrap();
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    let reloaded = wait_for("Inventory reloaded");
    assert!(reloaded.contains("added=1"), "{reloaded}");
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    wait_for("Drover stopped");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn import_pillar_turns_proxy_pillars_into_an_inventory() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::create_dir_all(p.join("net")).unwrap();
    std::fs::write(
        p.join("top.sls"),
        "base:\n  core-1:\n    - core\n  sw-1:\n    - net.sw\n  'edge-*':\n    - core\n",
    )
    .unwrap();
    std::fs::write(
        p.join("core.sls"),
        "proxy:\n  proxytype: rest_sample\n  url: https://10.0.0.1/api\n",
    )
    .unwrap();
    std::fs::write(
        p.join("net/sw.sls"),
        "proxy:\n  proxytype: snmp\n  host: 10.0.0.2\n  version: 3\n  user: ops\n  auth_protocol: SHA\n  auth_password: s3cret-auth\n  priv_protocol: AES\n  priv_password: s3cret-priv\n",
    )
    .unwrap();
    let out = p.join("inventory.toml");
    let res = Command::new(env!("CARGO_BIN_EXE_drover"))
        .args(["import-pillar"])
        .arg(p)
        .arg("-o")
        .arg(&out)
        .args(["--id", "edge-7", "--id", "other"])
        .output()
        .unwrap();
    assert_eq!(
        res.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(
        !stderr.contains("s3cret"),
        "secrets never in warnings: {stderr}"
    );
    let inv = drover::inventory::Inventory::load(&[out]).unwrap();
    let ids: Vec<&str> = inv.devices.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["core-1", "edge-7", "sw-1"]);
    assert_eq!(inv.devices[0].proxytype(), "rest_sample");
    assert_eq!(inv.devices[2].proxytype(), "snmp");
    assert_eq!(inv.devices[2].address(), Some("10.0.0.2".parse().unwrap()));
}
