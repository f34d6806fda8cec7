//! The HTTP server: the local job API (`POST /v1/jobs` streaming NDJSON returns,
//! `GET /v1/jobs/<jid>`, `GET /v1/devices`) behind an optional bearer token, and the
//! admin plane (`/metrics`, `/healthz`, `/ready`). It runs on actix-web's own worker
//! threads, so a busy fleet never delays a scrape.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::Bytes;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::fleet::registry::DeviceState;
use crate::fleet::FleetError;
use crate::job::JobRequest;
use crate::master::local::{LocalMaster, ReloadError};
use crate::telemetry;

/// Largest job request body accepted.
const MAX_JOB_BODY: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("token file: {0}")]
    Token(#[from] crate::secrets::SecretFileError),
    #[error("token file {0} is empty")]
    EmptyToken(std::path::PathBuf),
    /// The API would be reachable from other hosts with no authentication.
    #[error(
        "refusing to serve the API on {0}, which is not a loopback address, without a \
         bearer token: set http.token_file"
    )]
    NoTokenOffLoopback(SocketAddr),
}

struct State {
    master: LocalMaster,
    poll: Option<crate::poll::PollHandle>,
    metrics: PrometheusHandle,
    token: Option<Vec<u8>>,
}

/// A running HTTP server.
pub struct Server {
    pub addr: SocketAddr,
    pub handle: ServerHandle,
    /// The server's own future, spawned: actix-web serves only while it is polled.
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Binds and starts the HTTP server (call inside an actix `System`).
pub fn serve(
    listen: SocketAddr,
    workers: usize,
    token: Option<String>,
    master: LocalMaster,
    poll: Option<crate::poll::PollHandle>,
) -> Result<Server, HttpError> {
    // Config validation says the same; this guards every other caller (`demo
    // --listen`, embedders) too.
    if !listen.ip().is_loopback() && token.as_deref().is_none_or(|t| t.trim().is_empty()) {
        return Err(HttpError::NoTokenOffLoopback(listen));
    }
    let listener = TcpListener::bind(listen).map_err(|source| HttpError::Bind {
        addr: listen,
        source,
    })?;
    let addr = listener.local_addr().map_err(|source| HttpError::Bind {
        addr: listen,
        source,
    })?;
    let state = web::Data::new(State {
        master,
        poll,
        metrics: telemetry::metrics_handle(),
        token: token.map(|t| t.trim().as_bytes().to_vec()),
    });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(
                web::JsonConfig::default()
                    .limit(MAX_JOB_BODY)
                    .error_handler(|e, _| {
                        let msg = e.to_string();
                        actix_web::error::InternalError::from_response(
                            e,
                            error_response(StatusCode::BAD_REQUEST, &msg),
                        )
                        .into()
                    }),
            )
            .route("/metrics", web::get().to(metrics))
            .route("/healthz", web::get().to(healthz))
            .route("/snmp", web::get().to(snmp_exporter))
            .route("/sd", web::get().to(service_discovery))
            .route("/ready", web::get().to(ready))
            .route("/v1/jobs", web::post().to(submit_job))
            .route("/v1/jobs/{jid}", web::get().to(get_job))
            .route("/v1/devices", web::get().to(devices))
            .route("/v1/reload", web::post().to(reload))
            .default_service(web::to(|| async {
                error_response(StatusCode::NOT_FOUND, "no such route")
            }))
    })
    .workers(workers.max(1))
    // Returns stream as small NDJSON writes; with Nagle on, each waits for the client's
    // delayed ACK (40 ms on Linux) and a fan-out's first returns arrive in a clump.
    .tcp_nodelay(true)
    .disable_signals()
    .listen(listener)
    .map_err(|source| HttpError::Bind {
        addr: listen,
        source,
    })?
    .run();
    Ok(Server {
        addr,
        handle: server.handle(),
        task: actix_rt::spawn(server),
    })
}

#[derive(serde::Deserialize)]
struct SnmpQuery {
    #[serde(default)]
    target: String,
    #[serde(default)]
    module: String,
    /// Serve a failed module's last values instead of an error.
    #[serde(default)]
    stale: Option<String>,
}

