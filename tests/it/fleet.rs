//! Supervision, dispatch and their promises: restarts with backoff, fast failure of
//! down devices, exactly one return per device under faults, the in-flight cap,
//! batches, fairness, and panics contained to one device.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use serde_json::json;

use drover::devsim::{Fault, FaultRates, RestSimConfig};
use drover::fleet::registry::DeviceState;
use drover::inventory::Inventory;
use drover::job::{Batch, Outcome};
use drover::telemetry;

use crate::support::*;

#[actix_rt::test]
async fn down_device_fails_fast_restarts_with_backoff_and_recovers() {
    let sim = sim_at(3, 31400);
    let fleet = start_fleet(fast_fleet(), sim.inventory()).await;
    let victim = "rest-0002";
    assert_eq!(fleet.registry.state(victim), Some(DeviceState::Up));

    sim.sim.set_fault_and_wait(victim, Fault::Down).await;
    within(
        10,
        "device marked down",
        fleet
            .registry
            .wait_for(|r| r.state(victim).is_some_and(|s| s.is_unreachable())),
    )
    .await;

    // Jobs to it fail at once with a cause, while the others answer.
    let mut req = request("*", "test.ping", vec![]);
    req.timeout = Some(Duration::from_secs(5));
    let (minions, rets) = run_job(&fleet, req).await;
    assert_exactly_one_each(&minions, &rets);
    let by_id: HashMap<_, _> = rets.iter().map(|r| (r.id.as_str(), r)).collect();
    let v = by_id[victim];
    assert!(!v.success);
    assert_eq!(v.outcome, Outcome::Unreachable, "{v:?}");
    assert!(
        v.ret.as_str().unwrap().starts_with("device unreachable"),
        "{v:?}"
    );
    assert!(
        v.duration_ms < 1000,
        "answered at once, not after a timeout: {v:?}"
    );
    assert_eq!(by_id["rest-0001"].ret, json!(true));

    // The supervisor keeps trying (each attempt fails while the device is down).
    within(
        10,
        "restarts to be attempted",
        fleet
            .registry
            .wait_for(|r| r.get(victim).is_some_and(|e| e.restarts >= 2)),
    )
    .await;

    sim.sim.set_fault_and_wait(victim, Fault::None).await;
    within(
        10,
        "device back up",
        fleet
            .registry
            .wait_for(|r| r.state(victim) == Some(DeviceState::Up)),
    )
    .await;
    assert_eq!(
        one(&fleet, victim, "test.ping", vec![]).await.ret,
        json!(true)
    );

    let rendered = telemetry::metrics_handle().render();
    assert!(
        rendered
            .lines()
            .any(|l| l.starts_with("drover_device_restarts_total{")
                && l.contains("reason=\"failed\"")),
        "restart counter exported"
    );
    assert!(rendered.contains(&format!(
        "drover_device_up{{device=\"{victim}\",driver=\"rest_sample\"}} 1"
    )));
    assert_eq!(
        fleet.registry.get("rest-0001").unwrap().restarts,
        0,
        "others untouched"
    );
}

