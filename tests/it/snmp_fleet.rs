//! A thousand simulated SNMP agents (v2c and v3) managed by one fleet: every device
//! answers `test.ping` and `snmp.get sysName.0` exactly once, faulty ones with an
//! error that names the cause.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use serde_json::json;

use drover::devsim::snmp::{SnmpFault, SnmpFaultRates, SnmpSim, SnmpSimConfig};
use drover::fleet::registry::DeviceState;
use drover::inventory::Inventory;

use crate::support::*;

fn snmp_sim(cfg: SnmpSimConfig) -> OnThread<SnmpSim> {
    OnThread::start(move || SnmpSim::start(cfg)).expect("snmp simulator starts")
}

#[actix_rt::test]
async fn a_thousand_snmp_agents_answer_exactly_once() {
    let v2 = snmp_sim(SnmpSimConfig {
        count: 900,
        id_prefix: "sw-".into(),
        interfaces: 4,
        ..SnmpSimConfig::default()
    });
    let v3 = snmp_sim(SnmpSimConfig {
        count: 100,
        id_prefix: "sw3-".into(),
        interfaces: 4,
        faults: SnmpFaultRates::default(),
        ..SnmpSimConfig::default()
    });
    let text = v2.sim.inventory_toml("2c") + &v3.sim.inventory_toml("3");
    let inventory = Inventory::parse(&text, Path::new("<snmpsim>")).unwrap();
    let mut cfg = fast_fleet();
    cfg.health_interval = Duration::from_secs(3600);
    cfg.device_timeout = Duration::from_secs(2);
    let fleet = start_fleet(cfg, inventory).await;
    assert_eq!(fleet.registry.count_in(DeviceState::Up), 1000);

    // Faults after start-up, so the job meets them: a tenth of each kind.
    let ids: Vec<String> = v2.sim.devices().iter().map(|d| d.id.clone()).collect();
    let mut fault_of = HashMap::new();
    for (k, (name, f)) in [
        ("down", SnmpFault::Down),
        ("malformed", SnmpFault::Malformed),
        ("drop", SnmpFault::Drop(1.0)),
    ]
    .into_iter()
    .enumerate()
    {
        for id in ids.iter().skip(k).step_by(10) {
            v2.sim.set_fault(id, f);
            fault_of.insert(id.clone(), name);
        }
    }
    for fun in ["test.ping", "snmp.get"] {
        let arg = if fun == "snmp.get" {
            vec![json!("sysName.0")]
        } else {
            vec![]
        };
        let mut req = request("sw*", fun, arg);
        req.timeout = Some(Duration::from_secs(30));
        let (minions, rets) = run_job(&fleet, req).await;
        assert_eq!(minions.len(), 1000);
        assert_exactly_one_each(&minions, &rets);
        for r in &rets {
            match fault_of.get(&r.id) {
                None => {
                    assert!(r.success, "{r:?}");
                    if fun == "snmp.get" {
                        assert_eq!(r.ret[0]["value"], json!(r.id), "sysName is the id");
                    } else {
                        assert_eq!(r.ret, json!(true));
                    }
                }
                Some(kind) => {
                    assert!(!r.success, "{kind}: {r:?}");
                    assert!(r.ret.as_str().is_some_and(|s| !s.is_empty()), "{r:?}");
                }
            }
        }
    }
    let metrics = drover::telemetry::metrics_handle().render();
    assert!(metrics.contains("drover_devices{driver=\"snmp\",state=\"up\"}"));
    assert!(
        metrics.lines().any(|l| l
            .starts_with("drover_device_op_errors_total{driver=\"snmp\",error_kind=\"timeout\"}")),
        "SNMP timeouts are counted"
    );
}
