//! One persistent OVSDB session per device, owned by a task of its own: it
//! connects (TCP or unix socket), checks the server has an `Open_vSwitch`
//! database, reads its schema, starts the monitor and builds the replica; then it
//! answers the server's `echo` requests, sends its own when the link is quiet,
//! applies `update2`/`update` notifications, and matches replies to requests by
//! id. When the session breaks (closed, reset, malformed or oversized message,
//! unanswered echo) every request in flight fails, the replica is dropped, and
//! the task reconnects with exponential backoff (at once when a caller is
//! waiting), re-monitoring and rebuilding the replica from scratch.
//!
//! The task starts on first use, on the caller's runtime (the device's arbiter),
//! and stops when the last handle to the [`Connection`] is dropped.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::debug;

use super::codec::{error_text, FrameSplitter, Message};
use super::replica::{Replica, MONITORED};
use super::schema::Schema;
use super::OvsdbError;
use crate::telemetry;

/// Where the server listens, from `tcp:HOST:PORT` or `unix:PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Tcp { host: String, port: u16 },
    Unix(PathBuf),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Tcp { host, port } if host.contains(':') => write!(f, "tcp:[{host}]:{port}"),
            Endpoint::Tcp { host, port } => write!(f, "tcp:{host}:{port}"),
            Endpoint::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

const BACKOFF_INITIAL: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Quiet time after which we send our own `echo`; as long again without any
/// message and the session is dead. OVS's own default probe interval.
const PROBE_INTERVAL: Duration = Duration::from_secs(5);
/// The monitor's id in `update2` notifications.
const MONITOR_ID: &str = "drover";
const READ_CHUNK: usize = 64 * 1024;

enum Cmd {
    Call {
        method: &'static str,
        params: Value,
        reply: oneshot::Sender<Result<Value, OvsdbError>>,
    },
    /// Answers once a session is up.
    Ready {
        reply: oneshot::Sender<Result<(), OvsdbError>>,
    },
}

impl Cmd {
    fn fail(self, e: OvsdbError) {
        match self {
            Cmd::Call { reply, .. } => {
                let _ = reply.send(Err(e));
            }
            Cmd::Ready { reply } => {
                let _ = reply.send(Err(e));
            }
        }
    }
}

/// State the task and the handles share.
struct Shared {
    endpoint: Endpoint,
    timeout: Duration,
    max_message: usize,
    state: Mutex<State>,
    /// The live session's replica; `None` between sessions.
    replica: RwLock<Option<Replica>>,
}

#[derive(Default)]
struct State {
    connected: bool,
    schema: Option<Arc<Schema>>,
    last_error: Option<OvsdbError>,
    /// What this device adds to the fleet-wide gauges now.
    counted: (i64, i64),
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn replica_mut(&self) -> std::sync::RwLockWriteGuard<'_, Option<Replica>> {
        self.replica.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Moves this device's share of the fleet-wide gauges to `now`.
    fn count(&self, now: (i64, i64), connected: bool) {
        let mut st = self.state();
        let (db, dd) = (now.0 - st.counted.0, now.1 - st.counted.1);
        if db != 0 {
            metrics::gauge!(telemetry::OVS_BRIDGES).increment(db as f64);
        }
        if dd != 0 {
            metrics::gauge!(telemetry::OVS_INTERFACES_DOWN).increment(dd as f64);
        }
        if st.connected != connected {
            metrics::gauge!(telemetry::OVS_CONNECTED).increment(if connected { 1.0 } else { -1.0 });
        }
        st.counted = now;
        st.connected = connected;
    }

    fn down(&self, e: OvsdbError) {
        *self.replica_mut() = None;
        self.count((0, 0), false);
        self.state().last_error = Some(e);
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.count((0, 0), false);
    }
}

