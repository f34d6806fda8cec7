//! Metric names, their registration with the Prometheus exporter, process gauges, and
//! tracing set-up. Every other module records through the `metrics` macros using the
//! names defined here, so the set of series lives in one place.

mod tasks;

use std::sync::OnceLock;

pub use tasks::{
    device_actors, register_runtime, runtime_tasks, runtimes_registered, LiveActor, RuntimeGuard,
    RuntimeKind,
};

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

pub const DEVICES: &str = "drover_devices";
pub const DEVICE_UP: &str = "drover_device_up";
pub const DEVICE_RESTARTS: &str = "drover_device_restarts_total";
pub const DEVICE_OP_DURATION: &str = "drover_device_op_duration_seconds";
pub const DEVICE_OP_ERRORS: &str = "drover_device_op_errors_total";
pub const DEVICE_PANICS: &str = "drover_device_panics_total";
pub const JOBS: &str = "drover_jobs_total";
pub const JOB_DURATION: &str = "drover_job_duration_seconds";
pub const DEVICE_RETURNS: &str = "drover_device_returns_total";
pub const DISPATCH_ADMITTED: &str = "drover_dispatch_admitted_total";
pub const DISPATCH_COMPLETED: &str = "drover_dispatch_completed_total";
pub const DISPATCH_REJECTED: &str = "drover_dispatch_rejected_total";
pub const MASTER_CONNECTED: &str = "drover_master_connected";
pub const MASTER_MESSAGES: &str = "drover_master_messages_total";
pub const MASTER_REJECTED: &str = "drover_master_rejected_total";
pub const MASTER_AES_ROTATIONS: &str = "drover_master_aes_rotations_total";
pub const MASTER_AUTH: &str = "drover_master_auth_total";
pub const MASTER_AUTH_PROMOTED: &str = "drover_master_auth_promoted_total";
pub const MASTER_EVENTS: &str = "drover_master_events_total";
pub const MASTER_SYNDIC_RETURNS: &str = "drover_master_syndic_returns_total";
pub const PILLAR_INVENTORY_REJECTED: &str = "drover_pillar_inventory_rejected_total";
pub const SNMP_RETRIES: &str = "drover_snmp_retries_total";
pub const SNMP_TIMEOUTS: &str = "drover_snmp_timeouts_total";
pub const SNMP_DROPPED: &str = "drover_snmp_dropped_total";
pub const OVS_CONNECTED: &str = "drover_ovs_connected";
pub const OVS_BRIDGES: &str = "drover_ovs_bridges";
pub const OVS_INTERFACES_DOWN: &str = "drover_ovs_interfaces_link_down";
pub const OVS_SESSIONS: &str = "drover_ovs_sessions_total";
pub const OVS_PROTOCOL_ERRORS: &str = "drover_ovs_protocol_errors_total";
pub const OVS_UPDATES: &str = "drover_ovs_updates_total";
pub const OVS_TRANSACTIONS: &str = "drover_ovs_transactions_total";
pub const JOBS_DENIED: &str = "drover_jobs_denied_total";
pub const LIMIT_HITS: &str = "drover_limit_hits_total";
pub const HTTP_REQUESTS: &str = "drover_http_requests_total";
pub const PROCESS_RSS: &str = "drover_process_resident_memory_bytes";
pub const PROCESS_CPU: &str = "drover_process_cpu_seconds_total";
pub const PROCESS_FDS: &str = "drover_process_open_fds";
pub const RUNTIME_TASKS: &str = "drover_runtime_tasks";
pub const DEVICE_ACTORS: &str = "drover_device_actors";
pub const POLLS: &str = "drover_polls_total";
pub const POLL_DURATION: &str = "drover_poll_duration_seconds";
pub const POLLS_DEFERRED: &str = "drover_polls_deferred_total";
pub const SNMP_TRAPS: &str = "drover_snmp_traps_total";
pub const SNMP_TRAPS_DROPPED: &str = "drover_snmp_traps_dropped_total";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder once per process and returns its handle. Later
/// calls (tests start several fleets in one process) get the same handle.
pub fn metrics_handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    30.0, 60.0,
                ])
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder was installed first; then our handle
            // renders nothing, which the /metrics test would catch.
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("A metrics recorder was already installed.");
            }
            describe();
            spawn_upkeep(handle.clone());
            handle
        })
        .clone()
}

