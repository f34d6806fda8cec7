//! The built-in modules: `if_mib` and `system` with snmp_exporter's generated metric
//! names, types, help and labels (so existing scrape configs and dashboards work),
//! and the non-SNMP `ovs_interfaces` and `rest_health`.

use std::time::Duration;

use super::module::{Kind, Metric, Module, Source};
use crate::drivers::snmp::Oid;

/// IANAifType names of the common interface types; others show as their number.
const IF_TYPES: &[(i64, &str)] = &[
    (1, "other"),
    (6, "ethernetCsmacd"),
    (23, "ppp"),
    (24, "softwareLoopback"),
    (37, "atm"),
    (53, "propVirtual"),
    (71, "ieee80211"),
    (117, "gigabitEthernet"),
    (131, "tunnel"),
    (135, "l2vlan"),
    (136, "l3ipvlan"),
    (161, "ieee8023adLag"),
    (166, "mpls"),
    (209, "bridge"),
];

/// (name, oid, type, help) as snmp_exporter's generator writes them.
type Row = (&'static str, &'static str, &'static str, &'static str);

const IF_MIB: &[Row] = &[
    ("ifNumber", "1.3.6.1.2.1.2.1", "gauge", "The number of network interfaces (regardless of their current state) present on this system. - 1.3.6.1.2.1.2.1"),
    ("ifIndex", "1.3.6.1.2.1.2.2.1.1", "gauge", "A unique value, greater than zero, for each interface - 1.3.6.1.2.1.2.2.1.1"),
    ("ifType", "1.3.6.1.2.1.2.2.1.3", "EnumAsInfo", "The type of interface - 1.3.6.1.2.1.2.2.1.3"),
    ("ifMtu", "1.3.6.1.2.1.2.2.1.4", "gauge", "The size of the largest packet which can be sent/received on the interface, specified in octets - 1.3.6.1.2.1.2.2.1.4"),
    ("ifSpeed", "1.3.6.1.2.1.2.2.1.5", "gauge", "An estimate of the interface's current bandwidth in bits per second - 1.3.6.1.2.1.2.2.1.5"),
    ("ifPhysAddress", "1.3.6.1.2.1.2.2.1.6", "PhysAddress48", "The interface's address at its protocol sub-layer - 1.3.6.1.2.1.2.2.1.6"),
    ("ifAdminStatus", "1.3.6.1.2.1.2.2.1.7", "gauge", "The desired state of the interface - 1.3.6.1.2.1.2.2.1.7"),
    ("ifOperStatus", "1.3.6.1.2.1.2.2.1.8", "gauge", "The current operational state of the interface - 1.3.6.1.2.1.2.2.1.8"),
    ("ifLastChange", "1.3.6.1.2.1.2.2.1.9", "gauge", "The value of sysUpTime at the time the interface entered its current operational state - 1.3.6.1.2.1.2.2.1.9"),
    ("ifInOctets", "1.3.6.1.2.1.2.2.1.10", "counter", "The total number of octets received on the interface, including framing characters - 1.3.6.1.2.1.2.2.1.10"),
    ("ifInUcastPkts", "1.3.6.1.2.1.2.2.1.11", "counter", "The number of packets, delivered by this sub-layer to a higher (sub-)layer, which were not addressed to a multicast or broadcast address at this sub-layer - 1.3.6.1.2.1.2.2.1.11"),
    ("ifInNUcastPkts", "1.3.6.1.2.1.2.2.1.12", "counter", "The number of packets, delivered by this sub-layer to a higher (sub-)layer, which were addressed to a multicast or broadcast address at this sub-layer - 1.3.6.1.2.1.2.2.1.12"),
    ("ifInDiscards", "1.3.6.1.2.1.2.2.1.13", "counter", "The number of inbound packets which were chosen to be discarded even though no errors had been detected to prevent their being deliverable to a higher-layer protocol - 1.3.6.1.2.1.2.2.1.13"),
    ("ifInErrors", "1.3.6.1.2.1.2.2.1.14", "counter", "For packet-oriented interfaces, the number of inbound packets that contained errors preventing them from being deliverable to a higher-layer protocol - 1.3.6.1.2.1.2.2.1.14"),
    ("ifInUnknownProtos", "1.3.6.1.2.1.2.2.1.15", "counter", "For packet-oriented interfaces, the number of packets received via the interface which were discarded because of an unknown or unsupported protocol - 1.3.6.1.2.1.2.2.1.15"),
    ("ifOutOctets", "1.3.6.1.2.1.2.2.1.16", "counter", "The total number of octets transmitted out of the interface, including framing characters - 1.3.6.1.2.1.2.2.1.16"),
    ("ifOutUcastPkts", "1.3.6.1.2.1.2.2.1.17", "counter", "The total number of packets that higher-level protocols requested be transmitted, and which were not addressed to a multicast or broadcast address at this sub-layer, including those that were discarded or not sent - 1.3.6.1.2.1.2.2.1.17"),
    ("ifOutNUcastPkts", "1.3.6.1.2.1.2.2.1.18", "counter", "The total number of packets that higher-level protocols requested be transmitted, and which were addressed to a multicast or broadcast address at this sub-layer, including those that were discarded or not sent - 1.3.6.1.2.1.2.2.1.18"),
    ("ifOutDiscards", "1.3.6.1.2.1.2.2.1.19", "counter", "The number of outbound packets which were chosen to be discarded even though no errors had been detected to prevent their being transmitted - 1.3.6.1.2.1.2.2.1.19"),
    ("ifOutErrors", "1.3.6.1.2.1.2.2.1.20", "counter", "For packet-oriented interfaces, the number of outbound packets that could not be transmitted because of errors - 1.3.6.1.2.1.2.2.1.20"),
    ("ifOutQLen", "1.3.6.1.2.1.2.2.1.21", "gauge", "The length of the output packet queue (in packets). - 1.3.6.1.2.1.2.2.1.21"),
    ("ifSpecific", "1.3.6.1.2.1.2.2.1.22", "OctetString", "A reference to MIB definitions specific to the particular media being used to realize the interface - 1.3.6.1.2.1.2.2.1.22"),
    ("ifInMulticastPkts", "1.3.6.1.2.1.31.1.1.1.2", "counter", "The number of packets, delivered by this sub-layer to a higher (sub-)layer, which were addressed to a multicast address at this sub-layer - 1.3.6.1.2.1.31.1.1.1.2"),
    ("ifInBroadcastPkts", "1.3.6.1.2.1.31.1.1.1.3", "counter", "The number of packets, delivered by this sub-layer to a higher (sub-)layer, which were addressed to a broadcast address at this sub-layer - 1.3.6.1.2.1.31.1.1.1.3"),
    ("ifOutMulticastPkts", "1.3.6.1.2.1.31.1.1.1.4", "counter", "The total number of packets that higher-level protocols requested be transmitted, and which were addressed to a multicast address at this sub-layer, including those that were discarded or not sent - 1.3.6.1.2.1.31.1.1.1.4"),
    ("ifOutBroadcastPkts", "1.3.6.1.2.1.31.1.1.1.5", "counter", "The total number of packets that higher-level protocols requested be transmitted, and which were addressed to a broadcast address at this sub-layer, including those that were discarded or not sent - 1.3.6.1.2.1.31.1.1.1.5"),
    ("ifHCInOctets", "1.3.6.1.2.1.31.1.1.1.6", "counter", "The total number of octets received on the interface, including framing characters - 1.3.6.1.2.1.31.1.1.1.6"),
    ("ifHCInUcastPkts", "1.3.6.1.2.1.31.1.1.1.7", "counter", "The number of packets, delivered by this sub-layer to a higher (sub-)layer, which were not addressed to a multicast or broadcast address at this sub-layer - 1.3.6.1.2.1.31.1.1.1.7"),
    ("ifHCInMulticastPkts", "1.3.6.1.2.1.31.1.1.1.8", "counter", "The number of packets, delivered by this sub-layer to a higher (sub-)layer, which were addressed to a multicast address at this sub-layer - 1.3.6.1.2.1.31.1.1.1.8"),
    ("ifHCInBroadcastPkts", "1.3.6.1.2.1.31.1.1.1.9", "counter", "The number of packets, delivered by this sub-layer to a higher (sub-)layer, which were addressed to a broadcast address at this sub-layer - 1.3.6.1.2.1.31.1.1.1.9"),
    ("ifHCOutOctets", "1.3.6.1.2.1.31.1.1.1.10", "counter", "The total number of octets transmitted out of the interface, including framing characters - 1.3.6.1.2.1.31.1.1.1.10"),
    ("ifHCOutUcastPkts", "1.3.6.1.2.1.31.1.1.1.11", "counter", "The total number of packets that higher-level protocols requested be transmitted, and which were not addressed to a multicast or broadcast address at this sub-layer, including those that were discarded or not sent - 1.3.6.1.2.1.31.1.1.1.11"),
    ("ifHCOutMulticastPkts", "1.3.6.1.2.1.31.1.1.1.12", "counter", "The total number of packets that higher-level protocols requested be transmitted, and which were addressed to a multicast address at this sub-layer, including those that were discarded or not sent - 1.3.6.1.2.1.31.1.1.1.12"),
    ("ifHCOutBroadcastPkts", "1.3.6.1.2.1.31.1.1.1.13", "counter", "The total number of packets that higher-level protocols requested be transmitted, and which were addressed to a broadcast address at this sub-layer, including those that were discarded or not sent - 1.3.6.1.2.1.31.1.1.1.13"),
    ("ifLinkUpDownTrapEnable", "1.3.6.1.2.1.31.1.1.1.14", "gauge", "Indicates whether linkUp/linkDown traps should be generated for this interface - 1.3.6.1.2.1.31.1.1.1.14"),
    ("ifHighSpeed", "1.3.6.1.2.1.31.1.1.1.15", "gauge", "An estimate of the interface's current bandwidth in units of 1,000,000 bits per second - 1.3.6.1.2.1.31.1.1.1.15"),
    ("ifPromiscuousMode", "1.3.6.1.2.1.31.1.1.1.16", "gauge", "This object has a value of false(2) if this interface only accepts packets/frames that are addressed to this station - 1.3.6.1.2.1.31.1.1.1.16"),
    ("ifConnectorPresent", "1.3.6.1.2.1.31.1.1.1.17", "gauge", "This object has the value 'true(1)' if the interface sublayer has a physical connector and the value 'false(2)' otherwise. - 1.3.6.1.2.1.31.1.1.1.17"),
    ("ifCounterDiscontinuityTime", "1.3.6.1.2.1.31.1.1.1.19", "gauge", "The value of sysUpTime on the most recent occasion at which any one or more of this interface's counters suffered a discontinuity - 1.3.6.1.2.1.31.1.1.1.19"),
];