/// A handle to one device's session; cheap to clone.
#[derive(Clone)]
pub struct Connection {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    cmds: mpsc::Sender<Cmd>,
    /// Taken by the first call, which starts the task.
    start: Mutex<Option<(mpsc::Receiver<Cmd>, CancellationToken)>>,
    _stop: DropGuard,
}

impl Connection {
    pub fn new(endpoint: Endpoint, timeout: Duration, max_message: usize) -> Connection {
        let (tx, rx) = mpsc::channel(64);
        let token = CancellationToken::new();
        Connection {
            inner: Arc::new(Inner {
                shared: Arc::new(Shared {
                    endpoint,
                    timeout,
                    max_message,
                    state: Mutex::new(State::default()),
                    replica: RwLock::new(None),
                }),
                cmds: tx,
                start: Mutex::new(Some((rx, token.clone()))),
                _stop: token.drop_guard(),
            }),
        }
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.inner.shared.endpoint
    }

    pub fn timeout(&self) -> Duration {
        self.inner.shared.timeout
    }

    fn start(&self) {
        let taken = self
            .inner
            .start
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some((rx, token)) = taken {
            let shared = self.inner.shared.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = token.cancelled() => {}
                    _ = run(shared, rx) => {}
                }
            });
        }
    }

    async fn send(&self, cmd: Cmd) -> Result<(), OvsdbError> {
        self.start();
        self.inner
            .cmds
            .send(cmd)
            .await
            .map_err(|_| OvsdbError::Connect("session task stopped".into()))
    }

    async fn wait<T>(&self, rx: oneshot::Receiver<Result<T, OvsdbError>>) -> Result<T, OvsdbError> {
        let t = self.inner.shared.timeout;
        match tokio::time::timeout(t, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(OvsdbError::Connect("session ended".into())),
            Err(_) => Err(OvsdbError::Timeout(t)),
        }
    }

    /// One JSON-RPC request on the session (connecting first if needed).
    pub async fn call(&self, method: &'static str, params: Value) -> Result<Value, OvsdbError> {
        let (tx, rx) = oneshot::channel();
        self.send(Cmd::Call {
            method,
            params,
            reply: tx,
        })
        .await?;
        self.wait(rx).await
    }

    /// Waits for a session (connecting if needed) and gives its schema. Goes
    /// through the session task even when connected: the task handles what the
    /// socket already holds (updates, a close) before it answers, so a read after
    /// this sees every update delivered before it and never a dead session's data.
    /// That costs an in-process round trip, not a network one.
    pub async fn ready(&self) -> Result<Arc<Schema>, OvsdbError> {
        // Let the runtime poll its I/O driver first, so the session task learns
        // of bytes (or a close) the kernel already holds for it.
        tokio::task::yield_now().await;
        let (tx, rx) = oneshot::channel();
        self.send(Cmd::Ready { reply: tx }).await?;
        self.wait(rx).await?;
        self.inner
            .shared
            .state()
            .schema
            .clone()
            .ok_or_else(|| OvsdbError::Connect("session ended".into()))
    }

    /// Reads the replica of a live session.
    pub async fn read<R>(&self, f: impl FnOnce(&Replica, &Schema) -> R) -> Result<R, OvsdbError> {
        let schema = self.ready().await?;
        let r = self
            .inner
            .shared
            .replica
            .read()
            .unwrap_or_else(|p| p.into_inner());
        match r.as_ref() {
            Some(r) => Ok(f(r, &schema)),
            None => Err(OvsdbError::Connect("session lost".into())),
        }
    }

    /// A round trip after which every update the server sent before it has been
    /// applied: the server flushes monitor updates before it reads our next request.
    pub async fn sync(&self) -> Result<(), OvsdbError> {
        self.call("echo", json!(["sync"])).await.map(|_| ())
    }

    pub fn is_connected(&self) -> bool {
        self.inner.shared.state().connected
    }
}

