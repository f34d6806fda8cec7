//! State runs through the local master: `file_roots` from the daemon's config, a
//! top file matching by grain, include, a `map.jinja` import, requisites, and
//! `drover cmd ... state.apply` against simulated `rest_sample` devices, checked on
//! the devices themselves.

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

use drover::config::Config;
use drover::run::Daemon;

use crate::support::*;

const TOP: &str = "base:\n  'os:RestExampleOS':\n    - match: grain\n    - web\n  'nothing-matches-*':\n    - broken\n";
const MAP: &str = "{% set web = {'pkg': 'nginx', 'version': '1.2', 'service': 'postgresql'} %}\n";
const WEB: &str = r#"{% from 'web/map.jinja' import web with context %}
include:
  - .ping

{{ web.pkg }}:
  pkg.installed:
    - version: '{{ salt['pillar.get']('web:version', web.version) }}'

{{ web.service }}:
  service.running:
    - watch:
      - pkg: {{ web.pkg }}
"#;
const PING: &str = "ping-{{ grains['id'] }}:\n  module.run:\n    - test.ping:\n";
const BROKEN: &str = "nope:\n  test.fail_without_changes: []\nafter:\n  service.running:\n    - name: redbull\n    - require:\n      - nope\n";

fn write_tree(root: &Path) {
    for (path, text) in [
        ("top.sls", TOP),
        ("web/map.jinja", MAP),
        ("web/init.sls", WEB),
        ("web/ping.sls", PING),
        ("broken.sls", BROKEN),
        (
            "bad.sls",
            "x:\n  test.nop:\n    - name: {{ grains['no_such_grain'] }}\n",
        ),
    ] {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
}

async fn cmd(base: &str, args: &[&str]) -> (i32, Value, String) {
    let mut all = vec![
        "cmd".to_string(),
        "--url".into(),
        base.to_owned(),
        "--out".into(),
        "json".into(),
    ];
    all.extend(args.iter().map(|s| s.to_string()));
    tokio::task::spawn_blocking(move || {
        let out = Command::new(env!("CARGO_BIN_EXE_drover"))
            .args(&all)
            .output()
            .expect("run drover");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let v = serde_json::from_str(&stdout).unwrap_or(Value::String(stdout));
        (
            out.status.code().unwrap_or(-1),
            v,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

fn changes(ret: &Value) -> Vec<String> {
    ret.as_object()
        .into_iter()
        .flat_map(|m| m.iter())
        .filter(|(_, v)| v["changes"].as_object().is_some_and(|c| !c.is_empty()))
        .map(|(k, _)| k.clone())
        .collect()
}

#[actix_rt::test]
async fn state_apply_through_drover_cmd_changes_devices_once() {
    let sim = sim(2);
    let dir = tempfile::tempdir().unwrap();
    write_tree(&dir.path().join("srv"));
    let mut cfg = Config {
        fleet: fast_fleet(),
        ..Config::default()
    };
    cfg.http.listen = "127.0.0.1:0".parse().unwrap();
    cfg.base_dir = dir.path().to_owned();
    cfg.master
        .file_roots
        .insert("base".into(), vec!["srv".into()]);
    let daemon = Daemon::start(&cfg, sim.inventory(), None)
        .await
        .expect("daemon");
    within(30, "settle", daemon.fleet.settled()).await;
    let base = format!("http://{}", daemon.http_addr);
    let sim = &sim.sim;

    let (_, top, err) = cmd(&base, &["rest-0001", "state.show_top"]).await;
    assert_eq!(top["rest-0001"], json!({"base": ["web"]}), "{err}");

    // test=True predicts and changes nothing on the devices.
    let (code, out, err) = cmd(&base, &["*", "state.apply", "test=True"]).await;
    assert_eq!(code, 0, "{out} {err}");
    for id in ["rest-0001", "rest-0002"] {
        let ret = &out[id];
        let pkg = &ret["pkg_|-nginx_|-nginx_|-installed"];
        assert_eq!(pkg["result"], Value::Null, "{ret}");
        assert_eq!(
            pkg["comment"],
            "The following packages would be installed/updated: nginx"
        );
        assert_eq!(
            ret["service_|-postgresql_|-postgresql_|-running"]["comment"],
            "Service postgresql is set to start"
        );
        assert_eq!(
            ret[format!("module_|-ping-{id}_|-ping-{id}_|-run")]["result"],
            Value::Null
        );
        assert_eq!(sim.package_version(id, "nginx"), None);
        assert_eq!(
            sim.service_state(id, "postgresql").as_deref(),
            Some("stopped")
        );
    }

    // For real: the package is installed, the watching service started.
    let (code, out, err) = cmd(&base, &["*", "state.apply"]).await;
    assert_eq!(code, 0, "{out} {err}");
    for id in ["rest-0001", "rest-0002"] {
        let ret = &out[id];
        assert_eq!(
            ret["pkg_|-nginx_|-nginx_|-installed"]["changes"],
            json!({"nginx": {"old": "", "new": "1.2"}}),
            "{ret}"
        );
        assert_eq!(
            ret["service_|-postgresql_|-postgresql_|-running"]["changes"],
            json!({"postgresql": true})
        );
        assert_eq!(sim.package_version(id, "nginx").as_deref(), Some("1.2"));
        assert_eq!(
            sim.service_state(id, "postgresql").as_deref(),
            Some("running")
        );
    }

    // Again: nothing left to change (module.run always reports its call).
    let (code, out, _) = cmd(&base, &["*", "state.apply", "web"]).await;
    assert_eq!(code, 0);
    for id in ["rest-0001", "rest-0002"] {
        assert_eq!(
            changes(&out[id]),
            vec![format!("module_|-ping-{id}_|-ping-{id}_|-run")],
            "{}",
            out[id]
        );
    }

    // A failing state: retcode 2, and the state requiring it does not run.
    let client = reqwest::Client::new();
    let body = client
        .post(format!("{base}/v1/jobs"))
        .json(&json!({"tgt": "rest-0001", "fun": "state.sls", "arg": ["broken"]}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line: Value = body
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|l| l["id"] == "rest-0001")
        .unwrap();
    assert_eq!(line["retcode"], 2, "{line}");
    assert_eq!(
        line["return"]["service_|-after_|-redbull_|-running"]["comment"],
        "One or more requisite failed: broken.nope"
    );
    assert_eq!(
        sim.service_state("rest-0001", "redbull").as_deref(),
        Some("running")
    );

    // A render error is a list naming the file, the line and the device (retcode 1).
    let (code, out, _) = cmd(&base, &["rest-0001", "state.sls", "bad"]).await;
    assert_ne!(code, 0);
    let msg = out["rest-0001"][0].as_str().unwrap_or_default();
    assert!(
        msg.contains("bad.sls") && msg.contains("line 3") && msg.contains("rest-0001"),
        "{out}"
    );

    // The terminal output is Salt's highstate outputter.
    let url = base.clone();
    let text = tokio::task::spawn_blocking(move || {
        let out = Command::new(env!("CARGO_BIN_EXE_drover"))
            .args([
                "cmd",
                "--url",
                &url,
                "--no-progress",
                "rest-0001",
                "state.apply",
                "web",
                "test=True",
            ])
            .output()
            .expect("run drover");
        String::from_utf8_lossy(&out.stdout).into_owned()
    })
    .await
    .unwrap();
    assert!(text.contains("Function: pkg.installed"), "{text}");
    assert!(text.contains("Summary for rest-0001"), "{text}");
    assert!(text.contains("Failed:    0"), "{text}");

    daemon.stop().await;
}