const SYSTEM: &[Row] = &[
    ("sysDescr", "1.3.6.1.2.1.1.1", "DisplayString", "A textual description of the entity - 1.3.6.1.2.1.1.1"),
    ("sysObjectID", "1.3.6.1.2.1.1.2", "OctetString", "The vendor's authoritative identification of the network management subsystem contained in the entity - 1.3.6.1.2.1.1.2"),
    ("sysUpTime", "1.3.6.1.2.1.1.3", "gauge", "The time (in hundredths of a second) since the network management portion of the system was last re-initialized. - 1.3.6.1.2.1.1.3"),
    ("sysContact", "1.3.6.1.2.1.1.4", "DisplayString", "The textual identification of the contact person for this managed node, together with information on how to contact this person - 1.3.6.1.2.1.1.4"),
    ("sysName", "1.3.6.1.2.1.1.5", "DisplayString", "An administratively-assigned name for this managed node - 1.3.6.1.2.1.1.5"),
    ("sysLocation", "1.3.6.1.2.1.1.6", "DisplayString", "The physical location of this node (e.g., 'telephone closet, 3rd floor') - 1.3.6.1.2.1.1.6"),
    ("sysServices", "1.3.6.1.2.1.1.7", "gauge", "A value which indicates the set of services that this entity may potentially offer - 1.3.6.1.2.1.1.7"),
    ("sysORLastChange", "1.3.6.1.2.1.1.8", "gauge", "The value of sysUpTime at the time of the most recent change in state or value of any instance of sysORID. - 1.3.6.1.2.1.1.8"),
    ("sysORIndex", "1.3.6.1.2.1.1.9.1.1", "gauge", "The auxiliary variable used for identifying instances of the columnar objects in the sysORTable. - 1.3.6.1.2.1.1.9.1.1"),
    ("sysORID", "1.3.6.1.2.1.1.9.1.2", "OctetString", "An authoritative identification of a capabilities statement with respect to various MIB modules supported by the local SNMP application acting as a command responder. - 1.3.6.1.2.1.1.9.1.2"),
    ("sysORDescr", "1.3.6.1.2.1.1.9.1.3", "DisplayString", "A textual description of the capabilities identified by the corresponding instance of sysORID. - 1.3.6.1.2.1.1.9.1.3"),
    ("sysORUpTime", "1.3.6.1.2.1.1.9.1.4", "gauge", "The value of sysUpTime at the time this conceptual row was last instantiated. - 1.3.6.1.2.1.1.9.1.4"),
];

