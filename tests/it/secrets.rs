//! Secrets never leave the process: a real `drover run` configured with SNMP
//! communities, v3 passwords (right and wrong ones, so failures are logged too) and
//! an API token, working against simulated agents with every log level on, is
//! searched for each secret in its log, `/metrics`, `/v1/devices` and job output.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use drover::devsim::snmp::{SnmpSim, SnmpSimConfig, SnmpV3User};
use drover::drivers::snmp::{AuthProtocol, PrivProtocol};

use crate::support::*;

const SECRETS: [&str; 7] = [
    "read-C0MMUNITY-4a1",
    "write-C0MMUNITY-7b2",
    "auth-PASSW0RD-9c3",
    "priv-PASSW0RD-5d4",
    "wrong-C0MMUNITY-2e5",
    "wrong-AUTH-s3cret-8f6",
    "tok-S3CRET-0a7b8c9d",
];

/// The daemon, killed when the test ends however it ends.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn snmp_sim(cfg: SnmpSimConfig) -> OnThread<SnmpSim> {
    OnThread::start(move || SnmpSim::start(cfg)).expect("snmp simulator starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_stay_out_of_logs_metrics_and_the_api() {
    let v2 = snmp_sim(SnmpSimConfig {
        count: 2,
        id_prefix: "v2-".into(),
        community: SECRETS[0].into(),
        write_community: SECRETS[1].into(),
        v3_user: None,
        interfaces: 2,
        ..SnmpSimConfig::default()
    });
    let v3 = snmp_sim(SnmpSimConfig {
        count: 2,
        id_prefix: "v3-".into(),
        v3_user: Some(SnmpV3User {
            name: "ops".into(),
            auth: (AuthProtocol::Sha256, SECRETS[2].into()),
            privacy: Some((PrivProtocol::Aes128, SECRETS[3].into())),
        }),
        interfaces: 2,
        ..SnmpSimConfig::default()
    });
    let v2_addr = v2.sim.devices()[0].addr;
    let v3_addr = v3.sim.devices()[0].addr;
    let inventory = format!(
        "{}{}\
         [[device]]\nid = \"bad-community\"\nproxytype = \"snmp\"\nhost = \"{}\"\nport = {}\n\
         version = \"2c\"\ncommunity = \"{}\"\ntimeout = \"300ms\"\nretries = 0\n\n\
         [[device]]\nid = \"bad-password\"\nproxytype = \"snmp\"\nhost = \"{}\"\nport = {}\n\
         version = \"3\"\nuser = \"ops\"\nauth_protocol = \"SHA-256\"\nauth_password = \"{}\"\n\
         priv_protocol = \"AES\"\npriv_password = \"{}\"\ntimeout = \"300ms\"\nretries = 0\n",
        v2.sim.inventory_toml("2c"),
        v3.sim.inventory_toml("3"),
        v2_addr.ip(),
        v2_addr.port(),
        SECRETS[4],
        v3_addr.ip(),
        v3_addr.port(),
        SECRETS[5],
        SECRETS[3],
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("inventory.toml"), inventory).unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, format!("{}\n", SECRETS[6])).unwrap();
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let config = dir.path().join("drover.toml");
    std::fs::write(
        &config,
        "inventory = [\"inventory.toml\"]\n\
         [fleet]\nhealth_interval = \"500ms\"\nshutdown_grace = \"1s\"\n\
         [fleet.backoff]\ninitial = \"100ms\"\nmax = \"200ms\"\n\
         [http]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"token\"\n",
    )
    .unwrap();

    let child = Command::new(env!("CARGO_BIN_EXE_drover"))
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "trace")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start drover");
    let mut daemon = Daemon(child);
    let log = Arc::new(Mutex::new(String::new()));
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let stderr = daemon.0.stderr.take().unwrap();
    let sink = log.clone();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if line.contains("Drover started.") {
                if let Some(a) = line.split("http=").nth(1) {
                    let _ = addr_tx.send(a.split_whitespace().next().unwrap_or("").to_owned());
                }
            }
            let mut l = sink.lock().unwrap();
            l.push_str(&line);
            l.push('\n');
        }
    });
    let addr = tokio::task::spawn_blocking(move || addr_rx.recv_timeout(Duration::from_secs(60)))
        .await
        .unwrap()
        .unwrap_or_else(|_| panic!("drover did not start:\n{}", log.lock().unwrap()));
    let base = format!("http://{addr}");
    let client = reqwest::Client::new();

    // Until no device is starting; bounded.
    let started = Instant::now();
    while client
        .get(format!("{base}/ready"))
        .send()
        .await
        .map(|r| r.status() != 200)
        .unwrap_or(true)
    {
        assert!(started.elapsed() < Duration::from_secs(30), "never ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut outputs = Vec::new();
    for (fun, arg) in [
        ("test.ping", serde_json::json!([])),
        ("snmp.get", serde_json::json!(["sysName.0"])),
        ("grains.items", serde_json::json!([])),
    ] {
        let body = client
            .post(format!("{base}/v1/jobs"))
            .bearer_auth(SECRETS[6])
            .json(&serde_json::json!({"tgt": "*", "fun": fun, "arg": arg, "timeout": "10s"}))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        outputs.push(body);
    }
    let get = |path: &str| {
        client
            .get(format!("{base}{path}"))
            .bearer_auth(SECRETS[6])
            .send()
    };
    let devices = get("/v1/devices").await.unwrap().text().await.unwrap();
    let metrics = get("/metrics").await.unwrap().text().await.unwrap();
    let jid = serde_json::from_str::<serde_json::Value>(outputs[1].lines().next().unwrap())
        .unwrap()["jid"]
        .as_str()
        .unwrap()
        .to_owned();
    let job = get(&format!("/v1/jobs/{jid}"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // A wrong token is refused (and must not be echoed either).
    let refused = client
        .get(format!("{base}/v1/devices"))
        .bearer_auth("wrong-token")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);

    // Stop it the way an operator does, so shutdown logs are searched too.
    let _ = Command::new("kill")
        .args(["-TERM", &daemon.0.id().to_string()])
        .status();
    let stopped = Instant::now();
    while daemon.0.try_wait().unwrap().is_none() && stopped.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(daemon);
    tokio::task::spawn_blocking(move || reader.join().unwrap())
        .await
        .unwrap();
    let log = log.lock().unwrap().clone();

    // The searches can fail: the material is real (devices worked, failures were
    // logged, the wrong-password device is named).
    assert!(
        devices.contains("v3-0001") && devices.contains("bad-password"),
        "{devices}"
    );
    assert!(outputs[1].contains("v2-0001"), "{}", outputs[1]);
    assert!(metrics.contains("drover_devices"), "{metrics}");
    assert!(
        log.contains("bad-password"),
        "the log names the failing device"
    );
    assert!(log.lines().count() > 20, "{log}");
    for secret in SECRETS {
        for (place, text) in [
            ("the log", &log),
            ("/metrics", &metrics),
            ("/v1/devices", &devices),
            ("/v1/jobs/<jid>", &job),
        ] {
            assert!(!text.contains(secret), "{secret} appears in {place}");
        }
        for out in &outputs {
            assert!(!out.contains(secret), "{secret} appears in a job's output");
        }
    }
}

/// `drover run` with `dir/drover.toml` = `config`; returns (exit code, stderr).
fn run_config(dir: &std::path::Path, config: &str) -> (i32, String) {
    let path = dir.join("drover.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = Daemon(
        Command::new(env!("CARGO_BIN_EXE_drover"))
            .args(["run", "--config"])
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start drover"),
    );
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.0.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    let code = child.0.wait().unwrap().code().unwrap_or(-1);
    (code, stderr)
}

/// Each of these must stop the daemon before it serves anything, with exit code 64
/// (a bad config: restarting will not help) and a message naming the fix.
#[test]
fn unsafe_api_settings_refuse_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");

    let (code, err) = run_config(dir.path(), "[http]\nlisten = \"0.0.0.0:0\"\n");
    assert_eq!(code, 64, "{err}");
    assert!(
        err.contains("http.token_file") && err.contains("loopback"),
        "{err}"
    );

    std::fs::write(&token, "tok\n").unwrap();
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let (code, err) = run_config(
        dir.path(),
        "[http]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"token\"\n",
    );
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("chmod 600") && err.contains("token"), "{err}");

    std::fs::write(&token, "  \n").unwrap();
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let (code, err) = run_config(
        dir.path(),
        "[http]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"token\"\n",
    );
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("empty"), "{err}");
}
