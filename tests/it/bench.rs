//! `drover bench` in a tiny configuration: it starts its simulators and fleet as
//! separate processes, drives jobs through the HTTP API, writes well-formed JSON with
//! every figure, and leaves no process behind. It checks that figures exist and are
//! plausible, never how fast they are.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

fn num(v: &Value, path: &str) -> f64 {
    let mut cur = v;
    for k in path.split('.') {
        cur = &cur[k];
    }
    cur.as_f64()
        .unwrap_or_else(|| panic!("{path} is not a number: {cur}"))
}

#[test]
fn bench_runs_tiny_and_writes_every_figure() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_drover"))
        .args([
            "bench",
            "--devices",
            "50",
            "--kind",
            "mix",
            "--rounds",
            "2",
            "--duration",
            "1s",
            "--baseline",
            "10",
            "--up-timeout",
            "60s",
            "--states",
            "--json",
        ])
        .arg(&json)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Bounded: a stuck bench is killed and fails the test.
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("drover bench did not finish in 180 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // Its children's command lines name its work directory, which carries its pid.
    let marker = format!("drover-bench-{}-", child.id());
    let left: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(&marker))
        .collect();
    assert!(left.is_empty(), "processes left behind: {left:?}");
    let mut table = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut table).unwrap();
    assert!(status.success(), "bench failed: {status}\n{table}");
    assert!(table.contains("KiB/device"), "{table}");

    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(num(&report, "machine.cpus") >= 1.0);
    let runs = report["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{report}");
    let r = &runs[0];
    assert_eq!(r["kind"], "mix");
    assert_eq!(num(r, "devices"), 50.0);
    assert_eq!(num(r, "up"), 50.0, "{r}");
    assert!(num(r, "time_to_up_s") > 0.0);
    assert!(num(r, "rss_idle_bytes") > 1e6, "{r}");
    assert!(num(r, "rss_peak_bytes") >= num(r, "rss_idle_bytes"));
    assert!(num(r, "baseline_rss_idle_bytes") > 1e6);
    // Present and finite; its sign depends on the allocator, not on us.
    assert!(num(r, "rss_per_device_bytes").is_finite());
    let rounds = r["ping"]["rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), 2);
    for round in rounds {
        assert_eq!(num(round, "targeted"), 50.0);
        assert_eq!(num(round, "returned"), 50.0);
        assert_eq!(num(round, "ok"), 50.0, "{round}");
        assert!(num(round, "p50_ms") <= num(round, "p99_ms"));
        assert!(num(round, "p99_ms") <= num(round, "wall_s") * 1000.0 + 1e-6);
    }
    assert!(num(r, "ping.wall_s_max") > 0.0);
    assert!(num(r, "ping.p99_ms") >= num(r, "ping.p50_ms"));
    assert_eq!(r["throughput"]["fun"], "snmp.get");
    assert_eq!(num(r, "throughput.targets"), 25.0);
    assert!(num(r, "throughput.ops") >= 25.0, "{r}");
    assert_eq!(num(r, "throughput.errors"), 0.0, "{r}");
    assert!(num(r, "throughput.seconds") >= 1.0);
    assert!(num(r, "throughput.ops_per_sec") > 0.0);
    assert!(num(r, "cpu.start_s") >= 0.0);
    assert!(num(r, "cpu.ping_per_1000_ops_s") >= 0.0);
    assert!(num(r, "cpu.throughput_per_1000_ops_s") >= 0.0);
    for k in ["load_start", "load_end"] {
        assert_eq!(r[k].as_array().map(Vec::len), Some(3), "{k}");
    }
    // --states: three state.apply rounds on the 25 REST devices, all successful.
    let states = r["states"].as_array().unwrap();
    assert_eq!(states.len(), 3, "{r}");
    for st in states {
        assert_eq!(num(st, "job.targeted"), 25.0, "{st}");
        assert_eq!(num(st, "job.ok"), 25.0, "{st}");
        assert!(num(st, "cpu_ms_per_device") >= 0.0);
    }
    assert!(table.contains("state.apply of a ten-state SLS"), "{table}");
}
