//! Every function against simulated `rest_sample` devices, with Salt's return shapes.

use serde_json::{json, Value};

use drover::job::Outcome;

use crate::support::*;

#[actix_rt::test]
async fn test_and_grains_functions() {
    let sim = sim(2);
    let fleet = start_fleet(fast_fleet(), sim.inventory()).await;
    let id = "rest-0001";

    assert_eq!(one(&fleet, id, "test.ping", vec![]).await.ret, json!(true));
    assert_eq!(
        one(&fleet, id, "test.echo", vec![json!("hello")]).await.ret,
        json!("hello")
    );
    assert_eq!(
        one(&fleet, id, "test.echo", vec![json!(42)]).await.ret,
        json!("42")
    );
    let v = one(&fleet, id, "test.version", vec![]).await;
    assert!(v.ret.as_str().is_some_and(|s| !s.is_empty()), "{v:?}");
    assert_eq!(
        one(&fleet, id, "test.sleep", vec![json!(0.05)]).await.ret,
        json!(true)
    );
    let bad_sleep = one(&fleet, id, "test.sleep", vec![json!("forever")]).await;
    assert!(!bad_sleep.success);

    let items = one(&fleet, id, "grains.items", vec![]).await.ret;
    assert_eq!(items["id"], json!(id));
    assert_eq!(items["proxytype"], json!("rest_sample"));
    assert_eq!(items["os"], json!("RestExampleOS"));
    assert_eq!(items["os_family"], json!("proxy"));
    assert_eq!(items["kernel"], json!("0.0000001"));
    assert_eq!(items["housecat"], json!("Are you kidding?"));
    assert_eq!(items["ipv4"], json!(["127.0.0.1"]));

    assert_eq!(
        one(&fleet, id, "grains.get", vec![json!("os")]).await.ret,
        json!("RestExampleOS")
    );
    assert_eq!(
        one(&fleet, id, "grains.get", vec![json!("nope")]).await.ret,
        json!("")
    );
    assert_eq!(
        one(
            &fleet,
            id,
            "grains.get",
            vec![json!("nope"), json!("fallback")]
        )
        .await
        .ret,
        json!("fallback")
    );
    assert_eq!(
        one(&fleet, id, "grains.get", vec![json!("ipv4:0")])
            .await
            .ret,
        json!("127.0.0.1")
    );
    assert_eq!(
        one(
            &fleet,
            id,
            "grains.item",
            vec![json!("os"), json!("kernel")]
        )
        .await
        .ret,
        json!({"os": "RestExampleOS", "kernel": "0.0000001"})
    );
    let ls = one(&fleet, id, "grains.ls", vec![]).await.ret;
    let keys: Vec<&str> = ls
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    assert_eq!(keys, sorted);
    assert!(keys.contains(&"os") && keys.contains(&"id"));

    let funs = one(&fleet, id, "sys.list_functions", vec![]).await.ret;
    let funs: Vec<&str> = funs
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for f in [
        "test.ping",
        "grains.items",
        "service.status",
        "pkg.install",
        "sys.list_functions",
    ] {
        assert!(funs.contains(&f), "{f} missing from {funs:?}");
    }
    let test_only = one(&fleet, id, "sys.list_functions", vec![json!("test")])
        .await
        .ret;
    assert_eq!(
        test_only,
        json!([
            "test.arg",
            "test.arg_repr",
            "test.echo",
            "test.exception",
            "test.false",
            "test.fib",
            "test.kwarg",
            "test.outputter",
            "test.ping",
            "test.rand_sleep",
            "test.retcode",
            "test.sleep",
            "test.true",
            "test.version",
            "test.versions_report"
        ])
    );

    // Salt's shapes and retcodes for the everyday test and sys functions.
    assert_eq!(one(&fleet, id, "test.true", vec![]).await.ret, json!(true));
    assert_eq!(
        one(&fleet, id, "test.false", vec![]).await.ret,
        json!(false)
    );
    let fib = one(&fleet, id, "test.fib", vec![json!(10)]).await.ret;
    assert_eq!(fib[0], json!(55), "{fib}");
    assert!(fib[1].is_f64(), "{fib}");
    let r = one(&fleet, id, "test.retcode", vec![json!(7)]).await;
    assert_eq!(
        (r.ret.clone(), r.retcode, r.success),
        (json!(true), 7, false)
    );
    let r = one(&fleet, id, "test.exception", vec![json!("Oh noes!")]).await;
    assert_eq!(
        (r.ret.clone(), r.retcode),
        (
            json!("The minion function caused an exception: Exception: Oh noes!"),
            1
        )
    );
    let mut req = request(id, "test.arg_repr", vec![json!(1), json!("two")]);
    req.tgt_type = drover::fleet::target::TargetType::List;
    req.kwarg.insert("txt".into(), json!("hello"));
    let (_, rets) = run_job(&fleet, req).await;
    assert_eq!(
        rets[0].ret,
        json!({"args": "(1, 'two')", "kwargs": "{'txt': 'hello'}"})
    );
    let doc = one(&fleet, id, "sys.doc", vec![json!("test")]).await.ret;
    let doc = doc.as_object().expect("sys.doc is a dict");
    assert!(doc.contains_key("test.ping") && doc.contains_key("test.fib"));
    assert!(doc.keys().all(|k| k.starts_with("test.")));
    assert_eq!(
        one(&fleet, id, "sys.doc", vec![json!("nosuch")]).await.ret,
        json!({}),
        "an unknown name is an empty dict, never a string"
    );
    assert_eq!(
        one(&fleet, id, "sys.list_modules", vec![]).await.ret,
        json!([
            "config",
            "event",
            "grains",
            "mine",
            "pillar",
            "pkg",
            "rest_sample",
            "saltutil",
            "schedule",
            "service",
            "state",
            "sys",
            "test"
        ])
    );

    // The proxy module's functions under their Salt names, on the device itself.
    assert_eq!(
        one(&fleet, id, "rest_sample.ping", vec![]).await.ret,
        json!(true)
    );
    assert_eq!(
        one(&fleet, id, "rest_sample.grains", vec![]).await.ret["os"],
        json!("RestExampleOS")
    );
    assert_eq!(
        one(&fleet, id, "rest_sample.fix_outage", vec![]).await.ret,
        json!({"body": "{\"ret\":true}"})
    );
    let started = one(
        &fleet,
        id,
        "rest_sample.service_start",
        vec![json!("apache")],
    )
    .await;
    assert_eq!(started.ret["ret"], json!(true), "{started:?}");
    let all = one(&fleet, id, "saltutil.sync_all", vec![]).await.ret;
    assert_eq!(all["modules"], json!([]), "{all}");
    assert_eq!(all.as_object().map(|o| o.len()), Some(17), "{all}");
    assert_eq!(
        one(&fleet, id, "saltutil.sync_modules", vec![]).await.ret,
        json!([])
    );
    assert_eq!(
        one(&fleet, id, "saltutil.refresh_grains", vec![]).await.ret,
        json!(true)
    );
    assert_eq!(
        one(&fleet, id, "grains.get", vec![json!("os")]).await.ret,
        json!("RestExampleOS"),
        "grains still served after a refresh"
    );
    assert_eq!(
        one(&fleet, id, "grains.has_value", vec![json!("os")])
            .await
            .ret,
        json!(true)
    );
    assert_eq!(
        one(&fleet, id, "grains.has_value", vec![json!("nope:x")])
            .await
            .ret,
        json!(false)
    );
    let by_os = one(
        &fleet,
        id,
        "grains.filter_by",
        vec![
            json!({"Rest*": {"pkg": "a"}, "default": {"pkg": "b"}}),
            json!("os"),
        ],
    )
    .await;
    assert_eq!(by_os.ret, json!({"pkg": "a"}), "{by_os:?}");
}

