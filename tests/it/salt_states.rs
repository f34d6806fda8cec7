//! `state.apply` from a real, unmodified `salt-master`: SLS files come from the
//! master's `file_roots` over the request channel, render with the device's grains
//! and the master's pillar, and the real `salt` CLI prints Drover's highstate
//! returns. Skips loudly when Salt is not installed.

use serde_json::{json, Value};

use drover::inventory::Inventory;
use drover::run::Daemon;

use crate::salt_master::*;
use crate::support::*;

const TOP: &str = "base:\n  'os:RestExampleOS':\n    - match: grain\n    - web\n  'role:edge':\n    - match: pillar\n    - edge\n  'proxytype:ovs':\n    - match: grain\n    - ovs\n  'proxytype:snmp':\n    - match: grain\n    - snmp\n";
const OVS: &str = "br-salt:\n  openvswitch_bridge.present: []\nport-{{ grains['id'] }}:\n  openvswitch_port.present:\n    - bridge: br-salt\n    - internal: True\n    - require:\n      - openvswitch_bridge: br-salt\n";
const SNMP: &str = "location:\n  snmp.value:\n    - name: 1.3.6.1.2.1.1.6.0\n    - value: {{ salt['pillar.get']('web:site') }}\n";
const MAP: &str = "{% set web = {'pkg': 'nginx', 'service': 'postgresql'} %}\n";
const WEB: &str = r#"{% from 'web/map.jinja' import web with context %}
include:
  - web.extra

{{ web.pkg }}:
  pkg.installed:
    - version: '{{ salt['pillar.get']('web:version', '0.1') }}'

{{ web.service }}:
  service.running:
    - watch:
      - pkg: {{ web.pkg }}
"#;
const EXTRA: &str = "hello-{{ grains['id'] }}:\n  test.succeed_without_changes:\n    - name: {{ pillar['web']['greeting'] }} from {{ grains['os'] }}\n";
const EDGE: &str = "edge-{{ grains['id'] }}:\n  test.succeed_without_changes: []\n";
const BROKEN: &str = "nope:\n  test.fail_without_changes: []\nafter:\n  service.running:\n    - name: redbull\n    - watch:\n      - nope\n";

fn changed(ret: &Value) -> usize {
    ret.as_object()
        .into_iter()
        .flat_map(|m| m.values())
        .filter(|v| v["changes"].as_object().is_some_and(|c| !c.is_empty()))
        .count()
}

