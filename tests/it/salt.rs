//! Drover against a real, unmodified `salt-master` (3008.x from PyPI) on loopback:
//! every device is a minion; the real `salt` CLI targets them by glob, grain, list
//! and compound; a down device answers with an error; `manage.up` lists them; a job
//! longer than the CLI's timeout survives `saltutil.find_job`. Skips loudly when Salt
//! is not installed (.ci/run installs it into a venv).

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use drover::devsim::snmp::{SnmpSim, SnmpSimConfig};
use drover::devsim::Fault;
use drover::inventory::Inventory;
use drover::run::Daemon;

use crate::salt_master::*;
use crate::support::*;

#[actix_rt::test]
async fn real_salt_master_sees_every_device_as_a_minion() {
    let Some((_one, tmp, master)) =
        salt_case("real_salt_master_sees_every_device_as_a_minion", "").await
    else {
        return;
    };
    let sim = sim_at(4, 31450);
    sim.sim.set_fault_and_wait("rest-0004", Fault::Down).await;
    // Two SNMP agents beside the REST devices: `snmp.get` through the master.
    let snmp = OnThread::start(|| {
        SnmpSim::start(SnmpSimConfig {
            count: 2,
            id_prefix: "sw-".into(),
            ..SnmpSimConfig::default()
        })
    })
    .expect("snmp simulator starts");
    let sw: Vec<String> = snmp.sim.devices().iter().map(|d| d.id.clone()).collect();
    let inventory = Inventory::parse(
        &(sim.sim.inventory_toml() + &snmp.sim.inventory_toml("2c")),
        std::path::Path::new("<sims>"),
    )
    .expect("inventory");
    let cfg = master.drover_config(&tmp.path().join("drover-pki"), None);
    let daemon = Daemon::start(&cfg, inventory, None).await.expect("daemon");
    within(30, "settle", daemon.fleet.settled()).await;

    // Authentication runs in the background: wait (bounded) until every id answers.
    let all = ["rest-0001", "rest-0002", "rest-0003", "rest-0004"];
    let mut ping = Value::Null;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(90) {
        let (v, _) = master
            .cli(
                "salt",
                &["*", "test.ping", "--out", "json", "--static", "-t", "10"],
            )
            .await;
        if all.iter().all(|id| v.get(id).is_some()) && sw.iter().all(|id| v[id] == json!(true)) {
            ping = v;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for id in &all[..3] {
        assert_eq!(ping[id], json!(true), "{id}: {ping}");
    }
    let down = ping["rest-0004"]
        .as_str()
        .unwrap_or_else(|| panic!("down device answers with an error: {ping}"));
    assert!(down.contains("device unreachable"), "{down}");

    let (keys, text) = master.cli("salt-key", &["-L", "--out", "json"]).await;
    let accepted: Vec<&str> = keys["minions"]
        .as_array()
        .unwrap_or_else(|| panic!("{text}"))
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let mut expected: Vec<&str> = all.to_vec();
    expected.extend(sw.iter().map(String::as_str));
    expected.sort_unstable();
    assert_eq!(accepted, expected, "one key entry per device id");

    let (v, text) = master.salt(&["sw-*"], &["snmp.get", "sysDescr.0"]).await;
    assert_eq!(v.as_object().map(|o| o.len()), Some(2), "{text}");
    for id in &sw {
        assert_eq!(v[id][0]["name"], json!("sysDescr.0"), "{id}: {text}");
        assert!(
            v[id][0]["value"].as_str().is_some_and(|d| !d.is_empty()),
            "{id}: {text}"
        );
    }

    let (v, text) = master
        .cli(
            "salt",
            &[
                "-G",
                "os:RestExampleOS",
                "test.ping",
                "--out",
                "json",
                "--static",
                "-t",
                "10",
            ],
        )
        .await;
    assert_eq!(
        v,
        json!({"rest-0001": true, "rest-0002": true, "rest-0003": true}),
        "{text}"
    );

    let (v, text) = master
        .cli(
            "salt",
            &[
                "-L",
                "rest-0001,rest-0002",
                "service.status",
                "apache",
                "--out",
                "json",
                "--static",
                "-t",
                "10",
            ],
        )
        .await;
    assert_eq!(v, json!({"rest-0001": true, "rest-0002": true}), "{text}");

    let (v, text) = master
        .cli(
            "salt",
            &[
                "-C",
                "G@os_family:proxy and rest-000[12]",
                "pkg.list_pkgs",
                "--out",
                "json",
                "--static",
                "-t",
                "10",
            ],
        )
        .await;
    assert_eq!(v["rest-0001"]["apache"], json!("2.4"), "{text}");
    assert_eq!(v.as_object().map(|o| o.len()), Some(2), "{text}");

    let (v, text) = master
        .cli(
            "salt",
            &[
                "rest-0003",
                "grains.items",
                "--out",
                "json",
                "--static",
                "-t",
                "10",
            ],
        )
        .await;
    assert_eq!(v["rest-0003"]["os"], json!("RestExampleOS"), "{text}");
    assert_eq!(v["rest-0003"]["proxytype"], json!("rest_sample"), "{text}");

    let (v, text) = master
        .cli("salt-run", &["manage.up", "--out", "json"])
        .await;
    let up: Vec<&str> = v
        .as_array()
        .unwrap_or_else(|| panic!("{text}"))
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for id in &all[..3] {
        assert!(up.contains(id), "{id} in manage.up: {text}");
    }

    // Longer than the CLI's timeout: only find_job answers keep the CLI waiting.
    let t0 = Instant::now();
    let (v, text) = master
        .cli(
            "salt",
            &[
                "rest-0001",
                "test.sleep",
                "8",
                "--out",
                "json",
                "--static",
                "-t",
                "3",
            ],
        )
        .await;
    assert_eq!(v, json!({"rest-0001": true}), "{text}");
    assert!(t0.elapsed() >= Duration::from_secs(8));

    // The CLI prints sys.doc with its own doc printer, which indexes the return as a
    // dict of function -> docstring; any other shape is a Python traceback.
    let (_, text) = master
        .cli("salt", &["rest-0001", "sys.doc", "test.ping", "-t", "10"])
        .await;
    assert!(
        text.contains("test.ping:") && !text.contains("Traceback"),
        "{text}"
    );
    let (v, text) = master
        .salt(&["rest-0001"], &["sys.argspec", "test.rand_sleep"])
        .await;
    assert_eq!(
        v["rest-0001"]["test.rand_sleep"],
        json!({"args": ["max"], "defaults": [60], "kwargs": null, "varargs": null}),
        "{text}"
    );
    let (v, text) = master
        .salt(&["rest-0001"], &["test.arg", "1", "two", "txt=hello"])
        .await;
    assert_eq!(
        v["rest-0001"],
        json!({"args": [1, "two"], "kwargs": {"txt": "hello"}}),
        "{text}"
    );
    // Without --static the CLI reports a minion's non-zero retcode on stderr.
    let (v, text) = master
        .cli(
            "salt",
            &[
                "rest-0001",
                "test.retcode",
                "42",
                "--out",
                "json",
                "-t",
                "10",
            ],
        )
        .await;
    assert_eq!(v["rest-0001"], json!(true), "{text}");
    assert!(text.contains("non-zero exit code"), "{text}");

    let rendered = drover::telemetry::metrics_handle().render();
    assert!(
        rendered
            .lines()
            .any(|l| l.starts_with("drover_master_messages_total{")
                && l.contains("kind=\"publish\"")),
        "publications counted"
    );
    daemon.stop().await;
}

/// Pillar from the master's pillar_roots, read by functions and refreshed on
/// `saltutil.refresh_pillar`; start events, `event.send` and device down events on
/// the master's event bus.
#[actix_rt::test]
async fn pillar_refresh_and_events_through_a_real_master() {
    let Some((_one, tmp, master)) =
        salt_case("pillar_refresh_and_events_through_a_real_master", "").await
    else {
        return;
    };
    let pillar = master.root.join("srv/pillar");
    std::fs::write(
        pillar.join("top.sls"),
        "base:\n  'rest-*':\n    - devices\n",
    )
    .expect("top");
    let sls = |site: &str| {
        format!("site: {site}\nnested:\n  a:\n    b: deep\nsnmp_community: s3cr3t-community\n")
    };
    std::fs::write(pillar.join("devices.sls"), sls("ams1")).expect("sls");
    let watch = EventWatch::start(&master);

    let sim = sim_at(2, 31470);
    let cfg = master.drover_config(&tmp.path().join("drover-pki"), None);
    let daemon = Daemon::start(&cfg, sim.inventory(), None)
        .await
        .expect("daemon");
    master.ping_until_all(&["rest-0001", "rest-0002"], 90).await;

    for id in ["rest-0001", "rest-0002"] {
        let start = watch.wait_for(&format!("salt/minion/{id}/start"), 30).await;
        assert_eq!(start["id"], json!(id), "{start}");
        assert!(
            start["data"]
                .as_str()
                .is_some_and(|d| d.starts_with(&format!("Minion {id} started at "))),
            "{start}"
        );
    }
    let legacy = watch.wait_for("minion_start", 10).await;
    assert_eq!(legacy["cmd"], json!("_minion_event"), "{legacy}");

    let (v, text) = master.salt(&["rest-0001"], &["pillar.get", "site"]).await;
    assert_eq!(v["rest-0001"], json!("ams1"), "{text}");
    let (v, text) = master
        .salt(&["rest-0001"], &["pillar.get", "nested:a:b"])
        .await;
    assert_eq!(v["rest-0001"], json!("deep"), "{text}");
    let (v, text) = master
        .salt(&["rest-0001"], &["pillar.get", "nope", "default=dflt"])
        .await;
    assert_eq!(v["rest-0001"], json!("dflt"), "{text}");
    let (v, text) = master
        .salt(&["rest-0001"], &["pillar.keys", "nested"])
        .await;
    assert_eq!(v["rest-0001"], json!(["a"]), "{text}");
    let (v, text) = master.salt(&["rest-0002"], &["config.get", "site"]).await;
    assert_eq!(v["rest-0002"], json!("ams1"), "{text}");
    let (v, text) = master.salt(&["rest-0002"], &["config.get", "os"]).await;
    assert_eq!(
        v["rest-0002"],
        json!("RestExampleOS"),
        "grains before pillar: {text}"
    );

    // An edit reaches the device after saltutil.refresh_pillar, without a restart.
    std::fs::write(pillar.join("devices.sls"), sls("fra1")).expect("sls");
    let (v, text) = master
        .salt(&["rest-0001"], &["saltutil.refresh_pillar"])
        .await;
    assert_eq!(v["rest-0001"], json!(true), "{text}");
    let start = Instant::now();
    loop {
        let (v, text) = master.salt(&["rest-0001"], &["pillar.get", "site"]).await;
        if v["rest-0001"] == json!("fra1") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{text}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    let (v, text) = master
        .salt(
            &["rest-0002"],
            &["event.send", "drover/test/hello", "foo=bar"],
        )
        .await;
    assert_eq!(v["rest-0002"], json!(true), "{text}");
    let hello = watch.wait_for("drover/test/hello", 30).await;
    assert_eq!(hello["id"], json!("rest-0002"), "{hello}");
    assert_eq!(hello["data"]["foo"], json!("bar"), "{hello}");

    sim.sim.set_fault_and_wait("rest-0002", Fault::Down).await;
    let down = watch.wait_for("drover/device/rest-0002/down", 60).await;
    assert_eq!(down["id"], json!("rest-0002"), "{down}");
    assert!(
        down["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{down}"
    );

    // Pillar secrets stay out of the API's device list.
    let devices = daemon.fleet.registry.views();
    assert!(!format!("{devices:?}").contains("s3cr3t"));
    daemon.stop().await;
}

/// The connection outlives the master's idle timeouts, an AES key rotation and a master
/// restart, and a return that falls due while the master is down still reaches it.
#[actix_rt::test]
async fn salt_link_survives_idle_key_rotation_and_master_restart() {
    // A short maintenance loop so a key deletion rotates the AES key within seconds.
    let Some((_one, tmp, mut master)) = salt_case(
        "salt_link_survives_idle_key_rotation_and_master_restart",
        "loop_interval: 2",
    )
    .await
    else {
        return;
    };
    let sim = sim(3);
    let mut cfg = master.drover_config(&tmp.path().join("drover-pki"), None);
    cfg.master.request_timeout = Duration::from_secs(10);
    let daemon = Daemon::start(&cfg, sim.inventory(), None)
        .await
        .expect("daemon");
    within(30, "settle", daemon.fleet.settled()).await;
    let all = ["rest-0001", "rest-0002", "rest-0003"];
    master.ping_until_all(&all, 90).await;

    // Idle past the master's 30 s silent-peer limit and libzmq's heartbeat timeout;
    // then one job, not retried, must arrive and be answered.
    tokio::time::sleep(Duration::from_secs(45)).await;
    let (v, text) = master.salt(&["*"], &["test.ping"]).await;
    assert_eq!(
        v,
        json!({"rest-0001": true, "rest-0002": true, "rest-0003": true}),
        "after 45 s idle: {text}"
    );

    // Deleting a key makes the master rotate its AES key: the next publication is
    // under a key Drover has not seen, and it must still be acted on at once.
    let rotations = counter("drover_master_aes_rotations_total", &[]);
    let (_, text) = master.cli("salt-key", &["-d", "rest-0003", "-y"]).await;
    assert!(text.contains("rest-0003"), "{text}");
    // salt-key leaves a drop file; the master's maintenance loop rotates the key and
    // removes it. Drover's rotation counter below is what proves it saw the change.
    let cache = master.root.join("cache");
    let start = Instant::now();
    while cache.join(".dfn").exists() || cache.join(".dfn-next").exists() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the master never rotated its AES key"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (v, text) = master
        .salt(&["-L", "rest-0001,rest-0002"], &["test.ping"])
        .await;
    assert_eq!(
        v,
        json!({"rest-0001": true, "rest-0002": true}),
        "first job after rotation: {text}"
    );
    assert!(counter("drover_master_aes_rotations_total", &[]) > rotations);
    // The deleted id authenticates again (auto_accept) and answers.
    master.ping_until_all(&all, 90).await;
    let (keys, text) = master.cli("salt-key", &["-L", "--out", "json"]).await;
    assert!(
        keys["minions"]
            .as_array()
            .is_some_and(|m| m.contains(&json!("rest-0003"))),
        "{text}"
    );

    // A job that is running when the master goes away: its return is due while
    // the master is down, and reaches the restarted master.
    let publications = counter(
        "drover_master_messages_total",
        &["direction=\"in\"", "kind=\"publish\""],
    );
    let jid = master.async_jid(&["rest-0001", "test.sleep", "6"]).await;
    counter_reaches(
        "drover_master_messages_total",
        &["direction=\"in\"", "kind=\"publish\""],
        publications + 1.0,
        30,
    )
    .await;
    master.stop().await;
    master.spawn().await;
    master
        .return_after_restart(&jid, &json!({"rest-0001": true}), Duration::from_secs(90))
        .await;
    // And the fleet answers the restarted master (new AES key, new sessions).
    master.ping_until_all(&all, 90).await;
    daemon.stop().await;
}

/// What an attacker on the path to the publish port can send: a replayed
/// publication, a corrupted one, one signed and encrypted with the wrong keys,
/// msgpack garbage, a frame count Salt never sends, and a frame cut short. Each is
/// rejected and counted, none is acted on, and the fleet keeps serving.
#[actix_rt::test]
async fn forged_replayed_and_garbage_publications_are_rejected() {
    use drover::master::salt::{crypto, envelope, keys};
    use rmpv::Value as Mp;

    use crate::zmtp_proxy::{zmtp_message, Inject, PubProxy};

    let Some((_one, tmp, master)) =
        salt_case("forged_replayed_and_garbage_publications_are_rejected", "").await
    else {
        return;
    };
    let proxy = PubProxy::start(master.pub_port).await;
    let sim = sim(2);
    let cfg = master.drover_config(&tmp.path().join("drover-pki"), Some(proxy.port));
    let daemon = Daemon::start(&cfg, sim.inventory(), None)
        .await
        .expect("daemon");
    within(30, "settle", daemon.fleet.settled()).await;
    let all = ["rest-0001", "rest-0002"];
    master.ping_until_all(&all, 90).await;

    // Two genuine publications: stop apache, then start it again.
    let before = proxy.captured().len();
    let (v, text) = master
        .salt(&["rest-0001"], &["service.stop", "apache"])
        .await;
    assert_eq!(v["rest-0001"]["ret"], json!(true), "{text}");
    let stop_pub = proxy
        .captured()
        .get(before)
        .cloned()
        .expect("the stop publication went through the proxy");
    let (v, text) = master
        .salt(&["rest-0001"], &["service.start", "apache"])
        .await;
    assert_eq!(v["rest-0001"]["ret"], json!(true), "{text}");
    assert_eq!(
        sim.sim.service_state("rest-0001", "apache").as_deref(),
        Some("running")
    );

    let rejected = |reason: &str| {
        counter(
            "drover_master_rejected_total",
            &[&format!("reason=\"{reason}\"")],
        )
    };
    // Replay of the older, genuine "stop": valid signature, stale serial.
    let replays = rejected("replay");
    proxy.inject(Inject::Bytes(zmtp_message(&stop_pub)));
    counter_reaches(
        "drover_master_rejected_total",
        &["reason=\"replay\""],
        replays + 1.0,
        30,
    )
    .await;

    // The same publication with one byte of its ciphertext flipped.
    let mut corrupted = stop_pub.clone();
    let last = corrupted.last_mut().expect("a frame");
    let mid = last.len() / 2;
    last[mid] ^= 0x40;
    // Which check catches each forgery depends on whether the master signs its
    // publications; every one of them must be caught by some check.
    let forgeries = || {
        [
            "bad_signature",
            "bad_hmac",
            "unsigned",
            "malformed",
            "decrypt",
            "truncated",
        ]
        .iter()
        .map(|r| rejected(r))
        .sum::<f64>()
    };
    let forged_before = forgeries();
    proxy.inject(Inject::Bytes(zmtp_message(&corrupted)));

    // A publication under keys that are not the master's: a fresh AES key, signed
    // with a fresh RSA key, with a serial far ahead.
    let job = envelope::pack(&envelope::map(vec![
        ("fun", Mp::from("service.stop")),
        ("arg", Mp::Array(vec![Mp::from("apache")])),
        ("tgt", Mp::from("*")),
        ("tgt_type", Mp::from("glob")),
        ("jid", Mp::from("20261125000000000001")),
        ("serial", Mp::from(1_000_000_000i64)),
    ]));
    let aes = crypto::Crypticle::from_key_string(crypto::generate_key_string().as_bytes())
        .expect("aes key");
    let load = aes.dumps(&job, None);
    let forger = keys::load_or_create(&tmp.path().join("forger")).expect("forger key");
    let sig = crypto::sign_sha1(&forger.private, &load).expect("sign");
    let signed = envelope::pack(&envelope::map(vec![
        ("enc", Mp::from("aes")),
        ("sig", Mp::Binary(sig)),
        ("sig_algo", Mp::from("PKCS1v15-SHA1")),
        ("load", Mp::Binary(load.clone())),
    ]));
    proxy.inject(Inject::Bytes(zmtp_message(&[signed])));
    // And the same without any signature.
    let unsigned = envelope::pack(&envelope::map(vec![
        ("enc", Mp::from("aes")),
        ("load", Mp::Binary(load)),
    ]));
    proxy.inject(Inject::Bytes(zmtp_message(&[unsigned])));
    let start = Instant::now();
    while forgeries() < forged_before + 3.0 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "forgeries not all rejected: {} of 3",
            forgeries() - forged_before
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Msgpack cut short (a 4 GiB string with one byte of it: decoded without
    // allocating what it claims), and three frames where Salt sends one or two.
    let garbage = rejected("garbage");
    let framing = rejected("framing");
    proxy.inject(Inject::Bytes(zmtp_message(&[vec![
        0xdb, 0xff, 0xff, 0xff, 0xff, b'x',
    ]])));
    proxy.inject(Inject::Bytes(zmtp_message(&[
        b"a".to_vec(),
        b"b".to_vec(),
        b"c".to_vec(),
    ])));
    counter_reaches(
        "drover_master_rejected_total",
        &["reason=\"garbage\""],
        garbage + 1.0,
        30,
    )
    .await;
    counter_reaches(
        "drover_master_rejected_total",
        &["reason=\"framing\""],
        framing + 1.0,
        30,
    )
    .await;
    // None of it was acted on: apache is still running.
    assert_eq!(
        sim.sim.service_state("rest-0001", "apache").as_deref(),
        Some("running")
    );

    // A frame that announces 1,000 bytes and stops after 10: libzmq drops the
    // connection and dials again; the fleet answers through the new one.
    let mut cut = vec![0x02];
    cut.extend_from_slice(&1000u64.to_be_bytes());
    cut.extend_from_slice(&[0u8; 10]);
    proxy.inject(Inject::BytesThenClose(cut));
    within(60, "SUB reconnect", proxy.connections_reach(2)).await;
    master.ping_until_all(&all, 90).await;
    assert_eq!(
        sim.sim.service_state("rest-0001", "apache").as_deref(),
        Some("running")
    );
    daemon.stop().await;
}

/// Without auto_accept: each device id waits in the master's pending list with its
/// own key pair (`per_device_keys`), Drover keeps retrying, and an id answers as soon
/// as an operator accepts its key with `salt-key -a`.
#[actix_rt::test]
async fn pending_per_device_keys_answer_once_accepted() {
    let Some((_one, tmp, master)) = salt_case(
        "pending_per_device_keys_answer_once_accepted",
        "auto_accept: False",
    )
    .await
    else {
        return;
    };
    let sim = sim(2);
    let pki = tmp.path().join("drover-pki");
    let mut cfg = master.drover_config(&pki, None);
    cfg.master.per_device_keys = true;
    let pending_before = counter("drover_master_auth_total", &["outcome=\"pending\""]);
    let daemon = Daemon::start(&cfg, sim.inventory(), None)
        .await
        .expect("daemon");
    within(30, "settle", daemon.fleet.settled()).await;

    // Both ids reach the pending list, each retried while it waits.
    let start = Instant::now();
    let pre = loop {
        let (keys, _) = master.cli("salt-key", &["-L", "--out", "json"]).await;
        let pre: Vec<String> = keys["minions_pre"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if pre.len() == 2 {
            break pre;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "pending keys: {keys}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(pre, ["rest-0001", "rest-0002"]);
    counter_reaches(
        "drover_master_auth_total",
        &["outcome=\"pending\""],
        pending_before + 4.0,
        30,
    )
    .await;
    // One key pair per id, private keys readable by the owner only.
    let key1 = std::fs::read_to_string(master.root.join("pki/minions_pre/rest-0001")).unwrap();
    let key2 = std::fs::read_to_string(master.root.join("pki/minions_pre/rest-0002")).unwrap();
    assert_ne!(key1, key2, "each device id has its own key pair");
    for id in ["rest-0001", "rest-0002"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(pki.join(id).join("minion.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{id} private key mode {mode:o}");
    }
    let (v, _) = master.salt(&["*"], &["test.ping"]).await;
    assert!(
        v.as_object().is_none_or(|o| o.is_empty()),
        "no id answers before acceptance: {v}"
    );

    let (_, text) = master.cli("salt-key", &["-a", "rest-0001", "-y"]).await;
    assert!(text.contains("rest-0001"), "{text}");
    master.ping_until_all(&["rest-0001"], 60).await;
    let (v, text) = master.salt(&["*"], &["test.ping"]).await;
    assert_eq!(
        v,
        json!({"rest-0001": true}),
        "only the accepted id: {text}"
    );

    let (_, text) = master.cli("salt-key", &["-A", "-y"]).await;
    assert!(text.contains("rest-0002"), "{text}");
    master.ping_until_all(&["rest-0001", "rest-0002"], 60).await;
    daemon.stop().await;
}
