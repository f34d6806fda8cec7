//! Built-in MIB name table (MIB-II system and interfaces groups, IF-MIB
//! ifXTable, SNMPv2-MIB / SNMP-FRAMEWORK / USM counters): name → OID and
//! OID → `name.suffix`. No MIB files are parsed at run time; devices are
//! addressed numerically for anything outside this table.

use super::value::Oid;

/// (name, numeric OID). Tables, entries and scalars alike; the reverse
/// lookup picks the longest matching prefix.
static TABLE: &[(&str, &[u32])] = &[
    ("internet", &[1, 3, 6, 1]),
    ("mib-2", &[1, 3, 6, 1, 2, 1]),
    ("enterprises", &[1, 3, 6, 1, 4, 1]),
    ("system", &[1, 3, 6, 1, 2, 1, 1]),
    ("sysDescr", &[1, 3, 6, 1, 2, 1, 1, 1]),
    ("sysObjectID", &[1, 3, 6, 1, 2, 1, 1, 2]),
    ("sysUpTime", &[1, 3, 6, 1, 2, 1, 1, 3]),
    ("sysContact", &[1, 3, 6, 1, 2, 1, 1, 4]),
    ("sysName", &[1, 3, 6, 1, 2, 1, 1, 5]),
    ("sysLocation", &[1, 3, 6, 1, 2, 1, 1, 6]),
    ("sysServices", &[1, 3, 6, 1, 2, 1, 1, 7]),
    ("sysORLastChange", &[1, 3, 6, 1, 2, 1, 1, 8]),
    ("sysORTable", &[1, 3, 6, 1, 2, 1, 1, 9]),
    ("sysOREntry", &[1, 3, 6, 1, 2, 1, 1, 9, 1]),
    ("sysORIndex", &[1, 3, 6, 1, 2, 1, 1, 9, 1, 1]),
    ("sysORID", &[1, 3, 6, 1, 2, 1, 1, 9, 1, 2]),
    ("sysORDescr", &[1, 3, 6, 1, 2, 1, 1, 9, 1, 3]),
    ("sysORUpTime", &[1, 3, 6, 1, 2, 1, 1, 9, 1, 4]),
    ("interfaces", &[1, 3, 6, 1, 2, 1, 2]),
    ("ifNumber", &[1, 3, 6, 1, 2, 1, 2, 1]),
    ("ifTable", &[1, 3, 6, 1, 2, 1, 2, 2]),
    ("ifEntry", &[1, 3, 6, 1, 2, 1, 2, 2, 1]),
    ("ifIndex", &[1, 3, 6, 1, 2, 1, 2, 2, 1, 1]),
    ("ifDescr", &[1, 3, 6, 1, 2, 1, 2, 2, 1, 2]),
    ("ifType", &[1, 3, 6, 1, 2, 1, 2, 2, 1, 3]),
    ("ifMtu", &[1, 3, 6, 1, 2, 1, 2, 2, 1, 4]),
    ("ifSpeed", &[1, 3, 6, 1, 2, 1, 2, 2, 1, 5]),
    ("ifPhysAddress", &[1, 3, 6, 1, 2, 1, 2, 2, 1, 6]),
    ("ifAdminStatus", &[1, 3, 6, 1, 2, 1, 2, 2, 1, 7]),
    ("ifOperStatus", &[1, 3, 6, 1, 2, 1, 2, 2, 1, 8]),
    ("ifLastChange", &[1, 3, 6, 1, 2, 1, 2, 2, 1, 9]),
    ("ifInOctets", &[1, 3, 6, 1, 2, 1, 2, 2, 1, 10]),
    ("ifInUcastPkts", &[1, 3, 6, 1, 2, 1, 2, 2, 1, 11]),
    ("ifInNUcastPkts", &[1, 3, 6, 1, 2, 1, 2, 2, 1, 12]),
    ("ifInDiscards", &[1, 3, 6, 1, 2, 1, 2, 2, 1, 13]),
    ("ifInErrors", &[1, 3, 6, 1, 2, 1, 2, 2, 1, 14]),
    ("ifInUnknownProtos", &[1, 3, 6, 1, 2, 1, 2, 2, 1, 15]),
    ("ifOutOctets", &[1, 3, 6, 1, 2, 1, 2, 2, 1, 16]),
    ("ifOutUcastPkts", &[1, 3, 6, 1, 2, 1, 2, 2, 1, 17]),
    ("ifOutNUcastPkts", &[1, 3, 6, 1, 2, 1, 2, 2, 1, 18]),
    ("ifOutDiscards", &[1, 3, 6, 1, 2, 1, 2, 2, 1, 19]),
    ("ifOutErrors", &[1, 3, 6, 1, 2, 1, 2, 2, 1, 20]),
    ("ifOutQLen", &[1, 3, 6, 1, 2, 1, 2, 2, 1, 21]),
    ("ifSpecific", &[1, 3, 6, 1, 2, 1, 2, 2, 1, 22]),
    ("ifMIB", &[1, 3, 6, 1, 2, 1, 31]),
    ("ifMIBObjects", &[1, 3, 6, 1, 2, 1, 31, 1]),
    ("ifXTable", &[1, 3, 6, 1, 2, 1, 31, 1, 1]),
    ("ifXEntry", &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1]),
    ("ifName", &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 1]),
    ("ifInMulticastPkts", &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 2]),
    ("ifInBroadcastPkts", &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 3]),
    ("ifOutMulticastPkts", &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 4]),
    ("ifOutBroadcastPkts", &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 5]),
    ("ifHCInOctets", &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 6]),
    ("ifHCInUcastPkts", &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 7]),
    ("ifHCInMulticastPkts", &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 8]),
    ("ifHCInBroadcastPkts", &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 9]),
    ("ifHCOutOctets", &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 10]),
    ("ifHCOutUcastPkts", &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 11]),
    ("ifHCOutMulticastPkts", &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 12]),
    ("ifHCOutBroadcastPkts", &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 13]),
    (
        "ifLinkUpDownTrapEnable",
        &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 14],
    ),
    ("ifHighSpeed", &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 15]),
    ("ifPromiscuousMode", &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 16]),
    ("ifConnectorPresent", &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 17]),
    ("ifAlias", &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 18]),
    (
        "ifCounterDiscontinuityTime",
        &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 19],
    ),
    ("ifTableLastChange", &[1, 3, 6, 1, 2, 1, 31, 1, 5]),
    ("ifStackLastChange", &[1, 3, 6, 1, 2, 1, 31, 1, 6]),
    ("snmpTrapOID", &[1, 3, 6, 1, 6, 3, 1, 1, 4, 1]),
    ("snmpEngineID", &[1, 3, 6, 1, 6, 3, 10, 2, 1, 1]),
    ("snmpEngineBoots", &[1, 3, 6, 1, 6, 3, 10, 2, 1, 2]),
    ("snmpEngineTime", &[1, 3, 6, 1, 6, 3, 10, 2, 1, 3]),
    ("snmpEngineMaxMessageSize", &[1, 3, 6, 1, 6, 3, 10, 2, 1, 4]),
    (
        "usmStatsUnsupportedSecLevels",
        &[1, 3, 6, 1, 6, 3, 15, 1, 1, 1],
    ),
    ("usmStatsNotInTimeWindows", &[1, 3, 6, 1, 6, 3, 15, 1, 1, 2]),
    ("usmStatsUnknownUserNames", &[1, 3, 6, 1, 6, 3, 15, 1, 1, 3]),
    ("usmStatsUnknownEngineIDs", &[1, 3, 6, 1, 6, 3, 15, 1, 1, 4]),
    ("usmStatsWrongDigests", &[1, 3, 6, 1, 6, 3, 15, 1, 1, 5]),
    ("usmStatsDecryptionErrors", &[1, 3, 6, 1, 6, 3, 15, 1, 1, 6]),
];