#[actix_rt::test]
async fn service_and_pkg_functions_change_device_state() {
    let sim = sim(2);
    let fleet = start_fleet(fast_fleet(), sim.inventory()).await;
    let id = "rest-0002";
    let s = &sim.sim;

    let list = one(&fleet, id, "service.list", vec![]).await.ret;
    assert_eq!(list["apache"], json!("running"));
    assert_eq!(list["postgresql"], json!("stopped"));
    assert_eq!(
        one(&fleet, id, "service.status", vec![json!("apache")])
            .await
            .ret,
        json!(true)
    );
    assert_eq!(
        one(&fleet, id, "service.status", vec![json!("postgresql")])
            .await
            .ret,
        json!(false)
    );
    assert_eq!(
        one(&fleet, id, "service.status", vec![json!("nosuch")])
            .await
            .ret,
        Value::Null
    );

    let started = one(&fleet, id, "service.start", vec![json!("postgresql")]).await;
    assert_eq!(started.ret, json!({"comment": "running", "ret": true}));
    assert_eq!(
        s.service_state(id, "postgresql").as_deref(),
        Some("running")
    );
    assert_eq!(
        one(&fleet, id, "service.status", vec![json!("postgresql")])
            .await
            .ret,
        json!(true)
    );
    let stopped = one(&fleet, id, "service.stop", vec![json!("apache")]).await;
    assert_eq!(stopped.ret["comment"], json!("stopped"));
    assert_eq!(s.service_state(id, "apache").as_deref(), Some("stopped"));
    assert_eq!(
        s.service_state("rest-0001", "apache").as_deref(),
        Some("running"),
        "other devices untouched"
    );
    let restarted = one(&fleet, id, "service.restart", vec![json!("redbull")]).await;
    assert_eq!(restarted.ret["ret"], json!(true));

    let pkgs = one(&fleet, id, "pkg.list_pkgs", vec![]).await.ret;
    assert_eq!(pkgs["apache"], json!("2.4"));
    assert_eq!(pkgs["coreutils"], json!("1.0"));

    let mut req = request(id, "pkg.install", vec![json!("vim")]);
    req.tgt_type = drover::fleet::target::TargetType::List;
    req.kwarg.insert("version".into(), json!("9.1"));
    let (_, rets) = run_job(&fleet, req).await;
    assert_eq!(rets[0].ret["ret"], json!(true), "{rets:?}");
    assert_eq!(s.package_version(id, "vim").as_deref(), Some("9.1"));
    assert_eq!(
        one(&fleet, id, "pkg.version", vec![json!("vim")]).await.ret,
        json!("9.1")
    );
    assert_eq!(
        one(
            &fleet,
            id,
            "pkg.version",
            vec![json!("vim"), json!("apache"), json!("nosuch")]
        )
        .await
        .ret,
        json!({"vim": "9.1", "apache": "2.4", "nosuch": ""})
    );
    let installed_default = one(&fleet, id, "pkg.install", vec![json!("tmux")]).await;
    assert!(installed_default.success);
    assert_eq!(s.package_version(id, "tmux").as_deref(), Some("1.0"));
    let removed = one(&fleet, id, "pkg.remove", vec![json!("vim")]).await;
    assert_eq!(removed.ret["ret"], json!(true));
    assert_eq!(s.package_version(id, "vim"), None);
    assert_eq!(
        one(&fleet, id, "pkg.version", vec![json!("vim")]).await.ret,
        json!("")
    );
}

