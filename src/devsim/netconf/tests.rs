//! Tests of the NETCONF simulator: the datastore and session logic directly, then
//! whole devices through a minimal russh client (auth, hello, framing switch, RPCs
//! across sessions, and each fault).

use std::sync::Arc;
use std::time::{Duration, Instant};

use russh::keys::{Algorithm, PrivateKey, PrivateKeyWithHashAlg};
use russh::{client, ChannelMsg};

use super::datastore::{Datastore, Op, Store, IF_NS, SYSTEM_NS};
use super::session::{DeviceState, Session, BASE_10, BASE_11};
use super::xml::{parse, Element};
use super::*;
use crate::drivers::netconf::framing::{encode, Decoder, Framing, FramingError};

fn config(xml: &str) -> Element {
    parse(format!("<config xmlns=\"{}\">{xml}</config>", super::xml::NC_NS).as_bytes()).unwrap()
}

fn xml_of(root: &Element) -> String {
    let mut s = String::new();
    for e in root.elements() {
        e.write(&mut s, None);
    }
    s
}

const SYS: &str = "urn:ietf:params:xml:ns:yang:ietf-system";
const IFS: &str = "urn:ietf:params:xml:ns:yang:ietf-interfaces";

#[test]
fn seeded_with_hostname_and_interfaces() {
    let ds = Datastore::seeded("rtr-0001", 2);
    let x = xml_of(ds.running());
    assert!(
        x.contains(&format!(
            "<system xmlns=\"{SYSTEM_NS}\"><hostname>rtr-0001</hostname>"
        )),
        "{x}"
    );
    assert!(
        x.contains(&format!(
            "<interfaces xmlns=\"{IF_NS}\"><interface><name>ge-0/0/0</name>"
        )),
        "{x}"
    );
    assert_eq!(ds.running(), ds.candidate());
}

#[test]
fn edit_merge_replace_create_delete() {
    let mut ds = Datastore::seeded("r1", 2);
    // Merge: a leaf changes, a new list entry is added, the rest stays.
    let c = config(&format!(
        "<system xmlns=\"{SYS}\"><hostname>new</hostname></system>\
         <interfaces xmlns=\"{IFS}\"><interface><name>ge-0/0/9</name><enabled>false</enabled></interface>\
         <interface><name>ge-0/0/0</name><description>uplink</description></interface></interfaces>"
    ));
    ds.edit_config(1, Store::Candidate, Op::Merge, &c).unwrap();
    let cand = xml_of(ds.candidate());
    assert!(
        cand.contains("<hostname>new</hostname><location>"),
        "{cand}"
    );
    assert!(
        cand.contains("<name>ge-0/0/9</name><enabled>false</enabled>"),
        "{cand}"
    );
    assert!(
        cand.contains("<name>ge-0/0/0</name><description>uplink</description><type>"),
        "{cand}"
    );
    assert!(cand.contains("<name>ge-0/0/1</name>"), "{cand}");
    assert!(xml_of(ds.running()).contains("<hostname>r1</hostname>"));

    // Replace: the system container loses location.
    let c = config(&format!(
        "<system xmlns=\"{SYS}\" xmlns:nc=\"urn:ietf:params:xml:ns:netconf:base:1.0\" nc:operation=\"replace\"><hostname>only</hostname></system>"
    ));
    ds.edit_config(1, Store::Candidate, Op::Merge, &c).unwrap();
    let cand = xml_of(ds.candidate());
    assert!(cand.contains("<system xmlns=\"urn:ietf:params:xml:ns:yang:ietf-system\"><hostname>only</hostname></system>"), "{cand}");
    assert!(
        !cand.contains("operation"),
        "operation attributes are not stored: {cand}"
    );

    // Create of an existing entry: data-exists; of a new one: fine.
    let nc = "xmlns:nc=\"urn:ietf:params:xml:ns:netconf:base:1.0\"";
    let c = config(&format!(
        "<interfaces xmlns=\"{IFS}\" {nc}><interface nc:operation=\"create\"><name>ge-0/0/1</name></interface></interfaces>"
    ));
    let e = ds
        .edit_config(1, Store::Candidate, Op::Merge, &c)
        .unwrap_err();
    assert_eq!(e.tag, "data-exists");
    let c = config(&format!(
        "<interfaces xmlns=\"{IFS}\" {nc}><interface nc:operation=\"create\"><name>lo0</name></interface></interfaces>"
    ));
    ds.edit_config(1, Store::Candidate, Op::Merge, &c).unwrap();
    assert!(xml_of(ds.candidate()).contains("<name>lo0</name>"));

    // Delete of a missing entry: data-missing; remove: fine; delete existing: gone.
    let c = config(&format!(
        "<interfaces xmlns=\"{IFS}\" {nc}><interface nc:operation=\"delete\"><name>nope</name></interface></interfaces>"
    ));
    assert_eq!(
        ds.edit_config(1, Store::Candidate, Op::Merge, &c)
            .unwrap_err()
            .tag,
        "data-missing"
    );
    let c = config(&format!(
        "<interfaces xmlns=\"{IFS}\" {nc}><interface nc:operation=\"remove\"><name>nope</name></interface>\
         <interface nc:operation=\"delete\"><name>lo0</name></interface></interfaces>"
    ));
    ds.edit_config(1, Store::Candidate, Op::Merge, &c).unwrap();
    assert!(!xml_of(ds.candidate()).contains("<name>lo0</name>"));

    // Bad operation: bad-attribute; running is still not writable.
    let c = config(&format!(
        "<system xmlns=\"{SYS}\" {nc} nc:operation=\"frob\"/>"
    ));
    assert_eq!(
        ds.edit_config(1, Store::Candidate, Op::Merge, &c)
            .unwrap_err()
            .tag,
        "bad-attribute"
    );
    assert_eq!(
        ds.edit_config(1, Store::Running, Op::Merge, &config(""))
            .unwrap_err()
            .tag,
        "operation-not-supported"
    );
}

