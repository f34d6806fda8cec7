//! The client against the simulator's SSH server (russh): the handshake, a hello
//! both ways, refusals, and garbage from a server.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::devsim::netconf::{NetconfSim, NetconfSimConfig};
use crate::secrets::Secret;

const T: Duration = Duration::from_secs(10);

async fn sim() -> NetconfSim {
    NetconfSim::start(NetconfSimConfig {
        count: 1,
        auth_rejection_time: Duration::from_millis(1),
        ..Default::default()
    })
    .await
    .unwrap()
}

fn pinned(sim: &NetconfSim) -> HostKeyCheck {
    let want = sim.host_key().clone();
    Box::new(move |k| *k == want)
}

async fn connect(
    sim: &NetconfSim,
    password: &str,
    check: HostKeyCheck,
) -> Result<SshStream, SshError> {
    let tcp = TcpStream::connect(sim.devices()[0].addr).await.unwrap();
    tokio::time::timeout(
        T,
        SshStream::connect(
            tcp,
            "admin".into(),
            Credentials::Password(Secret::new(password)),
            check,
            "netconf",
        ),
    )
    .await
    .expect("handshake hung")
}

async fn read_until(s: &mut SshStream, needle: &str) -> String {
    let mut got = Vec::new();
    tokio::time::timeout(T, async {
        loop {
            got.extend(s.engine().take_received());
            if String::from_utf8_lossy(&got).contains(needle) {
                return;
            }
            std::future::poll_fn(|cx| s.poll_io(cx)).await.unwrap();
        }
    })
    .await
    .expect("no data");
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn handshake_hello_and_an_rpc_through_the_simulator() {
    let sim = sim().await;
    let mut s = connect(&sim, "admin-pass", pinned(&sim)).await.unwrap();
    let hello = read_until(&mut s, "]]>]]>").await;
    assert!(
        hello.contains("urn:ietf:params:netconf:base:1.1"),
        "{hello}"
    );
    let ours = "<hello xmlns=\"urn:ietf:params:xml:ns:netconf:base:1.0\"><capabilities>\
        <capability>urn:ietf:params:netconf:base:1.0</capability></capabilities></hello>]]>]]>\
        <rpc message-id=\"1\" xmlns=\"urn:ietf:params:xml:ns:netconf:base:1.0\">\
        <get-config><source><running/></source></get-config></rpc>]]>]]>";
    s.engine().send_data(ours.as_bytes()).unwrap();
    let reply = read_until(&mut s, "</rpc-reply>").await;
    assert!(reply.contains("message-id=\"1\""), "{reply}");
    s.engine().keepalive().unwrap();
    sim.shutdown().await;
}

/// Re-keying started by the client, every 4 KiB, while RPCs go back and forth.
#[tokio::test]
async fn the_client_rekeys_mid_traffic_and_the_session_goes_on() {
    let sim = sim().await;
    let mut s = connect(&sim, "admin-pass", pinned(&sim)).await.unwrap();
    assert_eq!(s.engine().exchanges(), 1);
    s.engine().rekey_after(4096);
    read_until(&mut s, "]]>]]>").await;
    let hello = "<hello xmlns=\"urn:ietf:params:xml:ns:netconf:base:1.0\"><capabilities>\
        <capability>urn:ietf:params:netconf:base:1.0</capability></capabilities></hello>]]>]]>";
    s.engine().send_data(hello.as_bytes()).unwrap();
    for i in 0..30 {
        let rpc = format!(
            "<rpc message-id=\"{i}\" xmlns=\"urn:ietf:params:xml:ns:netconf:base:1.0\">\
             <get-config><source><running/></source></get-config></rpc>]]>]]>"
        );
        s.engine().send_data(rpc.as_bytes()).unwrap();
        let reply = read_until(&mut s, &format!("message-id=\"{i}\"")).await;
        read_until_end(&mut s, reply).await;
    }
    assert!(
        s.engine().exchanges() >= 4,
        "{} exchanges",
        s.engine().exchanges()
    );
    sim.shutdown().await;
}

/// Reads on until the reply `got` so far is whole (its end-of-message marker).
async fn read_until_end(s: &mut SshStream, mut got: String) {
    while !(got.contains("</rpc-reply>") && got.ends_with("]]>]]>")) {
        got.push_str(&read_until(s, "]]>]]>").await);
    }
}

#[tokio::test]
async fn a_wrong_password_and_a_refused_host_key_are_clear_errors() {
    let sim = sim().await;
    match connect(&sim, "wrong", pinned(&sim)).await {
        Err(SshError::AuthRefused { allowed }) => assert!(!allowed.is_empty()),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("logged in with a wrong password"),
    }
    match connect(&sim, "admin-pass", Box::new(|_| false)).await {
        Err(SshError::HostKeyRefused) => {}
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("accepted a refused host key"),
    }
    sim.shutdown().await;
}

/// A "server" that sends `reply` after the version exchange.
async fn hostile(reply: Vec<u8>) -> Result<SshStream, SshError> {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut c, _) = l.accept().await.unwrap();
        c.write_all(&reply).await.unwrap();
        let mut sink = vec![0u8; 4096];
        while matches!(c.read(&mut sink).await, Ok(n) if n > 0) {}
    });
    let tcp = TcpStream::connect(addr).await.unwrap();
    tokio::time::timeout(
        T,
        SshStream::connect(
            tcp,
            "u".into(),
            Credentials::Password(Secret::new("p")),
            Box::new(|_| true),
            "netconf",
        ),
    )
    .await
    .expect("hung on a hostile server")
}

#[tokio::test]
async fn garbage_from_a_server_is_an_error_not_a_hang() {
    let mut cases: Vec<Vec<u8>> = vec![
        b"SSH-1.5-old\r\n".to_vec(),
        [&b"SSH-2.0-x\r\n"[..], &[0xff, 0xff, 0xff, 0xff], &[0u8; 20]].concat(),
        [&b"SSH-2.0-x\r\n"[..], &[0, 0, 0, 12, 4, 94], &[0u8; 14]].concat(),
        vec![b'x'; 20_000],
    ];
    // A KEXINIT that offers nothing we speak.
    let mut p = vec![20u8];
    p.extend_from_slice(&[0u8; 16]);
    for l in [
        "diffie-hellman-group1-sha1",
        "ssh-dss",
        "3des-cbc",
        "3des-cbc",
        "hmac-md5",
        "hmac-md5",
        "none",
        "none",
        "",
        "",
    ] {
        wire::put_string(&mut p, l.as_bytes());
    }
    p.extend_from_slice(&[0, 0, 0, 0, 0]);
    let mut pkt = Vec::new();
    cipher::Direction::plain().seal(0, &p, &mut pkt).unwrap();
    cases.push([&b"SSH-2.0-x\r\n"[..], &pkt].concat());
    for (i, c) in cases.into_iter().enumerate() {
        let r = hostile(c).await;
        assert!(r.is_err(), "case {i} was accepted");
    }
}
