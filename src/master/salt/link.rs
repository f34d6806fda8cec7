//! The link engine: per-id authentication and grains reporting, the verified publication
//! stream, answers to `saltutil.find_job` / `running` / `is_running` (from the fleet's
//! running jobs, so they agree with what the dispatcher runs), and returns with
//! re-auth and retries. Ids and grains are the fleet's: the link keeps only its own
//! per-id session state.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::RngExt as _;
use rmpv::Value;
use rsa::PublicKey;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::auth::{self, AuthOutcome, ENC_ALGO, SIG_ALGO};
use super::channel::{Expect, Reply, ReqChannel};
use super::crypto::{self, Crypticle};
use super::envelope::{self, as_text, from_json, get, map, pack, to_json, EnvelopeError};
use super::events;
use super::fleet_events;
use super::keys::{self, MinionKey};
use super::syndic;
use super::transport::{endpoint, SubEvent, Transport, Worker};
use super::{LinkCommand, PublishedJob, SaltError, SaltReturn};
use crate::config::MasterConfig;
use crate::fleet::registry::Registry;
use crate::fleet::running::{RunningJob, RunningJobs};
use crate::fleet::target::TargetType;
use crate::fleet::Fleet;
use crate::inventory::PillarDevices;
use crate::job::Tgt;
use crate::telemetry;

/// Recently seen jids (duplicate copies under `zmq_filtering`).
const RECENT_JIDS: usize = 4096;
/// Returns being sent at once.
const RETURN_CONCURRENCY: usize = 256;
/// Minimum spacing of re-auths triggered by undecryptable publications.
const PUB_REAUTH_SPACING: Duration = Duration::from_secs(10);
const DEALERS: usize = 2;
/// `_syndic_return` loads in flight at once. While they are, returns queue up and
/// the next load carries them all: batches grow with the master's latency.
const SYNDIC_IN_FLIGHT: usize = 4;
/// How long a `_syndic_return` batch waits for more returns after its first.
const SYNDIC_LINGER: Duration = Duration::from_millis(20);

