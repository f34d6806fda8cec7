//! Devices declared only in Salt pillar (deltaproxy's layout, `[master]
//! pillar_inventory`) against a real `salt-master`: they answer, read their pillar,
//! share mine data through the master, run a pillar schedule whose returns land in
//! the master's job cache, and a pillar edit plus `saltutil.refresh_pillar` adds a
//! device without a restart.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use drover::devsim::snmp::{SnmpSim, SnmpSimConfig};
use drover::devsim::OnThread;
use drover::inventory::{Inventory, InventorySource, PillarDevices};
use drover::run::Daemon;

use crate::salt_master::*;
use crate::support::*;

/// The sims' inventory tables by id, as `proxy:` blocks (JSON is YAML).
fn proxy_blocks(toml_text: &str) -> Vec<(String, Value)> {
    let t: toml::Table = toml::from_str(toml_text).expect("sim inventory");
    let devices = t
        .get("device")
        .and_then(|d| d.as_array())
        .cloned()
        .unwrap_or_default();
    devices
        .into_iter()
        .map(|d| {
            let mut v = serde_json::to_value(d).expect("json");
            let id = v["id"].as_str().unwrap_or_default().to_owned();
            if let Some(o) = v.as_object_mut() {
                o.remove("id");
                o.remove("grains");
            }
            (id, v)
        })
        .collect()
}

