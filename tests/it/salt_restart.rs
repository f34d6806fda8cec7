//! Restarts against a real `salt-master`: `drover run` with 2,000 devices started
//! twice in a row (the second start re-authenticates every id, or the syndic id,
//! with keys the master already holds). After each start every id answers
//! `test.ping` through the `salt` CLI, no id is lost or added on the master, and
//! Drover logs no warning or error. Heavy: ignored by `cargo test`, run by `.ci/run`
//! on its own.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::salt_master::*;
use crate::support::*;

const IDS: usize = 2_000;
const SYNDIC: &str = "drover-restart-syndic";

#[actix_rt::test]
#[ignore = "heavy: 2,000 ids through a real master, started twice; .ci/run runs it alone"]
async fn two_thousand_minion_ids_answer_after_each_of_two_starts() {
    restart_twice(
        "two_thousand_minion_ids_answer_after_each_of_two_starts",
        false,
    )
    .await;
}

#[actix_rt::test]
#[ignore = "heavy: 2,000 devices behind one syndic id, started twice; .ci/run runs it alone"]
async fn two_thousand_devices_behind_a_syndic_answer_after_each_of_two_starts() {
    restart_twice(
        "two_thousand_devices_behind_a_syndic_answer_after_each_of_two_starts",
        true,
    )
    .await;
}

/// Stops `drover run` (SIGTERM, bounded wait, then SIGKILL) when dropped.
struct Drover(Child);