#[test]
fn default_operations_none_and_replace() {
    let mut ds = Datastore::seeded("r1", 1);
    let c = config(&format!(
        "<system xmlns=\"{SYS}\"><hostname>x</hostname><contact>c</contact></system>"
    ));
    ds.edit_config(1, Store::Candidate, Op::None, &c).unwrap();
    assert_eq!(
        ds.candidate(),
        ds.running(),
        "none changes nothing without operations"
    );
    let c = config(
        "<foo xmlns=\"urn:x\"><bar xmlns:nc=\"urn:ietf:params:xml:ns:netconf:base:1.0\" nc:operation=\"create\">1</bar></foo>",
    );
    assert_eq!(
        ds.edit_config(1, Store::Candidate, Op::None, &c)
            .unwrap_err()
            .tag,
        "data-missing"
    );
    let c = config(&format!(
        "<system xmlns=\"{SYS}\"><hostname>only</hostname></system>"
    ));
    ds.edit_config(1, Store::Candidate, Op::Replace, &c)
        .unwrap();
    assert_eq!(
        xml_of(ds.candidate()),
        format!("<system xmlns=\"{SYS}\"><hostname>only</hostname></system>")
    );
}

#[test]
fn locks_commit_discard_and_release() {
    let mut ds = Datastore::seeded("r1", 1);
    ds.lock(1, Store::Candidate).unwrap();
    let e = ds.lock(2, Store::Candidate).unwrap_err();
    assert_eq!((e.tag, e.session_id), ("lock-denied", Some(1)));
    let mut s = String::new();
    e.write(&mut s);
    assert!(
        s.contains("<error-tag>lock-denied</error-tag>")
            && s.contains("<session-id>1</session-id>"),
        "{s}"
    );
    let c = config(&format!(
        "<system xmlns=\"{SYS}\"><hostname>h2</hostname></system>"
    ));
    let e = ds
        .edit_config(2, Store::Candidate, Op::Merge, &c)
        .unwrap_err();
    assert_eq!((e.tag, e.session_id), ("in-use", Some(1)));
    assert_eq!(
        ds.unlock(2, Store::Candidate).unwrap_err().tag,
        "lock-denied"
    );
    ds.edit_config(1, Store::Candidate, Op::Merge, &c).unwrap();
    assert_eq!(
        ds.commit(2, None, Instant::now()).unwrap_err().tag,
        "in-use"
    );
    ds.commit(1, None, Instant::now()).unwrap();
    assert!(xml_of(ds.running()).contains("<hostname>h2</hostname>"));

    // Discard brings the candidate back to running.
    let c = config(&format!(
        "<system xmlns=\"{SYS}\"><hostname>h3</hostname></system>"
    ));
    ds.edit_config(1, Store::Candidate, Op::Merge, &c).unwrap();
    ds.discard_changes(1).unwrap();
    assert_eq!(ds.candidate(), ds.running());

    // The holder's end releases the lock and drops its uncommitted changes.
    ds.edit_config(1, Store::Candidate, Op::Merge, &c).unwrap();
    ds.release(1);
    assert_eq!(ds.lock_holder(Store::Candidate), None);
    assert_eq!(ds.candidate(), ds.running());
    ds.unlock(1, Store::Candidate).unwrap_err();

    // A modified, uncommitted candidate cannot be locked.
    ds.edit_config(2, Store::Candidate, Op::Merge, &c).unwrap();
    assert_eq!(ds.lock(3, Store::Candidate).unwrap_err().tag, "lock-denied");
}