/// snmp_exporter's multi-target endpoint, answered from the poll cache.
async fn snmp_exporter(state: web::Data<State>, q: web::Query<SnmpQuery>) -> HttpResponse {
    let Some(p) = &state.poll else {
        return error_response(StatusCode::NOT_FOUND, "polling is not enabled");
    };
    let allow_stale = q.stale.as_deref().is_some_and(|s| s == "ok" || s == "1");
    match crate::poll::scrape::scrape(
        &p.cache,
        &p.modules,
        &p.fleet.registry,
        &q.target,
        &q.module,
        allow_stale,
    ) {
        Ok(body) => HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4; charset=utf-8")
            .body(body),
        Err(e) => HttpResponse::build(
            StatusCode::from_u16(e.status()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
        )
        .content_type("text/plain; charset=utf-8")
        .body(format!("{e}\n")),
    }
}

/// Prometheus http_sd: one target group per polled device.
async fn service_discovery(state: web::Data<State>) -> HttpResponse {
    let Some(p) = &state.poll else {
        return error_response(StatusCode::NOT_FOUND, "polling is not enabled");
    };
    HttpResponse::Ok().json(crate::poll::sd::targets(&p.fleet.registry, &p.modules))
}

/// Reads a bearer token file (for `http.token_file`).
/// The file must not be readable by others (`chmod 600`) and must not be empty: an
/// empty token would let `Authorization: Bearer ` through.
pub fn read_token(path: &std::path::Path) -> Result<String, HttpError> {
    let bytes = crate::secrets::read(path)?;
    let token = String::from_utf8_lossy(&bytes).trim().to_owned();
    if token.is_empty() {
        return Err(HttpError::EmptyToken(path.to_owned()));
    }
    Ok(token)
}

fn error_response(status: StatusCode, msg: &str) -> HttpResponse {
    let class = match status.as_u16() {
        400..=499 => "4xx",
        _ => "5xx",
    };
    metrics::counter!(telemetry::HTTP_REQUESTS, "status" => class).increment(1);
    HttpResponse::build(status).json(json!({ "error": msg }))
}

/// Constant-time token check: a timing side channel must not reveal the token.
fn authorized(req: &HttpRequest, state: &State) -> bool {
    let Some(expected) = &state.token else {
        return true;
    };
    let Some(given) = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    given.trim().as_bytes().ct_eq(expected).into()
}

async fn metrics(state: web::Data<State>) -> HttpResponse {
    telemetry::update_process_metrics();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

async fn ready(state: web::Data<State>) -> HttpResponse {
    let reg = &state.master.fleet().registry;
    let starting = reg.count_in(DeviceState::Starting);
    let body = json!({
        "devices": reg.len(),
        "starting": starting,
        "up": reg.count_in(DeviceState::Up),
    });
    if starting == 0 {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

async fn devices(req: HttpRequest, state: web::Data<State>) -> HttpResponse {
    if !authorized(&req, &state) {
        return error_response(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
    }
    HttpResponse::Ok().json(state.master.fleet().registry.views())
}

async fn reload(req: HttpRequest, state: web::Data<State>) -> HttpResponse {
    if !authorized(&req, &state) {
        return error_response(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
    }
    match state.master.reload().await {
        Ok(diff) => HttpResponse::Ok().json(diff),
        Err(e @ ReloadError::Inventory(_)) => {
            error_response(StatusCode::UNPROCESSABLE_ENTITY, &e.to_string())
        }
        Err(e @ ReloadError::NoSource) => error_response(StatusCode::CONFLICT, &e.to_string()),
        Err(e) => error_response(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

async fn get_job(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<State>,
) -> HttpResponse {
    if !authorized(&req, &state) {
        return error_response(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
    }
    match state.master.job(&path) {
        Some(rec) => HttpResponse::Ok().json(&*rec),
        None => error_response(
            StatusCode::NOT_FOUND,
            "no such job (or it left the history)",
        ),
    }
}

/// Answers with NDJSON: a header line (`jid`, `minions`), one line per return as it
/// arrives, and a closing `done` line.
async fn submit_job(
    req: HttpRequest,
    body: web::Json<JobRequest>,
    state: web::Data<State>,
) -> HttpResponse {
    if !authorized(&req, &state) {
        return error_response(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
    }
    let (record, rx) = match state.master.submit(body.into_inner()).await {
        Ok(v) => v,
        Err(FleetError::Dispatch(e)) => {
            let status = match e.kind() {
                "shutting_down" => StatusCode::SERVICE_UNAVAILABLE,
                "function_not_allowed" => StatusCode::FORBIDDEN,
                "too_many_jobs" => StatusCode::TOO_MANY_REQUESTS,
                _ => StatusCode::BAD_REQUEST,
            };
            return error_response(status, &e.to_string());
        }
        Err(e) => return error_response(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    metrics::counter!(telemetry::HTTP_REQUESTS, "status" => "2xx").increment(1);
    let header = line(&json!({"jid": record.jid, "fun": record.fun, "minions": record.minions}));
    let expected = record.minions.len();
    let record = Arc::clone(&record);
    let stream = futures::stream::unfold(
        (Some(header), rx, 0usize, false),
        move |(header, mut rx, seen, finished)| {
            let record = record.clone();
            async move {
                if let Some(h) = header {
                    return Some((Ok::<_, actix_web::Error>(h), (None, rx, seen, finished)));
                }
                if finished {
                    return None;
                }
                match rx.recv().await {
                    Some(r) => {
                        // Returns already waiting go out in the same write: a burst
                        // costs one send, not one per device, and a lone return is
                        // still sent at once (TCP_NODELAY).
                        let mut buf = Vec::with_capacity(512);
                        push_line(&mut buf, &*r);
                        let mut n = 1;
                        while n < MAX_LINES_PER_WRITE {
                            let Ok(r) = rx.try_recv() else { break };
                            push_line(&mut buf, &*r);
                            n += 1;
                        }
                        Some((Ok(Bytes::from(buf)), (None, rx, seen + n, false)))
                    }
                    None => {
                        let done = line(
                            &json!({"done": true, "jid": record.jid, "returned": seen, "expected": expected}),
                        );
                        Some((Ok(done), (None, rx, seen, true)))
                    }
                }
            }
        },
    );
    HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .streaming(stream)
}

fn line<T: serde::Serialize>(v: &T) -> Bytes {
    let mut b = serde_json::to_vec(v).unwrap_or_else(|_| b"{}".to_vec());
    b.push(b'\n');
    Bytes::from(b)
}

/// Returns streamed in one write at most.
const MAX_LINES_PER_WRITE: usize = 256;

fn push_line<T: serde::Serialize>(buf: &mut Vec<u8>, v: &T) {
    let start = buf.len();
    if serde_json::to_writer(&mut *buf, v).is_err() {
        buf.truncate(start);
        buf.extend_from_slice(b"{}");
    }
    buf.push(b'\n');
}
