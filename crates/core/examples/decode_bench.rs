//! Where the writer's CPU goes per envelope: decode (base64, gunzip, JSON)
//! versus classify and mask, and the writer's own path
//! (`Classifier::body_rows`, which reads plain logins straight from the JSON
//! text). `cargo run --release -p sluice-core --example decode_bench`
//!
//! glibc malloc with two arenas, as in the writer (`sluice_core::malloc`):
//! the allocator decides much of the cost here.
#![allow(clippy::unwrap_used)]

use std::time::Instant;

use sluice_core::classify::Classifier;
use sluice_core::masking::{Keyring, Masker, PiiKey, Policy};
use sluice_core::wire::{Envelope, decode_body};
use sluice_testkit::json::login_record;

fn main() {
    sluice_core::malloc::cap_arenas().unwrap();
    let records: Vec<_> = (0..200_000)
        .map(|i| login_record(i, format!("bench-{i:08}-0123456789abcdef0123")))
        .collect();
    let bodies: Vec<String> = records
        .chunks(8_696)
        .map(|c| Envelope::new(c.to_vec()).encode())
        .collect();
    let masker = Masker::new(
        Keyring::new(PiiKey::from_bytes(&[1; 32]), vec![]),
        Policy::default(),
    );
    let classifier = Classifier::new(masker.clone(), 65_536);
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    let krate = |rows: usize, d: std::time::Duration| rows as f64 / d.as_secs_f64() / 1e3;

    let t = Instant::now();
    let decoded: Vec<_> = bodies.iter().map(|b| decode_body(b.as_bytes())).collect();
    let decode = t.elapsed();
    let t = Instant::now();
    let rows: usize = decoded
        .into_iter()
        .map(|d| classifier.message_rows("k".into(), d).logins.len())
        .sum();
    let classify = t.elapsed();
    let t = Instant::now();
    let fast_rows: usize = bodies
        .iter()
        .map(|b| classifier.body_rows(b.as_bytes(), "k").logins.len())
        .sum();
    let writer_path = t.elapsed();
    assert_eq!(rows, fast_rows);
    let t = Instant::now();
    for i in 0..400_000u32 {
        std::hint::black_box(
            masker.encrypt(format!("10.0.{}.{}", i >> 8 & 255, i & 255).as_bytes()),
        );
    }
    let encrypt = t.elapsed();
    println!(
        "{rows} rows: decode {:.0} ms ({:.0} k rows/s), classify+mask {:.0} ms ({:.0} k rows/s); \
         writer's path (body_rows) {:.0} ms ({:.0} k rows/s); 400k encrypts {:.0} ms",
        ms(decode),
        krate(rows, decode),
        ms(classify),
        krate(rows, classify),
        ms(writer_path),
        krate(rows, writer_path),
        ms(encrypt),
    );
}
