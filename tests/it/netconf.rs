//! Interoperability tests: the NETCONF driver against a real `netconfd` (yuma123)
//! behind a private OpenSSH `sshd` on loopback, both started per test. netconfd and
//! its SSH subsystem meet on `/tmp/ncxserver.sock`, so the tests run one at a time.
//! They say SKIPPED when netconfd or sshd is not installed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::LazyLock;
use std::time::Duration;

use drover::drivers::netconf::ops::{CommitOptions, EditOptions, Filter};
use drover::drivers::netconf::NetconfDevice;
use drover::drivers::{Driver, DriverConfig, DriverContext};
use serde_json::{json, Map, Value};

const NETCONFD: &str = "/usr/sbin/netconfd";
const SUBSYSTEM: &str = "/usr/sbin/netconf-subsystem";
const SSHD: &str = "/usr/sbin/sshd";
const SYS: &str = "urn:ietf:params:xml:ns:yang:ietf-system";

/// One server at a time: netconfd's socket path is shared.
static SERIAL: LazyLock<tokio::sync::Mutex<()>> = LazyLock::new(|| tokio::sync::Mutex::new(()));

macro_rules! require_netconfd {
    () => {
        if !(Path::new(NETCONFD).exists() && Path::new(SUBSYSTEM).exists() && Path::new(SSHD).exists()) {
            eprintln!("\n\n!!!!!! SKIPPED: NETCONF interop test: netconfd / openssh-server not installed !!!!!!\n\n");
            return;
        }
    };
}