/// Functions the link answers itself instead of forwarding.
const INTERNAL_FUNS: [&str; 3] = [
    "saltutil.find_job",
    "saltutil.running",
    "saltutil.is_running",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IdState {
    New,
    Pending,
    Rejected,
    Accepted,
}

/// The link's own state of one id: its key and session. Its grains are read from
/// the registry when they are reported.
struct IdEntry {
    key: Option<Arc<MinionKey>>,
    session: Option<Crypticle>,
    /// Bumped on every successful auth.
    session_gen: u64,
    state: IdState,
    authing: bool,
    /// Bumped on every upsert that creates the entry (a removed-then-re-added id).
    incarnation: u64,
}

struct Shared {
    cfg: MasterConfig,
    master_label: String,
    /// The fleet's devices: grains to report, targets to resolve.
    registry: Arc<Registry>,
    /// The fleet's running jobs, for `saltutil.find_job` and friends.
    running: Arc<RunningJobs>,
    /// Devices declared in pillar: the link authenticates the control id and the ids
    /// it lists, and feeds their pillars in.
    pillar_devices: Option<Arc<PillarDevices>>,
    chan: ReqChannel,
    shared_key: tokio::sync::OnceCell<Arc<MinionKey>>,
    master_pub: Arc<RwLock<Option<(PublicKey, String)>>>,
    aes: RwLock<Option<Crypticle>>,
    last_serial: Mutex<Option<i64>>,
    signed_seen: AtomicBool,
    ids: Mutex<HashMap<String, IdEntry>>,
    incarnations: Mutex<u64>,
    /// Ids in their start sequence at once, and the `_auth` timeout.
    pacer: super::pacing::Pacer,
    recent: Mutex<(VecDeque<String>, HashSet<String>)>,
    local_ip: Option<String>,
    last_pub_reauth: Mutex<Option<Instant>>,
    /// Syndic mode: the one id the link authenticates, and the queue of returns its
    /// `_syndic_return` loads carry.
    syndic: Option<SyndicLink>,
    stop: watch::Receiver<bool>,
}

struct SyndicLink {
    id: String,
    returns: mpsc::Sender<SaltReturn>,
}

/// Shutdown handle held by `SaltLink`.
pub struct Shutdown {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    workers: Vec<Worker>,
    shared: Arc<Shared>,
}

impl Shutdown {
    /// Signals every task to stop, waits up to 3 s, then joins the socket threads.
    pub async fn run(self) {
        let _ = self.stop.send(true);
        let deadline = tokio::time::sleep(Duration::from_secs(3));
        tokio::pin!(deadline);
        for mut t in self.tasks {
            tokio::select! {
                _ = &mut t => {}
                _ = &mut deadline => t.abort(),
            }
        }
        let workers = self.workers;
        let _ = tokio::task::spawn_blocking(move || {
            for w in workers {
                w.stop();
            }
        })
        .await;
        events::Connection {
            master: &self.shared.master_label,
            up: false,
        }
        .emit();
        tracing::info!(master = %self.shared.master_label, "Salt link stopped.");
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn reject(reason: &'static str) {
    events::Rejected { reason }.emit();
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Local address used to reach the master (for the `ipv4` grain). No packet is sent.
async fn local_ip_towards(host: &str, port: u16) -> Option<String> {
    let addr = tokio::net::lookup_host((host, port)).await.ok()?.next()?;
    let bind = if addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let sock = tokio::net::UdpSocket::bind(bind).await.ok()?;
    sock.connect(addr).await.ok()?;
    Some(sock.local_addr().ok()?.ip().to_string())
}

/// Starts the link; `cfg` has been validated by the caller.
pub async fn start(
    cfg: MasterConfig,
    fleet: &Fleet,
    pillar_devices: Option<Arc<PillarDevices>>,
    transport: Arc<dyn Transport>,
) -> Result<super::SaltLink, SaltError> {
    let host = cfg.host.clone().unwrap_or_default();
    let master_label = format!("{host}:{}", cfg.ret_port);
    metrics::gauge!(telemetry::MASTER_CONNECTED, "master" => master_label.clone()).set(0.0);
    let master_pub = Arc::new(RwLock::new(None));
    let (chan, ends, mut tasks) = ReqChannel::new(DEALERS, cfg.request_timeout, master_pub.clone());
    let mut workers = Vec::new();
    for (out_rx, in_tx) in ends {
        workers.push(transport.dealer(endpoint(&host, cfg.ret_port), out_rx, in_tx)?);
    }
    let (sub_tx, sub_rx) = mpsc::channel(1024);
    workers.push(transport.subscribe(endpoint(&host, cfg.publish_port), sub_tx)?);

    let (stop_tx, stop_rx) = watch::channel(false);
    let local_ip = local_ip_towards(&host, cfg.ret_port).await;
    let (syndic, syndic_rx) = match &cfg.syndic_id {
        Some(id) => {
            let (tx, rx) = mpsc::channel(16_384);
            let link = SyndicLink {
                id: id.clone(),
                returns: tx,
            };
            (Some(link), Some(rx))
        }
        None => (None, None),
    };
    let shared = Arc::new(Shared {
        pacer: super::pacing::Pacer::new(cfg.auth_concurrency, AUTH_TIMEOUT, cfg.request_timeout),
        cfg,
        master_label,
        registry: fleet.registry.clone(),
        running: fleet.running.clone(),
        pillar_devices,
        chan,
        shared_key: tokio::sync::OnceCell::new(),
        master_pub,
        aes: RwLock::new(None),
        last_serial: Mutex::new(None),
        signed_seen: AtomicBool::new(false),
        ids: Mutex::new(HashMap::new()),
        incarnations: Mutex::new(0),
        recent: Mutex::new((VecDeque::new(), HashSet::new())),
        local_ip,
        last_pub_reauth: Mutex::new(None),
        syndic,
        stop: stop_rx,
    });

    // Cached master key (blocking file read, off the executor).
    let pki = shared.cfg.pki_dir.clone();
    match tokio::task::spawn_blocking(move || keys::load_master_pub(&pki)).await {
        Ok(Ok(Some(k))) => *write(&shared.master_pub) = Some(k),
        Ok(Ok(None)) => {}
        Ok(Err(e)) => return Err(e.into()),
        Err(e) => return Err(SaltError::Task(e)),
    }

    let (cmd_tx, cmd_rx) = mpsc::channel(4096);
    let (jobs_tx, jobs_rx) = mpsc::channel(1024);
    let (ret_tx, ret_rx) = mpsc::channel(4096);
    tasks.push(tokio::spawn(command_loop(shared.clone(), cmd_rx)));
    tasks.push(tokio::spawn(publish_loop(shared.clone(), sub_rx, jobs_tx)));
    tasks.push(tokio::spawn(return_loop(shared.clone(), ret_rx)));
    tasks.push(tokio::spawn(event_loop(shared.clone())));
    tasks.push(tokio::spawn(pillar_refresh_loop(shared.clone())));
    if let Some(p) = &shared.pillar_devices {
        upsert(&shared, p.control_id().to_owned());
    }
    if let (Some(s), Some(rx)) = (&shared.syndic, syndic_rx) {
        upsert(&shared, s.id.clone());
        tasks.push(tokio::spawn(syndic_return_loop(shared.clone(), rx)));
    }
    // State runs read SLS files from this master's file server.
    let files =
        super::fileclient::SaltFileClient::new(Arc::new(FileRequests(Arc::downgrade(&shared))));
    fleet.registry.set_files(Some(Arc::new(files)));
    tracing::info!(master = %shared.master_label, "Salt link started.");
    Ok(super::SaltLink {
        commands: cmd_tx,
        jobs: jobs_rx,
        returns: ret_tx,
        syndic: shared.syndic.is_some(),
        shutdown: Shutdown {
            stop: stop_tx,
            tasks,
            workers,
            shared,
        },
    })
}

async fn command_loop(shared: Arc<Shared>, mut rx: mpsc::Receiver<LinkCommand>) {
    let mut stop = shared.stop.clone();
    loop {
        let cmd = tokio::select! {
            c = rx.recv() => c,
            _ = stop.changed() => None,
        };
        let Some(cmd) = cmd else { return };
        match cmd {
            LinkCommand::Expect { jid, minions } => {
                if let Some(s) = &shared.syndic {
                    if !minions.is_empty() {
                        let shared = shared.clone();
                        let pretag = syndic::pretag(&s.id);
                        let event = syndic::expected_event(&jid, &minions);
                        tokio::spawn(async move {
                            send_events(&shared, None, Some(&pretag), vec![event]).await;
                        });
                    }
                }
            }
            // A syndic authenticates only itself: devices are known to the master
            // through their returns and the expected-minion events.
            LinkCommand::Upsert { .. } | LinkCommand::Remove { .. } if shared.syndic.is_some() => {}
            LinkCommand::Upsert { id } => upsert(&shared, id),
            LinkCommand::Remove { id } => {
                // Pillar ids stay authenticated while listed: their pillar is what
                // declares them (and may declare them again).
                if !is_pillar_id(&shared, &id) {
                    lock(&shared.ids).remove(&id);
                    shared.pacer.forget(&id);
                    tracing::debug!(id = %id, "Minion id removed.");
                }
            }
        }
    }
}

/// The pillar_inventory control id, or an id it lists.
fn is_pillar_id(shared: &Shared, id: &str) -> bool {
    shared
        .pillar_devices
        .as_ref()
        .is_some_and(|p| p.control_id() == id || p.listed().iter().any(|l| l == id))
}

/// A new id starts authenticating; a known one that is accepted reports its grains
/// again (the bridge upserts a known id only when its grains changed).
fn upsert(shared: &Arc<Shared>, id: String) {
    if !keys::valid_id(&id) {
        tracing::warn!(id = %id, "Invalid minion id ignored.");
        reject("invalid_id");
        return;
    }
    let mut ids = lock(&shared.ids);
    match ids.get_mut(&id) {
        Some(e) => {
            if e.state == IdState::Accepted {
                tokio::spawn(send_grains(shared.clone(), id));
            }
        }
        None => {
            let inc = {
                let mut n = lock(&shared.incarnations);
                *n += 1;
                *n
            };
            ids.insert(
                id.clone(),
                IdEntry {
                    key: None,
                    session: None,
                    session_gen: 0,
                    state: IdState::New,
                    authing: true,
                    incarnation: inc,
                },
            );
            tokio::spawn(auth_loop(shared.clone(), id, inc));
        }
    }
}

/// The device's grains plus `id` and `ipv4` (the address the master sees), so
/// targeting and `manage.up` work on the master.
fn complete_grains(shared: &Shared, id: &str, grains: &serde_json::Value) -> serde_json::Value {
    let mut obj = match grains {
        serde_json::Value::Object(o) => o.clone(),
        _ => serde_json::Map::new(),
    };
    obj.entry("id")
        .or_insert_with(|| serde_json::Value::String(id.to_owned()));
    if let Some(ip) = &shared.local_ip {
        let entry = obj
            .entry("ipv4")
            .or_insert_with(|| serde_json::Value::Array(Vec::new()));
        if let serde_json::Value::Array(list) = entry {
            if !list.iter().any(|v| v.as_str() == Some(ip)) {
                list.push(serde_json::Value::String(ip.clone()));
            }
        }
    }
    serde_json::Value::Object(obj)
}

async fn key_for(shared: &Shared, id: &str) -> Result<Arc<MinionKey>, SaltError> {
    if let Some(k) = lock(&shared.ids).get(id).and_then(|e| e.key.clone()) {
        return Ok(k);
    }
    let key = if shared.cfg.per_device_keys {
        keys::load_or_create_async(shared.cfg.pki_dir.join(id)).await?
    } else {
        shared
            .shared_key
            .get_or_try_init(|| keys::load_or_create_async(shared.cfg.pki_dir.clone()))
            .await?
            .clone()
    };
    if let Some(e) = lock(&shared.ids).get_mut(id) {
        e.key = Some(key.clone());
    }
    Ok(key)
}

fn backoff(attempt: u32, base: Duration, cap: Duration) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.min(6));
    let d = exp.min(cap);
    let jitter = rand::rng().random_range(0.8..1.2);
    d.mul_f64(jitter)
}

/// How long one `_auth` request may wait for the master. Shorter than the general
/// request timeout (60 s by default), as Salt's own minion does (`auth_timeout`): an
/// auth reply the master never sends should cost a retry, not a minute.
const AUTH_TIMEOUT: Duration = Duration::from_secs(10);

/// How many times in a row authentication has ended the same way. Backoff grows
/// with this streak, not with all attempts: an id that waited pending for minutes
/// (retrying every `auth_retry`) and then meets one timeout must retry after a
/// second, not after the 60 s cap, or an operator's `salt-key -a` seems ignored.
#[derive(Default)]
struct Streak {
    last: &'static str,
    count: u32,
}

impl Streak {
    /// Records an outcome; returns how many of the same came right before it.
    fn next(&mut self, outcome: &'static str) -> u32 {
        if self.last == outcome {
            self.count = self.count.saturating_add(1);
        } else {
            self.last = outcome;
            self.count = 0;
        }
        self.count
    }
}

/// Authenticates one id until accepted (or removed / shut down).
async fn auth_loop(shared: Arc<Shared>, id: String, incarnation: u64) {
    let mut streak = Streak::default();
    let mut stop = shared.stop.clone();
    loop {
        if *stop.borrow() {
            return;
        }
        let alive = lock(&shared.ids)
            .get(&id)
            .is_some_and(|e| e.incarnation == incarnation);
        if !alive {
            return;
        }
        // The turn covers the whole start sequence (`_auth`, `_pillar`, start events):
        // the master's queue holds all three.
        let Some(turn) = shared.pacer.turn(&id).await else {
            return;
        };
        let result = authenticate(&shared, &id).await;
        let outcome = match &result {
            Ok(AuthOutcome::Accepted { .. }) => "accepted",
            Ok(AuthOutcome::Pending) => "pending",
            Ok(AuthOutcome::Full) => "full",
            Ok(AuthOutcome::Rejected) => "rejected",
            Err(_) => "error",
        };
        metrics::counter!(telemetry::MASTER_AUTH, "outcome" => outcome).increment(1);
        let attempt = streak.next(outcome);
        let wait = match result {
            Ok(AuthOutcome::Accepted { .. }) => {
                if let Some(e) = lock(&shared.ids).get_mut(&id) {
                    e.authing = false;
                }
                // A job may have asked for it while its turn was under way.
                shared.pacer.forget(&id);
                tracing::info!(id = %id, "Minion id authenticated.");
                if shared.syndic.is_some() {
                    // A syndic reports no grains and has no pillar of its own.
                    let events = syndic::start_events(&id, SystemTime::now());
                    send_events(&shared, Some(&id), None, events).await;
                } else if send_pillar(&shared, &id).await {
                    let events = fleet_events::start_events(&id, SystemTime::now());
                    send_events(&shared, Some(&id), None, events).await;
                }
                drop(turn);
                return;
            }
            Ok(AuthOutcome::Pending) => {
                set_state(&shared, &id, IdState::Pending);
                tracing::info!(id = %id, "Key pending acceptance on the master.");
                backoff(0, shared.cfg.auth_retry, shared.cfg.auth_retry)
            }
            Ok(AuthOutcome::Full) => {
                tracing::warn!(id = %id, "Master reports max_minions reached.");
                backoff(attempt, shared.cfg.auth_retry, Duration::from_secs(300))
            }
            Ok(AuthOutcome::Rejected) => {
                set_state(&shared, &id, IdState::Rejected);
                tracing::warn!(id = %id, "Key rejected by the master.");
                backoff(attempt, shared.cfg.auth_retry * 6, Duration::from_secs(600))
            }
            Err(e) => {
                tracing::warn!(id = %id, error = %e, kind = e.kind(), "Authentication failed.");
                backoff(attempt, Duration::from_secs(1), Duration::from_secs(60))
            }
        };
        drop(turn);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
    }
}

fn set_state(shared: &Shared, id: &str, state: IdState) {
    if let Some(e) = lock(&shared.ids).get_mut(id) {
        e.state = state;
    }
}

/// One `_auth` exchange; on success installs the session and (possibly new) AES key.
async fn authenticate(shared: &Arc<Shared>, id: &str) -> Result<AuthOutcome, SaltError> {
    let key = key_for(shared, id).await?;
    let master = read(&shared.master_pub).clone();
    let (req, key) = {
        let master = master.clone();
        let id = id.to_owned();
        tokio::task::spawn_blocking(move || {
            let r = auth::build_request(&id, &key, master.as_ref().map(|(k, _)| k));
            r.map(|r| (r, key))
        })
        .await
        .map_err(SaltError::Task)??
    };
    let body = req.body.clone();
    let nonce = req.nonce.clone();
    let asked = tokio::time::Instant::now();
    let reply = shared
        .chan
        .request_within(
            body,
            &nonce,
            Expect::Clear,
            "auth",
            shared.pacer.auth_timeout(),
        )
        .await;
    match &reply {
        Ok(_) => shared.pacer.record(Some(asked.elapsed())),
        Err(SaltError::Timeout) => shared.pacer.record(None),
        Err(_) => {}
    }
    let reply = reply?;
    let env = match reply {
        Reply::Clear(env) => env,
        Reply::Error(e) => return Err(SaltError::MasterError(e)),
        other => return Err(SaltError::Protocol(format!("auth reply kind {other:?}"))),
    };
    let outcome = tokio::task::spawn_blocking(move || {
        auth::process_reply(
            &env,
            &req,
            &key,
            master.as_ref().map(|(k, p)| (k, p.as_str())),
        )
    })
    .await
    .map_err(SaltError::Task)??;
    if let AuthOutcome::Accepted {
        aes,
        session,
        new_master_pem,
    } = &outcome
    {
        if let Some(pem) = new_master_pem {
            let pki = shared.cfg.pki_dir.clone();
            let pem2 = pem.clone();
            tokio::task::spawn_blocking(move || keys::store_master_pub(&pki, &pem2))
                .await
                .map_err(SaltError::Task)??;
            use rsa::pkcs8::DecodePublicKey;
            if let Ok(k) = PublicKey::from_public_key_pem(pem) {
                *write(&shared.master_pub) = Some((k, pem.clone()));
                tracing::info!(master = %shared.master_label, "Master public key cached (first contact).");
            }
        }
        install_aes(shared, aes);
        if let Some(e) = lock(&shared.ids).get_mut(id) {
            e.session = Some(session.clone());
            e.session_gen += 1;
            e.state = IdState::Accepted;
        }
    }
    Ok(outcome)
}

fn install_aes(shared: &Shared, aes: &Crypticle) {
    let mut cur = write(&shared.aes);
    if cur.as_ref() != Some(aes) {
        if cur.is_some() {
            events::AesRotated {
                master: &shared.master_label,
            }
            .emit();
        }
        *cur = Some(aes.clone());
        // Each new AES key restarts the publish serial.
        *lock(&shared.last_serial) = None;
    }
}

/// Builds and sends an encrypted request for `id`; returns the decrypted answer.
async fn aes_request(
    shared: &Shared,
    id: &str,
    cmd: &'static str,
    mut fields: Vec<(&str, Value)>,
    kind: &'static str,
) -> Result<(Value, u64), SaltError> {
    let (session, gen, key) = {
        let ids = lock(&shared.ids);
        let e = ids.get(id).ok_or(SaltError::UnknownId)?;
        match (&e.session, &e.key) {
            (Some(s), Some(k)) if e.state == IdState::Accepted => {
                (s.clone(), e.session_gen, k.clone())
            }
            _ => return Err(SaltError::UnknownId),
        }
    };
    let nonce = crypto::new_nonce();
    fields.push(("cmd", Value::from(cmd)));
    fields.push(("id", Value::from(id)));
    fields.push(("nonce", Value::from(nonce.as_str())));
    fields.push(("ts", Value::from(now_secs())));
    fields.push(("tok", Value::Binary(key.tok.clone())));
    let inner = pack(&map(fields));
    let env = map(vec![
        ("enc", Value::from("aes")),
        ("load", Value::Binary(session.dumps(&inner, None))),
        ("version", Value::from(3)),
        ("id", Value::from(id)),
        ("enc_algo", Value::from(ENC_ALGO)),
        ("sig_algo", Value::from(SIG_ALGO)),
    ]);
    let expect = if cmd == "_pillar" {
        Expect::Private(key)
    } else {
        Expect::Aes(session)
    };
    match shared.chan.request(pack(&env), &nonce, expect, kind).await {
        Ok(Reply::Aes(v) | Reply::Private(v)) => Ok((v, gen)),
        Ok(Reply::Error(e)) => Err(SaltError::MasterError(e)),
        Ok(Reply::Clear(_)) => Err(SaltError::Protocol("clear reply to aes request".into())),
        Err(e) => Err(e),
    }
}

/// The file client's requests: under the given id, or under any accepted id (file
/// server answers do not depend on the id). Weak, so the registry that holds the
/// file client does not keep the link alive.
struct FileRequests(std::sync::Weak<Shared>);

impl super::fileclient::Requests for FileRequests {
    fn request<'a>(
        &'a self,
        id: Option<&'a str>,
        cmd: &'static str,
        fields: Vec<(&'static str, Value)>,
    ) -> futures::future::BoxFuture<'a, Result<Value, SaltError>> {
        Box::pin(async move {
            let shared = self.0.upgrade().ok_or(SaltError::Closed)?;
            let id = match id {
                Some(id) => id.to_owned(),
                None => lock(&shared.ids)
                    .iter()
                    .find(|(_, e)| e.state == IdState::Accepted && e.session.is_some())
                    .map(|(k, _)| k.clone())
                    .ok_or(SaltError::UnknownId)?,
            };
            aes_request(&shared, &id, cmd, fields, "file")
                .await
                .map(|(v, _)| v)
        })
    }
}

/// Starts a re-auth of `id` unless one is running or a newer session exists.
fn trigger_reauth(shared: &Arc<Shared>, id: &str, seen_gen: u64) {
    let mut ids = lock(&shared.ids);
    let Some(e) = ids.get_mut(id) else { return };
    if e.authing || e.session_gen > seen_gen {
        return;
    }
    e.authing = true;
    let inc = e.incarnation;
    tokio::spawn(auth_loop(shared.clone(), id.to_owned(), inc));
}

/// Waits (bounded) until `id` has a session newer than `seen_gen`.
async fn wait_session(shared: &Shared, id: &str, seen_gen: Option<u64>, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        let ok = lock(&shared.ids).get(id).is_some_and(|e| {
            e.state == IdState::Accepted
                && e.session.is_some()
                && seen_gen.is_none_or(|g| e.session_gen > g)
        });
        if ok {
            return true;
        }
        if Instant::now() >= deadline || *shared.stop.borrow() {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Reports the id's grains as the registry has them now (`_pillar` fills the
/// master's grains cache) and keeps the pillar it answers with. The start events
/// go once per authentication, not on every grains change.
async fn send_grains(shared: Arc<Shared>, id: String) {
    send_pillar(&shared, &id).await;
}

/// `_pillar` for `id`: reports its grains and stores the pillar the master answers
/// with in the registry, where functions read it. False when the id is gone.
async fn send_pillar(shared: &Arc<Shared>, id: &str) -> bool {
    if !lock(&shared.ids).contains_key(id) {
        return false;
    }
    let grains = match shared.registry.get(id).map(|e| e.grains.clone()) {
        Some(g) => g,
        // A pillar id not (yet) a device: its pillar is what declares it.
        None if is_pillar_id(shared, id) => Arc::new(serde_json::Value::Object(Default::default())),
        // Gone from the registry: its removal from the link is on its way.
        None => return false,
    };
    let grains = complete_grains(shared, id, &grains);
    let fields = vec![
        ("grains", from_json(&grains)),
        ("saltenv", Value::Nil),
        ("pillarenv", Value::Nil),
        ("pillar_override", map(vec![])),
        ("extra_minion_data", map(vec![])),
        ("ver", Value::from("2")),
    ];
    match aes_request(shared, id, "_pillar", fields, "pillar").await {
        Ok((v, _)) => match to_json(&v) {
            // Never logged: pillars hold secrets.
            pillar @ serde_json::Value::Object(_) => {
                if let Some(p) = &shared.pillar_devices {
                    let change = p.observe(id, &pillar);
                    for new in change.added {
                        upsert(shared, new);
                    }
                    for gone in change.removed {
                        // A device among them leaves with the next reload, and the
                        // bridge removes it; an id that never was one goes now.
                        if shared.registry.get(&gone).is_none() {
                            lock(&shared.ids).remove(&gone);
                        }
                    }
                }
                shared.registry.set_pillar(id, pillar);
                tracing::debug!(id = %id, "Grains reported, pillar received.");
            }
            _ => tracing::warn!(id = %id, "Master's pillar answer is not a dict; ignored."),
        },
        Err(e) => tracing::warn!(id = %id, error = %e, "Grains report failed."),
    }
    true
}

/// One `_minion_event` load with an `events` list, sent as `carrier` (or as any
/// authenticated id): the master fires each event's data under its tag.
async fn send_events(
    shared: &Arc<Shared>,
    carrier: Option<&str>,
    pretag: Option<&str>,
    events: Vec<(String, serde_json::Value)>,
) {
    if events.is_empty() {
        return;
    }
    let n = events.len() as u64;
    let accepted = |id: &str| {
        lock(&shared.ids)
            .get(id)
            .is_some_and(|e| e.state == IdState::Accepted && e.session.is_some())
    };
    let carrier = match carrier.filter(|c| accepted(c)) {
        Some(c) => Some(c.to_owned()),
        None => lock(&shared.ids)
            .iter()
            .find(|(_, e)| e.state == IdState::Accepted && e.session.is_some())
            .map(|(id, _)| id.clone()),
    };
    let Some(carrier) = carrier else {
        metrics::counter!(telemetry::MASTER_EVENTS, "outcome" => "dropped").increment(n);
        tracing::debug!(
            events = n,
            "Fleet events dropped: no authenticated id to send them."
        );
        return;
    };
    let list = Value::Array(
        events
            .into_iter()
            .map(|(tag, data)| {
                map(vec![
                    ("tag", Value::from(tag.as_str())),
                    ("data", from_json(&data)),
                ])
            })
            .collect(),
    );
    let pretag = pretag.map_or(Value::Nil, Value::from);
    let fields = vec![("pretag", pretag), ("events", list)];
    match aes_request(shared, &carrier, "_minion_event", fields, "event").await {
        Ok(_) => metrics::counter!(telemetry::MASTER_EVENTS, "outcome" => "sent").increment(n),
        Err(e) => {
            metrics::counter!(telemetry::MASTER_EVENTS, "outcome" => "dropped").increment(n);
            tracing::debug!(error = %e, events = n, "Fleet events not delivered.");
        }
    }
}

/// Forwards the fleet's bus to the master in bounded batches, and asks for fresh
/// pillars when devices want them.
async fn event_loop(shared: Arc<Shared>) {
    let mut rx = shared.registry.events().subscribe();
    let mut stop = shared.stop.clone();
    loop {
        let batch = tokio::select! {
            b = fleet_events::next_batch(&mut rx) => b,
            _ = stop.changed() => None,
        };
        let Some(batch) = batch else { return };
        // A syndic has no pillar per device to fetch.
        let mut refresh: Vec<String> = if shared.syndic.is_some() {
            Vec::new()
        } else {
            batch.refresh.iter().map(|i| i.to_string()).collect()
        };
        // A device asking for its pillar may be the news of a pillar edit: the
        // control id's list is fetched again with it, so new devices are picked up.
        if let Some(p) = &shared.pillar_devices {
            if !refresh.is_empty() && !refresh.iter().any(|i| i == p.control_id()) {
                refresh.push(p.control_id().to_owned());
            }
        }
        for id in refresh {
            let shared = shared.clone();
            tokio::spawn(async move { send_pillar(&shared, &id).await });
        }
        for r in batch.returns {
            let ret = SaltReturn {
                id: r.id.to_string(),
                jid: "req".into(),
                fun: r.fun.clone(),
                fun_args: r.fun_args.clone(),
                ret: r.ret.clone(),
                retcode: r.retcode,
                success: r.success,
                user: None,
                schedule: Some(r.schedule.clone()),
            };
            tokio::spawn(send_return(shared.clone(), ret, None));
        }
        for req in batch.requests {
            let shared = shared.clone();
            tokio::spawn(async move { master_request(&shared, &req).await });
        }
        let events = batch
            .fire
            .into_iter()
            .map(|(_, tag, data)| (tag, data))
            .collect();
        send_events(&shared, None, None, events).await;
    }
}

/// Sends a device's request (`_mine`, `_mine_get`, ...) and hands back the answer.
async fn master_request(shared: &Arc<Shared>, req: &crate::events::MasterRequest) {
    if let Some(s) = &shared.syndic {
        // The master accepts a request only under the id that authenticated.
        req.answer(Err(format!(
            "'{}' needs a session of the device's own id; this Drover is the syndic {}",
            req.cmd, s.id
        )));
        return;
    }
    let fields: Vec<(&str, Value)> = req
        .load
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "cmd" | "id" | "tok" | "nonce" | "ts"))
        .map(|(k, v)| (k.as_str(), from_json(v)))
        .collect();
    let result = match aes_request(shared, &req.id, req.cmd, fields, "request").await {
        Ok((v, _)) => Ok(to_json(&v)),
        Err(e) => Err(e.to_string()),
    };
    req.answer(result);
}

/// Fetches every authenticated id's pillar again every `pillar_refresh`, a few at a
/// time so a big fleet does not queue thousands of requests at once.
async fn pillar_refresh_loop(shared: Arc<Shared>) {
    let every = shared.cfg.pillar_refresh;
    if every.is_zero() {
        return;
    }
    let mut stop = shared.stop.clone();
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let ids: Vec<String> = lock(&shared.ids)
            .iter()
            .filter(|(_, e)| e.state == IdState::Accepted && e.session.is_some())
            .map(|(id, _)| id.clone())
            .collect();
        let gate = Arc::new(Semaphore::new(shared.cfg.auth_concurrency.max(1)));
        for id in ids {
            let Ok(permit) = gate.clone().acquire_owned().await else {
                return;
            };
            let shared = shared.clone();
            tokio::spawn(async move {
                send_pillar(&shared, &id).await;
                drop(permit);
            });
        }
    }
}