#[test]
fn confirmed_commit_rolls_back_unless_confirmed() {
    let mut ds = Datastore::seeded("r1", 1);
    let t0 = Instant::now();
    let c = config(&format!(
        "<system xmlns=\"{SYS}\"><hostname>try</hostname></system>"
    ));
    ds.edit_config(1, Store::Candidate, Op::Merge, &c).unwrap();
    ds.commit(1, Some(Duration::from_secs(10)), t0).unwrap();
    assert!(xml_of(ds.running()).contains("try"));
    ds.expire(t0 + Duration::from_secs(11));
    assert!(xml_of(ds.running()).contains("<hostname>r1</hostname>"));

    ds.edit_config(1, Store::Candidate, Op::Merge, &c).unwrap();
    ds.commit(1, Some(Duration::from_secs(10)), t0).unwrap();
    ds.commit(1, None, t0 + Duration::from_secs(1)).unwrap();
    ds.expire(t0 + Duration::from_secs(60));
    assert!(xml_of(ds.running()).contains("try"), "confirmed");
    assert_eq!(ds.cancel_commit(1).unwrap_err().tag, "operation-failed");
}

#[test]
fn subtree_filters() {
    let ds = Datastore::seeded("r1", 3);
    let f = |x: &str| parse(format!("<filter type=\"subtree\">{x}</filter>").as_bytes()).unwrap();
    let got = ds
        .get_config(
            Store::Running,
            Some(&f(&format!("<system xmlns=\"{SYS}\"/>"))),
        )
        .unwrap();
    assert_eq!(
        xml_of(&got),
        format!("<system xmlns=\"{SYS}\"><hostname>r1</hostname><location>Drover simulated lab</location></system>")
    );
    let got = ds
        .get_config(
            Store::Running,
            Some(&f(&format!("<system xmlns=\"{SYS}\"><hostname/></system>"))),
        )
        .unwrap();
    assert_eq!(
        xml_of(&got),
        format!("<system xmlns=\"{SYS}\"><hostname>r1</hostname></system>")
    );
    // A content match node selects one list entry.
    let got = ds
        .get_config(
            Store::Running,
            Some(&f(&format!(
                "<interfaces xmlns=\"{IFS}\"><interface><name>ge-0/0/1</name><enabled/></interface></interfaces>"
            ))),
        )
        .unwrap();
    assert_eq!(
        xml_of(&got),
        format!("<interfaces xmlns=\"{IFS}\"><interface><name>ge-0/0/1</name><enabled>true</enabled></interface></interfaces>")
    );
    // Another namespace matches nothing; an empty filter selects nothing.
    let got = ds
        .get_config(Store::Running, Some(&f("<system xmlns=\"urn:other\"/>")))
        .unwrap();
    assert_eq!(xml_of(&got), "");
    assert_eq!(
        xml_of(&ds.get_config(Store::Running, Some(&f(""))).unwrap()),
        ""
    );
    let xp = parse(b"<filter type=\"xpath\" select=\"/\"/>").unwrap();
    assert_eq!(
        ds.get_config(Store::Running, Some(&xp)).unwrap_err().tag,
        "operation-not-supported"
    );
}