#[actix_rt::test]
async fn unknown_functions_and_bad_arguments_are_errors_for_that_device() {
    let sim = sim(1);
    let fleet = start_fleet(fast_fleet(), sim.inventory()).await;
    let id = "rest-0001";

    let r = one(&fleet, id, "foo.bar", vec![]).await;
    assert_eq!(r.ret, json!("'foo.bar' is not available."));
    assert!(!r.success);
    assert_ne!(r.retcode, 0);
    assert_eq!(r.outcome, Outcome::Failed);

    let r = one(&fleet, id, "service.status", vec![]).await;
    assert!(!r.success);
    assert!(
        r.ret
            .as_str()
            .unwrap()
            .contains("missing 1 required positional argument: 'name'"),
        "{r:?}"
    );

    // A name that tries to walk out of the API is sent percent-encoded.
    let r = one(&fleet, id, "service.status", vec![json!("../../ping")]).await;
    assert_eq!(r.ret, Value::Null, "{r:?}");

    // Bad arguments do not count against the device's health.
    assert_eq!(one(&fleet, id, "test.ping", vec![]).await.ret, json!(true));
    assert_eq!(fleet.registry.get(id).unwrap().restarts, 0);
}

/// `grains.setval` and friends answer in Salt's shapes, change what `grains.items`
/// and grain targeting see at once, and survive a restart with the same state dir.
#[actix_rt::test]
async fn saved_grains_survive_a_restart_and_win_over_the_devices() {
    let sim = sim(1);
    let state = tempfile::tempdir().unwrap();
    let cfg = drover::config::FleetConfig {
        state_dir: Some(state.path().to_owned()),
        ..fast_fleet()
    };
    let id = "rest-0001";
    {
        let fleet = start_fleet(cfg.clone(), sim.inventory()).await;
        let r = one(
            &fleet,
            id,
            "grains.setval",
            vec![json!("role"), json!("core")],
        )
        .await;
        assert_eq!(r.ret, json!({"role": "core"}));
        // Saved grains win over what the device reports.
        let r = one(
            &fleet,
            id,
            "grains.setval",
            vec![json!("os"), json!("Mine")],
        )
        .await;
        assert_eq!(r.ret, json!({"os": "Mine"}));
        let r = one(
            &fleet,
            id,
            "grains.setvals",
            vec![json!({"rack": 4, "roles": ["edge"]})],
        )
        .await;
        assert_eq!(r.ret, json!({"rack": 4, "roles": ["edge"]}));
        let r = one(
            &fleet,
            id,
            "grains.append",
            vec![json!("roles"), json!("bgp")],
        )
        .await;
        assert_eq!(r.ret, json!({"roles": ["edge", "bgp"]}));
        let r = one(
            &fleet,
            id,
            "grains.append",
            vec![json!("roles"), json!("bgp")],
        )
        .await;
        assert_eq!(r.ret, json!("The val bgp was already in the list roles"));
        let r = one(&fleet, id, "grains.append", vec![json!("rack"), json!(5)]).await;
        assert_eq!(r.ret, json!("The key rack is not a valid list"));
        let r = one(
            &fleet,
            id,
            "grains.remove",
            vec![json!("roles"), json!("edge")],
        )
        .await;
        assert_eq!(r.ret, json!({"roles": ["bgp"]}));
        let r = one(
            &fleet,
            id,
            "grains.remove",
            vec![json!("roles"), json!("nope")],
        )
        .await;
        assert_eq!(r.ret, json!("The val nope was not in the list roles"));
        // A list is not replaced by delval without force.
        let r = one(&fleet, id, "grains.delval", vec![json!("roles")]).await;
        assert_eq!(r.ret["result"], json!(false));
        assert_eq!(r.retcode, 1);
        let r = one(&fleet, id, "grains.delkey", vec![json!("rack")]).await;
        assert_eq!(
            r.ret,
            json!({"comment": "", "changes": {"rack": null}, "result": true})
        );
        let items = one(&fleet, id, "grains.items", vec![]).await.ret;
        assert_eq!(items["role"], json!("core"));
        assert_eq!(items["os"], json!("Mine"));
        assert_eq!(items["roles"], json!(["bgp"]));
        assert!(items.get("rack").is_none(), "{items}");
        // Grain targeting sees the saved grain.
        let mut req = request("role:core", "test.ping", vec![]);
        req.tgt_type = drover::fleet::target::TargetType::Grain;
        let (minions, _) = run_job(&fleet, req).await;
        assert_eq!(minions, [id]);
        fleet.shutdown(std::time::Duration::from_secs(5)).await;
    }
    let fleet = start_fleet(cfg, sim.inventory()).await;
    let items = one(&fleet, id, "grains.items", vec![]).await.ret;
    assert_eq!(items["role"], json!("core"));
    assert_eq!(items["os"], json!("Mine"));
    assert_eq!(items["roles"], json!(["bgp"]));
    let bad = one(&fleet, id, "grains.setvals", vec![json!("nope")]).await;
    assert!(!bad.success);
    assert!(
        bad.ret
            .as_str()
            .is_some_and(|s| s.contains("setvals grains must be a dictionary.")),
        "{bad:?}"
    );
}

