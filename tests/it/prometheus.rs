//! A real Prometheus server scrapes a running Drover, and `drover_device_up` is
//! queried back through Prometheus' HTTP API.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use drover::config::Config;
use drover::run::Daemon;

use crate::support::*;

pub(crate) struct Killed(pub(crate) Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

#[actix_rt::test]
async fn prometheus_scrapes_device_up() {
    let Ok(bin) = which("prometheus") else {
        eprintln!(
            "SKIPPED: no `prometheus` binary (Debian package prometheus); .ci/run installs it"
        );
        return;
    };
    // Its own id prefix: other tests in this process share the metrics recorder.
    let sim = SimThread::rest(drover::devsim::RestSimConfig {
        count: 5,
        id_prefix: "prom-".into(),
        base_port: 31440,
        ..Default::default()
    });
    sim.sim
        .set_fault_and_wait("prom-0005", drover::devsim::Fault::Down)
        .await;
    let mut cfg = Config {
        fleet: fast_fleet(),
        ..Config::default()
    };
    cfg.http.listen = "127.0.0.1:0".parse().unwrap();
    let daemon = Daemon::start(&cfg, sim.inventory(), None).await.unwrap();
    within(30, "settle", daemon.fleet.settled()).await;

    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("prometheus.yml");
    std::fs::write(
        &conf,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: drover\n    static_configs:\n      - targets: ['{}']\n",
            daemon.http_addr
        ),
    )
    .unwrap();
    let port = free_port();
    let _prom = Killed(
        Command::new(bin)
            .arg(format!("--config.file={}", conf.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus"),
    );
    let client = reqwest::Client::new();
    let url = url::Url::parse_with_params(
        &format!("http://127.0.0.1:{port}/api/v1/query"),
        &[("query", "drover_device_up{device=~\"prom-.*\"}")],
    )
    .unwrap();
    // Prometheus reports no event we could await: poll its API, bounded.
    let series = within(60, "Prometheus to scrape drover_device_up", async {
        loop {
            if let Ok(r) = client.get(url.clone()).send().await {
                if let Ok(v) = r.json::<Value>().await {
                    let result = v["data"]["result"].as_array().cloned().unwrap_or_default();
                    if result.len() == 5 {
                        return result;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
    .await;
    for s in &series {
        let device = s["metric"]["device"].as_str().unwrap();
        let value = s["value"][1].as_str().unwrap();
        let want = if device == "prom-0005" { "0" } else { "1" };
        assert_eq!(value, want, "{device}");
        assert_eq!(s["metric"]["job"], "drover");
        assert_eq!(s["metric"]["driver"], "rest_sample");
    }
    daemon.stop().await;
}

pub(crate) fn which(name: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .find(|f| f.is_file())
        })
        .ok_or(())
}