const IF_LOOKUPS: [(&str, &str); 3] = [
    ("ifAlias", "1.3.6.1.2.1.31.1.1.1.18"),
    ("ifDescr", "1.3.6.1.2.1.2.2.1.2"),
    ("ifName", "1.3.6.1.2.1.31.1.1.1.1"),
];

/// sysUpTime and ifNumber: when either moves the wrong way the interface labels are
/// read again.
const IF_GUARDS: [&str; 2] = ["1.3.6.1.2.1.1.3", "1.3.6.1.2.1.2.1"];

pub fn all() -> Vec<Module> {
    vec![
        snmp_module(
            "if_mib",
            IF_MIB,
            "1.3.6.1.2.1.2.2.1.",
            "ifIndex",
            &IF_LOOKUPS,
            &IF_GUARDS,
        ),
        snmp_module(
            "system",
            SYSTEM,
            "1.3.6.1.2.1.1.9.1.",
            "sysORIndex",
            &[("sysORDescr", "1.3.6.1.2.1.1.9.1.3")],
            &[],
        ),
        Module {
            name: "ovs_interfaces".into(),
            source: Source::OvsReplica,
            interval: Duration::from_secs(60),
            max_repetitions: None,
            metrics: Vec::new(),
            guards: Vec::new(),
        },
        Module {
            name: "rest_health".into(),
            source: Source::Ping,
            interval: Duration::from_secs(60),
            max_repetitions: None,
            metrics: Vec::new(),
            guards: Vec::new(),
        },
    ]
}

