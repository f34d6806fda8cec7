//! A hostile network between Drover and a real master's publish port: a TCP proxy
//! that understands just enough ZMTP 3 framing to pass everything through, keep a
//! copy of each publication it forwards, and slip the test's own frames (replays,
//! corruptions, forgeries, garbage, a truncated frame) into the stream between
//! messages, as an attacker on the path could.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

const GREETING: usize = 64;
const MORE: u8 = 0x01;
const LONG: u8 = 0x02;
const COMMAND: u8 = 0x04;

/// What the test slips into the master → Drover stream.
pub enum Inject {
    /// Raw bytes written between two messages.
    Bytes(Vec<u8>),
    /// Raw bytes, then the connection is cut (a frame that never completes).
    BytesThenClose(Vec<u8>),
}

pub struct PubProxy {
    pub port: u16,
    /// Every publication forwarded so far, as the frames' bodies.
    captured: Arc<Mutex<Vec<Vec<Vec<u8>>>>>,
    inject: Arc<Mutex<Option<mpsc::UnboundedSender<Inject>>>>,
    /// How many Drover connections the proxy has accepted so far.
    connections: watch::Receiver<usize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PubProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PubProxy {
    pub async fn start(upstream_port: u16) -> PubProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let captured = Arc::new(Mutex::new(Vec::new()));
        let inject = Arc::new(Mutex::new(None));
        let (conn_tx, connections) = watch::channel(0usize);
        let (cap, inj) = (captured.clone(), inject.clone());
        let task = tokio::spawn(async move {
            let mut pumps = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream_port)).await else {
                    continue;
                };
                let (tx, rx) = mpsc::unbounded_channel();
                *inj.lock().expect("lock") = Some(tx);
                conn_tx.send_modify(|n| *n += 1);
                pumps.spawn(pump(client, server, rx, cap.clone()));
            }
        });
        PubProxy {
            port,
            captured,
            inject,
            connections,
            task,
        }
    }

    pub fn captured(&self) -> Vec<Vec<Vec<u8>>> {
        self.captured.lock().expect("lock").clone()
    }

    pub fn inject(&self, what: Inject) {
        if let Some(tx) = self.inject.lock().expect("lock").as_ref() {
            let _ = tx.send(what);
        }
    }

    /// Waits until Drover has connected `n` times in all.
    pub async fn connections_reach(&self, n: usize) {
        let mut rx = self.connections.clone();
        rx.wait_for(|c| *c >= n).await.expect("proxy alive");
    }
}

/// Encodes one ZMTP message (frames with the MORE flag on all but the last).
pub fn zmtp_message(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        let more = if i + 1 < frames.len() { MORE } else { 0 };
        if f.len() > 255 {
            out.push(more | LONG);
            out.extend_from_slice(&(f.len() as u64).to_be_bytes());
        } else {
            out.push(more);
            out.push(f.len() as u8);
        }
        out.extend_from_slice(f);
    }
    out
}

async fn pump(
    client: TcpStream,
    server: TcpStream,
    mut inject: mpsc::UnboundedReceiver<Inject>,
    captured: Arc<Mutex<Vec<Vec<Vec<u8>>>>>,
) {
    let (mut c_rd, mut c_wr) = client.into_split();
    let (mut s_rd, mut s_wr) = server.into_split();
    // Drover → master: SUBSCRIBE and heartbeats, passed through untouched.
    let up = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut c_rd, &mut s_wr).await;
    });
    // Frames are read on their own task so the writer can wait on either side
    // without a half-read frame being lost to cancellation.
    let (frames_tx, mut frames) = mpsc::channel::<(u8, Vec<u8>, Vec<u8>)>(64);
    let reader = tokio::spawn(async move {
        // The greeting is passed on as it arrives: libzmq sends it in steps and waits
        // for the peer's part of each step, so holding it back would stall both ends.
        let mut left = GREETING;
        while left > 0 {
            let mut chunk = vec![0u8; left];
            let n = match s_rd.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            chunk.truncate(n);
            left -= n;
            if frames_tx.send((COMMAND, chunk, Vec::new())).await.is_err() {
                return;
            }
        }
        loop {
            let mut flags = [0u8; 1];
            if s_rd.read_exact(&mut flags).await.is_err() {
                return;
            }
            let mut head = vec![flags[0]];
            let len = if flags[0] & LONG != 0 {
                let mut l = [0u8; 8];
                if s_rd.read_exact(&mut l).await.is_err() {
                    return;
                }
                head.extend_from_slice(&l);
                u64::from_be_bytes(l) as usize
            } else {
                let mut l = [0u8; 1];
                if s_rd.read_exact(&mut l).await.is_err() {
                    return;
                }
                head.push(l[0]);
                l[0] as usize
            };
            let mut body = vec![0u8; len];
            if s_rd.read_exact(&mut body).await.is_err() {
                return;
            }
            if frames_tx.send((flags[0], head, body)).await.is_err() {
                return;
            }
        }
    });
    let mut message: Vec<Vec<u8>> = Vec::new();
    loop {
        let mid_message = !message.is_empty();
        tokio::select! {
            f = frames.recv() => {
                let Some((flags, head, body)) = f else { break };
                if c_wr.write_all(&head).await.is_err() || c_wr.write_all(&body).await.is_err() {
                    break;
                }
                if flags & COMMAND == 0 {
                    let more = flags & MORE != 0;
                    message.push(body);
                    if !more {
                        captured.lock().expect("lock").push(std::mem::take(&mut message));
                    }
                }
            }
            i = inject.recv(), if !mid_message => {
                match i {
                    Some(Inject::Bytes(b)) => {
                        if c_wr.write_all(&b).await.is_err() {
                            break;
                        }
                    }
                    Some(Inject::BytesThenClose(b)) => {
                        let _ = c_wr.write_all(&b).await;
                        break;
                    }
                    // A newer connection took over the injector: this one is stale.
                    None => break,
                }
            }
        }
    }
    up.abort();
    reader.abort();
}