fn remember_jid(shared: &Shared, jid: &str) -> bool {
    let mut r = lock(&shared.recent);
    if r.1.contains(jid) {
        return false;
    }
    r.0.push_back(jid.to_owned());
    r.1.insert(jid.to_owned());
    while r.0.len() > RECENT_JIDS {
        if let Some(old) = r.0.pop_front() {
            r.1.remove(&old);
        }
    }
    true
}

async fn publish_loop(
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<SubEvent>,
    jobs_tx: mpsc::Sender<PublishedJob>,
) {
    let mut stop = shared.stop.clone();
    loop {
        let ev = tokio::select! {
            e = rx.recv() => e,
            _ = stop.changed() => None,
        };
        let Some(ev) = ev else { return };
        match ev {
            SubEvent::Connected(up) => {
                events::Connection {
                    master: &shared.master_label,
                    up,
                }
                .emit();
            }
            SubEvent::Message(frames) => {
                events::received("publish");
                match verify_publish(&shared, &frames).await {
                    Ok(Some(load)) => {
                        if !dispatch(&shared, load, &jobs_tx).await {
                            return;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::debug!(error = %e, "Publication rejected.");
                        reject(e.label());
                    }
                }
            }
        }
    }
}

/// Runs every check on one publication. `Ok(None)` = harmless duplicate / not for us.
async fn verify_publish(
    shared: &Arc<Shared>,
    frames: &[Vec<u8>],
) -> Result<Option<Value>, EnvelopeError> {
    let env = envelope::parse_publish_frames(frames)?;
    let master = read(&shared.master_pub).as_ref().map(|(k, _)| k.clone());
    if env.sig.is_some() && master.is_none() {
        return Err(EnvelopeError::SignatureMissing);
    }
    let require = shared.signed_seen.load(Ordering::Relaxed);
    if env.verify_signature(master.as_ref(), require)? {
        shared.signed_seen.store(true, Ordering::Relaxed);
    }
    let Some(aes) = read(&shared.aes).clone() else {
        reject("no_key");
        return Ok(None);
    };
    let last = *lock(&shared.last_serial);
    let opened = match env.open(&aes, last) {
        Err(EnvelopeError::Crypto(crypto::CryptoError::Hmac)) => {
            // The AES key may have rotated: re-auth one id, then try the same payload again.
            if refresh_aes(shared, &aes).await {
                let fresh = read(&shared.aes).clone();
                match fresh {
                    Some(k) => env.open(&k, *lock(&shared.last_serial)),
                    None => return Ok(None),
                }
            } else {
                Err(EnvelopeError::Crypto(crypto::CryptoError::Hmac))
            }
        }
        other => other,
    };
    let v = match opened {
        Ok(v) => v,
        Err(EnvelopeError::Replay { got, last }) if got == last => {
            // Same serial again: a duplicate copy (zmq_filtering) is expected and harmless.
            reject("duplicate");
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    if let Some(s) = v.serial {
        let mut last = lock(&shared.last_serial);
        if last.is_none_or(|l| s > l) {
            *last = Some(s);
        }
    }
    Ok(Some(v.load))
}

/// Re-authenticates one accepted id to learn a rotated AES key. Rate-limited.
async fn refresh_aes(shared: &Arc<Shared>, old: &Crypticle) -> bool {
    {
        let mut last = lock(&shared.last_pub_reauth);
        if last.is_some_and(|t| t.elapsed() < PUB_REAUTH_SPACING) {
            return read(&shared.aes).as_ref() != Some(old);
        }
        *last = Some(Instant::now());
    }
    let candidate = lock(&shared.ids)
        .iter()
        .find(|(_, e)| e.state == IdState::Accepted)
        .map(|(id, _)| id.clone());
    let Some(id) = candidate else { return false };
    match authenticate(shared, &id).await {
        Ok(AuthOutcome::Accepted { .. }) => {
            let changed = read(&shared.aes).as_ref() != Some(old);
            if changed {
                // Other ids' sessions may be stale too (master restart): refresh lazily on
                // their next failed request, but re-report grains for this one.
                tokio::spawn(send_grains(shared.clone(), id));
            }
            changed
        }
        Ok(_) => false,
        Err(e) => {
            tracing::warn!(error = %e, "Re-auth after undecryptable publication failed.");
            false
        }
    }
}

/// Routes a verified publication. Returns false when the job receiver is gone.
async fn dispatch(shared: &Arc<Shared>, load: Value, jobs_tx: &mpsc::Sender<PublishedJob>) -> bool {
    let jid = get(&load, "jid").map(to_json).map(|j| match j {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    });
    let Some(jid) = jid else {
        reject("malformed");
        return true;
    };
    let fun = match get(&load, "fun").map(to_json) {
        Some(serde_json::Value::String(s)) => s,
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str())
            .collect::<Vec<_>>()
            .join(","),
        _ => {
            reject("malformed");
            return true;
        }
    };
    if !remember_jid(shared, &jid) {
        reject("duplicate");
        return true;
    }
    let tgt = get(&load, "tgt").map(to_json).unwrap_or_default();
    let tgt_type = get(&load, "tgt_type")
        .and_then(as_text)
        .unwrap_or("glob")
        .to_owned();
    let arg = match get(&load, "arg").map(to_json) {
        Some(serde_json::Value::Array(a)) => a,
        Some(serde_json::Value::Null) | None => Vec::new(),
        Some(other) => vec![other],
    };
    let user = get(&load, "user").and_then(as_text).map(str::to_owned);
    if INTERNAL_FUNS.contains(&fun.as_str()) {
        answer_internal(shared, &jid, &fun, &arg, &tgt, &tgt_type, user);
        return true;
    }
    if let Some(s) = &shared.syndic {
        if syndic::targets_syndic(&s.id, &tgt, &tgt_type) {
            let (ret, retcode, success) = syndic::own_answer(&fun);
            let r = SaltReturn {
                id: s.id.clone(),
                jid: jid.clone(),
                fun: fun.clone(),
                fun_args: arg.clone(),
                ret,
                retcode,
                success,
                user: user.clone(),
                schedule: None,
            };
            tokio::spawn(send_return(shared.clone(), r, None));
        }
    }
    if shared.syndic.is_none() {
        promote_targets(shared, &tgt, &tgt_type);
    }
    let (arg, kwarg) = envelope::split_args(&arg);
    let job = PublishedJob {
        jid,
        tgt,
        tgt_type,
        fun,
        arg,
        kwarg,
        user,
    };
    tracing::debug!(jid = %job.jid, fun = %job.fun, "Job received.");
    // Back-pressure: wait for room rather than dropping.
    jobs_tx.send(job).await.is_ok()
}

/// While ids still wait to authenticate, those this job targets go first: their
/// returns wait for their sessions, and a user's job should not wait behind a whole
/// fleet's start-up.
fn promote_targets(shared: &Shared, tgt: &serde_json::Value, tgt_type: &str) {
    if shared.pacer.waiting() == 0 {
        return;
    }
    let Some(targets) = resolve(&shared.registry, tgt, tgt_type) else {
        return;
    };
    let pending: Vec<String> = {
        let ids = lock(&shared.ids);
        targets
            .into_iter()
            .filter(|id| ids.get(id).is_some_and(|e| e.state != IdState::Accepted))
            .collect()
    };
    let moved = shared.pacer.promote(pending.iter().map(String::as_str));
    if moved > 0 {
        metrics::counter!(telemetry::MASTER_AUTH_PROMOTED).increment(moved as u64);
        tracing::debug!(ids = moved, "Ids a job targets authenticate first.");
    }
}

/// Answers `saltutil.find_job` / `running` / `is_running` for each authenticated id
/// the publication targets, resolved as the dispatcher resolves a job's target.
fn answer_internal(
    shared: &Arc<Shared>,
    jid: &str,
    fun: &str,
    arg: &[serde_json::Value],
    tgt: &serde_json::Value,
    tgt_type: &str,
    user: Option<String>,
) {
    let targets = match resolve(&shared.registry, tgt, tgt_type) {
        Some(ids) => ids,
        None => {
            tracing::debug!(jid, fun, "Internal publication with an unusable target.");
            return;
        }
    };
    let mut targets: Vec<String> = if shared.syndic.is_some() {
        targets
    } else {
        let ids = lock(&shared.ids);
        targets
            .into_iter()
            .filter(|id| ids.get(id).is_some_and(|e| e.state == IdState::Accepted))
            .collect()
    };
    // The syndic id runs no jobs of its own: it answers as an idle minion.
    if let Some(s) = &shared.syndic {
        if syndic::targets_syndic(&s.id, tgt, tgt_type) {
            targets.push(s.id.clone());
        }
    }
    for id in targets {
        let ret = internal_answer(fun, arg, &shared.running.for_device(&id));
        let r = SaltReturn {
            id,
            jid: jid.to_owned(),
            fun: fun.to_owned(),
            fun_args: arg.to_vec(),
            ret,
            retcode: 0,
            success: true,
            user: user.clone(),
            schedule: None,
        };
        tokio::spawn(send_return(shared.clone(), r, None));
    }
}

/// The devices a publication's target means: `None` when it cannot be read.
fn resolve(registry: &Registry, tgt: &serde_json::Value, tgt_type: &str) -> Option<Vec<String>> {
    let tgt_type: TargetType = tgt_type.parse().ok()?;
    let tgt = match tgt {
        serde_json::Value::String(s) => Tgt::Expr(s.clone()),
        serde_json::Value::Array(ids) => Tgt::List(
            ids.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
        ),
        _ => return None,
    };
    crate::fleet::dispatcher::resolve(registry, &tgt, tgt_type).ok()
}

/// One id's answer to an internal function, from the jobs it still owes a return.
fn internal_answer(
    fun: &str,
    arg: &[serde_json::Value],
    running: &[Arc<RunningJob>],
) -> serde_json::Value {
    let mut jobs = running.iter().map(|j| proc_info(j));
    match fun {
        "saltutil.find_job" => {
            let wanted = arg.first().and_then(|v| v.as_str()).unwrap_or_default();
            jobs.find(|j| j.get("jid").and_then(|v| v.as_str()) == Some(wanted))
                .map_or_else(|| serde_json::json!({}), serde_json::Value::Object)
        }
        "saltutil.is_running" => {
            let pattern = arg.first().and_then(|v| v.as_str()).unwrap_or("*");
            serde_json::Value::Array(
                jobs.filter(|j| {
                    j.get("fun")
                        .and_then(|v| v.as_str())
                        .is_some_and(|f| fun_matches(pattern, f))
                })
                .map(serde_json::Value::Object)
                .collect(),
            )
        }
        _ => serde_json::Value::Array(jobs.map(serde_json::Value::Object).collect()),
    }
}

/// `saltutil.is_running`'s pattern, a shell glob as Salt's `fnmatch`.
fn fun_matches(pattern: &str, fun: &str) -> bool {
    crate::fleet::target::glob_matches(pattern, fun)
}

/// What a minion's proc file holds for a running job: the publication's fields and
/// the pid running it.
fn proc_info(j: &RunningJob) -> serde_json::Map<String, serde_json::Value> {
    let mut info = serde_json::Map::new();
    info.insert(
        "fun".to_owned(),
        serde_json::Value::String(j.job.fun.clone()),
    );
    info.insert(
        "arg".to_owned(),
        serde_json::Value::Array(envelope::join_args(&j.job.args.arg, &j.job.args.kwarg)),
    );
    info.insert(
        "tgt".to_owned(),
        serde_json::to_value(&j.tgt).unwrap_or_default(),
    );
    info.insert(
        "tgt_type".to_owned(),
        serde_json::to_value(j.tgt_type).unwrap_or_default(),
    );
    info.insert(
        "jid".to_owned(),
        serde_json::Value::String(j.job.jid.0.clone()),
    );
    info.insert(
        "pid".to_owned(),
        serde_json::Value::from(std::process::id()),
    );
    info
}

async fn return_loop(shared: Arc<Shared>, mut rx: mpsc::Receiver<SaltReturn>) {
    let sem = Arc::new(Semaphore::new(RETURN_CONCURRENCY));
    let mut stop = shared.stop.clone();
    while let Some((permit, r)) = admit(&sem, &mut rx, &mut stop).await {
        tokio::spawn(send_return(shared.clone(), r, Some(permit)));
    }
}

/// Admission before work: a permit of `sem`, then the next return. `None` once the
/// link stops or the channel closes.
async fn admit(
    sem: &Arc<Semaphore>,
    rx: &mut mpsc::Receiver<SaltReturn>,
    stop: &mut watch::Receiver<bool>,
) -> Option<(tokio::sync::OwnedSemaphorePermit, SaltReturn)> {
    let permit = tokio::select! {
        p = sem.clone().acquire_owned() => p.ok()?,
        _ = stop.changed() => return None,
    };
    let r = tokio::select! {
        r = rx.recv() => r?,
        _ = stop.changed() => return None,
    };
    Some((permit, r))
}

/// Sends one `_return`, re-authenticating and retrying (bounded) on failure.
async fn send_return(
    shared: Arc<Shared>,
    r: SaltReturn,
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
) {
    if let Some(s) = &shared.syndic {
        let (id, jid) = (r.id.clone(), r.jid.clone());
        if s.returns.send(r).await.is_err() {
            events::ReturnDropped { id: &id, jid: &jid }.emit();
        }
        return;
    }
    let fields = || {
        let mut fields = vec![
            ("jid", Value::from(r.jid.as_str())),
            ("fun", Value::from(r.fun.as_str())),
            (
                "fun_args",
                from_json(&serde_json::Value::Array(r.fun_args.clone())),
            ),
            ("return", from_json(&r.ret)),
            ("retcode", Value::from(r.retcode)),
            ("success", Value::Boolean(r.success)),
        ];
        if let Some(u) = &r.user {
            fields.push(("user", Value::from(u.as_str())));
        }
        if let Some(s) = &r.schedule {
            fields.push(("schedule", Value::from(s.as_str())));
            fields.push(("pid", Value::from(std::process::id())));
        }
        // The CLI picks its outputter from `out` (`highstate` for state runs).
        if let Some(out) = crate::functions::outputter(&r.fun) {
            fields.push(("out", Value::from(out)));
        }
        fields
    };
    let sent = send_until_taken(&shared, &r.id, "_return", "return", &r.jid, fields).await;
    if !sent {
        events::ReturnDropped {
            id: &r.id,
            jid: &r.jid,
        }
        .emit();
    }
}

/// Sends one request for `id` until the master takes it: each attempt waits
/// (bounded) for a session, and a failure re-authenticates `id` and backs off, up to
/// `return_retries` more times. False when the master never took it. `about` names
/// what is sent, for the log.
async fn send_until_taken<'a>(
    shared: &Arc<Shared>,
    id: &str,
    cmd: &'static str,
    kind: &'static str,
    about: &str,
    fields: impl Fn() -> Vec<(&'a str, Value)>,
) -> bool {
    let attempts = shared.cfg.return_retries.saturating_add(1);
    let mut seen_gen = None;
    for attempt in 0..attempts {
        if *shared.stop.borrow() {
            break;
        }
        if !wait_session(shared, id, seen_gen, shared.cfg.request_timeout).await {
            if !lock(&shared.ids).contains_key(id) {
                tracing::warn!(id = %id, about = %about, "Request for an unknown id dropped.");
                break;
            }
            continue;
        }
        match aes_request(shared, id, cmd, fields(), kind).await {
            Ok(_) => return true,
            Err(e) => {
                tracing::warn!(id = %id, request = cmd, about = %about, attempt, error = %e, "Request failed; re-authenticating.");
                let gen = lock(&shared.ids).get(id).map_or(0, |e| e.session_gen);
                trigger_reauth(shared, id, gen);
                seen_gen = Some(gen);
                tokio::time::sleep(backoff(
                    attempt,
                    Duration::from_millis(500),
                    Duration::from_secs(10),
                ))
                .await;
            }
        }
    }
    false
}

/// Syndic mode: gathers the fleet's returns into `_syndic_return` loads, at most
/// [`SYNDIC_IN_FLIGHT`] at once.
async fn syndic_return_loop(shared: Arc<Shared>, mut rx: mpsc::Receiver<SaltReturn>) {
    let sem = Arc::new(Semaphore::new(SYNDIC_IN_FLIGHT));
    let mut stop = shared.stop.clone();
    while let Some((permit, first)) = admit(&sem, &mut rx, &mut stop).await {
        let mut batch = vec![first];
        let deadline = Instant::now() + SYNDIC_LINGER;
        while batch.len() < syndic::MAX_BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(r)) => batch.push(r),
                Ok(None) | Err(_) => break,
            }
        }
        tokio::spawn(send_syndic_batch(shared.clone(), batch, permit));
    }
}

