//! Splitting a fleet over several processes: which shard owns which device id, by
//! rendezvous hashing, so adding a shard moves only the devices it wins.

use serde::Deserialize;

/// One shard of a fleet split over several processes: `index` of `count`, `I/N` on
/// the command line. A device belongs to the shard with the highest rendezvous
/// score for its id, so going from N to N+1 shards moves only the devices the new
/// shard wins (about 1/(N+1) of them) and no others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// Which of `count` shards owns `id`.
    pub fn owner(id: &str, count: u32) -> u32 {
        let h = fnv1a(id.as_bytes());
        (0..count.max(1))
            .max_by_key(|j| mix(h ^ (u64::from(*j) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)))
            .unwrap_or(0)
    }

    pub fn owns(&self, id: &str) -> bool {
        Shard::owner(id, self.count) == self.index
    }
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("shard {s:?}: expected I/N with 0 <= I < N, e.g. 0/4");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: u32 = i.trim().parse().map_err(|_| bad())?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl serde::Serialize for Shard {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Shard {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Stable across processes, versions and platforms, unlike std's `DefaultHasher`:
/// every shard must compute the same owner.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// splitmix64's finaliser: spreads FNV's weak low bits over the whole word.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_evenly_and_move_little_when_one_is_added() {
        let ids: Vec<String> = (0..10_000).map(|i| format!("dev-{i:05}")).collect();
        let before: Vec<u32> = ids.iter().map(|id| Shard::owner(id, 4)).collect();
        for s in 0..4 {
            let n = before.iter().filter(|o| **o == s).count();
            assert!((2200..2800).contains(&n), "shard {s} has {n} of 10000");
        }
        let after: Vec<u32> = ids.iter().map(|id| Shard::owner(id, 5)).collect();
        let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
        assert!(
            (1700..2300).contains(&moved),
            "{moved} moved, expected about 1/5"
        );
        assert!(
            before.iter().zip(&after).all(|(b, a)| b == a || *a == 4),
            "devices move only to the new shard"
        );
        let s: Shard = "1/4".parse().unwrap();
        assert!(s.owns(ids.iter().zip(&before).find(|(_, o)| **o == 1).unwrap().0));
        for bad in ["4/4", "1", "a/b", "0/0", "-1/3"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        // Pinned: shards running different builds must agree on every owner, so
        // the hash may never change silently.
        let pinned = [
            ("rest-0001", 0),
            ("rest-0002", 0),
            ("rest-0003", 1),
            ("rest-0007", 1),
            ("rest-0008", 2),
            ("rest-0019", 2),
        ];
        for (id, owner) in pinned {
            assert_eq!(Shard::owner(id, 3), owner, "{id}");
        }
    }
}