#[actix_rt::test]
async fn exactly_one_return_per_device_with_ten_percent_of_each_fault() {
    let count = 300;
    let sim = sim_at(count, 31000);
    let mut cfg = fast_fleet();
    // Health checks stay out of the way so the job itself meets the faults.
    cfg.health_interval = Duration::from_secs(3600);
    cfg.device_timeout = Duration::from_secs(5);
    cfg.max_consecutive_failures = 3;
    let fleet = start_fleet(cfg, sim.inventory()).await;
    assert_eq!(fleet.registry.count_in(DeviceState::Up), count);

    let ids = sim.ids();
    let kinds = [
        ("down", Fault::Down),
        ("slow", Fault::Slow(Duration::from_secs(10))),
        (
            "flapping",
            Fault::Flapping {
                period: Duration::from_millis(150),
            },
        ),
        ("http500", Fault::Http500),
        ("garbage", Fault::Garbage),
        ("reset", Fault::Reset),
    ];
    let mut fault_of: HashMap<String, &str> = HashMap::new();
    for (k, (name, fault)) in kinds.iter().enumerate() {
        for id in ids.iter().skip(k).step_by(10) {
            sim.sim.set_fault_and_wait(id, fault.clone()).await;
            fault_of.insert(id.clone(), name);
        }
    }
    assert_eq!(fault_of.len(), count * 6 / 10);

    // Three jobs at once, one of them batched.
    let mut jobs = Vec::new();
    for (fun, arg, batch) in [
        ("test.ping", vec![], None),
        ("service.status", vec![json!("apache")], None),
        ("pkg.list_pkgs", vec![], Some(Batch::Percent(25))),
    ] {
        let mut req = request("rest-*", fun, arg);
        // Long enough for healthy devices on a loaded CI machine, shorter than
        // the slow ones.
        req.timeout = Some(Duration::from_secs(6));
        req.batch = batch;
        jobs.push(fleet.submit(req).await.expect("accepted"));
    }
    for mut h in jobs {
        let mut rets = Vec::new();
        within(30, "job to end", async {
            while let Some(r) = h.returns.recv().await {
                rets.push(r);
            }
        })
        .await;
        assert_eq!(h.minions.len(), count);
        assert_exactly_one_each(&h.minions, &rets);
        for r in &rets {
            let text = r.ret.as_str().unwrap_or("");
            match fault_of.get(&r.id).copied() {
                None => assert!(r.success, "healthy device failed: {r:?}"),
                Some("flapping") => {}
                Some(kind) => {
                    assert!(!r.success, "{kind} device succeeded: {r:?}");
                    assert!(!text.is_empty(), "error names a cause: {r:?}");
                    let expect = match kind {
                        "slow" => "timed out",
                        "http500" => "HTTP 500",
                        "garbage" => "malformed",
                        _ => "",
                    };
                    // A device may already be marked down by an earlier job's failures.
                    assert!(
                        text.contains(expect) || text.starts_with("device unreachable"),
                        "{kind}: {r:?}"
                    );
                }
            }
        }
    }
}

#[actix_rt::test]
async fn in_flight_cap_bounds_concurrent_device_requests() {
    let count = 500;
    let sim = sim(count);
    let mut cfg = fast_fleet();
    cfg.max_in_flight = 32;
    cfg.health_interval = Duration::from_secs(3600);
    let fleet = start_fleet(cfg, sim.inventory()).await;
    for id in sim.ids() {
        sim.sim
            .set_fault(&id, Fault::Slow(Duration::from_millis(10)));
    }
    sim.sim.reset_peak();
    let (minions, rets) = run_job(&fleet, request("*", "test.ping", vec![])).await;
    assert_exactly_one_each(&minions, &rets);
    assert!(rets.iter().all(|r| r.ret == json!(true)));
    let peak = sim.sim.peak_in_flight();
    assert!(peak <= 32, "peak {peak} exceeds the cap of 32");
    assert!(
        peak >= 8,
        "peak {peak}: the cap was never approached, the test proves nothing"
    );

    // A batch narrows it further.
    sim.sim.reset_peak();
    let mut req = request("*", "test.ping", vec![]);
    req.batch = Some(Batch::Count(5));
    let (minions, rets) = run_job(&fleet, req).await;
    assert_exactly_one_each(&minions, &rets);
    let peak = sim.sim.peak_in_flight();
    assert!((2..=5).contains(&peak), "batch of 5: peak {peak}");
}

#[actix_rt::test]
async fn a_small_job_is_not_starved_by_a_big_one() {
    let count = 400;
    let sim = sim(count);
    let mut cfg = fast_fleet();
    cfg.max_in_flight = 4;
    cfg.health_interval = Duration::from_secs(3600);
    let fleet = start_fleet(cfg, sim.inventory()).await;
    for id in sim.ids() {
        sim.sim
            .set_fault(&id, Fault::Slow(Duration::from_millis(5)));
    }
    let mut big = fleet
        .submit(request("*", "test.ping", vec![]))
        .await
        .unwrap();
    let first = within(10, "first big return", big.returns.recv()).await;
    assert!(first.is_some());
    let mut small_req = request("rest-0400", "test.ping", vec![]);
    small_req.tgt_type = drover::fleet::target::TargetType::List;
    let mut small = fleet.submit(small_req).await.unwrap();
    let mut big_seen = 1;
    let small_ret = within(30, "small job", async {
        loop {
            tokio::select! {
                biased;
                r = small.returns.recv() => break r,
                r = big.returns.recv() => { if r.is_some() { big_seen += 1; } }
            }
        }
    })
    .await;
    assert_eq!(small_ret.map(|r| r.ret), Some(json!(true)));
    assert!(
        big_seen < count / 2,
        "small job waited for {big_seen} of {count} big returns"
    );
    while big.returns.recv().await.is_some() {}
}