/// How often histogram samples are folded into their buckets (the exporter's own
/// default when it runs the upkeep itself).
const UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Folds recorded histogram samples into their buckets every [`UPKEEP_INTERVAL`].
/// `build_recorder` leaves this to us: without it every sample (one per device
/// operation) is kept until the next `/metrics` scrape, so a daemon nobody scrapes
/// grows without bound (`drover soak`: RSS +0.15 MiB/min at 2,000 devices).
fn spawn_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new()
        .name("drover-metrics-upkeep".into())
        .spawn(move || loop {
            std::thread::sleep(UPKEEP_INTERVAL);
            handle.run_upkeep();
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "No metrics upkeep thread: histograms grow until scraped.");
    }
}

fn describe() {
    describe_gauge!(DEVICES, "Devices per driver and state.");
    describe_gauge!(DEVICE_UP, "1 when the device is up, 0 otherwise.");
    describe_counter!(DEVICE_RESTARTS, "Device actor restarts, by reason.");
    describe_histogram!(
        DEVICE_OP_DURATION,
        Unit::Seconds,
        "Duration of one device operation."
    );
    describe_counter!(DEVICE_OP_ERRORS, "Failed device operations, by error kind.");
    describe_counter!(DEVICE_PANICS, "Panics caught at the device actor boundary.");
    describe_counter!(JOBS, "Jobs finished, by function and outcome.");
    describe_histogram!(
        JOB_DURATION,
        Unit::Seconds,
        "Wall time of a job, first admission to last return."
    );
    describe_counter!(DEVICE_RETURNS, "Per-device returns, by outcome.");
    describe_counter!(
        DISPATCH_ADMITTED,
        "Device operations admitted under the in-flight cap."
    );
    describe_counter!(
        DISPATCH_COMPLETED,
        "Device operations finished (in flight = admitted - completed)."
    );
    describe_counter!(
        DISPATCH_REJECTED,
        "Device operations refused before running, by reason."
    );
    describe_gauge!(MASTER_CONNECTED, "1 while the master link is connected.");
    describe_counter!(MASTER_MESSAGES, "Messages to and from masters.");
    describe_counter!(MASTER_REJECTED, "Master messages rejected, by reason.");
    describe_counter!(
        MASTER_EVENTS,
        "Fleet events for the master's bus, by outcome (sent, dropped, lagged)."
    );
    describe_counter!(
        PILLAR_INVENTORY_REJECTED,
        "Pillar proxy: blocks that did not make a valid device (the id keeps its last good one)."
    );
    describe_counter!(
        MASTER_SYNDIC_RETURNS,
        "Device returns the master took in `_syndic_return` loads (syndic mode)."
    );
    describe_counter!(
        MASTER_AUTH,
        "Authentication exchanges with the master per device id, by outcome."
    );
    describe_counter!(
        MASTER_AUTH_PROMOTED,
        "Ids moved ahead in the start-up queue because a published job targets them."
    );
    describe_counter!(
        MASTER_AES_ROTATIONS,
        "Times the master's AES publish key changed under Drover (rotation, restart)."
    );
    describe_counter!(SNMP_RETRIES, "SNMP requests sent again after a timeout.");
    describe_counter!(SNMP_TIMEOUTS, "SNMP requests unanswered after every retry.");
    describe_counter!(
        SNMP_DROPPED,
        "SNMP replies dropped: unmatched, malformed, or failing security checks."
    );
    describe_counter!(POLLS, "Background polls finished, by module and outcome.");
    describe_histogram!(
        POLL_DURATION,
        Unit::Seconds,
        "Time one background poll of one module took."
    );
    describe_counter!(
        POLLS_DEFERRED,
        "Polls put off because no in-flight permit was free (jobs come first)."
    );
    describe_counter!(SNMP_TRAPS, "SNMP traps and informs accepted, by trap name.");
    describe_counter!(
        SNMP_TRAPS_DROPPED,
        "SNMP traps dropped, by reason (malformed, unknown source, auth)."
    );
    describe_gauge!(OVS_CONNECTED, "OVS devices with an open OVSDB session.");
    describe_gauge!(OVS_BRIDGES, "Bridges on all connected OVS devices.");
    describe_gauge!(
        OVS_INTERFACES_DOWN,
        "Interfaces whose link is down, on all connected OVS devices."
    );
    describe_counter!(
        OVS_SESSIONS,
        "OVSDB sessions connected, reconnected and lost."
    );
    describe_counter!(
        OVS_PROTOCOL_ERRORS,
        "OVSDB sessions reset for a malformed or oversized message."
    );
    describe_counter!(OVS_UPDATES, "OVSDB monitor updates applied to replicas.");
    describe_counter!(OVS_TRANSACTIONS, "OVSDB write transactions, by outcome.");
    describe_counter!(
        JOBS_DENIED,
        "Jobs refused by policy before running, by reason (function_not_allowed)."
    );
    describe_counter!(
        LIMIT_HITS,
        "Work refused or cut short by a configured or built-in cap, by limit."
    );
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP API requests, by route and status class."
    );
    describe_gauge!(
        PROCESS_RSS,
        Unit::Bytes,
        "Resident set size of the process."
    );
    describe_gauge!(PROCESS_CPU, Unit::Seconds, "CPU time used by the process.");
    describe_gauge!(PROCESS_FDS, "Open file descriptors of the process.");
    describe_gauge!(
        RUNTIME_TASKS,
        "Alive tokio tasks on the fleet's runtimes, by runtime (actors excluded)."
    );
    describe_gauge!(
        DEVICE_ACTORS,
        "Device actors alive, stopped ones not yet freed included."
    );
}

