//! Target matching over a 10,000-device fleet: the dispatcher's first step for every
//! job. Run with `cargo bench --bench targeting`.

use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::json;

use drover::fleet::target::{Candidate, Target, TargetType};

fn fleet(n: usize) -> Vec<(String, serde_json::Value, Option<std::net::IpAddr>)> {
    (0..n)
        .map(|i| {
            let id = format!("rest-{i:05}");
            let grains = json!({
                "id": id, "os": if i % 2 == 0 { "RestExampleOS" } else { "IOS" },
                "os_family": "proxy", "site": format!("site{}", i % 40),
                "roles": ["edge", if i % 7 == 0 { "core" } else { "access" }],
            });
            let addr = Some(std::net::IpAddr::from([
                10,
                (i >> 16) as u8,
                (i >> 8) as u8,
                i as u8,
            ]));
            (id, grains, addr)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let devices = fleet(10_000);
    let cases = [
        ("glob", "rest-0*", TargetType::Glob),
        ("pcre", "^rest-0[0-4].*7$", TargetType::Pcre),
        ("grain", "os:RestExampleOS", TargetType::Grain),
        ("grain_list", "roles:core", TargetType::Grain),
        ("ipcidr", "10.0.16.0/20", TargetType::Ipcidr),
        (
            "compound",
            "G@os:RestExampleOS and ( rest-00* or E@.*9$ ) and not G@site:site3",
            TargetType::Compound,
        ),
    ];
    for (name, expr, kind) in cases {
        let target = Target::parse(expr, kind).expect("valid target");
        c.bench_function(&format!("match_10k/{name}"), |b| {
            b.iter(|| {
                devices
                    .iter()
                    .filter(|(id, g, a)| {
                        target.matches(&Candidate {
                            id,
                            grains: g,
                            pillar: &drover::fleet::target::NO_PILLAR,
                            address: *a,
                        })
                    })
                    .count()
            })
        });
    }
    c.bench_function("parse/compound", |b| {
        b.iter(|| {
            Target::parse(
                "G@os:RestExampleOS and ( rest-00* or E@.*9$ ) and not L@a,b,c",
                TargetType::Compound,
            )
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