/// A module whose table columns (under `table`, or under ifXTable for `if_mib`)
/// are indexed by `index` and labelled by `lookups`; the rest are scalars.
fn snmp_module(
    name: &str,
    rows: &[Row],
    table: &str,
    index: &str,
    lookups: &[(&str, &str)],
    guards: &[&str],
) -> Module {
    let lookups: Vec<(String, Oid)> = lookups
        .iter()
        .filter_map(|(l, o)| Some(((*l).to_owned(), o.parse().ok()?)))
        .collect();
    let metrics = rows
        .iter()
        .filter_map(|(n, oid, ty, help)| {
            let is_column = oid.starts_with(table) || oid.starts_with("1.3.6.1.2.1.31.1.1.1.");
            let kind = match *ty {
                "counter" => Kind::Counter,
                "DisplayString" => Kind::DisplayString,
                "OctetString" => Kind::OctetString,
                "PhysAddress48" => Kind::PhysAddress48,
                "EnumAsInfo" => Kind::EnumAsInfo(IF_TYPES),
                _ => Kind::Gauge,
            };
            Some(Metric {
                name: (*n).to_owned(),
                oid: oid.parse().ok()?,
                kind,
                help: (*help).to_owned(),
                index: is_column.then(|| index.to_owned()),
                lookups: if is_column {
                    lookups.clone()
                } else {
                    Vec::new()
                },
            })
        })
        .collect();
    Module {
        name: name.to_owned(),
        source: Source::Snmp,
        interval: Duration::from_secs(60),
        max_repetitions: None,
        metrics,
        guards: guards.iter().filter_map(|g| g.parse().ok()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_oid_parses() {
        let m = all();
        assert_eq!(m[0].metrics.len(), IF_MIB.len());
        assert_eq!(m[1].metrics.len(), SYSTEM.len());
        assert_eq!(m[0].guards.len(), 2);
        let hc = m[0]
            .metrics
            .iter()
            .find(|x| x.name == "ifHCInOctets")
            .unwrap();
        assert_eq!(hc.kind, Kind::Counter);
        assert_eq!(hc.index.as_deref(), Some("ifIndex"));
        let up = m[1].metrics.iter().find(|x| x.name == "sysUpTime").unwrap();
        assert_eq!(up.index, None);
    }
}
