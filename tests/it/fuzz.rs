//! The stable-Rust equivalent of `cargo fuzz` (which needs nightly), run by CI: for
//! each target in `drover::fuzzing::TARGETS`, the checked-in seed corpus
//! (`fuzz/corpus/<target>/`) and then seeded random mutations of it (bit flips,
//! interesting bytes, truncations, insertions, deletions, duplications, splices)
//! go through the same entry point the libFuzzer target calls. Bounded by a count
//! and a time budget per target; a panic fails the test and names the input, saved
//! under `target/fuzz-failures/`.
//!
//! Knobs: `DROVER_FUZZ_SECS` (default 1 per target), `DROVER_FUZZ_ITERS` (default
//! 20,000 per target) and `DROVER_FUZZ_SEED` (default fixed, so a failure
//! reproduces).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// No single input may take longer than this (debug build, loaded CI machine): an
/// input that does is an algorithmic blow-up, not a slow machine.
const MAX_PER_INPUT: Duration = Duration::from_secs(5);

/// Peak resident memory the test process may reach: the decoders cap what they
/// allocate, so a fuzzed input that makes one allocate far more shows up here.
const MAX_PEAK_RSS: u64 = 1024 * 1024 * 1024;

/// splitmix64: a few lines with a stable output for a given seed, so a failing
/// seed reproduces on every machine and every version of the `rand` crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// Tokens that matter to the text formats (TOML, targets) and the binary ones
/// (BER lengths and tags, msgpack markers), spliced in whole.
const TOKENS: &[&[u8]] = &[
    b"[[device]]\n",
    b"[[device_range]]\n",
    b"[fleet]\n",
    b"[http]\n",
    b"[master]\n",
    b" = ",
    b"\"",
    b"'''",
    b"{n}",
    b"{n:04}",
    b"{port}",
    b"\n",
    b" and ",
    b" or ",
    b"not ",
    b"(",
    b")",
    b"G@",
    b"E@",
    b"L@",
    b"S@",
    b"P@",
    b":",
    b"*",
    b"[",
    b"]",
    b"\\",
    b"/",
    b"\x30\x82\xff\xff",
    b"\x30\x84\xff\xff\xff\xff",
    b"\x06\x00",
    b"\x02\x09\x00\xff\xff\xff\xff\xff\xff\xff\xff",
    b"\x04\x81\x80",
    b"\xdd\xff\xff\xff\xff",
    b"\xdf\x00\x00\x00\x10",
    b"\xc6\x7f\xff\xff\xff",
    b"\x91\x91\x91\x91",
];

fn mutate(rng: &mut Rng, input: &mut Vec<u8>, corpus: &[Vec<u8>]) {
    for _ in 0..=rng.below(4) {
        let len = input.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                input[i] = [0x00, 0x01, 0x7f, 0x80, 0xff, b'"', b'\n'][rng.below(7)];
            }
            2 if len > 0 => input.truncate(rng.below(len)),
            3 => {
                let at = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                input.splice(at..at, bytes);
            }
            4 if len > 0 => {
                let from = rng.below(len);
                let to = from + rng.below(len - from + 1).min(64);
                input.drain(from..to);
            }
            5 if len > 0 => {
                let from = rng.below(len);
                let to = from + rng.below(len - from + 1).min(256);
                let chunk = input[from..to].to_vec();
                let at = rng.below(len + 1);
                input.splice(at..at, chunk);
            }
            6 if !corpus.is_empty() => {
                let other = &corpus[rng.below(corpus.len())];
                let cut = rng.below(input.len() + 1);
                let from = rng.below(other.len() + 1);
                input.truncate(cut);
                input.extend_from_slice(&other[from..]);
            }
            7 => {
                let token = TOKENS[rng.below(TOKENS.len())];
                let at = rng.below(len + 1);
                input.splice(at..at, token.iter().copied());
            }
            _ if len > 1 => {
                // Change the selector byte, so every layer sees every shape.
                input[0] = rng.next() as u8;
            }
            _ => input.push(rng.next() as u8),
        }
    }
    input.truncate(128 * 1024);
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("seed corpus {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| std::fs::read(p).expect("read seed"))
        .collect()
}

fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Runs one input; on a panic or a slow input, saves it and fails naming it.
fn run_one(target: &str, f: fn(&[u8]), input: &[u8], what: &str) {
    let started = Instant::now();
    let outcome = catch_unwind(AssertUnwindSafe(|| f(input)));
    let took = started.elapsed();
    let problem = match outcome {
        Err(_) => Some("panicked".to_owned()),
        Ok(()) if took > MAX_PER_INPUT => Some(format!("took {took:?}")),
        Ok(()) => None,
    };
    if let Some(problem) = problem {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-failures");
        let _ = std::fs::create_dir_all(&dir);
        let hash = input.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
        });
        let path = dir.join(format!("{target}-{hash:016x}"));
        let _ = std::fs::write(&path, input);
        let shown: String = input.iter().take(256).map(|b| format!("{b:02x}")).collect();
        panic!(
            "fuzz target {target} {problem} on {what} ({} bytes, saved to {}): {shown}",
            input.len(),
            path.display()
        );
    }
}

fn fuzz(target: &str) {
    let (_, f) = drover::fuzzing::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .copied()
        .expect("a known target");
    let seeds = corpus(target);
    assert!(!seeds.is_empty(), "no seeds for {target}");
    for (i, s) in seeds.iter().enumerate() {
        run_one(target, f, s, &format!("seed {i}"));
    }
    let budget = Duration::from_secs_f64(env_or("DROVER_FUZZ_SECS", 1.0));
    let iters: u64 = env_or("DROVER_FUZZ_ITERS", 20_000);
    let seed: u64 = env_or("DROVER_FUZZ_SEED", 0x6472_6f76_6572);
    let mut rng = Rng(seed ^ target.len() as u64);
    let started = Instant::now();
    let mut ran = 0u64;
    while ran < iters && started.elapsed() < budget {
        let mut input = seeds[rng.below(seeds.len())].clone();
        mutate(&mut rng, &mut input, &seeds);
        run_one(
            target,
            f,
            &input,
            &format!("mutation {ran} of seed {seed:#x}"),
        );
        ran += 1;
    }
    if let Some(peak) = peak_rss() {
        assert!(
            peak < MAX_PEAK_RSS,
            "peak RSS {peak} bytes after fuzzing {target}"
        );
    }
    eprintln!(
        "fuzz {target}: {} seeds, {ran} mutations in {:?}",
        seeds.len(),
        started.elapsed()
    );
}

#[test]
fn fuzz_snmp_decode() {
    fuzz("snmp_decode");
}

#[test]
fn fuzz_http_reply() {
    fuzz("http_reply");
}

#[test]
fn fuzz_salt_envelope() {
    fuzz("salt_envelope");
}

#[test]
fn fuzz_config_parse() {
    fuzz("config_parse");
}

#[test]
fn fuzz_inventory_parse() {
    fuzz("inventory_parse");
}

#[test]
fn fuzz_target_parse() {
    fuzz("target_parse");
}

#[test]
fn fuzz_netconf_framing() {
    fuzz("netconf_framing");
}

#[test]
fn fuzz_netconf_xml() {
    fuzz("netconf_xml");
}

#[test]
fn fuzz_ssh_transport() {
    fuzz("ssh_transport");
}

#[test]
fn fuzz_sls_pipeline() {
    fuzz("sls_pipeline");
}

#[test]
fn mutations_are_reproducible_and_change_inputs() {
    let seeds = vec![
        b"[[device]]\nid = \"a\"\n".to_vec(),
        vec![0x30, 0x03, 2, 1, 0],
    ];
    let run = || {
        let mut rng = Rng(7);
        (0..50)
            .map(|i| {
                let mut x = seeds[i % 2].clone();
                mutate(&mut rng, &mut x, &seeds);
                x
            })
            .collect::<Vec<_>>()
    };
    let a = run();
    assert_eq!(a, run());
    assert!(a.iter().filter(|x| !seeds.contains(x)).count() > 40);
}