/// The caps that protect the process from a misbehaving master, device or client;
/// each hit is counted in `drover_limit_hits_total{limit}` (a bounded label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `fleet.max_jobs` jobs already running; a new one is refused.
    Jobs,
    /// `fleet.max_queued_per_device` operations already wait for one device.
    DeviceQueue,
    /// A message from the master over the transport's size cap.
    MasterMessage,
    /// A reply from a device over `drivers::MAX_DEVICE_BODY`.
    DeviceReply,
}

impl Limit {
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::Jobs => "max_jobs",
            Limit::DeviceQueue => "max_queued_per_device",
            Limit::MasterMessage => "master_message_size",
            Limit::DeviceReply => "device_reply_size",
        }
    }

    /// Counts the hit and logs it (debug: a flood of hits must not flood the log;
    /// the counter is what to alert on).
    pub fn hit(self) {
        metrics::counter!(LIMIT_HITS, "limit" => self.as_str()).increment(1);
        tracing::debug!(limit = self.as_str(), "Limit hit.");
    }
}

/// Reads the process's RSS, CPU time and open descriptors from /proc, and the task
/// counts of its runtimes, and sets the gauges; called on each scrape so the figures
/// are current.
pub fn update_process_metrics() {
    if let Some(s) = ProcessStats::read() {
        metrics::gauge!(PROCESS_RSS).set(s.rss_bytes as f64);
        metrics::gauge!(PROCESS_CPU).set(s.cpu_seconds);
        metrics::gauge!(PROCESS_FDS).set(s.open_fds as f64);
    }
    for (runtime, n) in runtime_tasks() {
        metrics::gauge!(RUNTIME_TASKS, "runtime" => runtime.as_str()).set(n as f64);
    }
    metrics::gauge!(DEVICE_ACTORS).set(device_actors() as f64);
}

/// A snapshot of this process's resource use, from /proc (Linux only).
#[derive(Debug, Clone, Copy)]
pub struct ProcessStats {
    pub rss_bytes: u64,
    pub cpu_seconds: f64,
    pub open_fds: u64,
}

impl ProcessStats {
    pub fn read() -> Option<ProcessStats> {
        Self::read_pid("self")
    }

    pub fn read_pid(pid: &str) -> Option<ProcessStats> {
        let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
        let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command name, which may contain spaces, closed by ')'.
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let utime: f64 = f.get(11)?.parse().ok()?;
        let stime: f64 = f.get(12)?.parse().ok()?;
        let open_fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count() as u64)
            .unwrap_or(0);
        // Linux reports ticks of 1/100 s and 4 KiB pages on every platform we run.
        Some(ProcessStats {
            rss_bytes: pages * 4096,
            cpu_seconds: (utime + stime) / 100.0,
            open_fds,
        })
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`), optionally as JSON lines.
pub fn init_tracing(default_level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: journald and log files get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_stats_are_read() {
        let s = ProcessStats::read().unwrap();
        assert!(s.rss_bytes > 0);
        assert!(s.open_fds > 0);
    }
}