#[actix_rt::test]
async fn state_apply_from_a_real_master() {
    let Some((_one, tmp, master)) = salt_case("state_apply_from_a_real_master", "").await else {
        return;
    };
    let srv = master.root.join("srv/salt");
    for (path, text) in [
        ("top.sls", TOP),
        ("web/map.jinja", MAP),
        ("web/init.sls", WEB),
        ("web/extra.sls", EXTRA),
        ("broken.sls", BROKEN),
        ("edge.sls", EDGE),
        ("ovs.sls", OVS),
        ("snmp.sls", SNMP),
    ] {
        let p = srv.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    let pillar = master.root.join("srv/pillar");
    std::fs::write(
        pillar.join("top.sls"),
        "base:\n  '*':\n    - web\n  rest-0002:\n    - edge\n",
    )
    .unwrap();
    std::fs::write(pillar.join("edge.sls"), "role: edge\n").unwrap();
    std::fs::write(
        pillar.join("web.sls"),
        "web:\n  version: '1.2'\n  greeting: hi\n  site: rack-7\n",
    )
    .unwrap();

    let sim = sim_at(2, 31490);
    let ids = ["rest-0001", "rest-0002"];
    // An Open vSwitch database and a Net-SNMP agent beside the REST devices, when
    // this machine has them (the REST part runs either way).
    let ovs = crate::ovs::ensure_ovs().then(|| crate::ovs::OvsServer::start(30167, None));
    let snmpd = crate::snmpd::ensure_netsnmp().then(crate::snmpd::Agent::start);
    let mut text = sim.sim.inventory_toml();
    let mut all: Vec<&str> = ids.to_vec();
    if let Some(o) = &ovs {
        text += &o.inventory_entry("ovs-1", true);
        all.push("ovs-1");
    } else {
        eprintln!(
            "\n!!!!!! state_apply_from_a_real_master: no ovsdb-server, OVS states SKIPPED !!!!!!\n"
        );
    }
    if let Some(a) = &snmpd {
        text += &format!(
            "[[device]]\nid = \"sw-1\"\nproxytype = \"snmp\"\nhost = \"127.0.0.1\"\nport = {}\nversion = \"2c\"\ncommunity = \"private\"\n",
            a.addr().port()
        );
        all.push("sw-1");
    } else {
        eprintln!("\n!!!!!! state_apply_from_a_real_master: no snmpd, SNMP state SKIPPED !!!!!!\n");
    }
    let inventory = Inventory::parse(&text, std::path::Path::new("<sims>")).expect("inventory");
    let cfg = master.drover_config(&tmp.path().join("drover-pki"), None);
    let daemon = Daemon::start(&cfg, inventory, None).await.expect("daemon");
    master.ping_until_all(&all, 90).await;
    let location = |a: &crate::snmpd::Agent| {
        crate::snmpd::unhex(&a.netsnmp(
            "snmpget",
            &["-v2c", "-c", "public"],
            &["-Oqv", "1.3.6.1.2.1.1.6.0"],
        ))
    };
    let location_before = snmpd.as_ref().map(location);

    // Pillar targets (`salt -I`, `I@` in a compound) match on the master's pillar.
    let (v, text) = master.salt(&["-I", "role:edge"], &["test.ping"]).await;
    assert_eq!(v, json!({"rest-0002": true}), "{text}");
    let (v, text) = master
        .salt(&["-C", "rest-* and not J@role:e.g."], &["test.ping"])
        .await;
    assert_eq!(v, json!({"rest-0001": true}), "{text}");

    // test=True through the real CLI's highstate outputter: a summary, no change.
    let (_, text) = master
        .cli("salt", &["*", "state.apply", "test=True", "-t", "60"])
        .await;
    for id in ids {
        assert!(text.contains(&format!("Summary for {id}")), "{text}");
        assert_eq!(sim.sim.package_version(id, "nginx"), None, "{text}");
        assert_eq!(
            sim.sim.service_state(id, "postgresql").as_deref(),
            Some("stopped")
        );
    }
    assert!(text.contains("Function: pkg.installed"), "{text}");
    if let Some(o) = &ovs {
        assert!(text.contains("Summary for ovs-1"), "{text}");
        assert_eq!(o.lines(&["list-br"]), json!([]), "test=True left OVS alone");
    }
    if let Some(a) = &snmpd {
        assert!(text.contains("Summary for sw-1"), "{text}");
        assert_eq!(
            Some(location(a)),
            location_before,
            "test=True left the agent alone"
        );
    }
    assert!(
        text.contains("The following packages would be installed/updated: nginx"),
        "{text}"
    );

    let (v, text) = master.salt(&["*"], &["state.apply", "test=True"]).await;
    for id in ids {
        let pkg = &v[id]["pkg_|-nginx_|-nginx_|-installed"];
        assert_eq!(pkg["result"], Value::Null, "{text}");
        let hello =
            &v[id][format!("test_|-hello-{id}_|-hi from RestExampleOS_|-succeed_without_changes")];
        assert_eq!(hello["result"], json!(true), "{text}");
    }

    // For real: the pillar's version is installed and the watching service started.
    let (v, text) = master.salt(&["*"], &["state.apply"]).await;
    for id in ids {
        assert_eq!(
            v[id]["pkg_|-nginx_|-nginx_|-installed"]["changes"],
            json!({"nginx": {"old": "", "new": "1.2"}}),
            "{text}"
        );
        assert_eq!(
            v[id]["service_|-postgresql_|-postgresql_|-running"]["changes"],
            json!({"postgresql": true}),
            "{text}"
        );
        assert_eq!(sim.sim.package_version(id, "nginx").as_deref(), Some("1.2"));
        assert_eq!(
            sim.sim.service_state(id, "postgresql").as_deref(),
            Some("running")
        );
    }

    if let Some(o) = &ovs {
        let br = &v["ovs-1"]["openvswitch_bridge_|-br-salt_|-br-salt_|-present"];
        assert_eq!(br["comment"], json!("Bridge br-salt created."), "{text}");
        assert_eq!(o.lines(&["list-br"]), json!(["br-salt"]));
        assert_eq!(o.lines(&["list-ports", "br-salt"]), json!(["port-ovs-1"]));
    }
    if let Some(a) = &snmpd {
        let loc = &v["sw-1"]["snmp_|-location_|-1.3.6.1.2.1.1.6.0_|-value"];
        assert_eq!(
            loc["changes"]["1.3.6.1.2.1.1.6.0"]["new"],
            json!("rack-7"),
            "{text}"
        );
        assert_eq!(location(a), "rack-7");
    }

    // A second run has nothing to change.
    let (v, text) = master.salt(&["*"], &["state.highstate"]).await;
    // rest-0002's pillar role adds `edge` through `match: pillar` in top.sls.
    for (id, states) in [("rest-0001", 3), ("rest-0002", 4)] {
        assert_eq!(v[id].as_object().map(|m| m.len()), Some(states), "{text}");
        assert_eq!(changed(&v[id]), 0, "{text}");
    }
    assert_eq!(
        v["rest-0002"]["test_|-edge-rest-0002_|-edge-rest-0002_|-succeed_without_changes"]
            ["result"],
        json!(true),
        "{text}"
    );
    for id in &all[2..] {
        assert!(v[*id].as_object().is_some_and(|m| !m.is_empty()), "{text}");
        assert_eq!(changed(&v[*id]), 0, "{text}");
    }

    // A failing state: the CLI reports a non-zero exit, the watcher does not run.
    let (v, text) = master.salt(&["rest-0001"], &["state.sls", "broken"]).await;
    assert_eq!(
        v["rest-0001"]["test_|-nope_|-nope_|-fail_without_changes"]["result"],
        json!(false),
        "{text}"
    );
    let after = &v["rest-0001"]["service_|-after_|-redbull_|-running"];
    assert_eq!(
        after["comment"],
        json!("One or more requisite failed: broken.nope"),
        "{text}"
    );
    let (_, text) = master
        .cli("salt", &["rest-0001", "state.sls", "broken", "-t", "30"])
        .await;
    assert!(text.contains("Failed:    2"), "{text}");
    assert!(
        text.contains("Minions returned with non-zero exit code"),
        "{text}"
    );

    drop(daemon);
}
