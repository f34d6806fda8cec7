//! Device health end to end: `drover run` polls real Net-SNMP agents (v2c and v3
//! authPriv) in the background, and a real Prometheus finds them through `/sd` and
//! scrapes `/snmp` with snmp_exporter's usual relabelling.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::prometheus::{free_port, which, Killed};
use crate::snmpd::{ensure_netsnmp, Agent, USERS};
use crate::support::within;

fn device(id: &str, agent: &Agent, v3: bool) -> String {
    let mut s = format!(
        "[[device]]\nid = \"{id}\"\nproxytype = \"snmp\"\nhost = \"127.0.0.1\"\nport = {}\ntimeout = \"500ms\"\nretries = 0\ngrains = {{ site = \"lab\" }}\n",
        agent.addr().port()
    );
    if v3 {
        let (u, _, ap, _, pp, a, x) = &USERS[0];
        s.push_str(&format!(
            "version = \"3\"\nuser = \"{u}\"\nauth_protocol = \"{a}\"\nauth_password = \"{ap}\"\npriv_protocol = \"{x}\"\npriv_password = \"{pp}\"\n"
        ));
    }
    s
}

/// Prometheus's instant query answer: (labels, value) per series.
async fn query(client: &reqwest::Client, port: u16, q: &str) -> Vec<(Value, String)> {
    let url = url::Url::parse_with_params(
        &format!("http://127.0.0.1:{port}/api/v1/query"),
        &[("query", q)],
    )
    .expect("url");
    let Ok(r) = client.get(url).send().await else {
        return Vec::new();
    };
    let v: Value = r.json().await.unwrap_or_default();
    v["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|s| {
            let value = s["value"][1].as_str().unwrap_or_default().to_owned();
            (s["metric"].clone(), value)
        })
        .collect()
}

