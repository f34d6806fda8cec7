//! Syndic mode against a real, unmodified `salt-master` with `order_masters: True`:
//! the fleet authenticates once as a syndic id, its devices answer the `salt` CLI
//! under their own ids through `_syndic_return` loads, the CLI learns each job's
//! devices from the syndic's expected-minion events, the job cache keeps every
//! device's return, and a master restart costs no return. Skips loudly when Salt is
//! not installed.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use drover::devsim::Fault;
use drover::inventory::Inventory;
use drover::run::Daemon;

use crate::salt_master::*;
use crate::support::*;

const SYNDIC: &str = "drover-syndic";

#[actix_rt::test]
async fn the_fleet_answers_through_one_syndic_id() {
    let Some((_one, tmp, mut master)) = salt_case(
        "the_fleet_answers_through_one_syndic_id",
        "order_masters: True\nsyndic_wait: 1\n",
    )
    .await
    else {
        return;
    };
    std::fs::write(
        master.root.join("srv/salt/ok.sls"),
        "fine:\n  test.succeed_without_changes: []\n",
    )
    .expect("sls");
    let events = EventWatch::start(&master);
    let sim = sim_at(4, 31520);
    sim.sim.set_fault_and_wait("rest-0004", Fault::Down).await;
    let inventory = Inventory::parse(&sim.sim.inventory_toml(), std::path::Path::new("<sim>"))
        .expect("inventory");
    let mut cfg = master.drover_config(&tmp.path().join("drover-pki"), None);
    cfg.master.syndic_id = Some(SYNDIC.into());
    let daemon = Daemon::start(&cfg, inventory, None).await.expect("daemon");
    within(30, "settle", daemon.fleet.settled()).await;

    let all = ["rest-0001", "rest-0002", "rest-0003", "rest-0004"];
    let mut ping = Value::Null;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(90) {
        let (v, _) = master.salt(&["*"], &["test.ping"]).await;
        if all.iter().all(|id| v.get(id).is_some()) {
            ping = v;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for id in &all[..3] {
        assert_eq!(ping[id], json!(true), "{id}: {ping}");
    }
    // The syndic id is a key on the master, so `*` waits for it: it answers the ping.
    assert_eq!(ping[SYNDIC], json!(true), "{ping}");
    let down = ping["rest-0004"]
        .as_str()
        .unwrap_or_else(|| panic!("down device answers with an error: {ping}"));
    assert!(down.contains("device unreachable"), "{down}");

    // One key, one authentication, for the whole fleet.
    let (keys, text) = master.cli("salt-key", &["-L", "--out", "json"]).await;
    assert_eq!(keys["minions"], json!([SYNDIC]), "{text}");
    events
        .wait_for(&format!("salt/syndic/{SYNDIC}/start"), 30)
        .await;

    // Targets the master cannot resolve (no device keys, no grains) are the
    // syndic's to match; the CLI learns the devices from its event.
    let (v, text) = master.salt(&["rest-000[12]"], &["test.ping"]).await;
    assert_eq!(v, json!({"rest-0001": true, "rest-0002": true}), "{text}");
    let (v, text) = master
        .salt(&["-G", "os:RestExampleOS"], &["test.ping"])
        .await;
    assert_eq!(
        v,
        json!({"rest-0001": true, "rest-0002": true, "rest-0003": true}),
        "{text}"
    );
    let (v, text) = master
        .salt(
            &["-L", "rest-0001,rest-0003"],
            &["service.status", "apache"],
        )
        .await;
    assert_eq!(v, json!({"rest-0001": true, "rest-0003": true}), "{text}");
    let (v, text) = master.salt(&["rest-0003"], &["grains.items"]).await;
    assert_eq!(v["rest-0003"]["os"], json!("RestExampleOS"), "{text}");

    // State runs read the master's file server through the syndic's session and
    // print with the highstate outputter.
    let (v, text) = master.salt(&["rest-0001"], &["state.apply", "ok"]).await;
    let states = v["rest-0001"]
        .as_object()
        .unwrap_or_else(|| panic!("state return: {text}"));
    assert_eq!(states.len(), 1, "{text}");
    assert!(
        states.values().all(|s| s["result"] == json!(true)),
        "{text}"
    );
    let (_, text) = master
        .cli("salt", &["rest-0001", "state.apply", "ok", "-t", "10"])
        .await;
    assert!(
        text.contains("Succeeded: 1") && !text.contains("Traceback"),
        "{text}"
    );

    // Longer than the CLI's timeout: the CLI keeps waiting for an expected device.
    let (v, text) = master
        .cli(
            "salt",
            &[
                "rest-0002",
                "test.sleep",
                "6",
                "--out",
                "json",
                "--static",
                "-t",
                "3",
            ],
        )
        .await;
    assert_eq!(v, json!({"rest-0002": true}), "{text}");

    // The master's job cache has every device's return.
    let jid = master.async_jid(&["rest-*", "test.echo", "cached"]).await;
    // The CLI learns a job's devices from this event only: the master has no key
    // for them.
    let expected = events.wait_for(&format!("syndic/{SYNDIC}/{jid}"), 30).await;
    assert_eq!(expected["minions"], json!(all), "{expected}");
    let (looked, _) = master
        .lookup_until(&jid, Duration::from_secs(30), |v| {
            all[..3].iter().all(|id| v[id] == json!("cached"))
        })
        .await;
    for id in &all[..3] {
        assert_eq!(looked[id], json!("cached"), "{id}: {looked}");
    }
    assert!(
        counter("drover_master_syndic_returns_total", &[]) >= 10.0,
        "returns went as _syndic_return loads"
    );

    // A master restart (new AES key, the syndic's session gone) in the middle of a
    // job: the returns due meanwhile arrive once the syndic id authenticated again,
    // and the fleet answers the restarted master.
    let jid = master.async_jid(&["rest-0001", "test.sleep", "3"]).await;
    events.wait_for(&format!("syndic/{SYNDIC}/{jid}"), 30).await;
    master.stop().await;
    master.spawn().await;
    master
        .return_after_restart(&jid, &json!({"rest-0001": true}), Duration::from_secs(90))
        .await;
    let start = Instant::now();
    loop {
        let (v, text) = master.salt(&["rest-*"], &["test.ping"]).await;
        if all[..3].iter().all(|id| v[id] == json!(true)) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "the fleet never answered the restarted master: {text}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    daemon.stop().await;
}
