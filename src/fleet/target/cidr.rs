//! `ipcidr` targets and `S@` words: Python `ipaddress` parsing of one address or
//! network, matched against a device's address.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;

use super::{snippet, TargetError};

#[derive(Debug, Clone)]
pub(super) enum IpTarget {
    Addr(IpAddr),
    Net(IpNet),
}

impl IpTarget {
    /// Python `ipaddress.ip_address`, else `ip_network` (strict: no host bits;
    /// IPv4 also accepts a netmask or hostmask after the `/`).
    pub(super) fn parse(expr: &str) -> Result<IpTarget, TargetError> {
        if let Ok(addr) = expr.parse::<IpAddr>() {
            return Ok(IpTarget::Addr(addr));
        }
        let bad = || TargetError::BadCidr {
            expr: snippet(expr),
            source: expr.parse::<IpNet>().err(),
        };
        let (addr, mask) = expr.split_once('/').ok_or_else(bad)?;
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let prefix = if !mask.is_empty() && mask.bytes().all(|b| b.is_ascii_digit()) {
            mask.parse::<u8>().map_err(|_| bad())?
        } else {
            match (addr, mask.parse::<Ipv4Addr>()) {
                (IpAddr::V4(_), Ok(m)) => mask_prefix(u32::from(m)).ok_or_else(bad)?,
                _ => return Err(bad()),
            }
        };
        let net = IpNet::new(addr, prefix).map_err(|source| TargetError::CidrPrefix {
            expr: snippet(expr),
            source,
        })?;
        if net.network() != addr {
            return Err(TargetError::CidrHostBits {
                expr: snippet(expr),
                network: net.trunc(),
            });
        }
        Ok(IpTarget::Net(net))
    }

    pub(super) fn matches(&self, addr: Option<IpAddr>) -> bool {
        // A v4-mapped IPv6 peer is the IPv4 host Salt's ipv4 grain would list.
        let Some(addr) = addr.map(|a| a.to_canonical()) else {
            return false;
        };
        match self {
            IpTarget::Addr(t) => *t == addr,
            IpTarget::Net(n) => n.contains(&addr),
        }
    }
}

/// Prefix length of a contiguous netmask, else of a contiguous hostmask.
fn mask_prefix(bits: u32) -> Option<u8> {
    let contiguous = |x: u32| x.leading_ones() + x.trailing_zeros() == 32;
    let ones = if contiguous(bits) {
        bits.leading_ones()
    } else if contiguous(!bits) {
        (!bits).leading_ones()
    } else {
        return None;
    };
    u8::try_from(ones).ok()
}

#[cfg(test)]
mod tests {
    use super::super::{Candidate, Target, TargetType};
    use serde_json::json;

    #[test]
    fn ipcidr() {
        let g = json!({});
        let cases: &[(&str, Option<&str>, bool)] = &[
            ("10.0.0.0/8", Some("10.1.2.3"), true),
            ("10.1.2.3", Some("10.1.2.3"), true),
            ("10.1.2.3/32", Some("10.1.2.3"), true),
            ("10.1.2.4", Some("10.1.2.3"), false),
            ("192.168.0.0/16", Some("10.1.2.3"), false),
            ("10.0.0.0/255.0.0.0", Some("10.1.2.3"), true),
            ("10.0.0.0/0.255.255.255", Some("10.1.2.3"), true),
            ("0.0.0.0/0", Some("10.1.2.3"), true),
            ("10.0.0.0/8", Some("::ffff:10.1.2.3"), true),
            ("10.0.0.0/8", None, false),
            ("2001:db8::/32", Some("2001:db8::1"), true),
            ("2001:db8::1", Some("2001:db8::1"), true),
            ("2001:db8::/32", Some("2001:db9::1"), false),
            ("2001:db8::/32", Some("10.1.2.3"), false),
            ("10.0.0.0/8", Some("2001:db8::1"), false),
        ];
        for &(expr, addr, want) in cases {
            let t = Target::parse(expr, TargetType::Ipcidr).unwrap();
            let c = Candidate {
                id: "x",
                grains: &g,
                pillar: &g,
                address: addr.and_then(|a| a.parse().ok()),
            };
            assert_eq!(t.matches(&c), want, "{expr:?} against {addr:?}");
        }
    }
}