/// Polls `salt <tgt> <fun...>` until `ok` accepts the JSON (bounded).
async fn salt_until(
    master: &SaltMaster,
    tgt: &str,
    fun: &[&str],
    secs: u64,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    let start = Instant::now();
    loop {
        let (v, text) = master.salt(&[tgt], fun).await;
        if ok(&v) {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "{fun:?} on {tgt}: {text}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[actix_rt::test]
async fn devices_declared_in_pillar_share_mine_and_run_schedules() {
    let Some((_one, tmp, master)) = salt_case(
        "devices_declared_in_pillar_share_mine_and_run_schedules",
        "",
    )
    .await
    else {
        return;
    };
    let rest = sim_at(3, 31490);
    let snmp = OnThread::start(|| {
        SnmpSim::start(SnmpSimConfig {
            count: 1,
            id_prefix: "sw-".into(),
            ..SnmpSimConfig::default()
        })
    })
    .expect("snmp simulator starts");
    let mut blocks = proxy_blocks(&rest.sim.inventory_toml());
    blocks.extend(proxy_blocks(&snmp.sim.inventory_toml("2c")));
    let ids: Vec<String> = blocks.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(ids, ["rest-0001", "rest-0002", "rest-0003", "sw-0001"]);

    let pillar = master.root.join("srv/pillar");
    let write = |name: &str, text: String| std::fs::write(pillar.join(name), text).expect("sls");
    let mut top = String::from("base:\n  ctl:\n    - ctl\n  '*':\n    - common\n");
    for (id, block) in &blocks {
        let sls = id.replace('-', "_");
        top.push_str(&format!("  {id}:\n    - {sls}\n"));
        write(&format!("{sls}.sls"), json!({ "proxy": block }).to_string());
    }
    write("top.sls", top);
    let listed =
        |ids: &[&str]| json!({"proxy": {"proxytype": "deltaproxy", "ids": ids}}).to_string();
    write("ctl.sls", listed(&["rest-0001", "rest-0002", "sw-0001"]));
    write(
        "common.sls",
        "mine_functions:\n  os_grain:\n    mine_function: grains.get\n    key: os\n".into(),
    );
    write(
        "rest_0001.sls",
        json!({
            "proxy": blocks[0].1,
            "schedule": {"ping2": {"function": "test.ping", "seconds": 2}},
        })
        .to_string(),
    );
    let watch = EventWatch::start(&master);

    let mut cfg = master.drover_config(&tmp.path().join("drover-pki"), None);
    cfg.master.pillar_inventory = Some("ctl".into());
    cfg.fleet.state_dir = Some(tmp.path().join("state"));
    let source = InventorySource {
        pillar: Some(PillarDevices::new("ctl", tmp.path())),
        ..InventorySource::default()
    };
    let daemon = Daemon::start(&cfg, Inventory::default(), Some(source))
        .await
        .expect("daemon");
    master
        .ping_until_all(&["rest-0001", "rest-0002", "sw-0001"], 120)
        .await;
    for id in ["rest-0001", "rest-0002", "sw-0001"] {
        watch.wait_for(&format!("salt/minion/{id}/start"), 30).await;
    }
    assert_eq!(
        daemon.fleet.registry.len(),
        3,
        "only the listed ids are devices"
    );

    let (v, text) = master.salt(&["*"], &["pillar.get", "proxy:url"]).await;
    for (id, block) in &blocks[..2] {
        assert_eq!(v[id], block["url"], "{text}");
    }
    let (v, text) = master.salt(&["sw-0001"], &["snmp.get", "sysName.0"]).await;
    assert_eq!(
        v["sw-0001"][0]["value"],
        json!("sw-0001"),
        "an SNMP device from pillar answers: {text}"
    );

    // Mine: rest-0002 sees the others' data, sent by the __mine_interval job at
    // start and by mine.send.
    let v = salt_until(
        &master,
        "rest-0002",
        &["mine.get", "*", "os_grain"],
        60,
        |v| v["rest-0002"]["rest-0001"].is_string() && v["rest-0002"]["sw-0001"].is_string(),
    )
    .await;
    assert_eq!(v["rest-0002"]["rest-0001"], json!("RestExampleOS"), "{v}");
    let (v, text) = master
        .salt(
            &["rest-0001"],
            &["mine.send", "pinged", "mine_function=test.ping"],
        )
        .await;
    assert_eq!(v["rest-0001"], json!(true), "{text}");
    let (v, text) = master
        .salt(&["sw-0001"], &["mine.get", "rest-0001", "pinged"])
        .await;
    assert_eq!(v["sw-0001"], json!({"rest-0001": true}), "{text}");
    let (v, text) = master
        .salt(&["sw-0001"], &["mine.get", "rest-0001", "pinged,os_grain"])
        .await;
    assert_eq!(
        v["sw-0001"],
        json!({"pinged": {"rest-0001": true}, "os_grain": {"rest-0001": "RestExampleOS"}}),
        "{text}"
    );
    let (v, text) = master
        .salt(&["rest-0001"], &["mine.delete", "pinged"])
        .await;
    assert_eq!(v["rest-0001"], json!(true), "{text}");
    let (v, text) = master
        .salt(&["sw-0001"], &["mine.get", "rest-0001", "pinged"])
        .await;
    assert_eq!(v["sw-0001"], json!({}), "{text}");

    // Schedule: the pillar job runs every 2 s; its returns are in the job cache.
    let (v, text) = master.salt(&["rest-0001"], &["schedule.list"]).await;
    let listing = v["rest-0001"].as_str().unwrap_or_default();
    assert!(listing.starts_with("schedule:\n  ping2:\n"), "{text}");
    assert!(listing.contains("function: test.ping"), "{text}");
    let start = Instant::now();
    loop {
        let (jobs, text) = master
            .cli("salt-run", &["jobs.list_jobs", "--out", "json"])
            .await;
        let scheduled = jobs.as_object().into_iter().flatten().any(|(_, j)| {
            j["Function"] == json!("test.ping")
                && j["Target"] == json!("rest-0001")
                && j["Target-type"] == json!("glob")
        });
        if scheduled {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no scheduled run in the job cache: {text}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let (v, text) = master
        .salt(
            &["rest-0002"],
            &["schedule.add", "hourly", "function=test.true", "hours=1"],
        )
        .await;
    assert_eq!(
        v["rest-0002"],
        json!({"comment": "Added job: hourly to schedule.", "result": true, "changes": {"hourly": "added"}}),
        "{text}"
    );
    let (v, text) = master
        .salt(&["rest-0002"], &["schedule.delete", "hourly"])
        .await;
    assert_eq!(
        v["rest-0002"]["changes"],
        json!({"hourly": "removed"}),
        "{text}"
    );
    let (v, text) = master
        .salt(&["rest-0001"], &["schedule.delete", "ping2"])
        .await;
    assert_eq!(
        v["rest-0001"]["result"],
        json!(false),
        "a pillar job: {text}"
    );

    // Saved grains through the master, and targeting by them.
    let (v, text) = master
        .salt(&["rest-0002"], &["grains.setval", "role", "core"])
        .await;
    assert_eq!(v["rest-0002"], json!({"role": "core"}), "{text}");
    // The master targets by its grains cache, which the next `_pillar` updates.
    let v = salt_until(&master, "-G", &["role:core", "test.ping"], 30, |v| {
        v.get("rest-0002").is_some()
    })
    .await;
    assert_eq!(v, json!({"rest-0002": true}));

    // A pillar edit adds rest-0003 after one refresh_pillar, without a restart.
    write(
        "ctl.sls",
        listed(&["rest-0001", "rest-0002", "sw-0001", "rest-0003"]),
    );
    let (v, text) = master
        .salt(&["rest-0001"], &["saltutil.refresh_pillar"])
        .await;
    assert_eq!(v["rest-0001"], json!(true), "{text}");
    master.ping_until_all(&["rest-0003"], 90).await;
    let (v, text) = master
        .salt(&["rest-0003"], &["pillar.get", "proxy:url"])
        .await;
    assert_eq!(v["rest-0003"], blocks[2].1["url"], "{text}");

    daemon.stop().await;
}

/// The seed's own pillar (2014 layout: `docker: - proxyminion`, the proxy type as the
/// key and the minion id inside) goes through `drover import-pillar`, and the device
/// it declares answers `test.ping` through a real master.
#[actix_rt::test]
async fn the_seeds_pillar_imports_and_answers_through_the_master() {
    let Some((_one, tmp, master)) = salt_case(
        "the_seeds_pillar_imports_and_answers_through_the_master",
        "",
    )
    .await
    else {
        return;
    };
    let rest = sim_at(1, 31495);
    let url = proxy_blocks(&rest.sim.inventory_toml())[0].1["url"].clone();
    let url = url.as_str().expect("url").to_owned();
    let seed = tmp.path().join("seed-pillar");
    std::fs::create_dir_all(&seed).expect("mkdir");
    std::fs::write(
        seed.join("top.sls"),
        "base:\n  docker:\n    - proxyminion\n",
    )
    .expect("top");
    std::fs::write(
        seed.join("proxyminion.sls"),
        format!("proxy:\n  rest_sample:\n    proxytype: rest_sample\n    url: {url}\n    id: proxy_docker\n"),
    )
    .expect("sls");
    let out = tmp.path().join("inventory.toml");
    let res = std::process::Command::new(env!("CARGO_BIN_EXE_drover"))
        .arg("import-pillar")
        .arg(&seed)
        .arg("-o")
        .arg(&out)
        .output()
        .expect("drover import-pillar runs");
    assert_eq!(
        res.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let inventory = Inventory::load(&[out]).expect("imported inventory loads");
    let ids: Vec<&str> = inventory.devices.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["proxy_docker"]);

    let cfg = master.drover_config(&tmp.path().join("drover-pki"), None);
    let daemon = Daemon::start(&cfg, inventory, None).await.expect("daemon");
    master.ping_until_all(&["proxy_docker"], 90).await;
    let (v, text) = master.salt(&["proxy_docker"], &["grains.get", "os"]).await;
    assert_eq!(v["proxy_docker"], json!("RestExampleOS"), "{text}");
    daemon.stop().await;
}
