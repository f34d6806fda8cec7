//! A real `salt-master` for the compatibility tests: a private config directory on
//! loopback ports, started as its own process group, stopped (the whole group) and
//! restarted on the same ports, plus bounded runs of the real `salt` CLIs.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::process::{Child, Command};

use drover::config::{Config, MasterKind};

use crate::support::fast_fleet;

/// Salt tests run one at a time: each runs a multi-process master, and the master
/// metrics they read are process-wide.
pub static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Where the Salt venv's scripts are ($SALT_BIN_DIR, which `.ci/run` sets).
pub fn salt_bin_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("SALT_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/work/venv-salt/bin"));
    dir.join("salt-master").exists().then_some(dir)
}

/// What every Salt test starts from: the one-at-a-time lock, a fresh directory and a
/// master started there with `extra` config lines. `None` (after a loud SKIPPED line)
/// when Salt is not installed. Bind the three in this order so the master stops
/// before its directory goes and the lock is released last.
pub async fn salt_case(
    test: &str,
    extra: &str,
) -> Option<(
    tokio::sync::MutexGuard<'static, ()>,
    tempfile::TempDir,
    SaltMaster,
)> {
    let Some(bin) = salt_bin_dir() else {
        eprintln!("\n!!!!!! SKIPPED {test}: no salt-master in $SALT_BIN_DIR or /work/venv-salt/bin !!!!!!\n");
        return None;
    };
    let one = ONE_AT_A_TIME.lock().await;
    crate::support::logs();
    let tmp = tempfile::tempdir().expect("tmp");
    let master = SaltMaster::start(&bin, tmp.path(), extra).await;
    Some((one, tmp, master))
}

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Stops the master's whole process group (it forks workers) when dropped.
struct Group {
    child: Child,
}

impl Group {
    fn signal(&self, sig: &str) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args([sig, "--", &format!("-{pid}")])
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.signal("-TERM");
        std::thread::sleep(Duration::from_millis(1500));
        self.signal("-KILL");
        let _ = self.child.start_kill();
    }
}

pub struct SaltMaster {
    pub bin: PathBuf,
    pub cfg_dir: PathBuf,
    pub root: PathBuf,
    pub pub_port: u16,
    pub ret_port: u16,
    proc: Option<Group>,
}

impl SaltMaster {
    /// Writes a private config under `dir` (with `extra` YAML appended) and starts it.
    pub async fn start(bin: &Path, dir: &Path, extra: &str) -> SaltMaster {
        let cfg_dir = dir.join("master-conf");
        let root = dir.join("root");
        for sub in [
            "pki",
            "cache",
            "sock",
            "log",
            "run",
            "srv/salt",
            "srv/pillar",
        ] {
            std::fs::create_dir_all(root.join(sub)).expect("mkdir");
        }
        std::fs::create_dir_all(&cfg_dir).expect("mkdir");
        let (pub_port, ret_port) = (free_port(), free_port());
        let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
        let r = root.display();
        // YAML refuses a key twice: `extra` may override the default acceptance.
        let accept = if extra.contains("auto_accept") {
            ""
        } else {
            "auto_accept: True\n"
        };
        let cfg = format!(
            "root_dir: {r}\npki_dir: {r}/pki\ncachedir: {r}/cache\nsock_dir: {r}/sock\n\
             log_file: {r}/log/master.log\npidfile: {r}/run/salt-master.pid\nuser: {user}\n\
             interface: 127.0.0.1\npublish_port: {pub_port}\nret_port: {ret_port}\n\
             {accept}log_level_logfile: info\n\
             file_roots: {{base: [{r}/srv/salt]}}\npillar_roots: {{base: [{r}/srv/pillar]}}\n\
             {extra}\n"
        );
        std::fs::write(cfg_dir.join("master"), cfg).expect("write config");
        let mut m = SaltMaster {
            bin: bin.to_owned(),
            cfg_dir,
            root,
            pub_port,
            ret_port,
            proc: None,
        };
        m.spawn().await;
        m
    }