/// Frames and feeds one message to a session, returning the reply text.
fn exchange(s: &mut Session, framing: Framing, msg: &str) -> Option<String> {
    let mut out = Vec::new();
    encode(framing, msg.as_bytes(), &mut out).unwrap();
    s.push(&out).unwrap();
    s.next().unwrap().and_then(|o| o.reply)
}

fn client_hello(cap: &str) -> String {
    format!("<hello xmlns=\"urn:ietf:params:xml:ns:netconf:base:1.0\"><capabilities><capability>{cap}</capability></capabilities></hello>")
}

fn rpc(id: u32, body: &str) -> String {
    format!(
        "<rpc xmlns=\"urn:ietf:params:xml:ns:netconf:base:1.0\" message-id=\"{id}\">{body}</rpc>"
    )
}

#[test]
fn session_switches_to_chunked_after_a_base11_hello() {
    let dev = Arc::new(DeviceState::new("r1"));
    let mut s = Session::new(7, Arc::clone(&dev), 1 << 20);
    let hello = s.hello();
    assert!(
        hello.contains(BASE_11) && hello.contains("<session-id>7</session-id>"),
        "{hello}"
    );
    assert!(hello.contains(":candidate:1.0") && hello.contains("confirmed-commit:1.1"));
    assert_eq!(
        exchange(&mut s, Framing::EndOfMessage, &client_hello(BASE_11)),
        None
    );
    assert_eq!(s.framing(), Framing::Chunked);
    let r = exchange(
        &mut s,
        Framing::Chunked,
        &rpc(1, "<get-config><source><running/></source></get-config>"),
    )
    .unwrap();
    assert!(
        r.starts_with(
            "<rpc-reply xmlns=\"urn:ietf:params:xml:ns:netconf:base:1.0\" message-id=\"1\"><data>"
        ),
        "{r}"
    );
    assert!(r.contains("<hostname>r1</hostname>"), "{r}");
    // A 1.0 client stays on end-of-message framing.
    let mut s = Session::new(8, Arc::clone(&dev), 1 << 20);
    exchange(&mut s, Framing::EndOfMessage, &client_hello(BASE_10));
    assert_eq!(s.framing(), Framing::EndOfMessage);
    let r = exchange(&mut s, Framing::EndOfMessage, &rpc(2, "<get><filter><system-state xmlns=\"urn:ietf:params:xml:ns:yang:ietf-system\"/></filter></get>")).unwrap();
    assert!(
        r.contains("<os-name>Drover-sim</os-name>") && r.contains("<machine>r1</machine>"),
        "{r}"
    );
    assert!(!r.contains("<hostname>"), "{r}");
    // Reads (and sessions coming and going) keep no datastore; a lock creates it.
    drop(s);
    assert!(!dev.materialized());
    let mut s = Session::new(9, Arc::clone(&dev), 1 << 20);
    exchange(&mut s, Framing::EndOfMessage, &client_hello(BASE_10));
    exchange(
        &mut s,
        Framing::EndOfMessage,
        &rpc(3, "<lock><target><candidate/></target></lock>"),
    );
    assert!(dev.materialized());
}

#[test]
fn session_errors_and_lock_release_on_drop() {
    let dev = Arc::new(DeviceState::new("r1"));
    let mut a = Session::new(1, Arc::clone(&dev), 1 << 20);
    let mut b = Session::new(2, Arc::clone(&dev), 1 << 20);
    for s in [&mut a, &mut b] {
        exchange(s, Framing::EndOfMessage, &client_hello(BASE_10));
    }
    let lock = rpc(1, "<lock><target><candidate/></target></lock>");
    assert!(exchange(&mut a, Framing::EndOfMessage, &lock)
        .unwrap()
        .contains("<ok/>"));
    let r = exchange(&mut b, Framing::EndOfMessage, &lock).unwrap();
    assert!(
        r.contains("<error-tag>lock-denied</error-tag>")
            && r.contains("<session-id>1</session-id>"),
        "{r}"
    );
    drop(a);
    assert!(exchange(&mut b, Framing::EndOfMessage, &lock)
        .unwrap()
        .contains("<ok/>"));
    // Unknown operations, bad XML, a missing message-id.
    let r = exchange(&mut b, Framing::EndOfMessage, &rpc(3, "<frobnicate/>")).unwrap();
    assert!(r.contains("operation-not-supported"), "{r}");
    let r = exchange(&mut b, Framing::EndOfMessage, "<rpc><unclosed></rpc>").unwrap();
    assert!(r.contains("malformed-message"), "{r}");
    let r = exchange(
        &mut b,
        Framing::EndOfMessage,
        "<rpc xmlns=\"urn:ietf:params:xml:ns:netconf:base:1.0\"><get/></rpc>",
    )
    .unwrap();
    assert!(r.contains("missing-attribute"), "{r}");
    let mut out = Vec::new();
    encode(
        Framing::EndOfMessage,
        rpc(4, "<close-session/>").as_bytes(),
        &mut out,
    )
    .unwrap();
    b.push(&out).unwrap();
    assert!(b.next().unwrap().unwrap().close);
    // A hello with a session-id is refused.
    let mut c = Session::new(3, dev, 1 << 20);
    let mut out = Vec::new();
    encode(Framing::EndOfMessage, b"<hello xmlns=\"urn:ietf:params:xml:ns:netconf:base:1.0\"><session-id>1</session-id></hello>", &mut out).unwrap();
    c.push(&out).unwrap();
    assert!(c.next().is_err());
}

