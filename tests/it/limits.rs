//! The control plane's policy and caps: the function allow-list (through the
//! dispatcher and the HTTP API), `fleet.max_jobs`, `fleet.max_queued_per_device`
//! and the size cap on device replies. Each refusal is a clear error and a counted
//! metric.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use drover::config::Config;
use drover::fleet::dispatcher::DispatchError;
use drover::fleet::FleetError;
use drover::inventory::Inventory;
use drover::job::Outcome;
use drover::run::Daemon;

use crate::support::*;

fn dummies(spec: &[(&str, &str)]) -> Inventory {
    let text: String = spec
        .iter()
        .map(|(id, b)| {
            format!("[[device]]\nid = \"{id}\"\nproxytype = \"dummy\"\nbehaviour = \"{b}\"\n")
        })
        .collect();
    Inventory::parse(&text, Path::new("<dummy>")).unwrap()
}

/// The current value of a counter series in the process's /metrics text.
fn counter(series: &str) -> f64 {
    drover::telemetry::metrics_handle()
        .render()
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

const DENIED: &str = "drover_jobs_denied_total{reason=\"function_not_allowed\"}";
const JOBS_HIT: &str = "drover_limit_hits_total{limit=\"max_jobs\"}";
const QUEUE_HIT: &str = "drover_limit_hits_total{limit=\"max_queued_per_device\"}";
const REPLY_HIT: &str = "drover_limit_hits_total{limit=\"device_reply_size\"}";

#[actix_rt::test]
async fn allow_list_refuses_other_functions_at_the_dispatcher() {
    let mut cfg = fast_fleet();
    cfg.allowed_functions = vec!["test.*".into(), "grains.item?".into()];
    let fleet = start_fleet(cfg, dummies(&[("d1", "ok"), ("d2", "ok")])).await;
    let before = counter(DENIED);

    let (minions, rets) = run_job(&fleet, request("*", "test.ping", vec![])).await;
    assert_eq!(minions, ["d1", "d2"]);
    assert!(
        rets.iter().all(|r| r.outcome == Outcome::Success),
        "{rets:?}"
    );

    for fun in ["service.status", "testx.ping", "grains.items2"] {
        match fleet.submit(request("*", fun, vec![])).await {
            Err(FleetError::Dispatch(DispatchError::FunctionNotAllowed { fun: f, minions })) => {
                assert_eq!(f, fun);
                // The targeted devices, so a master can be answered once per device.
                assert_eq!(minions, ["d1", "d2"]);
            }
            Err(e) => panic!("{fun}: wrong error {e}"),
            Ok(_) => panic!("{fun} was allowed"),
        }
    }
    assert!(counter(DENIED) >= before + 3.0);
    fleet.shutdown(Duration::from_secs(1)).await;
}

#[actix_rt::test]
async fn max_jobs_and_the_device_queue_refuse_work_with_a_clear_error() {
    let mut cfg = fast_fleet();
    cfg.max_jobs = 2;
    cfg.max_queued_per_device = 1;
    let fleet = start_fleet(
        cfg,
        dummies(&[("stuck", "hang"), ("stuck2", "hang"), ("calm", "ok")]),
    )
    .await;
    let (jobs_before, queue_before) = (counter(JOBS_HIT), counter(QUEUE_HIT));

    // Job A occupies the hanging device until its deadline.
    let mut a = request("stuck", "test.ping", vec![]);
    a.timeout = Some(Duration::from_secs(4));
    let mut a = fleet.submit(a).await.expect("job A");
    let queued = fleet.registry.get("stuck").unwrap().queued.clone();
    within(5, "job A to reach the device", async {
        while queued.load(std::sync::atomic::Ordering::Acquire) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;

    // Job B finds the device's queue full: a rejected return, not a wait.
    let (_, rets) = run_job(&fleet, request("stuck", "test.ping", vec![])).await;
    assert_eq!(rets.len(), 1);
    assert_eq!(rets[0].outcome, Outcome::Rejected, "{rets:?}");
    assert!(
        rets[0].ret.as_str().unwrap().contains("device busy"),
        "{:?}",
        rets[0].ret
    );
    assert!(counter(QUEUE_HIT) > queue_before);

    // Job C runs alongside A (two jobs allowed); D is one too many.
    let mut c = request("stuck2", "test.ping", vec![]);
    c.timeout = Some(Duration::from_secs(4));
    let mut c = fleet.submit(c).await.expect("job C");
    match fleet.submit(request("calm", "test.ping", vec![])).await {
        Err(FleetError::Dispatch(e @ DispatchError::TooManyJobs { .. })) => {
            assert!(e.to_string().contains("fleet.max_jobs = 2"), "{e}");
            assert_eq!(e.refused_minions(), ["calm"]);
        }
        Err(e) => panic!("wrong error {e}"),
        Ok(_) => panic!("a third job was admitted with max_jobs = 2"),
    }
    assert!(counter(JOBS_HIT) > jobs_before);

    // A and C still end with exactly one return each.
    for h in [&mut a, &mut c] {
        let r = within(10, "job to end", h.returns.recv()).await.unwrap();
        assert_ne!(r.outcome, Outcome::Success);
        assert!(within(10, "stream end", h.returns.recv()).await.is_none());
    }
    fleet.shutdown(Duration::from_secs(1)).await;
}

#[actix_rt::test]
async fn http_api_answers_403_for_a_denied_function_and_429_past_max_jobs() {
    let mut cfg = Config {
        fleet: fast_fleet(),
        ..Config::default()
    };
    cfg.http.listen = "127.0.0.1:0".parse().unwrap();
    cfg.fleet.allowed_functions = vec!["test.*".into()];
    cfg.fleet.max_jobs = 1;
    cfg.fleet.shutdown_grace = Duration::from_secs(1);
    let daemon = Daemon::start(&cfg, dummies(&[("stuck", "hang"), ("calm", "ok")]), None)
        .await
        .expect("daemon");
    within(30, "settle", daemon.fleet.settled()).await;
    let base = format!("http://{}", daemon.http_addr);
    let client = reqwest::Client::new();

    let r = client
        .post(format!("{base}/v1/jobs"))
        .json(&json!({"tgt": "*", "fun": "pkg.install", "arg": ["vim"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    let msg = body["error"].as_str().unwrap();
    assert!(
        msg.contains("pkg.install") && msg.contains("allowed_functions"),
        "{msg}"
    );

    // One job running (its stream open, the device hanging) fills max_jobs.
    let mut running = client
        .post(format!("{base}/v1/jobs"))
        .json(&json!({"tgt": "stuck", "fun": "test.ping", "timeout": "3s"}))
        .send()
        .await
        .unwrap();
    assert_eq!(running.status(), 200);
    let header = within(10, "job header", running.chunk()).await.unwrap();
    assert!(header.is_some());
    let r = client
        .post(format!("{base}/v1/jobs"))
        .json(&json!({"tgt": "calm", "fun": "test.ping"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("max_jobs"),
        "{body}"
    );
    // The running job still finishes with its return and the closing line.
    let mut rest = Vec::new();
    within(15, "job end", async {
        while let Some(c) = running.chunk().await.unwrap() {
            rest.extend_from_slice(&c);
        }
    })
    .await;
    assert!(String::from_utf8_lossy(&rest).contains("\"done\":true"));
    daemon.stop().await;
}

/// A device whose reply is over `MAX_DEVICE_BODY` is an error naming the cap, and
/// nothing that size is read.
#[actix_rt::test]
async fn device_reply_over_the_cap_is_an_error_and_counted() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{{",
                    drover::drivers::MAX_DEVICE_BODY + 1
                );
                let _ = s.write_all(head.as_bytes()).await;
            });
        }
    });
    let before = counter(REPLY_HIT);
    let inv = Inventory::parse(
        &format!("[[device]]\nid = \"huge\"\nproxytype = \"rest\"\nurl = \"http://{addr}/\"\n"),
        Path::new("<huge>"),
    )
    .unwrap();
    let fleet = start_fleet(fast_fleet(), inv).await;
    // The device never comes up; its first contact fails on the size cap.
    let err = within(10, "the device's error", async {
        loop {
            if let Some(e) = fleet
                .registry
                .get("huge")
                .and_then(|e| e.last_error.clone())
            {
                break e;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(err.contains("byte limit"), "{err}");
    assert!(fleet
        .registry
        .get("huge")
        .is_some_and(|e| e.state != drover::fleet::registry::DeviceState::Up));
    assert!(counter(REPLY_HIT) > before);
    fleet.shutdown(Duration::from_secs(1)).await;
    server.abort();
}