/// `NAME[.n.n...]`, optionally `MODULE::NAME[...]`, to an OID.
pub(crate) fn lookup_name(text: &str) -> Option<Oid> {
    let t = text.trim();
    let t = t.rsplit_once("::").map(|(_, n)| n).unwrap_or(t);
    let (name, suffix) = match t.find('.') {
        Some(i) => (&t[..i], Some(&t[i + 1..])),
        None => (t, None),
    };
    let (_, base) = TABLE.iter().find(|(n, _)| *n == name)?;
    let mut arcs = base.to_vec();
    if let Some(sfx) = suffix {
        for p in sfx.split('.') {
            arcs.push(p.parse().ok()?);
        }
    }
    Oid::from_arcs(arcs).ok()
}

/// Reverse lookup: `sysDescr.0`, `ifHCInOctets.3`, or None outside the table.
/// Only names at or below `mib-2`/`internet` level are returned so a bare
/// `iso.3.6...` never shows up as a "name".
pub fn oid_name(oid: &Oid) -> Option<String> {
    let arcs = oid.arcs();
    let (name, base) = TABLE
        .iter()
        .filter(|(_, b)| b.len() >= 4 && arcs.starts_with(b))
        .max_by_key(|(_, b)| b.len())?;
    let mut s = (*name).to_string();
    for a in &arcs[base.len()..] {
        s.push('.');
        s.push_str(&a.to_string());
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_directions() {
        let o: Oid = "sysDescr.0".parse().unwrap();
        assert_eq!(o.to_string(), "1.3.6.1.2.1.1.1.0");
        assert_eq!(oid_name(&o).as_deref(), Some("sysDescr.0"));
        let o: Oid = "ifHCInOctets".parse().unwrap();
        assert_eq!(o.to_string(), "1.3.6.1.2.1.31.1.1.1.6");
        let o: Oid = "IF-MIB::ifHCInOctets.12".parse().unwrap();
        assert_eq!(oid_name(&o).as_deref(), Some("ifHCInOctets.12"));
        let o: Oid = "1.3.6.1.2.1.2.2.1.10.4".parse().unwrap();
        assert_eq!(oid_name(&o).as_deref(), Some("ifInOctets.4"));
        let o: Oid = "1.3.6.1.2.1.1.9.1.2.1".parse().unwrap();
        assert_eq!(oid_name(&o).as_deref(), Some("sysORID.1"));
        assert_eq!(oid_name(&"1.2.3".parse().unwrap()), None);
        assert!("sysDescr.x".parse::<Oid>().is_err());
        // Every entry round-trips.
        for (n, arcs) in TABLE.iter().filter(|(_, a)| a.len() >= 4) {
            let o: Oid = n.parse().unwrap();
            assert_eq!(o.arcs(), *arcs);
            assert_eq!(oid_name(&o).as_deref(), Some(*n));
        }
    }
}
