//! The Salt master link's hot path: every publication from the master is parsed
//! (msgpack envelope), its RSA signature verified, its Crypticle (AES-192-CBC +
//! HMAC-SHA256) payload decrypted, and the job decoded. Run with
//! `cargo bench --bench salt_envelope`.

use criterion::{criterion_group, criterion_main, Criterion};
use rmpv::Value;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::PrivateKey;
use std::hint::black_box;

use drover::master::salt::crypto::{self, generate_key_string, Crypticle};
use drover::master::salt::envelope::{map, pack, parse_publish_frames};

#[allow(dead_code)]
mod fixtures {
    //! The test-only key pair the unit tests use.
    include!("../src/master/salt/testdata/fixtures.rs");
}

/// A `test.ping` publication, as a Salt master packs it.
fn job(serial: i64) -> Vec<u8> {
    pack(&map(vec![
        ("fun", Value::from("test.ping")),
        ("arg", Value::Array(vec![])),
        ("tgt", Value::from("sw-*")),
        ("jid", Value::from("20261125120000000000")),
        ("tgt_type", Value::from("glob")),
        ("ret", Value::from("")),
        ("user", Value::from("root")),
        ("serial", Value::from(serial)),
    ]))
}

fn envelope(aes: &Crypticle, key: &PrivateKey, payload: &[u8]) -> Vec<u8> {
    let load = aes.dumps(payload, None);
    let sig = crypto::sign_sha1(key, &load).expect("sign");
    pack(&map(vec![
        ("enc", Value::from("aes")),
        ("sig", Value::Binary(sig)),
        ("sig_algo", Value::from("PKCS1v15-SHA1")),
        ("load", Value::Binary(load)),
    ]))
}

fn bench(c: &mut Criterion) {
    let key = PrivateKey::from_pkcs1_pem(fixtures::FIX_PRIV_PEM).expect("fixture key");
    let aes = Crypticle::from_key_string(generate_key_string().as_bytes()).expect("aes key");
    let frames = vec![envelope(&aes, &key, &job(10))];
    let env = parse_publish_frames(&frames).expect("parses");
    c.bench_function("publish/parse", |b| {
        b.iter(|| parse_publish_frames(black_box(&frames)).expect("parses"))
    });
    c.bench_function("publish/verify_signature", |b| {
        b.iter(|| {
            env.verify_signature(Some(key.as_public_key()), true)
                .expect("verifies")
        })
    });
    c.bench_function("publish/decrypt_and_decode", |b| {
        b.iter(|| env.open(&aes, Some(9)).expect("opens"))
    });
    c.bench_function("publish/all", |b| {
        b.iter(|| {
            let env = parse_publish_frames(black_box(&frames)).expect("parses");
            env.verify_signature(Some(key.as_public_key()), true)
                .expect("verifies");
            env.open(&aes, Some(9)).expect("opens")
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