impl Drover {
    fn stop(&mut self) {
        if let Ok(pid) = i32::try_from(self.0.id()) {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Drover {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

async fn restart_twice(test: &str, syndic: bool) {
    let extra = if syndic {
        "order_masters: True\nsyndic_wait: 1\n"
    } else {
        ""
    };
    let Some((_one, tmp, master)) = salt_case(test, extra).await else {
        return;
    };
    let sim = sim(IDS);
    let dir = tmp.path();
    std::fs::write(dir.join("inv.toml"), sim.sim.inventory_toml()).expect("inventory");
    let syndic_line = if syndic {
        format!("syndic_id = \"{SYNDIC}\"\n")
    } else {
        String::new()
    };
    let http_port = free_port();
    std::fs::write(
        dir.join("drover.toml"),
        format!(
            "inventory = [\"inv.toml\"]\n[http]\nlisten = \"127.0.0.1:{}\"\n\
             [master]\nkind = \"salt\"\nhost = \"127.0.0.1\"\npublish_port = {}\n\
             ret_port = {}\npki_dir = \"pki\"\n{syndic_line}",
            http_port, master.pub_port, master.ret_port,
        ),
    )
    .expect("config");
    let ids: Vec<String> = sim.sim.devices().iter().map(|d| d.id.clone()).collect();
    assert_eq!(ids.len(), IDS);

    for start in 1..=2 {
        let log = dir.join(format!("drover-{start}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_drover"))
            .args(["run", "--config"])
            .arg(dir.join("drover.toml"))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("drover run starts");
        let mut drover = Drover(child);
        if start == 2 && !syndic {
            the_last_id_a_job_targets_goes_first(&master, http_port, &ids).await;
        }
        // Pinging 2,000 ids while they authenticate would pile returns up in the
        // master faster than it stores them: wait for Drover's own count first.
        let ids_to_auth = if syndic { 1.0 } else { IDS as f64 };
        authenticated(http_port, ids_to_auth, Duration::from_secs(600)).await;
        let answered = every_id_answers(&master, &ids, Duration::from_secs(300)).await;
        drover.stop();
        let problems = warnings(&log);
        assert!(
            answered.is_empty(),
            "start {start}: {} of {IDS} ids never answered, e.g. {:?}; log: {problems:?}",
            answered.len(),
            &answered[..answered.len().min(5)]
        );
        assert!(
            problems.is_empty(),
            "start {start}: Drover logged {} warnings or errors: {:?}",
            problems.len(),
            &problems[..problems.len().min(5)]
        );
        // One key per device (or the syndic's one): none lost, none made up.
        let (keys, text) = master.cli("salt-key", &["-L", "--out", "json"]).await;
        let accepted = keys["minions"].as_array().map_or(0, Vec::len);
        let expected = if syndic { 1 } else { IDS };
        assert_eq!(
            accepted,
            expected,
            "start {start}: {}",
            &text[..text.len().min(500)]
        );
        assert_eq!(
            keys["minions_pre"].as_array().map_or(0, Vec::len),
            0,
            "start {start}: no key waits for acceptance"
        );
    }
}

/// A job for the id that authenticates last, published while the fleet starts:
/// the id goes ahead of the queue, so its answer comes while most of the fleet is
/// still waiting (without the promotion it would come after all of it).
async fn the_last_id_a_job_targets_goes_first(master: &SaltMaster, http_port: u16, ids: &[String]) {
    // The publication is only seen once the link subscribes (after its first `_auth`).
    authenticated(http_port, 1.0, Duration::from_secs(120)).await;
    let connected = async {
        while metric(http_port, "drover_master_connected", "").await < 1.0 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), connected)
        .await
        .expect("the link subscribes to the master's publications");
    let last = ids.last().expect("ids");
    let (v, text) = ping_list(master, last).await;
    let accepted = accepted_auths(http_port).await;
    assert_eq!(v.get(last), Some(&Value::Bool(true)), "{text}");
    assert!(
        accepted < (ids.len() / 2) as f64,
        "{last} answered only after {accepted} of {} ids had authenticated",
        ids.len()
    );
    assert!(metric(http_port, "drover_master_auth_promoted_total", "").await >= 1.0);
}

/// Sum of a metric's series in Drover's `/metrics` whose labels contain `label`.
async fn metric(http_port: u16, name: &str, label: &str) -> f64 {
    let url = format!("http://127.0.0.1:{http_port}/metrics");
    let Ok(r) = reqwest::Client::new().get(&url).send().await else {
        return 0.0;
    };
    let text = r.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
                && l.contains(label)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn accepted_auths(http_port: u16) -> f64 {
    metric(
        http_port,
        "drover_master_auth_total",
        "outcome=\"accepted\"",
    )
    .await
}

/// Waits (bounded) until Drover's `/metrics` counts `n` accepted authentications.
async fn authenticated(http_port: u16, n: f64, limit: Duration) {
    let start = Instant::now();
    let mut seen = 0.0;
    while start.elapsed() < limit {
        seen = accepted_auths(http_port).await;
        if seen >= n {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    panic!("only {seen} of {n} authentications within {limit:?}");
}

/// Pings every id through the CLI until each has answered `true` once (bounded);
/// returns the ids that never did. Ids that answered are not asked again, so the
/// master's work shrinks as the fleet comes up.
async fn every_id_answers(master: &SaltMaster, ids: &[String], limit: Duration) -> Vec<String> {
    let start = Instant::now();
    let mut missing: Vec<String> = ids.to_vec();
    while !missing.is_empty() && start.elapsed() < limit {
        let list = missing.join(",");
        let (v, _) = ping_list(master, &list).await;
        missing.retain(|id| v.get(id) != Some(&Value::Bool(true)));
        if !missing.is_empty() {
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    }
    missing
}

/// `salt -L <ids> test.ping` with a 60 s timeout, as JSON and as text.
async fn ping_list(master: &SaltMaster, ids: &str) -> (Value, String) {
    let args = [
        "-L",
        ids,
        "test.ping",
        "--out",
        "json",
        "--static",
        "-t",
        "60",
    ];
    master.cli("salt", &args).await
}

/// WARN and ERROR lines of a Drover log.
fn warnings(log: &Path) -> Vec<String> {
    let Ok(f) = std::fs::File::open(log) else {
        return vec![format!("no log at {}", log.display())];
    };
    BufReader::new(f)
        .lines()
        .map_while(Result::ok)
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .collect()
}