/// `saltutil.kill_job` answers at once although the device is busy with the job it
/// kills, in Salt's words; the killed job still gives exactly one return, an error.
#[actix_rt::test]
async fn kill_job_ends_a_running_job_on_that_device() {
    let sim = sim(1);
    let fleet = start_fleet(fast_fleet(), sim.inventory()).await;
    let id = "rest-0001";
    let mut req = request(id, "test.sleep", vec![json!(120)]);
    req.tgt_type = drover::fleet::target::TargetType::List;
    req.timeout = Some(std::time::Duration::from_secs(300));
    let mut long = fleet.submit(req).await.expect("job accepted");
    let jid = long.jid.0.clone();
    within(10, "the job to be running", async {
        while fleet.running.for_device(id).is_empty() {
            tokio::task::yield_now().await;
        }
    })
    .await;

    let none = one(
        &fleet,
        id,
        "saltutil.kill_job",
        vec![json!("20000101000000000000")],
    )
    .await;
    assert_eq!(none.ret, json!(""));
    let killed = one(&fleet, id, "saltutil.kill_job", vec![json!(jid.clone())]).await;
    assert_eq!(
        killed.ret,
        json!(format!(
            "Signal 9 sent to job {jid} at pid {}",
            std::process::id()
        ))
    );
    let r = within(10, "the killed job's return", long.returns.recv())
        .await
        .expect("one return");
    assert!(!r.success);
    assert!(
        r.ret.as_str().is_some_and(|s| s.contains("killed")),
        "{r:?}"
    );
    assert!(long.returns.recv().await.is_none(), "exactly one return");
    let bad = one(&fleet, id, "saltutil.kill_job", vec![]).await;
    assert!(!bad.success);
}
