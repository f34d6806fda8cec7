//! The NETCONF driver against hostile simulated devices (`drover devsim --kind
//! netconf` faults): a reply that never ends, a malformed chunk header and a reply
//! over the size cap each give that device a clear error return within its timeout,
//! while a well-behaved device beside them answers.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use drover::devsim::netconf::{NetconfFault, NetconfSim, NetconfSimConfig};
use drover::inventory::Inventory;
use drover::job::{Outcome, TargetType};

use crate::support::*;

#[actix_rt::test]
async fn hostile_replies_are_clear_errors_without_a_hang() {
    logs();
    let sim = NetconfSim::start(NetconfSimConfig {
        count: 4,
        auth_rejection_time: Duration::from_millis(10),
        ..NetconfSimConfig::default()
    })
    .await
    .expect("netconf simulator starts");
    let ids: Vec<String> = sim.devices().iter().map(|d| d.id.clone()).collect();
    let text = sim.inventory_toml().replace(
        "proxytype = \"netconf\"",
        "proxytype = \"netconf\"\ntimeout = \"3s\"",
    );
    let inventory = Inventory::parse(&text, Path::new("<netconf>")).expect("inventory");
    let mut cfg = fast_fleet();
    cfg.health_interval = Duration::from_secs(3600);
    let fleet = start_fleet(cfg, inventory).await;
    within(30, "sessions up", fleet.settled()).await;

    sim.set_fault(&ids[0], NetconfFault::NeverEnding);
    sim.set_fault(&ids[1], NetconfFault::BadChunk);
    // Over the driver's default 16 MiB message cap.
    sim.set_fault(&ids[2], NetconfFault::Huge(17 << 20));

    let mut req = request(&ids.join(","), "netconf.get_config", vec![]);
    req.tgt_type = TargetType::List;
    req.timeout = Some(Duration::from_secs(30));
    let (minions, rets) = within(40, "get_config returns", run_job(&fleet, req)).await;
    assert_exactly_one_each(&minions, &rets);
    let ret = |id: &str| {
        rets.iter()
            .find(|r| r.id == id)
            .unwrap_or_else(|| panic!("{id} returned"))
    };
    let text = |id: &str| ret(id).ret.as_str().unwrap_or_default().to_owned();

    let ok = ret(&ids[3]);
    assert!(ok.success, "{ok:?}");
    assert!(ok.ret["data"].is_object(), "{ok:?}");

    for (id, want) in [(&ids[0], "timed out"), (&ids[1], "chunk"), (&ids[2], "cap")] {
        let r = ret(id);
        assert!(!r.success, "{id}: {r:?}");
        assert_eq!(r.outcome, Outcome::Failed, "{id}: {r:?}");
        assert!(
            text(id).to_lowercase().contains(want),
            "{id}: {:?} should say {want:?}",
            r.ret
        );
        // Answered by the driver within its 3 s timeout, not by the job deadline.
        assert!(r.duration_ms < 20_000, "{id}: {r:?}");
    }

    // The faults cleared, the same devices answer again over new sessions.
    for id in &ids[..3] {
        sim.set_fault(id, NetconfFault::None);
    }
    let start = std::time::Instant::now();
    loop {
        let mut req = request(&ids.join(","), "netconf.get_config", vec![]);
        req.tgt_type = TargetType::List;
        req.timeout = Some(Duration::from_secs(20));
        let (_, rets) = run_job(&fleet, req).await;
        if rets.iter().all(|r| r.success && r.ret["data"].is_object()) {
            break;
        }
        let failing: Vec<(&str, &Value)> = rets
            .iter()
            .filter(|r| !r.success)
            .map(|r| (r.id.as_str(), &r.ret))
            .collect();
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "still failing after the faults cleared: {failing:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    sim.shutdown().await;
}