// ---- through SSH ----

struct Pinned(russh::keys::PublicKey);

impl client::Handler for Pinned {
    type Error = russh::Error;
    async fn check_server_key(
        &mut self,
        key: &russh::keys::PublicKey,
    ) -> Result<bool, Self::Error> {
        Ok(key.key_data() == self.0.key_data())
    }
}

/// A minimal NETCONF client for the tests.
struct Nc {
    _ssh: Box<dyn std::any::Any + Send>,
    channel: russh::Channel<client::Msg>,
    decoder: Decoder,
    hello: String,
}

#[derive(Debug)]
enum ReadError {
    Timeout,
    Closed,
    Framing(FramingError),
}

async fn ssh(sim: &NetconfSim, i: usize) -> client::Handle<Pinned> {
    let cfg = Arc::new(client::Config::default());
    client::connect(cfg, sim.devices()[i].addr, Pinned(sim.host_key().clone()))
        .await
        .unwrap()
}

impl Nc {
    async fn open(sim: &NetconfSim, i: usize, base11: bool) -> Nc {
        let mut h = ssh(sim, i).await;
        assert!(h
            .authenticate_password("admin", "admin-pass")
            .await
            .unwrap()
            .success());
        Nc::start(h, base11).await
    }

    async fn start(h: client::Handle<Pinned>, base11: bool) -> Nc {
        let channel = h.channel_open_session().await.unwrap();
        channel.request_subsystem(true, "netconf").await.unwrap();
        let mut nc = Nc {
            _ssh: Box::new(h),
            channel,
            decoder: Decoder::new(Framing::EndOfMessage, 1 << 20),
            hello: String::new(),
        };
        nc.hello = nc.read(Duration::from_secs(10)).await.unwrap();
        let cap = if base11 { BASE_11 } else { BASE_10 };
        nc.send(&client_hello(cap)).await;
        if base11 {
            nc.decoder.set_framing(Framing::Chunked);
        }
        nc
    }

    async fn send(&mut self, msg: &str) {
        let mut out = Vec::new();
        encode(self.decoder.framing(), msg.as_bytes(), &mut out).unwrap();
        self.channel.data(&out[..]).await.unwrap();
    }

    async fn read(&mut self, wait: Duration) -> Result<String, ReadError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match self.decoder.next_message() {
                Ok(Some(m)) => return Ok(String::from_utf8_lossy(&m).into_owned()),
                Ok(None) => {}
                Err(e) => return Err(ReadError::Framing(e)),
            }
            match tokio::time::timeout_at(deadline, self.channel.wait()).await {
                Err(_) => return Err(ReadError::Timeout),
                Ok(None | Some(ChannelMsg::Close | ChannelMsg::Eof)) => {
                    return Err(ReadError::Closed)
                }
                Ok(Some(ChannelMsg::Data { data })) => {
                    self.decoder.extend(&data).map_err(ReadError::Framing)?
                }
                Ok(Some(_)) => {}
            }
        }
    }

    async fn rpc(&mut self, id: u32, body: &str) -> String {
        self.send(&rpc(id, body)).await;
        self.read(Duration::from_secs(10)).await.unwrap()
    }
}