/// Asks Prometheus until `pred` accepts the answer (Prometheus offers no event to
/// await), bounded by `within`.
async fn until(
    client: &reqwest::Client,
    port: u16,
    q: &str,
    what: &str,
    pred: impl Fn(&[(Value, String)]) -> bool,
) -> Vec<(Value, String)> {
    within(60, what, async {
        loop {
            let r = query(client, port, q).await;
            if pred(&r) {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
    .await
}

fn counter(agent: &Agent, oid: &str) -> u64 {
    let out = agent.netsnmp("snmpget", &["-v2c", "-c", "public", "-Oqv"], &[oid]);
    out.trim()
        .parse()
        .unwrap_or_else(|_| panic!("snmpget {oid}: {out:?}"))
}

#[actix_rt::test]
async fn prometheus_scrapes_polled_snmp_agents_through_sd() {
    let Ok(prometheus) = which("prometheus") else {
        eprintln!(
            "SKIPPED: no `prometheus` binary (Debian package prometheus); .ci/run installs it"
        );
        return;
    };
    if !ensure_netsnmp() {
        eprintln!("SKIPPED: snmpd/snmp cannot be installed on this machine");
        return;
    }
    let v2 = Agent::start();
    let v3 = Agent::start();
    let mut gone = Agent::start();
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("inv.toml");
    let mut inventory = device("h-v2c", &v2, false) + &device("h-v3", &v3, true);
    inventory += &device("h-gone", &gone, false);
    std::fs::write(&inv, &inventory).unwrap();
    let http = free_port();
    std::fs::write(
        dir.path().join("drover.toml"),
        format!(
            "inventory = [\"inv.toml\"]\n[http]\nlisten = \"127.0.0.1:{http}\"\n\
             [fleet]\nhealth_interval = \"500ms\"\nmax_consecutive_failures = 2\n\
             [fleet.backoff]\ninitial = \"200ms\"\nmax = \"1s\"\n\
             [poll]\ninterval = \"1s\"\n"
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_drover"))
        .args(["run", "--config"])
        .arg(dir.path().join("drover.toml"))
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let drover = Killed(child);
    let mut wait_for = move |needle: &'static str| {
        for line in lines.by_ref() {
            let line = line.unwrap_or_default();
            if line.contains(needle) {
                return;
            }
        }
        panic!("drover exited before logging {needle:?}");
    };
    wait_for("Drover started");
    let base = format!("http://127.0.0.1:{http}");

    let prom_port = free_port();
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: snmp\n    metrics_path: /snmp\n\
             \x20   http_sd_configs:\n      - url: {base}/sd\n        refresh_interval: 1s\n\
             \x20   relabel_configs:\n\
             \x20     - source_labels: [__address__]\n        target_label: __param_target\n\
             \x20     - source_labels: [__param_target]\n        target_label: instance\n\
             \x20     - target_label: __address__\n        replacement: 127.0.0.1:{http}\n"
        ),
    )
    .unwrap();
    let _prom = Killed(
        Command::new(prometheus)
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus"),
    );
    let client = reqwest::Client::new();

    // Both agents' lo, through http_sd, /snmp and the usual relabelling.
    let lo = until(
        &client,
        prom_port,
        "ifHCInOctets{ifName=\"lo\"}",
        "ifHCInOctets of lo from the v2c and the v3 agent",
        |r| {
            let has = |i: &str| r.iter().any(|(m, _)| m["instance"] == i);
            has("h-v2c") && has("h-v3")
        },
    )
    .await;
    for (m, _) in &lo {
        assert_eq!(m["job"], "snmp");
        assert_eq!(m["driver"], "snmp");
        assert_eq!(m["site"], "lab");
        assert_eq!(m["ifDescr"], "lo");
    }
    let if_index = lo[0].0["ifIndex"].as_str().unwrap().to_owned();
    let oid = format!("1.3.6.1.2.1.31.1.1.1.6.{if_index}");

    // Within one poll: a value polled after `before` was read lies between it and
    // what snmpget says afterwards.
    let before = counter(&v2, &oid);
    let asked = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let polled = until(
        &client,
        prom_port,
        "drover_poll_timestamp_seconds{instance=\"h-v2c\",module=\"if_mib\"}",
        "a poll after the first snmpget",
        |r| {
            r.first()
                .and_then(|(_, v)| v.parse::<f64>().ok())
                .is_some_and(|t| t > asked + 1.0)
        },
    )
    .await;
    assert!(!polled.is_empty());
    let scraped = until(
        &client,
        prom_port,
        &format!("ifHCInOctets{{instance=\"h-v2c\",ifIndex=\"{if_index}\"}} and on() (drover_poll_timestamp_seconds{{instance=\"h-v2c\",module=\"if_mib\"}} > {asked} + 1)"),
        "the scraped counter of the new poll",
        |r| !r.is_empty(),
    )
    .await;
    let after = counter(&v2, &oid);
    let value: u64 = scraped[0].1.parse().expect("integer counter");
    assert!(
        before <= value && value <= after,
        "{before} <= {value} <= {after}"
    );

    // v3 authPriv answers the system module too.
    let up = until(
        &client,
        prom_port,
        "sysUpTime{instance=\"h-v3\"}",
        "sysUpTime over SNMPv3",
        |r| !r.is_empty(),
    )
    .await;
    assert!(up[0].1.parse::<u64>().unwrap() > 0);

    // A stopped agent: its scrape fails at once (503, up = 0), no hang, and its
    // series go stale.
    gone.stop();
    let r = within(30, "h-gone stale", async {
        loop {
            let r = tokio::time::timeout(
                Duration::from_secs(2),
                client
                    .get(format!("{base}/snmp?target=h-gone&module=if_mib"))
                    .send(),
            )
            .await
            .expect("a scrape of a dead agent answers at once")
            .unwrap();
            if r.status() == 503 {
                return r.text().await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert!(r.contains("h-gone"), "{r}");
    until(
        &client,
        prom_port,
        "up{instance=\"h-gone\"} == 0",
        "up = 0",
        |r| !r.is_empty(),
    )
    .await;
    until(
        &client,
        prom_port,
        "ifHCInOctets{instance=\"h-gone\"}",
        "h-gone series stale",
        |r| r.is_empty(),
    )
    .await;
    let stale = client
        .get(format!("{base}/snmp?target=h-gone&module=if_mib&stale=ok"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        stale.contains("drover_poll_stale{module=\"if_mib\"} 1"),
        "{stale}"
    );

    // A device added on SIGHUP shows in /sd, then in Prometheus.
    std::fs::write(&inv, inventory + &device("h-new", &v2, false)).unwrap();
    let pid = drover.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    within(20, "h-new in /sd", async {
        loop {
            let sd: Value = client
                .get(format!("{base}/sd"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if sd
                .as_array()
                .is_some_and(|a| a.iter().any(|g| g["targets"][0] == "h-new"))
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    until(
        &client,
        prom_port,
        "up{instance=\"h-new\"} == 1",
        "h-new scraped",
        |r| !r.is_empty(),
    )
    .await;
}

/// GETs a `/snmp` answer until it contains `needle` (the poller offers no event a
/// client could await), bounded.
async fn scrape_until(client: &reqwest::Client, url: &str, needle: &str) -> String {
    within(30, needle, async {
        loop {
            if let Ok(r) = client.get(url).send().await {
                if let Ok(body) = r.text().await {
                    if body.contains(needle) {
                        return body;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
}

#[actix_rt::test]
async fn ovs_interfaces_and_rest_health_through_the_same_endpoint() {
    use crate::ovs::{ensure_ovs, OvsServer};
    use crate::support::{fast_fleet, RestThread, SimThread};
    if !ensure_ovs() {
        eprintln!("SKIPPED: ovsdb-server cannot be installed on this machine");
        return;
    }
    let s = OvsServer::start(30170, None);
    s.vsctl_ok(&["add-br", "br0", "--", "add-port", "br0", "p1"]);
    s.vsctl_ok(&[
        "set",
        "interface",
        "p1",
        "link_state=up",
        "admin_state=down",
        "mtu=9000",
        "statistics:rx_bytes=123456789012",
        "statistics:tx_packets=7",
    ]);
    let sim = SimThread::rest(drover::devsim::RestSimConfig {
        count: 1,
        id_prefix: "hl-".into(),
        ..Default::default()
    });
    let text = s.inventory_entry("ovs-h", false) + &sim.sim.inventory_toml();
    let inventory =
        drover::inventory::Inventory::parse(&text, std::path::Path::new("<t>")).unwrap();
    let mut cfg = drover::config::Config {
        fleet: fast_fleet(),
        ..Default::default()
    };
    cfg.http.listen = "127.0.0.1:0".parse().unwrap();
    cfg.poll.interval = Duration::from_secs(1);
    let daemon = drover::run::Daemon::start(&cfg, inventory, None)
        .await
        .unwrap();
    within(30, "settle", daemon.fleet.settled()).await;
    let base = format!("http://{}", daemon.http_addr);
    let client = reqwest::Client::new();

    let ovs = format!("{base}/snmp?target=ovs-h&module=ovs_interfaces");
    let body = scrape_until(
        &client,
        &ovs,
        "ovs_interface_rx_bytes_total{bridge=\"br0\",interface=\"p1\"} 123456789012\n",
    )
    .await;
    assert!(
        body.contains("ovs_interface_link_up{bridge=\"br0\",interface=\"p1\"} 1\n"),
        "{body}"
    );
    assert!(
        body.contains("ovs_interface_admin_up{bridge=\"br0\",interface=\"p1\"} 0\n"),
        "{body}"
    );
    assert!(
        body.contains("ovs_interface_mtu_bytes{bridge=\"br0\",interface=\"p1\"} 9000\n"),
        "{body}"
    );
    assert!(
        body.contains("ovs_interface_tx_packets_total{bridge=\"br0\",interface=\"p1\"} 7\n"),
        "{body}"
    );
    // The replica follows the database; the next poll shows the change.
    s.vsctl_ok(&["set", "interface", "p1", "statistics:rx_bytes=123456790000"]);
    scrape_until(
        &client,
        &ovs,
        "ovs_interface_rx_bytes_total{bridge=\"br0\",interface=\"p1\"} 123456790000\n",
    )
    .await;

    let rest = format!("{base}/snmp?target=hl-0001&module=rest_health");
    let body = scrape_until(&client, &rest, "drover_rest_up 1\n").await;
    assert!(
        body.contains("drover_rest_ping_duration_seconds "),
        "{body}"
    );

    let sd: Value = client
        .get(format!("{base}/sd"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let module_of = |id: &str| {
        sd.as_array()
            .and_then(|a| a.iter().find(|g| g["targets"][0] == id))
            .map(|g| g["labels"]["__param_module"].clone())
    };
    assert_eq!(module_of("ovs-h"), Some(Value::from("ovs_interfaces")));
    assert_eq!(module_of("hl-0001"), Some(Value::from("rest_health")));
    daemon.stop().await;
}

/// Families of a text-format answer: name → (help, type, series as sorted label
/// pairs). Values are left out: counters move between the two reads.
type Families = std::collections::BTreeMap<
    String,
    (
        String,
        String,
        std::collections::BTreeSet<Vec<(String, String)>>,
    ),
>;

fn families(text: &str) -> Families {
    let mut out = Families::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            out.entry(name.to_owned()).or_default().0 = help.to_owned();
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, ty) = rest.split_once(' ').unwrap_or((rest, ""));
            out.entry(name.to_owned()).or_default().1 = ty.to_owned();
        } else if !line.is_empty() && !line.starts_with('#') {
            let series = line.rsplit_once(' ').map_or(line, |(s, _)| s);
            let (name, labels) = series.split_once('{').unwrap_or((series, "}"));
            let mut pairs = Vec::new();
            let mut rest = labels.trim_end_matches('}');
            while let Some((k, v)) = rest.split_once("=\"") {
                // Label values here hold no escaped quotes.
                let (val, tail) = v.split_once('"').unwrap_or((v, ""));
                pairs.push((k.trim_start_matches(',').to_owned(), val.to_owned()));
                rest = tail;
            }
            pairs.sort();
            out.entry(name.to_owned()).or_default().2.insert(pairs);
        }
    }
    out
}

/// snmp_exporter itself (Debian's 0.21) and Drover, over the same agent with the
/// same module definitions: the same families, help, types and series.
#[actix_rt::test]
async fn if_mib_and_system_match_a_real_snmp_exporter() {
    let exporter = std::path::Path::new("/usr/bin/prometheus-snmp-exporter");
    if !exporter.exists() || !ensure_netsnmp() {
        eprintln!("SKIPPED: no prometheus-snmp-exporter (Debian package) or snmpd");
        return;
    }
    let agent = Agent::start();
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("snmp.yml");
    std::fs::write(&conf, drover::poll::compat::snmp_exporter_yml().unwrap()).unwrap();
    let port = free_port();
    let _exp = Killed(
        Command::new(exporter)
            .arg(format!("--config.file={}", conf.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start snmp_exporter"),
    );
    let inventory = drover::inventory::Inventory::parse(
        &device("cmp", &agent, false),
        std::path::Path::new("<t>"),
    )
    .unwrap();
    let mut cfg = drover::config::Config {
        fleet: crate::support::fast_fleet(),
        ..Default::default()
    };
    cfg.http.listen = "127.0.0.1:0".parse().unwrap();
    cfg.poll.interval = Duration::from_secs(1);
    let daemon = drover::run::Daemon::start(&cfg, inventory, None)
        .await
        .unwrap();
    let client = reqwest::Client::new();
    for module in ["if_mib", "system"] {
        let ours = scrape_until(
            &client,
            &format!(
                "http://{}/snmp?target=cmp&module={module}",
                daemon.http_addr
            ),
            "snmp_scrape_pdus_returned",
        )
        .await;
        let theirs = scrape_until(
            &client,
            &format!(
                "http://127.0.0.1:{port}/snmp?target=127.0.0.1:{}&module={module}",
                agent.addr().port()
            ),
            "snmp_scrape_pdus_returned",
        )
        .await;
        let (mut ours, theirs) = (families(&ours), families(&theirs));
        // Only the scrape's own families differ (0.21 has no `module` label and no
        // packet counts; Drover adds the poll's age).
        ours.retain(|n, _| !n.starts_with("snmp_scrape_") && !n.starts_with("drover_poll_"));
        let theirs: Families = theirs
            .into_iter()
            .filter(|(n, _)| !n.starts_with("snmp_scrape_"))
            .collect();
        assert!(theirs.contains_key("sysUpTime") || theirs.contains_key("ifHCInOctets"));
        assert_eq!(
            ours.keys().collect::<Vec<_>>(),
            theirs.keys().collect::<Vec<_>>(),
            "{module}"
        );
        for (name, t) in &theirs {
            assert_eq!(&ours[name], t, "{module}: {name}");
        }
    }
    daemon.stop().await;
}
