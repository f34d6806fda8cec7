//! SNMP traps and informs from Net-SNMP's own `snmptrap` and `snmpinform` (v1,
//! v2c, v3 authPriv) reach the right device: counted, kept for `snmp.traps`, fired
//! on the event bus the Salt link forwards; informs are acknowledged; forged and
//! malformed ones are dropped and counted.

use std::process::{Command, Stdio};
use std::time::Duration;

use drover::config::Config;
use drover::events::FleetEvent;
use drover::inventory::Inventory;
use drover::run::Daemon;
use serde_json::Value;

use crate::snmpd::{ensure_netsnmp, which, Agent, USERS};
use crate::support::{fast_fleet, request, run_job, within};

/// A Net-SNMP notification tool against the listener; true when it exited 0
/// (for `snmpinform`: acknowledged).
fn notify(tool: &str, dir: &std::path::Path, port: u16, args: &[&str]) -> bool {
    let mut cmd = Command::new(which(tool).expect("net-snmp tool"));
    let (before, after) = args.split_at(args.iter().position(|a| *a == "--").unwrap_or(0));
    let after = after.get(1..).unwrap_or(&[]);
    cmd.args(before)
        .args(["-t", "2", "-r", "1"])
        .arg(format!("127.0.0.1:{port}"))
        .args(after)
        .env("MIBS", "")
        .env("MIBDIRS", dir)
        .env("SNMPCONFPATH", dir)
        .env("SNMP_PERSISTENT_DIR", dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd.status().map(|s| s.success()).unwrap_or(false)
}

fn device(id: &str, agent: &Agent, version: &str, extra: &str) -> String {
    format!(
        "[[device]]\nid = \"{id}\"\nproxytype = \"snmp\"\nhost = \"127.0.0.1\"\nport = {}\nversion = \"{version}\"\n{extra}",
        agent.addr().port()
    )
}

async fn next_trap(rx: &mut tokio::sync::broadcast::Receiver<FleetEvent>) -> (String, Value) {
    within(20, "a trap event", async {
        loop {
            match rx.recv().await {
                Ok(FleetEvent::Fire { tag, data, .. }) if tag.starts_with("drover/trap/") => {
                    return (tag, data)
                }
                Ok(_) => {}
                Err(e) => panic!("event bus: {e}"),
            }
        }
    })
    .await
}

#[actix_rt::test]
async fn traps_and_informs_from_net_snmp_reach_their_device() {
    if !ensure_netsnmp() || which("snmptrap").is_none() || which("snmpinform").is_none() {
        eprintln!("SKIPPED: snmpd/snmptrap/snmpinform cannot be installed on this machine");
        return;
    }
    let agent = Agent::start();
    let (user, _, ap, _, pp, a, x) = &USERS[1];
    let v3 = format!(
        "user = \"{user}\"\nauth_protocol = \"{a}\"\nauth_password = \"{ap}\"\npriv_protocol = \"{x}\"\npriv_password = \"{pp}\"\n"
    );
    let inventory = device("t-v2c", &agent, "2c", "")
        + &device("t-v1", &agent, "1", "")
        + &device("t-v3", &agent, "3", &v3);
    let inventory = Inventory::parse(&inventory, std::path::Path::new("<test>")).unwrap();
    let trap_port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .unwrap();
    let mut cfg = Config {
        fleet: fast_fleet(),
        ..Config::default()
    };
    cfg.http.listen = "127.0.0.1:0".parse().unwrap();
    cfg.poll.interval = Duration::from_secs(1);
    cfg.traps.enabled = true;
    cfg.traps.listen = format!("127.0.0.1:{trap_port}").parse().unwrap();
    let daemon = Daemon::start(&cfg, inventory, None).await.unwrap();
    within(30, "settle", daemon.fleet.settled()).await;
    let mut rx = daemon.fleet.registry.events().subscribe();
    // ifName in linkDown events comes from the if_mib poll's labels.
    within(20, "first if_mib poll", async {
        while daemon.poll.cache.lookups("t-v2c", "if_mib").is_none() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let if1 = ["1.3.6.1.2.1.2.2.1.1.1", "i", "1"];

    // v2c trap, with the interface's name looked up.
    let mut args = vec!["-v2c", "-c", "public", "--", "", "1.3.6.1.6.3.1.1.5.3"];
    args.extend(if1);
    assert!(notify("snmptrap", dir, trap_port, &args));
    let (tag, data) = next_trap(&mut rx).await;
    assert_eq!(tag, "drover/trap/t-v2c/linkDown");
    assert_eq!(data["ifIndex"], 1);
    assert_eq!(data["ifName"], "lo");
    assert_eq!(data["version"], "2c");

    // A forged community and garbage are dropped: the next event is the inform.
    assert!(notify(
        "snmptrap",
        dir,
        trap_port,
        &["-v2c", "-c", "guess", "--", "", "1.3.6.1.6.3.1.1.5.1"]
    ));
    let junk = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    junk.send_to(b"\x30\x03\x02\x01", ("127.0.0.1", trap_port))
        .unwrap();
    let mut args = vec!["-v2c", "-c", "public", "--", "", "1.3.6.1.6.3.1.1.5.4"];
    args.extend(if1);
    assert!(
        notify("snmpinform", dir, trap_port, &args),
        "v2c inform acknowledged"
    );
    let (tag, data) = next_trap(&mut rx).await;
    assert_eq!(tag, "drover/trap/t-v2c/linkUp");
    assert_eq!(data["inform"], true);

    // v1 Trap-PDU (generic linkDown from Net-SNMP's enterprise).
    let mut args = vec![
        "-v1",
        "-c",
        "public",
        "--",
        "1.3.6.1.4.1.8072",
        "127.0.0.1",
        "2",
        "0",
        "",
    ];
    args.extend(if1);
    assert!(notify("snmptrap", dir, trap_port, &args));
    let (tag, data) = next_trap(&mut rx).await;
    assert_eq!(tag, "drover/trap/t-v1/linkDown");
    assert_eq!(data["version"], "1");

    // v3 authPriv trap (the sender's own engine id) and inform (ours, discovered).
    let v3 = [
        "-v3", "-l", "authPriv", "-u", user, "-a", a, "-A", ap, "-x", x, "-X", pp,
    ];
    let mut args = v3.to_vec();
    args.extend(["-e", "0x8000000001020304", "--", "", "1.3.6.1.6.3.1.1.5.1"]);
    assert!(notify("snmptrap", dir, trap_port, &args));
    let (tag, _) = next_trap(&mut rx).await;
    assert_eq!(tag, "drover/trap/t-v3/coldStart");
    let mut args = v3.to_vec();
    args.extend(["--", "", "1.3.6.1.6.3.1.1.5.2"]);
    assert!(
        notify("snmpinform", dir, trap_port, &args),
        "v3 inform acknowledged"
    );
    let (tag, data) = next_trap(&mut rx).await;
    assert_eq!(tag, "drover/trap/t-v3/warmStart");
    assert_eq!(data["version"], "3");
    // Wrong privacy password: no acknowledgement.
    let mut bad = v3.to_vec();
    bad[12] = "not-the-password";
    bad.extend(["--", "", "1.3.6.1.6.3.1.1.5.2"]);
    assert!(!notify("snmpinform", dir, trap_port, &bad));

    // snmp.traps lists the device's own, oldest first.
    let (_, rets) = run_job(&daemon.fleet, request("t-v2c", "snmp.traps", vec![])).await;
    let names: Vec<&str> = rets[0]
        .ret
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["trap"].as_str())
        .collect();
    assert_eq!(names, ["linkDown", "linkUp"]);

    let text = drover::telemetry::metrics_handle().render();
    let count = |needle: &str| {
        text.lines()
            .find(|l| l.starts_with(needle))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    assert!(
        count("drover_snmp_traps_total{trap=\"linkDown\"}") >= 2.0,
        "{text}"
    );
    assert!(
        count("drover_snmp_traps_dropped_total{reason=\"auth\"}") >= 1.0,
        "{text}"
    );
    assert!(
        count("drover_snmp_traps_dropped_total{reason=\"malformed\"}") >= 1.0,
        "{text}"
    );
    daemon.stop().await;
}

/// A trap becomes an event on a real Salt master's bus, sent under the device's id.
#[actix_rt::test]
async fn a_trap_reaches_a_real_salt_master_as_an_event() {
    use crate::salt_master::{salt_case, EventWatch};
    if !ensure_netsnmp() || which("snmptrap").is_none() {
        eprintln!("SKIPPED: snmpd/snmptrap cannot be installed on this machine");
        return;
    }
    let Some((_one, tmp, master)) =
        salt_case("a_trap_reaches_a_real_salt_master_as_an_event", "").await
    else {
        return;
    };
    let agent = Agent::start();
    let watch = EventWatch::start(&master);
    let inventory = Inventory::parse(
        &device("t-salt", &agent, "2c", ""),
        std::path::Path::new("<test>"),
    )
    .unwrap();
    let trap_port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .unwrap();
    let mut cfg = master.drover_config(&tmp.path().join("drover-pki"), None);
    cfg.traps.enabled = true;
    cfg.traps.listen = format!("127.0.0.1:{trap_port}").parse().unwrap();
    let daemon = Daemon::start(&cfg, inventory, None).await.unwrap();
    master.ping_until_all(&["t-salt"], 90).await;
    let dir = tempfile::tempdir().unwrap();
    assert!(notify(
        "snmptrap",
        dir.path(),
        trap_port,
        &[
            "-v2c",
            "-c",
            "public",
            "--",
            "",
            "1.3.6.1.6.3.1.1.5.3",
            "1.3.6.1.2.1.2.2.1.1.1",
            "i",
            "1"
        ]
    ));
    let ev = watch.wait_for("drover/trap/t-salt/linkDown", 30).await;
    assert_eq!(ev["trap"], "linkDown", "{ev}");
    assert_eq!(ev["ifIndex"], 1, "{ev}");
    daemon.stop().await;
}