fn dummy_inventory(spec: &[(&str, &str)]) -> Inventory {
    let text: String = spec
        .iter()
        .map(|(id, b)| {
            format!("[[device]]\nid = \"{id}\"\nproxytype = \"dummy\"\nbehaviour = \"{b}\"\n")
        })
        .collect();
    Inventory::parse(&text, Path::new("<dummy>")).unwrap()
}

#[actix_rt::test]
async fn a_panicking_driver_is_contained_counted_and_restarted() {
    let mut cfg = fast_fleet();
    cfg.health_interval = Duration::from_secs(3600);
    let fleet = start_fleet(cfg, dummy_inventory(&[("calm", "ok"), ("wild", "panic")])).await;
    let (minions, rets) = run_job(
        &fleet,
        request("*", "service.status", vec![json!("apache")]),
    )
    .await;
    assert_exactly_one_each(&minions, &rets);
    let by_id: HashMap<_, _> = rets.iter().map(|r| (r.id.as_str(), r)).collect();
    assert_eq!(by_id["calm"].ret, json!(true));
    let wild = by_id["wild"];
    assert!(!wild.success);
    assert!(wild.ret.as_str().unwrap().contains("panicked"), "{wild:?}");

    within(
        10,
        "panicked device restarted and up",
        fleet.registry.wait_for(|r| {
            r.get("wild")
                .is_some_and(|e| e.restarts >= 1 && e.state == DeviceState::Up)
        }),
    )
    .await;
    assert_eq!(fleet.registry.get("calm").unwrap().restarts, 0);
    assert_eq!(
        one(&fleet, "calm", "test.ping", vec![]).await.ret,
        json!(true)
    );
    let rendered = telemetry::metrics_handle().render();
    assert!(rendered
        .lines()
        .any(|l| l.starts_with("drover_device_panics_total{") && !l.ends_with(" 0")));
    assert!(rendered
        .lines()
        .any(|l| l.starts_with("drover_device_restarts_total{") && l.contains("reason=\"panic\"")));
}

#[actix_rt::test]
async fn a_hung_device_times_out_without_delaying_others() {
    let mut cfg = fast_fleet();
    cfg.health_interval = Duration::from_secs(3600);
    let fleet = start_fleet(cfg, dummy_inventory(&[("calm", "ok"), ("stuck", "hang")])).await;
    let mut req = request("*", "test.ping", vec![]);
    req.timeout = Some(Duration::from_secs(2));
    let (minions, rets) = run_job(&fleet, req).await;
    assert_exactly_one_each(&minions, &rets);
    let by_id: HashMap<_, _> = rets.iter().map(|r| (r.id.as_str(), r)).collect();
    assert_eq!(by_id["calm"].ret, json!(true));
    assert_eq!(by_id["stuck"].outcome, Outcome::Timeout);
    assert!(by_id["stuck"].ret.as_str().unwrap().contains("timed out"));
}

#[actix_rt::test]
async fn devices_that_fail_at_start_settle_as_down_and_fail_fast() {
    let sim = SimThreadCfg::down_share(20, 0.5);
    let fleet = start_fleet(fast_fleet(), sim.inventory()).await;
    let (minions, rets) = run_job(&fleet, request("*", "test.ping", vec![])).await;
    assert_exactly_one_each(&minions, &rets);
    let down: Vec<_> = rets
        .iter()
        .filter(|r| r.outcome == Outcome::Unreachable)
        .collect();
    let up: Vec<_> = rets.iter().filter(|r| r.success).collect();
    assert_eq!(down.len(), 10);
    assert_eq!(up.len(), 10);
    assert!(
        down.iter()
            .all(|r| r.ret.as_str().unwrap().contains("connection")),
        "{down:?}"
    );
}

struct SimThreadCfg;

impl SimThreadCfg {
    fn down_share(count: usize, down: f64) -> SimThread {
        SimThread::rest(RestSimConfig {
            count,
            base_port: 31410,
            faults: FaultRates {
                down,
                ..FaultRates::default()
            },
            ..RestSimConfig::default()
        })
    }
}
