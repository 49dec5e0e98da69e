//! Sealing throughput: what one connection's writer (seal) and the pair of ends (seal +
//! open) cost per byte. `cargo bench -p classchat-wire --bench seal`; figures go into
//! BENCHMARKS.md.

use std::hint::black_box;

use bytes::BytesMut;
use classchat_wire::MAX_FRAME_LEN;
use classchat_wire::crypto::{Opener, Role, Sealer, derive_keys};
use classchat_wire::frame::HEADER_LEN;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hmac::{KeyInit, Mac};

/// A chat line and a file chunk.
const SIZES: [(usize, &str); 2] = [(128, "128 B"), (64 * 1024, "64 KiB")];

fn halves() -> (Sealer, Opener) {
    let keys = derive_keys(&[1; 32], &[2; 32], &[3; 32]);
    let (sealer, _) = keys.split(Role::Client);
    let (_, opener) = keys.split(Role::Server);
    (sealer, opener)
}

fn seal(c: &mut Criterion) {
    let mut group = c.benchmark_group("seal");
    for (len, label) in SIZES {
        let plaintext = vec![0x5a; len];
        let (mut sealer, _) = halves();
        let mut out = BytesMut::with_capacity(2 * len + 256);
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(BenchmarkId::from_parameter(label), |b| {
            b.iter(|| {
                out.clear();
                sealer.seal_frame(black_box(&plaintext), &mut out, MAX_FRAME_LEN).expect("seal");
                black_box(&out);
            });
        });
    }
    group.finish();
}

fn seal_open(c: &mut Criterion) {
    let mut group = c.benchmark_group("seal+open");
    for (len, label) in SIZES {
        let plaintext = vec![0x5a; len];
        let (mut sealer, mut opener) = halves();
        let mut out = BytesMut::with_capacity(2 * len + 256);
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(BenchmarkId::from_parameter(label), |b| {
            b.iter(|| {
                out.clear();
                sealer.seal_frame(black_box(&plaintext), &mut out, MAX_FRAME_LEN).expect("seal");
                let opened = opener.open(&mut out[HEADER_LEN..]).expect("open");
                assert_eq!(opened.len(), len);
                black_box(opened);
            });
        });
    }
    group.finish();
}

/// The two primitives alone, on 64 KiB, to show where sealing spends its time. CBC
/// encryption is inherently serial (each block needs the previous ciphertext), so it runs
/// at the latency of AES-NI rather than its throughput; the MAC then reads the data again.
fn parts(c: &mut Criterion) {
    use aes::cipher::block_padding::Pkcs7;
    use aes::cipher::{BlockModeEncrypt, KeyIvInit};
    let len = 64 * 1024;
    let mut group = c.benchmark_group("parts");
    group.throughput(Throughput::Bytes(len as u64));
    let plaintext = vec![0x5a; len];
    let mut buf = vec![0u8; len + 16];
    group.bench_function("aes-256-cbc encrypt/64 KiB", |b| {
        b.iter(|| {
            let enc = cbc::Encryptor::<aes::Aes256>::new(&[7u8; 32].into(), &[9u8; 16].into());
            let ct =
                enc.encrypt_padded_b2b::<Pkcs7>(black_box(&plaintext), &mut buf).expect("room for padding");
            black_box(ct);
        });
    });
    group.bench_function("hmac-sha256/64 KiB", |b| {
        b.iter(|| {
            let mut m =
                <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&[3; 32]).expect("any key length");
            m.update(black_box(&plaintext));
            black_box(m.finalize().into_bytes());
        });
    });
    group.finish();
}

criterion_group!(benches, seal, seal_open, parts);
criterion_main!(benches);