    /// Starts the process and waits (bounded) until the request port accepts.
    pub async fn spawn(&mut self) {
        let child = Command::new(self.bin.join("salt-master"))
            .arg("-c")
            .arg(&self.cfg_dir)
            .args(["-l", "warning"])
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start salt-master");
        self.proc = Some(Group { child });
        let start = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", self.ret_port))
            .await
            .is_err()
        {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "master did not bind"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stops the whole process group and waits until both ports are closed, so a
    /// restart binds the same ports.
    pub async fn stop(&mut self) {
        let Some(mut g) = self.proc.take() else {
            return;
        };
        g.signal("-TERM");
        let exited = tokio::time::timeout(Duration::from_secs(20), g.child.wait()).await;
        if exited.is_err() {
            g.signal("-KILL");
        }
        let start = Instant::now();
        for port in [self.ret_port, self.pub_port] {
            while tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                if start.elapsed() > Duration::from_secs(20) {
                    g.signal("-KILL");
                }
                assert!(
                    start.elapsed() < Duration::from_secs(40),
                    "master port {port} still open"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        drop(g);
    }

    /// Runs a Salt CLI (bounded) and parses its JSON output; also returns the text.
    pub async fn cli(&self, prog: &str, args: &[&str]) -> (Value, String) {
        let mut cmd = Command::new(self.bin.join(prog));
        cmd.arg("-c")
            .arg(&self.cfg_dir)
            .args(args)
            .kill_on_drop(true);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
            .await
            .expect("salt command timed out")
            .expect("salt command failed to run");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let text = format!("{stdout}\nSTDERR: {}", String::from_utf8_lossy(&out.stderr));
        (serde_json::from_str(&stdout).unwrap_or(Value::Null), text)
    }

    /// `salt --async <args>`: the jid the CLI printed.
    pub async fn async_jid(&self, args: &[&str]) -> String {
        let mut all = vec!["--async"];
        all.extend_from_slice(args);
        let (_, text) = self.cli("salt", &all).await;
        text.split_whitespace()
            .find(|w| w.len() == 20 && w.chars().all(|c| c.is_ascii_digit()))
            .unwrap_or_else(|| panic!("no jid in {text}"))
            .to_owned()
    }

    /// `salt-run jobs.lookup_jid <jid>` every half second until `done` holds for its
    /// answer or `limit` has passed; the last answer, as JSON and as text.
    pub async fn lookup_until(
        &self,
        jid: &str,
        limit: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> (Value, String) {
        let start = Instant::now();
        loop {
            let (v, text) = self
                .cli("salt-run", &["jobs.lookup_jid", jid, "--out", "json"])
                .await;
            if done(&v) || start.elapsed() > limit {
                return (v, text);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Waits (bounded) until `jobs.lookup_jid` shows exactly `expected` for `jid`,
    /// after a master restart: the return due meanwhile must arrive.
    pub async fn return_after_restart(&self, jid: &str, expected: &Value, limit: Duration) {
        let (v, text) = self.lookup_until(jid, limit, |v| v == expected).await;
        assert_eq!(
            &v, expected,
            "the return due during the restart never arrived: {text}"
        );
    }

    /// `salt <tgt> <fun> <args> --out json --static -t 10`.
    pub async fn salt(&self, tgt: &[&str], fun_and_args: &[&str]) -> (Value, String) {
        let mut args: Vec<&str> = tgt.to_vec();
        args.extend_from_slice(fun_and_args);
        args.extend_from_slice(&["--out", "json", "--static", "-t", "10"]);
        self.cli("salt", &args).await
    }

    /// Pings `'*'` until every id in `ids` answers `true` (bounded), for the moments
    /// when authentication or a reconnect is still under way.
    pub async fn ping_until_all(&self, ids: &[&str], secs: u64) -> Value {
        let start = Instant::now();
        let mut last = Value::Null;
        while start.elapsed() < Duration::from_secs(secs) {
            let (v, _) = self.salt(&["*"], &["test.ping"]).await;
            if ids.iter().all(|id| v.get(id) == Some(&Value::Bool(true))) {
                return v;
            }
            last = v;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        panic!("not every id answered within {secs}s: {last}");
    }

    /// A Drover config pointing at this master (publish port overridable for a proxy).
    pub fn drover_config(&self, pki: &Path, publish_port: Option<u16>) -> Config {
        let mut cfg = Config {
            fleet: fast_fleet(),
            ..Config::default()
        };
        cfg.http.listen = "127.0.0.1:0".parse().expect("addr");
        cfg.fleet.job_timeout = Duration::from_secs(60);
        cfg.master.kind = MasterKind::Salt;
        cfg.master.host = Some("127.0.0.1".into());
        cfg.master.publish_port = publish_port.unwrap_or(self.pub_port);
        cfg.master.ret_port = self.ret_port;
        cfg.master.pki_dir = pki.to_owned();
        cfg.master.auth_retry = Duration::from_secs(1);
        cfg
    }
}

/// Sum of a counter's series whose labels contain every `label` fragment.
pub fn counter(name: &str, labels: &[&str]) -> f64 {
    let rendered = drover::telemetry::metrics_handle().render();
    rendered
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|l| labels.iter().all(|f| l.contains(f)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits (bounded) until `counter(name, labels)` reaches `at_least`.
pub async fn counter_reaches(name: &str, labels: &[&str], at_least: f64, secs: u64) {
    let start = Instant::now();
    loop {
        let now = counter(name, labels);
        if now >= at_least {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "{name}{labels:?} stayed at {now}, wanted {at_least}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The master's event bus as `salt-run state.event` prints it (`tag<TAB>json`),
/// collected in the background until dropped.
pub struct EventWatch {
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    _child: Child,
}

impl EventWatch {
    pub fn start(master: &SaltMaster) -> EventWatch {
        use tokio::io::AsyncBufReadExt as _;
        let mut child = Command::new(master.bin.join("salt-run"))
            .arg("-c")
            .arg(&master.cfg_dir)
            .args(["state.event", "count=-1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("salt-run state.event starts");
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        if let Some(out) = child.stdout.take() {
            let sink = lines.clone();
            tokio::spawn(async move {
                let mut reader = tokio::io::BufReader::new(out).lines();
                while let Ok(Some(line)) = reader.next_line().await {
                    if let Ok(mut l) = sink.lock() {
                        l.push(line);
                    }
                }
            });
        }
        EventWatch {
            lines,
            _child: child,
        }
    }

    /// The data of the first event whose tag is `tag`, waiting (bounded) for it.
    pub async fn wait_for(&self, tag: &str, secs: u64) -> Value {
        let start = Instant::now();
        loop {
            let found = self.lines.lock().ok().and_then(|l| {
                l.iter().find_map(|line| {
                    let (t, data) = line.split_once('\t')?;
                    (t == tag).then(|| serde_json::from_str(data).unwrap_or(Value::Null))
                })
            });
            if let Some(v) = found {
                return v;
            }
            if start.elapsed() > Duration::from_secs(secs) {
                let seen: Vec<String> = self
                    .lines
                    .lock()
                    .map(|l| l.iter().map(|s| s.chars().take(120).collect()).collect())
                    .unwrap_or_default();
                panic!("no event {tag} within {secs}s; saw {seen:#?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
