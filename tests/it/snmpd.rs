//! Interoperability tests: our SNMP client against a real Net-SNMP `snmpd`
//! started privately per test, compared with what Net-SNMP's own
//! `snmpget` / `snmpwalk` / `snmpbulkwalk` print against the same agent.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use drover::drivers::snmp::{
    AuthProtocol, Oid, PrivProtocol, SnmpClient, SnmpError, SnmpTarget, SnmpTransport, SnmpValue,
    SnmpVersion, UsmUser, VarBind,
};

/// (user, auth proto, auth pass, priv proto, priv pass, Net-SNMP -a, -x)
pub(crate) const USERS: [(&str, AuthProtocol, &str, PrivProtocol, &str, &str, &str); 5] = [
    (
        "shaaes",
        AuthProtocol::Sha1,
        "shaauthpass",
        PrivProtocol::Aes128,
        "shaprivpass",
        "SHA",
        "AES",
    ),
    (
        "sha256aes256",
        AuthProtocol::Sha256,
        "sha256authpass",
        PrivProtocol::Aes256,
        "sha256privpass",
        "SHA-256",
        "AES-256",
    ),
    (
        "md5des",
        AuthProtocol::Md5,
        "md5authpass",
        PrivProtocol::Des,
        "md5privpass",
        "MD5",
        "DES",
    ),
    (
        "sha1aes256",
        AuthProtocol::Sha1,
        "sha1authpass",
        PrivProtocol::Aes256,
        "sha1privpass",
        "SHA",
        "AES-256",
    ),
    (
        "sha512aes",
        AuthProtocol::Sha512,
        "sha512authpass",
        PrivProtocol::Aes128,
        "sha512privpass",
        "SHA-512",
        "AES",
    ),
];

pub(crate) fn which(bin: &str) -> Option<PathBuf> {
    for dir in [
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
        "/usr/local/sbin",
        "/usr/local/bin",
    ] {
        let p = Path::new(dir).join(bin);
        if p.exists() {
            return Some(p);
        }
    }
    None
}

/// Make sure snmpd and the Net-SNMP tools exist; try apt-get once (bounded).
pub(crate) fn ensure_netsnmp() -> bool {
    if which("snmpd").is_some() && which("snmpget").is_some() {
        return true;
    }
    eprintln!("snmpd/snmpget not found, trying apt-get install -y snmpd snmp");
    let child = Command::new("sh")
        .args([
            "-c",
            "(apt-get update || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y snmpd snmp",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    if let Ok(mut c) = child {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            match c.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(500))
                }
                _ => {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
            }
        }
    }
    which("snmpd").is_some() && which("snmpget").is_some()
}

macro_rules! require_netsnmp {
    () => {
        if !ensure_netsnmp() {
            eprintln!("\n\n!!!!!! SKIPPING Net-SNMP interop test: snmpd/snmp cannot be installed on this machine !!!!!!\n\n");
            return;
        }
    };
}

pub(crate) struct Agent {
    child: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("bind ephemeral port")
}

impl Agent {
    pub(crate) fn start() -> Agent {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut conf =
            String::from("rocommunity public 127.0.0.1\nrwcommunity private 127.0.0.1\n");
        for (u, _, ap, _, pp, a, x) in USERS.iter() {
            conf.push_str(&format!(
                "createUser {u} {a} {ap} {x} {pp}\nrwuser {u} priv\n"
            ));
        }
        // sysContact/sysLocation deliberately not configured: configured
        // values are read-only in Net-SNMP, and we test SET on them.
        std::fs::write(dir.path().join("snmpd.conf"), conf).expect("write conf");
        std::fs::create_dir_all(dir.path().join("persist")).expect("persist dir");
        let mut a = Agent {
            child: None,
            dir,
            port: free_udp_port(),
        };
        a.spawn();
        a
    }