async fn sim(count: usize, faults: NetconfFaultRates) -> NetconfSim {
    NetconfSim::start(NetconfSimConfig {
        count,
        auth_rejection_time: Duration::from_millis(10),
        faults,
        ..NetconfSimConfig::default()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn edit_commit_is_seen_by_a_second_session_and_locks_contend() {
    let sim = sim(2, NetconfFaultRates::default()).await;
    let mut a = Nc::open(&sim, 0, true).await;
    let mut b = Nc::open(&sim, 0, false).await;
    assert!(
        a.hello.contains(BASE_11) && a.hello.contains("<session-id>"),
        "{}",
        a.hello
    );

    assert!(a
        .rpc(1, "<lock><target><candidate/></target></lock>")
        .await
        .contains("<ok/>"));
    let r = b.rpc(1, "<lock><target><candidate/></target></lock>").await;
    assert!(r.contains("lock-denied"), "{r}");
    let edit = format!(
        "<edit-config><target><candidate/></target><config>\
         <system xmlns=\"{SYS}\"><hostname>edited</hostname></system></config></edit-config>"
    );
    assert!(a.rpc(2, &edit).await.contains("<ok/>"));
    let r = b.rpc(2, "<get-config><source><running/></source><filter type=\"subtree\"><system xmlns=\"urn:ietf:params:xml:ns:yang:ietf-system\"/></filter></get-config>").await;
    assert!(r.contains("<hostname>rtr-0001</hostname>"), "{r}");
    assert!(a.rpc(3, "<commit/>").await.contains("<ok/>"));
    let r = b
        .rpc(3, "<get-config><source><running/></source></get-config>")
        .await;
    assert!(r.contains("<hostname>edited</hostname>"), "{r}");
    assert!(a
        .rpc(4, "<unlock><target><candidate/></target></unlock>")
        .await
        .contains("<ok/>"));
    assert!(sim
        .config_xml("rtr-0001", Store::Running)
        .unwrap()
        .contains("edited"));
    // The other device is untouched.
    assert!(sim
        .config_xml("rtr-0002", Store::Running)
        .unwrap()
        .contains("<hostname>rtr-0002</hostname>"));
    let r = a.rpc(5, "<close-session/>").await;
    assert!(r.contains("<ok/>"), "{r}");
    assert!(matches!(
        a.read(Duration::from_secs(5)).await,
        Err(ReadError::Closed)
    ));
    sim.shutdown().await;
}

#[tokio::test]
async fn auth_password_key_and_inventory() {
    let client_key = PrivateKey::random(
        &mut russh::keys::ssh_key::rand_core::OsRng,
        Algorithm::Ed25519,
    )
    .unwrap();
    let sim = NetconfSim::start(NetconfSimConfig {
        count: 1,
        auth_rejection_time: Duration::from_millis(10),
        authorized_key: Some(client_key.public_key().clone()),
        ..NetconfSimConfig::default()
    })
    .await
    .unwrap();
    let mut h = ssh(&sim, 0).await;
    assert!(!h
        .authenticate_password("admin", "wrong")
        .await
        .unwrap()
        .success());
    let key = PrivateKeyWithHashAlg::new(Arc::new(client_key), None);
    assert!(h
        .authenticate_publickey("admin", key)
        .await
        .unwrap()
        .success());
    let mut nc = Nc::start(h, true).await;
    assert!(nc.rpc(1, "<get/>").await.contains("<os-name>"));

    // A client pinning another key refuses the server.
    let other = PrivateKey::random(
        &mut russh::keys::ssh_key::rand_core::OsRng,
        Algorithm::Ed25519,
    )
    .unwrap();
    let cfg = Arc::new(client::Config::default());
    assert!(client::connect(
        cfg,
        sim.devices()[0].addr,
        Pinned(other.public_key().clone())
    )
    .await
    .is_err());

    let inv: toml::Value = toml::from_str(&sim.inventory_toml()).unwrap();
    let d = &inv["device"][0];
    let keys: Vec<&String> = d.as_table().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "host",
            "host_key",
            "id",
            "password",
            "port",
            "proxytype",
            "username"
        ]
    );
    assert_eq!(d["id"].as_str(), Some("rtr-0001"));
    assert_eq!(d["proxytype"].as_str(), Some("netconf"));
    assert_eq!(
        d["port"].as_integer(),
        Some(i64::from(sim.devices()[0].addr.port()))
    );
    let fp = d["host_key"].as_str().unwrap();
    assert!(
        fp.starts_with("SHA256:") && !fp.ends_with('=') && fp.len() == 7 + 43,
        "{fp}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn faults_never_ending_bad_chunk_huge_slow_down() {
    let sim = sim(5, NetconfFaultRates::default()).await;
    let ids: Vec<String> = sim.devices().iter().map(|d| d.id.clone()).collect();
    sim.set_fault(&ids[0], NetconfFault::NeverEnding);
    sim.set_fault(&ids[1], NetconfFault::BadChunk);
    sim.set_fault(&ids[2], NetconfFault::Huge(3 << 20));
    sim.set_fault(&ids[3], NetconfFault::Slow(Duration::from_millis(300)));

    let get = rpc(1, "<get-config><source><running/></source></get-config>");
    // never_ending: the hello is fine, the reply never completes.
    for base11 in [true, false] {
        let mut nc = Nc::open(&sim, 0, base11).await;
        nc.send(&get).await;
        let r = nc.read(Duration::from_millis(500)).await;
        assert!(matches!(r, Err(ReadError::Timeout)), "{r:?}");
        assert!(nc.decoder.pending() > 0, "half a reply arrived");
    }
    // bad_chunk: the client's decoder refuses the header.
    let mut nc = Nc::open(&sim, 1, true).await;
    nc.send(&get).await;
    let r = nc.read(Duration::from_secs(5)).await;
    assert!(
        matches!(r, Err(ReadError::Framing(FramingError::BadChunkHeader(_)))),
        "{r:?}"
    );
    // huge: bigger than the client's 1 MiB cap; with a bigger cap it parses.
    let mut nc = Nc::open(&sim, 2, true).await;
    nc.send(&get).await;
    let r = nc.read(Duration::from_secs(10)).await;
    assert!(
        matches!(r, Err(ReadError::Framing(FramingError::TooLarge { .. }))),
        "{r:?}"
    );
    let mut nc = Nc::open(&sim, 2, false).await;
    nc.decoder = Decoder::new(Framing::EndOfMessage, 8 << 20);
    nc.send(&get).await;
    let r = nc.read(Duration::from_secs(20)).await.unwrap();
    assert!(
        r.len() >= 3 << 20 && r.len() < (3 << 20) + 100,
        "{}",
        r.len()
    );
    assert!(parse(r.as_bytes()).is_ok());
    // slow: the reply comes, late.
    let mut nc = Nc::open(&sim, 3, true).await;
    let t = Instant::now();
    assert!(nc.rpc(1, "<get/>").await.contains("<data>"));
    assert!(t.elapsed() >= Duration::from_millis(300));
    // down: refused, then up again.
    let addr = sim.devices()[4].addr;
    sim.set_fault(&ids[4], NetconfFault::Down);
    let mut refused = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "a down device refuses connections");
    sim.set_fault(&ids[4], NetconfFault::None);
    let mut up = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(up, "and accepts again when the fault is cleared");
    let mut nc = Nc::open(&sim, 4, true).await;
    assert!(nc.rpc(1, "<get/>").await.contains("<data>"));
    sim.shutdown().await;
}

#[tokio::test]
async fn start_time_fault_shares_and_down_refuses_at_once() {
    let sim = sim(
        10,
        NetconfFaultRates {
            down: 0.2,
            slow: 0.1,
            ..NetconfFaultRates::default()
        },
    )
    .await;
    let faults: Vec<NetconfFault> = sim
        .devices()
        .iter()
        .filter_map(|d| sim.fault(&d.id))
        .collect();
    assert_eq!(
        faults.iter().filter(|f| **f == NetconfFault::Down).count(),
        2
    );
    assert_eq!(
        faults
            .iter()
            .filter(|f| matches!(f, NetconfFault::Slow(_)))
            .count(),
        1
    );
    for (d, f) in sim.devices().iter().zip(&faults) {
        let refused = tokio::net::TcpStream::connect(d.addr).await.is_err();
        assert_eq!(refused, *f == NetconfFault::Down, "{}", d.id);
    }
    sim.shutdown().await;
}