/// Sends one `_syndic_return`, re-authenticating the syndic id and retrying
/// (bounded) on failure. A load the master took but whose answer was lost comes
/// again: the CLI keeps one return per device.
async fn send_syndic_batch(
    shared: Arc<Shared>,
    batch: Vec<SaltReturn>,
    _permit: tokio::sync::OwnedSemaphorePermit,
) {
    let Some(sid) = shared.syndic.as_ref().map(|s| s.id.clone()) else {
        return;
    };
    let keys: Vec<(String, String)> = batch
        .iter()
        .map(|r| (r.id.clone(), r.jid.clone()))
        .collect();
    let load = syndic::return_items(&sid, batch);
    let about = format!("{} returns", keys.len());
    let fields = || vec![("load", load.clone())];
    if send_until_taken(
        &shared,
        &sid,
        "_syndic_return",
        "syndic_return",
        &about,
        fields,
    )
    .await
    {
        metrics::counter!(telemetry::MASTER_SYNDIC_RETURNS).increment(keys.len() as u64);
        return;
    }
    for (id, jid) in &keys {
        events::ReturnDropped { id, jid }.emit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_follows_the_streak_of_one_outcome() {
        let mut s = Streak::default();
        for i in 0..20 {
            assert_eq!(s.next("pending"), i);
        }
        assert_eq!(s.count, 19);
        // The first error after a long pending wait starts from the bottom.
        assert_eq!(s.next("error"), 0);
        let first = backoff(0, Duration::from_secs(1), Duration::from_secs(60));
        assert!(first <= Duration::from_millis(1200), "{first:?}");
        assert_eq!(s.next("error"), 1);
        assert_eq!(s.next("error"), 2);
        assert_eq!(s.next("pending"), 0);
    }

    #[test]
    fn is_running_patterns_are_shell_globs() {
        assert!(fun_matches("*", "dev-1"));
        assert!(fun_matches("dev-?", "dev-1"));
        assert!(fun_matches("dev-[0-9]*", "dev-12"));
        assert!(!fun_matches("dev-[!0-9]", "dev-1"));
        assert!(fun_matches("*-1", "a-b-1"));
        assert!(!fun_matches("dev", "dev-1"));
        assert!(fun_matches("test.*", "test.sleep"));
    }

    fn registry() -> Arc<Registry> {
        let inv = crate::inventory::Inventory::parse(
            "[[device]]\nid = \"d1\"\nproxytype = \"dummy\"\n\
             grains = { os = \"Fake\", roles = [\"a\", \"b\"], net = { site = \"x1\" } }\n\
             [[device]]\nid = \"d2\"\nproxytype = \"dummy\"\n\
             [[device]]\nid = \"d3\"\nproxytype = \"dummy\"\n",
            std::path::Path::new("<link>"),
        )
        .expect("inventory");
        let reg = Registry::new();
        for spec in inv.devices {
            reg.upsert(spec, 1, None);
        }
        reg
    }

    /// Internal publications are resolved by the fleet's own targeting, against the
    /// registry's grains: the ids answering `find_job` are the ids a job runs on.
    #[test]
    fn internal_targets_resolve_against_the_registry() {
        use serde_json::json;
        let reg = registry();
        let has = |tgt: serde_json::Value, kind: &str, id: &str| {
            resolve(&reg, &tgt, kind).map(|ids| ids.iter().any(|i| i == id))
        };
        assert_eq!(has(json!("d*"), "glob", "d1"), Some(true));
        assert_eq!(has(json!(["d1", "d2"]), "list", "d2"), Some(true));
        assert_eq!(has(json!("d1,d2"), "list", "d3"), Some(false));
        assert_eq!(has(json!("os:Fake"), "grain", "d1"), Some(true));
        assert_eq!(has(json!("os:Fake"), "grain", "d2"), Some(false));
        assert_eq!(has(json!("roles:b"), "grain", "d1"), Some(true));
        assert_eq!(has(json!("net:site:x*"), "grain", "d1"), Some(true));
        assert_eq!(has(json!("os:Other"), "grain", "d1"), Some(false));
        assert_eq!(has(json!("G@os:Fake and d*"), "compound", "d1"), Some(true));
        assert_eq!(
            has(json!("G@os:Fake and not d1"), "compound", "d1"),
            Some(false)
        );
        // Devices without an address never match a CIDR (the dispatcher's rule).
        assert_eq!(has(json!("10.0.0.0/8"), "ipcidr", "d1"), Some(false));
        assert_eq!(has(json!("x"), "nodegroup", "d1"), None);
        assert_eq!(has(json!(3), "glob", "d1"), None);
    }

    /// `find_job`, `running` and `is_running` read the jobs the fleet still runs
    /// for the id, in the shape of a minion's proc data.
    #[test]
    fn internal_answers_come_from_the_running_jobs() {
        use crate::fleet::running::RunningJobs;
        use crate::job::{Args, Jid, Job};
        use serde_json::json;
        let running = RunningJobs::new();
        let job = Arc::new(Job {
            jid: Jid("20260101000000000001".into()),
            fun: "test.sleep".into(),
            args: Args {
                arg: vec![json!(8)],
                kwarg: [("extra".to_owned(), json!(1))].into_iter().collect(),
            },
        });
        let targets: Arc<[String]> = vec!["d1".to_owned(), "d2".to_owned()].into();
        let guard = running.start(job, Tgt::Expr("d*".into()), TargetType::Glob, targets);
        let jobs = running.for_device("d1");
        let found = internal_answer("saltutil.find_job", &[json!("20260101000000000001")], &jobs);
        assert_eq!(found["jid"], json!("20260101000000000001"));
        assert_eq!(found["fun"], json!("test.sleep"));
        assert_eq!(found["tgt"], json!("d*"));
        assert_eq!(found["tgt_type"], json!("glob"));
        assert_eq!(found["arg"], json!([8, {"__kwarg__": true, "extra": 1}]));
        assert_eq!(found["pid"], json!(std::process::id()));
        let other = internal_answer("saltutil.find_job", &[json!("1")], &jobs);
        assert_eq!(other, json!({}));
        let listed = internal_answer("saltutil.running", &[], &jobs);
        assert_eq!(listed.as_array().map(Vec::len), Some(1));
        let sleeping = internal_answer("saltutil.is_running", &[json!("test.*")], &jobs);
        assert_eq!(sleeping.as_array().map(Vec::len), Some(1));
        let none = internal_answer("saltutil.is_running", &[json!("pkg.*")], &jobs);
        assert_eq!(none, json!([]));
        // Once d1 has its return, it runs nothing; d2 still does.
        guard.answered("d1");
        let found = internal_answer(
            "saltutil.find_job",
            &[json!("20260101000000000001")],
            &running.for_device("d1"),
        );
        assert_eq!(found, json!({}));
        assert_eq!(running.for_device("d2").len(), 1);
    }

    /// A link's shared state with no master behind it (its requests go nowhere).
    fn idle_shared() -> (Arc<Shared>, watch::Sender<bool>) {
        let cfg = MasterConfig {
            host: Some("127.0.0.1".into()),
            ..MasterConfig::default()
        };
        let master_pub = Arc::new(RwLock::new(None));
        let (chan, _ends, _readers) = ReqChannel::new(1, cfg.request_timeout, master_pub.clone());
        let (stop_tx, stop) = watch::channel(false);
        let shared = Arc::new(Shared {
            pacer: crate::master::salt::pacing::Pacer::new(
                1,
                AUTH_TIMEOUT,
                Duration::from_secs(60),
            ),
            cfg,
            master_label: "test".into(),
            registry: registry(),
            running: crate::fleet::running::RunningJobs::new(),
            pillar_devices: None,
            chan,
            shared_key: tokio::sync::OnceCell::new(),
            master_pub,
            aes: RwLock::new(None),
            last_serial: Mutex::new(None),
            signed_seen: AtomicBool::new(false),
            ids: Mutex::new(HashMap::new()),
            incarnations: Mutex::new(0),
            recent: Mutex::new((VecDeque::new(), HashSet::new())),
            local_ip: None,
            last_pub_reauth: Mutex::new(None),
            syndic: None,
            stop,
        });
        (shared, stop_tx)
    }

    /// A return waits for its id's session only up to its bound, and goes as soon as
    /// a new session appears. Paused clock: no real waiting.
    #[tokio::test(start_paused = true)]
    async fn a_return_waits_for_a_session_within_its_bound() {
        let (shared, _stop) = idle_shared();
        lock(&shared.ids).insert(
            "d1".into(),
            IdEntry {
                key: None,
                session: None,
                session_gen: 0,
                state: IdState::Pending,
                authing: true,
                incarnation: 1,
            },
        );
        let t0 = Instant::now();
        assert!(!wait_session(&shared, "d1", None, Duration::from_secs(60)).await);
        let waited = t0.elapsed();
        assert!(
            waited >= Duration::from_secs(60) && waited < Duration::from_millis(60_300),
            "{waited:?}"
        );

        let later = shared.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let key = crypto::generate_key_string();
            let session = Crypticle::from_key_string(key.as_bytes()).expect("key");
            if let Some(e) = lock(&later.ids).get_mut("d1") {
                e.session = Some(session);
                e.session_gen = 1;
                e.state = IdState::Accepted;
            }
        });
        let t0 = Instant::now();
        assert!(wait_session(&shared, "d1", Some(0), Duration::from_secs(60)).await);
        let waited = t0.elapsed();
        assert!(
            waited >= Duration::from_secs(5) && waited < Duration::from_millis(5_300),
            "{waited:?}"
        );
        // A session no newer than the one that failed does not count.
        let t0 = Instant::now();
        assert!(!wait_session(&shared, "d1", Some(1), Duration::from_secs(2)).await);
        assert!(t0.elapsed() >= Duration::from_secs(2));
    }
}