struct Server {
    sshd: Option<Child>,
    netconfd: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
    fingerprint: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Server {
    fn start() -> Server {
        Server::start_with("ed25519", "")
    }

    /// Host and client keys of `key_type`; `extra` lines go into sshd_config.
    fn start_with(key_type: &str, extra: &str) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        for k in ["hostkey", "client", "otherhost"] {
            run(Command::new("ssh-keygen")
                .args(["-q", "-t", key_type, "-N", ""])
                .arg("-f")
                .arg(d.join(k)));
        }
        std::fs::copy(d.join("client.pub"), d.join("authorized_keys")).expect("copy");
        let fp = run(Command::new("ssh-keygen")
            .arg("-lf")
            .arg(d.join("hostkey.pub")));
        let fingerprint = fp
            .split_whitespace()
            .nth(1)
            .expect("fingerprint")
            .to_owned();
        let port = free_port();
        std::fs::write(
            d.join("sshd_config"),
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/hostkey\nPidFile {d}/sshd.pid\n\
                 AuthorizedKeysFile {d}/authorized_keys\nUsePAM no\nStrictModes no\nPermitRootLogin yes\n\
                 PasswordAuthentication yes\nMaxStartups 100\nSubsystem netconf {SUBSYSTEM}\n{extra}",
                d = d.display()
            ),
        )
        .expect("sshd_config");
        let _ = std::fs::create_dir_all("/run/sshd");
        let hostpub = std::fs::read_to_string(d.join("hostkey.pub")).expect("hostkey.pub");
        let mut parts = hostpub.split_whitespace();
        let (alg, b64) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        std::fs::write(
            d.join("known_hosts"),
            format!("[127.0.0.1]:{port} {alg} {b64}\n"),
        )
        .expect("kh");
        let otherpub = std::fs::read_to_string(d.join("otherhost.pub")).expect("otherhost.pub");
        let mut parts = otherpub.split_whitespace();
        let (alg, b64) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        std::fs::write(
            d.join("wrong_known_hosts"),
            format!("[127.0.0.1]:{port} {alg} {b64}\n"),
        )
        .expect("kh");
        let sshd = Command::new(SSHD)
            .args(["-D", "-f"])
            .arg(d.join("sshd_config"))
            .arg("-E")
            .arg(d.join("sshd.log"))
            .stdin(Stdio::null())
            .spawn()
            .expect("sshd");
        let mut s = Server {
            sshd: Some(sshd),
            netconfd: None,
            dir,
            port,
            fingerprint,
        };
        s.start_netconfd();
        s
    }

    fn start_netconfd(&mut self) {
        let _ = std::fs::remove_file("/tmp/ncxserver.sock");
        let child = Command::new(NETCONFD)
            .args(["--no-startup", "--superuser=root"])
            .arg(format!("--port={}", self.port))
            .arg(format!(
                "--log={}",
                self.dir.path().join("netconfd.log").display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("netconfd");
        self.netconfd = Some(child);
        for _ in 0..100 {
            if Path::new("/tmp/ncxserver.sock").exists()
                && std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("netconfd/sshd did not come up");
    }

    fn stop_netconfd(&mut self) {
        if let Some(mut c) = self.netconfd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn path(&self, f: &str) -> PathBuf {
        self.dir.path().join(f)
    }

    fn table(&self, extra: Value) -> Map<String, Value> {
        let mut t = json!({"host": "127.0.0.1", "port": self.port, "username": "root"});
        if let (Some(t), Value::Object(e)) = (t.as_object_mut(), extra) {
            t.extend(e);
        }
        match t {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    fn driver(&self, extra: Value) -> Driver {
        let mut base = json!({"key_file": "client", "known_hosts": "known_hosts"});
        if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
            for (k, v) in e {
                if v.is_null() {
                    b.remove(&k);
                } else {
                    b.insert(k, v);
                }
            }
        }
        let cfg = DriverConfig::from_table("netconf", self.table(base), self.dir.path())
            .expect("settings");
        cfg.build(Duration::from_secs(5), &DriverContext::new().expect("ctx"))
            .expect("build")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop_netconfd();
        if let Some(mut c) = self.sshd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn dev(d: &Driver) -> &NetconfDevice {
    d.netconf().expect("netconf capability")
}

fn location(v: &Value) -> Option<String> {
    v["data"]["system"]["location"].as_str().map(str::to_owned)
}

fn sys_filter() -> Filter {
    Filter::Subtree(format!("<system xmlns=\"{SYS}\"/>"))
}

async fn bounded<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("test took over 60 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capabilities_get_config_and_grains() {
    require_netconfd!();
    let _g = SERIAL.lock().await;
    let srv = Server::start();
    bounded(async {
        let d = srv.driver(json!({}));
        let caps = dev(&d).capabilities().await.expect("capabilities");
        assert_eq!(caps["base"], "1.1", "{caps}");
        let list = caps["capabilities"].as_array().expect("list");
        assert!(
            list.iter()
                .any(|c| c == "urn:ietf:params:netconf:capability:candidate:1.0"),
            "{caps}"
        );
        let cfg = dev(&d)
            .get_config("running", &Filter::None)
            .await
            .expect("get-config");
        assert!(cfg["data"].is_object(), "{cfg}");
        assert!(
            cfg["xml"].as_str().is_some_and(|x| x.contains("nacm")),
            "{cfg}"
        );
        assert!(d.ping().await.expect("ping"));
        let g = d.grains().await.expect("grains");
        assert_eq!(g["netconf_base"], "1.1");
        assert!(
            g["netconf_modules"]
                .as_array()
                .is_some_and(|m| m.iter().any(|m| m == "ietf-system")),
            "{g:?}"
        );
        assert!(g.contains_key("os"));
        // The pinned fingerprint works as well as known_hosts, and so does TOFU.
        let d2 = srv.driver(json!({"known_hosts": null, "host_key": srv.fingerprint}));
        dev(&d2).capabilities().await.expect("pinned host key");
        let d3 = srv.driver(json!({"known_hosts": null, "trust_on_first_use": true}));
        dev(&d3).capabilities().await.expect("trust on first use");
        // A malformed filter never reaches the device.
        let e = dev(&d)
            .get(&Filter::Subtree("<a>".into()))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("invalid XML argument filter"), "{e}");
    })
    .await;
}

/// Every key exchange, host key, cipher and MAC the client offers, each forced on
/// OpenSSH by its sshd_config, with client keys of the same type; and re-keying
/// started by the server (a 4 KiB `RekeyLimit`) in the middle of RPC traffic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_offered_algorithm_and_a_server_rekey_against_openssh() {
    require_netconfd!();
    let _g = SERIAL.lock().await;
    let cases = [
        ("ecdsa", "KexAlgorithms ecdh-sha2-nistp256\nCiphers aes256-gcm@openssh.com\n", 2),
        (
            "rsa",
            "HostKeyAlgorithms rsa-sha2-512\nCiphers aes128-ctr\nMACs hmac-sha2-256-etm@openssh.com\n",
            2,
        ),
        (
            "rsa",
            "HostKeyAlgorithms rsa-sha2-256\nCiphers aes256-ctr\nMACs hmac-sha2-512\n",
            2,
        ),
        (
            "ed25519",
            "KexAlgorithms curve25519-sha256@libssh.org\nCiphers aes128-gcm@openssh.com\n",
            2,
        ),
        (
            "ed25519",
            "Ciphers aes256-ctr\nMACs hmac-sha2-512-etm@openssh.com,hmac-sha2-256\n\
             RekeyLimit 4K\nLogLevel DEBUG1\n",
            40,
        ),
        ("ed25519", "RekeyLimit 4K\nLogLevel DEBUG1\n", 40),
    ];
    for (key_type, extra, rounds) in cases {
        let srv = Server::start_with(key_type, extra);
        bounded(async {
            let d = srv.driver(json!({}));
            for i in 0..rounds {
                let cfg = dev(&d)
                    .get_config("running", &Filter::None)
                    .await
                    .unwrap_or_else(|e| panic!("{key_type} / {extra}: round {i}: {e}"));
                assert!(cfg["data"].is_object(), "{cfg}");
            }
        })
        .await;
        if extra.contains("RekeyLimit") {
            let log = std::fs::read_to_string(srv.path("sshd.log")).unwrap_or_default();
            let rekeys = log.matches("SSH2_MSG_NEWKEYS received").count();
            assert!(rekeys >= 3, "{extra}: only {rekeys} key exchanges:\n{log}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_candidate_commit_seen_by_a_second_session_and_discard() {
    require_netconfd!();
    let _g = SERIAL.lock().await;
    let srv = Server::start();
    bounded(async {
        let a = srv.driver(json!({}));
        let b = srv.driver(json!({}));
        let cfg = format!("<system xmlns=\"{SYS}\"><location>rack-7</location></system>");
        let r = dev(&a)
            .edit_config("candidate", &cfg, &EditOptions::default())
            .await
            .expect("edit-config");
        assert_eq!(r["ok"], true, "{r}");
        let cand = dev(&a)
            .get_config("candidate", &sys_filter())
            .await
            .expect("candidate");
        assert_eq!(location(&cand).as_deref(), Some("rack-7"), "{cand}");
        let run = dev(&b)
            .get_config("running", &sys_filter())
            .await
            .expect("running");
        assert_ne!(location(&run).as_deref(), Some("rack-7"), "{run}");
        dev(&a)
            .commit(&CommitOptions::default())
            .await
            .expect("commit");
        let run = dev(&b)
            .get_config("running", &sys_filter())
            .await
            .expect("running");
        assert_eq!(
            location(&run).as_deref(),
            Some("rack-7"),
            "second session sees the commit: {run}"
        );

        // Discard: an edit thrown away never reaches running.
        let cfg2 = format!("<system xmlns=\"{SYS}\"><location>rack-9</location></system>");
        dev(&a)
            .edit_config("candidate", &cfg2, &EditOptions::default())
            .await
            .expect("edit");
        dev(&a).discard_changes().await.expect("discard");
        let cand = dev(&a)
            .get_config("candidate", &sys_filter())
            .await
            .expect("candidate");
        assert_eq!(location(&cand).as_deref(), Some("rack-7"), "{cand}");

        // managed: test=True reports the diff and discards; then it commits; then
        // it is idempotent.
        let cfg3 = format!("<system xmlns=\"{SYS}\"><location>rack-11</location></system>");
        let t = dev(&a)
            .managed(&cfg3, "candidate", true, &EditOptions::default())
            .await
            .expect("managed test");
        assert!(t["result"].is_null(), "{t}");
        assert!(t["changes"]["diff"].to_string().contains("rack-11"), "{t}");
        let run = dev(&b)
            .get_config("running", &sys_filter())
            .await
            .expect("running");
        assert_eq!(location(&run).as_deref(), Some("rack-7"));
        let m = dev(&a)
            .managed(&cfg3, "candidate", false, &EditOptions::default())
            .await
            .expect("managed");
        assert_eq!(m["result"], true, "{m}");
        assert!(m["changes"]["diff"].to_string().contains("rack-11"), "{m}");
        let run = dev(&b)
            .get_config("running", &sys_filter())
            .await
            .expect("running");
        assert_eq!(location(&run).as_deref(), Some("rack-11"));
        let again = dev(&a)
            .managed(&cfg3, "candidate", false, &EditOptions::default())
            .await
            .expect("managed");
        assert_eq!(again["result"], true, "{again}");
        assert_eq!(again["changes"], json!({}), "{again}");

        // Any RPC as XML.
        let r = dev(&a)
            .rpc("<get-config><source><running/></source></get-config>")
            .await
            .expect("rpc");
        assert!(r["reply"]["data"].is_object(), "{r}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_held_by_another_session_is_a_clear_error() {
    require_netconfd!();
    let _g = SERIAL.lock().await;
    let srv = Server::start();
    bounded(async {
        let a = srv.driver(json!({}));
        let b = srv.driver(json!({}));
        dev(&a).lock("candidate").await.expect("lock");
        let e = dev(&b).lock("candidate").await.unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("lock-denied"), "{msg}");
        assert!(!e.is_device_failure());
        assert_eq!(e.kind(), "rpc_error");
        let m = dev(&b)
            .managed(
                &format!("<system xmlns=\"{SYS}\"><location>x</location></system>"),
                "candidate",
                false,
                &EditOptions::default(),
            )
            .await
            .expect("managed answers");
        assert_eq!(m["result"], false, "{m}");
        dev(&a).unlock("candidate").await.expect("unlock");
        dev(&b).lock("candidate").await.expect("lock after unlock");
        dev(&b).unlock("candidate").await.expect("unlock");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restart_then_reconnect() {
    require_netconfd!();
    let _g = SERIAL.lock().await;
    let mut srv = Server::start();
    let d = srv.driver(json!({}));
    let first = tokio::time::timeout(Duration::from_secs(20), dev(&d).capabilities())
        .await
        .expect("bounded")
        .expect("capabilities");
    srv.stop_netconfd();
    // The session breaks: an error, not a hang.
    let e = tokio::time::timeout(
        Duration::from_secs(20),
        dev(&d).get_config("running", &Filter::None),
    )
    .await
    .expect("bounded");
    assert!(e.is_err(), "{e:?}");
    srv.start_netconfd();
    let mut ok = None;
    for _ in 0..40 {
        if let Ok(Ok(c)) =
            tokio::time::timeout(Duration::from_secs(10), dev(&d).capabilities()).await
        {
            ok = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let again = ok.expect("reconnected after restart");
    assert_eq!(first["base"], again["base"]);
    // A fresh netconfd numbers sessions from 1 again: check the new session works.
    // Its first RPCs can outlast the driver's 5 s request timeout on a loaded CI
    // machine (it is still loading its datastore), so a few attempts are allowed;
    // a session that never works fails after them.
    let mut last = None;
    for _ in 0..6 {
        match tokio::time::timeout(
            Duration::from_secs(10),
            dev(&d).get_config("running", &Filter::None),
        )
        .await
        .expect("bounded")
        {
            Ok(cfg) => {
                last = None;
                assert!(cfg["data"].is_object(), "{cfg}");
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    assert!(last.is_none(), "get-config after reconnect: {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_and_wrong_host_key_are_clear_errors_without_a_hang() {
    require_netconfd!();
    let _g = SERIAL.lock().await;
    let srv = Server::start();
    bounded(async {
        let d = srv.driver(json!({"key_file": null, "password": "not-the-password"}));
        let t = std::time::Instant::now();
        let e = dev(&d).capabilities().await.unwrap_err();
        assert!(
            e.to_string()
                .contains("authentication failed for user \"root\""),
            "{e}"
        );
        assert!(!e.to_string().contains("not-the-password"));
        assert_eq!(e.kind(), "auth");
        assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());

        let d = srv.driver(json!({"known_hosts": "wrong_known_hosts"}));
        let e = dev(&d).capabilities().await.unwrap_err();
        assert!(e.to_string().contains("CHANGED"), "{e}");
        assert_eq!(e.kind(), "host_key");

        let d = srv.driver(json!({"known_hosts": null,
            "host_key": "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU"}));
        let e = dev(&d).capabilities().await.unwrap_err();
        assert!(e.to_string().contains("is not the pinned one"), "{e}");
        assert!(e.to_string().contains(&srv.fingerprint), "{e}");

        std::fs::write(srv.path("empty_known_hosts"), "").expect("write");
        let d = srv.driver(json!({"known_hosts": "empty_known_hosts"}));
        let e = dev(&d).capabilities().await.unwrap_err();
        assert!(e.to_string().contains("is not in known_hosts"), "{e}");
    })
    .await;
}