    fn spawn(&mut self) {
        let d = self.dir.path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("snmpd.log"))
            .expect("log");
        let child = Command::new(which("snmpd").expect("snmpd"))
            .args(["-f", "-Lo", "-C", "-c"])
            .arg(d.join("snmpd.conf"))
            .arg("-p")
            .arg(d.join("snmpd.pid"))
            .arg(format!("udp:127.0.0.1:{}", self.port))
            .env("SNMP_PERSISTENT_DIR", d.join("persist"))
            .env("SNMPCONFPATH", d)
            // No MIB files: keeps start-up fast and output numeric.
            .env("MIBDIRS", d.join("persist"))
            .env("MIBS", "")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn snmpd");
        self.child = Some(child);
        // Wait (bounded) until the agent answers.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = self.netsnmp("snmpget", &["-v2c", "-c", "public"], &["1.3.6.1.2.1.1.5.0"]);
            if out.contains("1.3.6.1.2.1.1.5.0 =") {
                return;
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(d.join("snmpd.log")).unwrap_or_default();
                panic!("snmpd did not answer within 20s; log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub(crate) fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Run a Net-SNMP tool with numeric output (bounded by -t/-r).
    pub(crate) fn netsnmp(&self, tool: &str, auth: &[&str], args: &[&str]) -> String {
        let out = Command::new(which(tool).expect("tool"))
            .args(auth)
            .args(["-On", "-Oe", "-Ox", "-t", "2", "-r", "1"])
            .arg(format!("127.0.0.1:{}", self.port))
            .args(args)
            .env("MIBDIRS", self.dir.path().join("persist"))
            .env("MIBS", "")
            .env("SNMPCONFPATH", self.dir.path().join("persist"))
            .stdin(Stdio::null())
            .output()
            .expect("run net-snmp tool");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn target(&self, version: SnmpVersion, community: &str, user: Option<UsmUser>) -> SnmpTarget {
        SnmpTarget {
            addr: self.addr(),
            version,
            community: community.into(),
            user,
            timeout: Duration::from_secs(2),
            retries: 1,
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop();
    }
}

fn user(i: usize) -> UsmUser {
    let (u, a, ap, p, pp, _, _) = &USERS[i];
    UsmUser {
        name: u.to_string(),
        auth: Some((a.clone(), ap.to_string())),
        privacy: Some((p.clone(), pp.to_string())),
    }
}

pub(crate) fn v3_args(i: usize) -> Vec<String> {
    let (u, _, ap, _, pp, a, x) = &USERS[i];
    [
        "-v3", "-l", "authPriv", "-u", u, "-a", a, "-A", ap, "-x", x, "-X", pp,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// A value in comparable form.
#[derive(Debug, Clone, PartialEq)]
enum Canon {
    Int(i64),
    Bytes(Vec<u8>),
    Oid(String),
    Ticks(u64),
    Counter32(u64),
    Gauge32(u64),
    Counter64(u64),
    Ip(String),
    NoSuchObject,
    NoSuchInstance,
    EndOfMibView,
    Other(String),
}

impl Canon {
    /// Values that legitimately change between two reads.
    fn volatile(&self) -> bool {
        matches!(
            self,
            Canon::Ticks(_) | Canon::Counter32(_) | Canon::Gauge32(_) | Canon::Counter64(_)
        )
    }
    fn same(&self, other: &Canon) -> bool {
        if self.volatile() {
            std::mem::discriminant(self) == std::mem::discriminant(other)
        } else {
            self == other
        }
    }
}

fn canon_ours(v: &SnmpValue) -> Canon {
    match v {
        SnmpValue::Integer(i) => Canon::Int(i64::from(*i)),
        SnmpValue::OctetString(b) => Canon::Bytes(b.clone()),
        SnmpValue::ObjectId(o) => Canon::Oid(o.to_string()),
        SnmpValue::TimeTicks(t) => Canon::Ticks(u64::from(*t)),
        SnmpValue::Counter32(c) => Canon::Counter32(u64::from(*c)),
        SnmpValue::Gauge32(g) => Canon::Gauge32(u64::from(*g)),
        SnmpValue::Counter64(c) => Canon::Counter64(*c),
        SnmpValue::IpAddress(a) => Canon::Ip(std::net::Ipv4Addr::from(*a).to_string()),
        SnmpValue::NoSuchObject => Canon::NoSuchObject,
        SnmpValue::NoSuchInstance => Canon::NoSuchInstance,
        SnmpValue::EndOfMibView => Canon::EndOfMibView,
        other => Canon::Other(format!("{other:?}")),
    }
}

fn canon_netsnmp(text: &str) -> Canon {
    let t = text.trim();
    let num = |s: &str| s.trim().parse::<u64>().unwrap_or(u64::MAX);
    if let Some(h) = t.strip_prefix("Hex-STRING:") {
        Canon::Bytes(
            h.split_whitespace()
                .map(|x| u8::from_str_radix(x, 16).expect("hex"))
                .collect(),
        )
    } else if t == "\"\"" {
        Canon::Bytes(Vec::new())
    } else if let Some(s) = t.strip_prefix("STRING:") {
        Canon::Bytes(s.trim().trim_matches('"').as_bytes().to_vec())
    } else if let Some(s) = t.strip_prefix("INTEGER:") {
        Canon::Int(s.trim().parse().expect("int"))
    } else if let Some(s) = t.strip_prefix("OID:") {
        Canon::Oid(s.trim().trim_start_matches('.').to_string())
    } else if let Some(s) = t.strip_prefix("Timeticks:") {
        let inner = s.trim().trim_start_matches('(');
        Canon::Ticks(num(inner.split(')').next().unwrap_or("")))
    } else if let Some(s) = t.strip_prefix("Counter32:") {
        Canon::Counter32(num(s))
    } else if let Some(s) = t.strip_prefix("Gauge32:") {
        Canon::Gauge32(num(s))
    } else if let Some(s) = t.strip_prefix("Counter64:") {
        Canon::Counter64(num(s))
    } else if let Some(s) = t.strip_prefix("IpAddress:") {
        Canon::Ip(s.trim().to_string())
    } else if t.starts_with("No Such Object") {
        Canon::NoSuchObject
    } else if t.starts_with("No Such Instance") {
        Canon::NoSuchInstance
    } else if t.starts_with("No more variables") {
        Canon::EndOfMibView
    } else {
        Canon::Other(t.to_string())
    }
}

/// Parse `-On` output, joining wrapped hex continuation lines.
fn parse_netsnmp(out: &str) -> Vec<(String, Canon)> {
    let mut rows: Vec<(String, String)> = Vec::new();
    for line in out.lines() {
        if line.starts_with('.') && line.contains(" = ") {
            let (oid, val) = line.split_once(" = ").expect("split");
            rows.push((oid.trim_start_matches('.').to_string(), val.to_string()));
        } else if let Some(last) = rows.last_mut() {
            last.1.push(' ');
            last.1.push_str(line);
        }
    }
    rows.into_iter()
        .map(|(o, v)| (o, canon_netsnmp(&v)))
        .collect()
}

fn assert_same(ours: &[VarBind], theirs: &[(String, Canon)], what: &str) {
    assert!(!theirs.is_empty(), "{what}: Net-SNMP printed nothing");
    let ours: Vec<(String, Canon)> = ours
        .iter()
        .map(|vb| (vb.oid.to_string(), canon_ours(&vb.value)))
        .collect();
    assert_eq!(
        ours.len(),
        theirs.len(),
        "{what}: row count differs\nours: {ours:?}\ntheirs: {theirs:?}"
    );
    for (o, t) in ours.iter().zip(theirs) {
        assert_eq!(o.0, t.0, "{what}: OID order differs");
        assert!(
            o.1.same(&t.1),
            "{what}: {} ours {:?} theirs {:?}",
            o.0,
            o.1,
            t.1
        );
    }
}

fn oid(s: &str) -> Oid {
    s.parse().expect("oid")
}

#[tokio::test(flavor = "current_thread")]
async fn v2c_and_v1_match_netsnmp() {
    require_netsnmp!();
    let agent = Agent::start();
    let transport = SnmpTransport::new(2).expect("transport");
    let v2 = SnmpClient::new(
        agent.target(SnmpVersion::V2c, "public", None),
        transport.clone(),
    );

    // GET, including both exception kinds.
    let oids = [
        "1.3.6.1.2.1.1.1.0",
        "1.3.6.1.2.1.1.2.0",
        "1.3.6.1.2.1.1.3.0",
        "1.3.6.1.2.1.1.5.0",
        "1.3.6.1.2.1.1.99.0",
        "1.3.6.1.2.1.1.1.1",
        "1.3.6.1.2.1.2.2.1.2.1",
    ];
    let ours = v2
        .get(&oids.iter().map(|s| oid(s)).collect::<Vec<_>>())
        .await
        .expect("v2c get");
    let theirs = parse_netsnmp(&agent.netsnmp("snmpget", &["-v2c", "-c", "public"], &oids));
    assert_same(&ours, &theirs, "v2c get");
    assert_eq!(ours[4].value, SnmpValue::NoSuchObject);
    assert_eq!(ours[5].value, SnmpValue::NoSuchInstance);
    assert_eq!(ours[4].to_json()["type"], "noSuchObject");

    // MIB names work as input.
    let named = v2.get(&[oid("sysName.0")]).await.expect("named get");
    assert_eq!(named[0].to_json()["name"], "sysName.0");

    // Walks of system, interfaces and ifXTable with both methods.
    for root in ["1.3.6.1.2.1.1", "1.3.6.1.2.1.2", "1.3.6.1.2.1.31.1.1"] {
        let theirs = parse_netsnmp(&agent.netsnmp("snmpwalk", &["-v2c", "-c", "public"], &[root]));
        let ours = v2.walk(&oid(root)).await.expect("walk");
        assert_same(&ours, &theirs, &format!("v2c walk {root}"));
        let theirs_b =
            parse_netsnmp(&agent.netsnmp("snmpbulkwalk", &["-v2c", "-c", "public"], &[root]));
        let ours_b = v2.bulkwalk(&oid(root)).await.expect("bulkwalk");
        assert_same(&ours_b, &theirs_b, &format!("v2c bulkwalk {root}"));
    }
    // Walk of a leaf returns the leaf (like snmpwalk).
    let leaf = v2.walk(&oid("1.3.6.1.2.1.1.5.0")).await.expect("leaf walk");
    assert_eq!(leaf.len(), 1);
    // Walk of an empty subtree returns nothing.
    assert!(v2
        .walk(&oid("1.3.6.1.2.1.1.99"))
        .await
        .expect("empty")
        .is_empty());

    // GETNEXT and GETBULK directly.
    let next = v2
        .get_next(&[oid("1.3.6.1.2.1.1.4")])
        .await
        .expect("getnext");
    assert_eq!(next[0].oid, oid("1.3.6.1.2.1.1.4.0"));
    let bulk = v2
        .get_bulk(
            &[oid("1.3.6.1.2.1.1.1.0"), oid("1.3.6.1.2.1.2.2.1.1")],
            1,
            3,
        )
        .await
        .expect("getbulk");
    assert_eq!(bulk.len(), 4);
    assert_eq!(bulk[0].oid, oid("1.3.6.1.2.1.1.2.0"));

    // SET through the rw community, read back by snmpget.
    let rw = SnmpClient::new(
        agent.target(SnmpVersion::V2c, "private", None),
        transport.clone(),
    );
    let value = SnmpValue::parse_typed("s", "noc@drover test").expect("value");
    let echoed = rw
        .set(&[VarBind::new(oid("sysContact.0"), value.clone())])
        .await
        .expect("set");
    assert_eq!(echoed[0].value, value);
    let theirs =
        parse_netsnmp(&agent.netsnmp("snmpget", &["-v2c", "-c", "public"], &["1.3.6.1.2.1.1.4.0"]));
    assert_eq!(theirs[0].1, Canon::Bytes(b"noc@drover test".to_vec()));
    // SET through the read-only community is a protocol error, not a device failure.
    let err = v2
        .set(&[VarBind::new(oid("sysContact.0"), value.clone())])
        .await
        .expect_err("ro set must fail");
    assert!(matches!(err, SnmpError::Protocol { .. }), "{err:?}");
    assert!(!err.is_device_failure());
    // Wrong type: a protocol error too.
    let err = rw
        .set(&[VarBind::new(oid("sysContact.0"), SnmpValue::Integer(5))])
        .await
        .expect_err("wrong type");
    assert_eq!(err.kind(), "wrongType");

    // SNMPv1: get, walk, noSuchName, no GETBULK.
    let v1 = SnmpClient::new(
        agent.target(SnmpVersion::V1, "public", None),
        transport.clone(),
    );
    let ours = v1.get(&[oid("1.3.6.1.2.1.1.5.0")]).await.expect("v1 get");
    let theirs =
        parse_netsnmp(&agent.netsnmp("snmpget", &["-v1", "-c", "public"], &["1.3.6.1.2.1.1.5.0"]));
    assert_same(&ours, &theirs, "v1 get");
    let err = v1
        .get(&[oid("1.3.6.1.2.1.1.99.0")])
        .await
        .expect_err("v1 nosuchname");
    assert_eq!(err.kind(), "noSuchName");
    let theirs =
        parse_netsnmp(&agent.netsnmp("snmpwalk", &["-v1", "-c", "public"], &["1.3.6.1.2.1.2"]));
    let ours = v1.walk(&oid("1.3.6.1.2.1.2")).await.expect("v1 walk");
    assert_same(&ours, &theirs, "v1 walk");
    assert!(matches!(
        v1.get_bulk(&[oid("1.3.6.1.2.1.1")], 0, 5).await,
        Err(SnmpError::Unsupported(_))
    ));

    // Wrong community: the agent stays silent -> timeout, a device failure.
    let bad = SnmpClient::new(
        SnmpTarget {
            timeout: Duration::from_millis(300),
            retries: 1,
            ..agent.target(SnmpVersion::V2c, "wrongcommunity", None)
        },
        transport.clone(),
    );
    let err = bad
        .get(&[oid("1.3.6.1.2.1.1.5.0")])
        .await
        .expect_err("timeout");
    assert!(matches!(err, SnmpError::Timeout));
    assert!(err.is_device_failure());
    assert_eq!(transport.in_flight(), 0);
}

#[tokio::test(flavor = "current_thread")]
async fn v3_users_match_netsnmp() {
    require_netsnmp!();
    let agent = Agent::start();
    let transport = SnmpTransport::new(1).expect("transport");
    for (i, entry) in USERS.iter().enumerate() {
        let c = SnmpClient::new(
            agent.target(SnmpVersion::V3, "", Some(user(i))),
            transport.clone(),
        );
        let args = v3_args(i);
        let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        let what = entry.0;
        let oids = [
            "1.3.6.1.2.1.1.1.0",
            "1.3.6.1.2.1.1.5.0",
            "1.3.6.1.2.1.1.99.0",
        ];
        let ours = c
            .get(&oids.iter().map(|s| oid(s)).collect::<Vec<_>>())
            .await
            .unwrap_or_else(|e| panic!("{what} get: {e}"));
        assert_same(
            &ours,
            &parse_netsnmp(&agent.netsnmp("snmpget", &args, &oids)),
            what,
        );
        let root = "1.3.6.1.2.1.1";
        let ours = c
            .walk(&oid(root))
            .await
            .unwrap_or_else(|e| panic!("{what} walk: {e}"));
        assert_same(
            &ours,
            &parse_netsnmp(&agent.netsnmp("snmpwalk", &args, &[root])),
            what,
        );
        let root = "1.3.6.1.2.1.2";
        let ours = c
            .bulkwalk(&oid(root))
            .await
            .unwrap_or_else(|e| panic!("{what} bulkwalk: {e}"));
        assert_same(
            &ours,
            &parse_netsnmp(&agent.netsnmp("snmpbulkwalk", &args, &[root])),
            what,
        );
        // SET sysLocation.0 and read it back with Net-SNMP.
        let text = format!("rack {what}");
        c.set(&[VarBind::new(
            oid("sysLocation.0"),
            SnmpValue::parse_typed("string", &text).expect("value"),
        )])
        .await
        .unwrap_or_else(|e| panic!("{what} set: {e}"));
        let theirs = parse_netsnmp(&agent.netsnmp("snmpget", &args, &["1.3.6.1.2.1.1.6.0"]));
        assert_eq!(theirs[0].1, Canon::Bytes(text.into_bytes()), "{what}");
    }

    // Wrong auth password -> wrongDigest report, not a device failure.
    let mut u = user(0);
    u.auth = Some((AuthProtocol::Sha1, "not-the-password".into()));
    let c = SnmpClient::new(
        agent.target(SnmpVersion::V3, "", Some(u)),
        transport.clone(),
    );
    let err = c
        .get(&[oid("sysName.0")])
        .await
        .expect_err("wrong password");
    assert_eq!(err.kind(), "wrongDigest", "{err:?}");
    assert!(!err.is_device_failure());
    // Unknown user -> unknownUserName report.
    let mut u = user(0);
    u.name = "nobody".into();
    let c = SnmpClient::new(
        agent.target(SnmpVersion::V3, "", Some(u)),
        transport.clone(),
    );
    let err = c.get(&[oid("sysName.0")]).await.expect_err("unknown user");
    assert_eq!(err.kind(), "unknownUserName", "{err:?}");
}

/// Restarting the agent bumps snmpEngineBoots: the cached time sync goes
/// stale, the agent answers notInTimeWindow and the client must resync.
#[tokio::test(flavor = "current_thread")]
async fn v3_resyncs_after_agent_restart() {
    require_netsnmp!();
    let mut agent = Agent::start();
    let transport = SnmpTransport::new(1).expect("transport");
    let c = SnmpClient::new(
        agent.target(SnmpVersion::V3, "", Some(user(1))),
        transport.clone(),
    );
    c.get(&[oid("sysName.0")]).await.expect("first get");
    agent.stop();
    agent.spawn();
    let vbs = c.get(&[oid("sysName.0")]).await.expect("get after restart");
    assert!(matches!(vbs[0].value, SnmpValue::OctetString(_)));
}

/// Many concurrent requests from two single-threaded runtimes share one
/// transport and all get their own answers.
#[test]
fn concurrent_from_two_runtimes() {
    require_netsnmp!();
    let agent = Agent::start();
    let transport = SnmpTransport::new(2).expect("transport");
    let target = agent.target(SnmpVersion::V2c, "public", None);
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let client = SnmpClient::new(target.clone(), transport.clone());
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("rt");
                rt.block_on(async move {
                    let mut set = tokio::task::JoinSet::new();
                    for i in 0..100u32 {
                        let c = client.clone();
                        set.spawn(async move {
                            let o = oid(if i % 2 == 0 {
                                "1.3.6.1.2.1.2.2.1.1.1"
                            } else {
                                "1.3.6.1.2.1.1.5.0"
                            });
                            let v = c.get(std::slice::from_ref(&o)).await.expect("get");
                            assert_eq!(v[0].oid, o);
                            if i % 2 == 0 {
                                assert_eq!(v[0].value, SnmpValue::Integer(1));
                            } else {
                                assert!(
                                    matches!(v[0].value, SnmpValue::OctetString(_)),
                                    "{:?}",
                                    v[0]
                                );
                            }
                        });
                    }
                    while let Some(r) = set.join_next().await {
                        r.expect("task");
                    }
                });
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    assert_eq!(transport.in_flight(), 0);
}

/// The whole path: SNMP devices in an inventory, managed by the fleet, answering the
/// `snmp.*` functions and grains, checked against what Net-SNMP's tools report.
#[actix_rt::test]
async fn fleet_manages_snmp_devices_like_netsnmp_sees_them() {
    require_netsnmp!();
    let agent = Agent::start();
    let port = agent.addr().port();
    let inv = format!(
        "[[device]]\nid = \"sw-v2\"\nproxytype = \"snmp\"\nhost = \"127.0.0.1\"\nport = {port}\nversion = \"2c\"\ncommunity = \"private\"\ntimeout = \"2s\"\n\
         [[device]]\nid = \"sw-v3\"\nproxytype = \"snmp\"\nhost = \"127.0.0.1\"\nport = {port}\nversion = \"3\"\nuser = \"shaaes\"\nauth_protocol = \"SHA\"\nauth_password = \"shaauthpass\"\npriv_protocol = \"AES\"\npriv_password = \"shaprivpass\"\n\
         [[device]]\nid = \"sw-bad\"\nproxytype = \"snmp\"\nhost = \"127.0.0.1\"\nport = {port}\nversion = \"2c\"\ncommunity = \"wrong-community\"\ntimeout = \"300ms\"\nretries = 0\n"
    );
    let inventory = drover::inventory::Inventory::parse(&inv, Path::new("<snmp>")).unwrap();
    let dbg = format!("{inventory:?}");
    assert!(
        !dbg.contains("shaauthpass") && !dbg.contains("private\""),
        "secrets stay out of Debug"
    );
    let fleet = crate::support::start_fleet(crate::support::fast_fleet(), inventory).await;
    assert_eq!(
        fleet.registry.state("sw-v2"),
        Some(drover::fleet::registry::DeviceState::Up)
    );
    assert_eq!(
        fleet.registry.state("sw-v3"),
        Some(drover::fleet::registry::DeviceState::Up)
    );
    assert!(
        fleet
            .registry
            .state("sw-bad")
            .is_some_and(|s| s.is_unreachable()),
        "a wrong community never answers"
    );

    let descr = agent.netsnmp(
        "snmpget",
        &["-v2c", "-c", "public"],
        &["-Oqv", "1.3.6.1.2.1.1.1.0"],
    );
    let descr = unhex(&descr);
    let descr = descr.as_str();
    for id in ["sw-v2", "sw-v3"] {
        let g = crate::support::one(&fleet, id, "grains.items", vec![])
            .await
            .ret;
        assert_eq!(g["sysDescr"].as_str(), Some(descr), "{id}: {g}");
        assert_eq!(g["os_family"], "proxy");
        assert_eq!(g["proxytype"], "snmp");
        assert!(g["sysName"].as_str().is_some_and(|s| !s.is_empty()));
        let r = crate::support::one(
            &fleet,
            id,
            "snmp.get",
            vec![
                serde_json::json!("sysDescr.0"),
                serde_json::json!("1.3.6.1.2.1.1.99.0"),
            ],
        )
        .await;
        assert!(r.success, "{r:?}");
        assert_eq!(r.ret[0]["value"].as_str(), Some(descr));
        assert_eq!(r.ret[0]["type"], "string");
        assert_eq!(r.ret[0]["name"], "sysDescr.0");
        assert_eq!(
            r.ret[1]["type"], "noSuchObject",
            "exceptions are reported: {}",
            r.ret
        );
        assert_eq!(
            crate::support::one(&fleet, id, "test.ping", vec![])
                .await
                .ret,
            serde_json::json!(true)
        );
    }
    // walk and bulkwalk agree with Net-SNMP's own walk of the system group.
    let theirs = parse_netsnmp(&agent.netsnmp(
        "snmpwalk",
        &["-v2c", "-c", "public"],
        &["-On", "-Oe", "1.3.6.1.2.1.1"],
    ));
    for fun in ["snmp.walk", "snmp.bulkwalk"] {
        let r = crate::support::one(&fleet, "sw-v2", fun, vec![serde_json::json!("system")]).await;
        assert!(r.success, "{r:?}");
        let oids: Vec<String> = r
            .ret
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["oid"].as_str().unwrap().to_owned())
            .collect();
        let want: Vec<String> = theirs.iter().map(|(o, _)| o.clone()).collect();
        assert_eq!(oids, want, "{fun}");
    }
    // set through the fleet, read back with snmpget.
    let r = crate::support::one(
        &fleet,
        "sw-v3",
        "snmp.set",
        vec![
            serde_json::json!("sysContact.0"),
            serde_json::json!("s"),
            serde_json::json!("noc@fleet.example"),
        ],
    )
    .await;
    assert!(r.success, "{r:?}");
    let contact = agent.netsnmp(
        "snmpget",
        &["-v2c", "-c", "public"],
        &["-Oqv", "1.3.6.1.2.1.1.4.0"],
    );
    assert_eq!(unhex(&contact), "noc@fleet.example");
    // ifTable joined with ifXTable: the loopback interface at least.
    let r = crate::support::one(&fleet, "sw-v2", "snmp.interfaces", vec![]).await;
    let ifs = r.ret.as_object().unwrap();
    let lo = ifs
        .get("lo")
        .unwrap_or_else(|| panic!("no lo in {}", r.ret));
    assert_eq!(lo["admin_status"], "up");
    assert!(lo["in_octets"].as_u64().is_some());
    // Bad arguments are errors for the device, not device failures.
    let r = crate::support::one(
        &fleet,
        "sw-v2",
        "snmp.get",
        vec![serde_json::json!("notAnObject.0")],
    )
    .await;
    assert!(!r.success);
    let r = crate::support::one(
        &fleet,
        "sw-v2",
        "snmp.set",
        vec![
            serde_json::json!("sysDescr.0"),
            serde_json::json!("s"),
            serde_json::json!("x"),
        ],
    )
    .await;
    assert!(
        !r.success && r.outcome == drover::job::Outcome::Failed,
        "{r:?}"
    );
    assert_eq!(
        fleet.registry.state("sw-v2"),
        Some(drover::fleet::registry::DeviceState::Up)
    );
}

/// The tools run with `-Ox`: strings come back as hex bytes.
pub(crate) fn unhex(s: &str) -> String {
    let bytes: Vec<u8> = s
        .split_whitespace()
        .map(|b| b.trim_matches('"'))
        .filter(|b| !b.is_empty())
        .map(|b| u8::from_str_radix(b, 16).expect("hex byte"))
        .collect();
    String::from_utf8(bytes).expect("utf-8")
}

/// Drover's `snmp.value` state against a real snmpd: test=True predicts and leaves
/// the agent alone, a real run sets the scalar (read back with Net-SNMP's
/// `snmpget`) with the previous value in `changes`, and a second run changes nothing.
#[actix_rt::test]
async fn snmp_value_state_sets_a_scalar_once() {
    require_netsnmp!();
    let agent = Agent::start();
    let port = agent.addr().port();
    let inv = format!(
        "[[device]]\nid = \"sw-st\"\nproxytype = \"snmp\"\nhost = \"127.0.0.1\"\nport = {port}\nversion = \"2c\"\ncommunity = \"private\"\ntimeout = \"2s\"\n"
    );
    let inventory = drover::inventory::Inventory::parse(&inv, Path::new("<snmp>")).unwrap();
    let fleet = crate::support::start_fleet(crate::support::fast_fleet(), inventory).await;
    let oid = "1.3.6.1.2.1.1.6.0";
    let location = || unhex(&agent.netsnmp("snmpget", &["-v2c", "-c", "public"], &["-Oqv", oid]));
    let before = location();
    let apply = |test: bool| {
        let mut req = crate::support::request(
            "sw-st",
            "state.single",
            vec![serde_json::json!("snmp.value")],
        );
        req.kwarg = serde_json::json!({"name": oid, "value": "rack-42", "test": test})
            .as_object()
            .cloned()
            .unwrap();
        let fleet = fleet.clone();
        async move {
            let (_, mut rets) = crate::support::run_job(&fleet, req).await;
            let r = rets.remove(0);
            r.ret[format!("snmp_|-{oid}_|-{oid}_|-value")].clone()
        }
    };
    let t = apply(true).await;
    assert_eq!(t["result"], serde_json::Value::Null, "{t}");
    assert_eq!(t["changes"][oid]["new"], "rack-42", "{t}");
    assert_eq!(location(), before, "test=True left the agent alone");

    let r = apply(false).await;
    assert_eq!(r["result"], true, "{r}");
    assert_eq!(r["changes"][oid]["old"], serde_json::json!(before), "{r}");
    assert_eq!(location(), "rack-42");

    let again = apply(false).await;
    assert_eq!(again["result"], true, "{again}");
    assert_eq!(again["changes"], serde_json::json!({}), "{again}");
    assert_eq!(again["comment"], format!("{oid} is already rack-42"));
}