/// The session task: connect, serve, and reconnect with backoff, until the last
/// handle is dropped.
async fn run(shared: Arc<Shared>, mut cmds: mpsc::Receiver<Cmd>) {
    let mut backoff = BACKOFF_INITIAL;
    let mut waiting: Vec<Cmd> = Vec::new();
    let mut established_before = false;
    loop {
        let err = match tokio::time::timeout(shared.timeout, Session::establish(&shared)).await {
            Ok(Ok(session)) => {
                metrics::counter!(telemetry::OVS_SESSIONS, "event" => if established_before { "reconnected" } else { "connected" }).increment(1);
                established_before = true;
                backoff = BACKOFF_INITIAL;
                match session.serve(&shared, &mut cmds, &mut waiting).await {
                    None => return,
                    Some(e) => {
                        metrics::counter!(telemetry::OVS_SESSIONS, "event" => "lost").increment(1);
                        debug!(endpoint = %shared.endpoint, error = %e, "OVSDB session lost.");
                        e
                    }
                }
            }
            Ok(Err(e)) => e,
            Err(_) => OvsdbError::Timeout(shared.timeout),
        };
        if let OvsdbError::Malformed(_) | OvsdbError::Json { .. } | OvsdbError::TooLarge(_) = &err {
            let reason = if matches!(err, OvsdbError::TooLarge(_)) {
                "too_large"
            } else {
                "malformed"
            };
            metrics::counter!(telemetry::OVS_PROTOCOL_ERRORS, "reason" => reason).increment(1);
        }
        shared.down(err.clone());
        // Everyone waiting for this attempt (or queued on the lost session) gets
        // its error now rather than at their timeout.
        for c in waiting.drain(..) {
            c.fail(err.clone());
        }
        while let Ok(c) = cmds.try_recv() {
            c.fail(err.clone());
        }
        let delay = backoff.mul_f64(0.8 + 0.4 * rand::random::<f64>());
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            c = cmds.recv() => match c {
                None => return,
                // A caller is waiting: try again now.
                Some(c) => waiting.push(c),
            }
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

type Reader = Box<dyn AsyncRead + Send + Unpin>;
type Writer = Box<dyn AsyncWrite + Send + Unpin>;

struct Session {
    reader: Reader,
    splitter: FrameSplitter,
    rbuf: Vec<u8>,
    out: mpsc::UnboundedSender<Vec<u8>>,
    writer: tokio::task::JoinHandle<std::io::Result<()>>,
    next_id: u64,
    pending: HashMap<u64, oneshot::Sender<Result<Value, OvsdbError>>>,
    schema: Arc<Schema>,
    /// `monitor_cond` (update2) rather than `monitor` (update).
    v2: bool,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.writer.abort();
    }
}

async fn connect(endpoint: &Endpoint) -> std::io::Result<(Reader, Writer)> {
    match endpoint {
        Endpoint::Tcp { host, port } => {
            let s = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
            let _ = s.set_nodelay(true);
            let (r, w) = s.into_split();
            Ok((Box::new(r), Box::new(w)))
        }
        Endpoint::Unix(path) => {
            let s = tokio::net::UnixStream::connect(path).await?;
            let (r, w) = s.into_split();
            Ok((Box::new(r), Box::new(w)))
        }
    }
}

/// Reads until one whole message is buffered. Cancel-safe: bytes read are kept in
/// the splitter.
async fn next_message(
    reader: &mut Reader,
    splitter: &mut FrameSplitter,
    buf: &mut [u8],
) -> Result<Message, OvsdbError> {
    loop {
        if let Some(frame) = splitter.next_frame()? {
            return Message::parse(&frame);
        }
        let n = reader.read(buf).await.map_err(OvsdbError::io("read"))?;
        if n == 0 {
            return Err(OvsdbError::Connect("server closed the connection".into()));
        }
        splitter.extend(&buf[..n]);
    }
}

impl Session {
    async fn establish(shared: &Shared) -> Result<Session, OvsdbError> {
        let (reader, mut writer) = connect(&shared.endpoint)
            .await
            .map_err(OvsdbError::io(shared.endpoint.to_string()))?;
        let (out, mut out_rx) = mpsc::unbounded_channel::<Vec<u8>>();
        // Writes on a task of their own: a server busy sending us a large update
        // must never wait on us while we wait on it.
        let writer = tokio::spawn(async move {
            while let Some(bytes) = out_rx.recv().await {
                writer.write_all(&bytes).await?;
            }
            Ok(())
        });
        let mut s = Session {
            reader,
            splitter: FrameSplitter::new(shared.max_message),
            rbuf: vec![0u8; READ_CHUNK],
            out,
            writer,
            next_id: 1,
            pending: HashMap::new(),
            schema: Arc::new(Schema {
                name: String::new(),
                version: super::schema::Version(0, 0, 0),
                tables: HashMap::new(),
            }),
            v2: true,
        };
        let dbs = s.roundtrip("list_dbs", json!([])).await?;
        let has = dbs
            .as_array()
            .is_some_and(|a| a.iter().any(|d| d == "Open_vSwitch"));
        if !has {
            return Err(OvsdbError::Schema(format!(
                "the server has no Open_vSwitch database (it has {dbs})"
            )));
        }
        let schema = s.roundtrip("get_schema", json!(["Open_vSwitch"])).await?;
        s.schema = Arc::new(Schema::parse(&schema)?);
        let tables: Vec<&str> = MONITORED
            .iter()
            .copied()
            .filter(|t| s.schema.tables.contains_key(*t))
            .collect();
        let cond: serde_json::Map<String, Value> = tables
            .iter()
            .map(|t| ((*t).to_owned(), json!([{}])))
            .collect();
        let initial = match s
            .roundtrip("monitor_cond", json!(["Open_vSwitch", MONITOR_ID, cond]))
            .await
        {
            Ok(v) => v,
            Err(OvsdbError::Server(e)) if e.contains("unknown method") => {
                // Servers before OVS 2.6 only have RFC 7047's monitor.
                s.v2 = false;
                let plain: serde_json::Map<String, Value> = tables
                    .iter()
                    .map(|t| ((*t).to_owned(), json!({})))
                    .collect();
                s.roundtrip("monitor", json!(["Open_vSwitch", MONITOR_ID, plain]))
                    .await?
            }
            Err(e) => return Err(e),
        };
        let mut replica = Replica::default();
        replica
            .apply(&initial, &s.schema, s.v2)
            .map_err(|e| OvsdbError::Malformed(format!("monitor reply: {e}")))?;
        let counts = replica.counts();
        *shared.replica_mut() = Some(replica);
        shared.state().schema = Some(s.schema.clone());
        shared.count(counts, true);
        debug!(endpoint = %shared.endpoint, schema = %s.schema.version, v2 = s.v2, "OVSDB session up.");
        Ok(s)
    }

    fn send(&mut self, method: &str, params: Value) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let _ = self.out.send(Message::request(id, method, params));
        id
    }

    fn respond(&self, id: Value, result: Value, error: Value) {
        let _ = self
            .out
            .send(Message::Response { id, result, error }.to_bytes());
    }

    /// A request during the handshake: answers the server's echoes while waiting.
    async fn roundtrip(&mut self, method: &str, params: Value) -> Result<Value, OvsdbError> {
        let id = self.send(method, params);
        loop {
            match next_message(&mut self.reader, &mut self.splitter, &mut self.rbuf).await? {
                Message::Response {
                    id: rid,
                    result,
                    error,
                } if rid == json!(id) => {
                    return if error.is_null() {
                        Ok(result)
                    } else {
                        Err(OvsdbError::Server(format!(
                            "{method}: {}",
                            error_text(&error)
                        )))
                    };
                }
                Message::Request { id, method, params } => self.answer(id, &method, params),
                _ => {}
            }
        }
    }

    fn answer(&self, id: Value, method: &str, params: Value) {
        if method == "echo" {
            self.respond(id, params, Value::Null);
        } else {
            self.respond(
                id,
                Value::Null,
                json!({"error": "unknown method", "details": method}),
            );
        }
    }

    /// Serves callers until the session breaks (`Some(error)`) or every handle is
    /// gone (`None`).
    async fn serve(
        mut self,
        shared: &Shared,
        cmds: &mut mpsc::Receiver<Cmd>,
        waiting: &mut Vec<Cmd>,
    ) -> Option<OvsdbError> {
        for c in waiting.drain(..) {
            self.command(c);
        }
        let probe = PROBE_INTERVAL.max(shared.timeout);
        let mut tick = tokio::time::interval(Duration::from_millis(500).min(probe / 2));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_heard = Instant::now();
        let mut probe_sent: Option<Instant> = None;
        let err = loop {
            tokio::select! {
                // Socket first: updates and a close are handled before callers.
                biased;
                msg = next_message(&mut self.reader, &mut self.splitter, &mut self.rbuf) => match msg {
                    Ok(m) => {
                        last_heard = Instant::now();
                        probe_sent = None;
                        if let Err(e) = self.handle(m, shared) {
                            break e;
                        }
                    }
                    Err(e) => break e,
                },
                w = &mut self.writer => {
                    break OvsdbError::Connect(match w {
                        Ok(Err(e)) => format!("write: {e}"),
                        _ => "writer stopped".into(),
                    });
                }
                c = cmds.recv() => match c {
                    Some(c) => self.command(c),
                    None => return None,
                },
                _ = tick.tick() => {
                    if last_heard.elapsed() >= probe {
                        match probe_sent {
                            Some(t) if t.elapsed() >= probe => {
                                break OvsdbError::Timeout(probe);
                            }
                            Some(_) => {}
                            None => {
                                self.send("echo", json!(["probe"]));
                                probe_sent = Some(Instant::now());
                            }
                        }
                    }
                    // Callers that gave up (their timeout passed) need no answer.
                    self.pending.retain(|_, tx| !tx.is_closed());
                }
            }
        };
        for (_, tx) in self.pending.drain() {
            let _ = tx.send(Err(err.clone()));
        }
        Some(err)
    }

    fn command(&mut self, c: Cmd) {
        match c {
            Cmd::Call {
                method,
                params,
                reply,
            } => {
                let id = self.send(method, params);
                self.pending.insert(id, reply);
            }
            Cmd::Ready { reply } => {
                let _ = reply.send(Ok(()));
            }
        }
    }

    fn handle(&mut self, m: Message, shared: &Shared) -> Result<(), OvsdbError> {
        match m {
            Message::Response { id, result, error } => {
                if let Some(tx) = id.as_u64().and_then(|id| self.pending.remove(&id)) {
                    let r = if error.is_null() {
                        Ok(result)
                    } else {
                        Err(OvsdbError::Server(error_text(&error)))
                    };
                    let _ = tx.send(r);
                }
            }
            Message::Request { id, method, params } => self.answer(id, &method, params),
            Message::Notification { method, params } => {
                let v2 = match method.as_str() {
                    "update2" => true,
                    "update" => false,
                    _ => return Ok(()),
                };
                let (Some(mid), Some(updates)) = (params.get(0), params.get(1)) else {
                    return Err(OvsdbError::Malformed(format!("{method} without updates")));
                };
                if mid != MONITOR_ID {
                    return Ok(());
                }
                let counts = {
                    let mut guard = shared.replica_mut();
                    let r = guard.get_or_insert_with(Replica::default);
                    r.apply(updates, &self.schema, v2)
                        .map_err(|e| OvsdbError::Malformed(format!("{method}: {e}")))?;
                    r.counts()
                };
                metrics::counter!(telemetry::OVS_UPDATES).increment(1);
                shared.count(counts, true);
            }
        }
        Ok(())
    }
}
