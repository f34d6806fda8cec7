//! `ovs_interfaces`: each interface's link and admin state, MTU and counters, read
//! from the OVSDB monitor replica the device already keeps (no extra traffic), in
//! the text format, one series per interface labelled `interface` and `bridge`.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde_json::Value;

use super::render::escape_label;

/// (metric, `statistics` key, help); counters all.
const COUNTERS: [(&str, &str, &str); 8] = [
    (
        "ovs_interface_rx_bytes_total",
        "rx_bytes",
        "Bytes received.",
    ),
    ("ovs_interface_tx_bytes_total", "tx_bytes", "Bytes sent."),
    (
        "ovs_interface_rx_packets_total",
        "rx_packets",
        "Packets received.",
    ),
    (
        "ovs_interface_tx_packets_total",
        "tx_packets",
        "Packets sent.",
    ),
    (
        "ovs_interface_rx_errors_total",
        "rx_errors",
        "Receive errors.",
    ),
    (
        "ovs_interface_tx_errors_total",
        "tx_errors",
        "Transmit errors.",
    ),
    (
        "ovs_interface_rx_dropped_total",
        "rx_dropped",
        "Packets dropped on receive.",
    ),
    (
        "ovs_interface_tx_dropped_total",
        "tx_dropped",
        "Packets dropped on transmit.",
    ),
];

/// Reads one gauge's value from an interface's row.
type Reader<'a> = dyn Fn(&Value) -> Option<i64> + 'a;

/// The families of `openvswitch.interface_stats`'s answer (interface name → row).
pub fn render(stats: &Value) -> String {
    let Some(rows) = stats.as_object() else {
        return String::new();
    };
    let rows: BTreeMap<&String, &Value> = rows.iter().collect();
    let labels = |name: &str, row: &Value| {
        let bridge = row["bridge"].as_str().unwrap_or("");
        format!(
            "{{bridge=\"{}\",interface=\"{}\"}}",
            escape_label(bridge),
            escape_label(name)
        )
    };
    let mut out = String::new();
    let state = |col: &str, v: &Value| match v[col].as_str() {
        Some("up") => Some(1),
        Some(_) => Some(0),
        None => None,
    };
    let gauges: [(&str, &str, &Reader); 3] = [
        (
            "ovs_interface_link_up",
            "1 when the interface's link_state is up, 0 when down.",
            &|v| state("link_state", v),
        ),
        (
            "ovs_interface_admin_up",
            "1 when the interface's admin_state is up, 0 when down.",
            &|v| state("admin_state", v),
        ),
        ("ovs_interface_mtu_bytes", "The interface's MTU.", &|v| {
            v["mtu"].as_i64()
        }),
    ];
    for (metric, help, get) in gauges {
        family(
            &mut out,
            metric,
            help,
            "gauge",
            rows.iter()
                .filter_map(|(n, r)| get(r).map(|v| (labels(n, r), v))),
        );
    }
    for (metric, key, help) in COUNTERS {
        family(
            &mut out,
            metric,
            help,
            "counter",
            rows.iter()
                .filter_map(|(n, r)| r["statistics"][key].as_i64().map(|v| (labels(n, r), v))),
        );
    }
    out
}

fn family(
    out: &mut String,
    metric: &str,
    help: &str,
    kind: &str,
    samples: impl Iterator<Item = (String, i64)>,
) {
    let mut lines = String::new();
    for (labels, v) in samples {
        let _ = writeln!(lines, "{metric}{labels} {v}");
    }
    if !lines.is_empty() {
        let _ = writeln!(out, "# HELP {metric} {help}");
        let _ = writeln!(out, "# TYPE {metric} {kind}");
        out.push_str(&lines);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn interfaces_become_labelled_series() {
        let out = render(&json!({
            "n1": {"bridge": "br0", "link_state": "down", "admin_state": "up", "mtu": 1500,
                   "statistics": {"rx_packets": 10, "tx_bytes": 2048}},
            "n2": {"bridge": null, "link_state": null, "admin_state": null, "mtu": null,
                   "statistics": {}}
        }));
        assert!(
            out.contains("ovs_interface_link_up{bridge=\"br0\",interface=\"n1\"} 0\n"),
            "{out}"
        );
        assert!(
            out.contains("ovs_interface_admin_up{bridge=\"br0\",interface=\"n1\"} 1\n"),
            "{out}"
        );
        assert!(out.contains("# TYPE ovs_interface_tx_bytes_total counter\novs_interface_tx_bytes_total{bridge=\"br0\",interface=\"n1\"} 2048\n"), "{out}");
        assert!(!out.contains("n2"), "nothing known of n2: {out}");
        assert!(!out.contains("rx_errors"), "{out}");
    }
}
