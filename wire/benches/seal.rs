//! Sealing throughput: what one connection's writer (seal) and the two ends together
//! (seal + open) cost per byte, and the two primitives alone.
//!
//! `cargo bench -p classchat-wire --bench seal`; figures go into BENCHMARKS.md.
//!
//! Every benchmark is measured twice: `wall/…` with criterion's wall clock, and `cpu/…`
//! with the time the benchmark thread actually spent on a CPU (from
//! `/proc/thread-self/schedstat`). On a machine shared with other work the wall clock also
//! counts the time the thread waited for a core; the CPU time does not, so it is what an
//! idle core would do.

use std::hint::black_box;

use bytes::{BufMut, BytesMut};
use classchat_wire::MAX_FRAME_LEN;
use classchat_wire::crypto::{Opener, RECORD_HEAD, Role, Sealer, derive_keys};
use classchat_wire::frame::HEADER_LEN;
use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{
    BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use hmac::{KeyInit, Mac};

/// A chat line and a file chunk.
const SIZES: [(usize, &str); 2] = [(128, "128 B"), (64 * 1024, "64 KiB")];

/// Nanoseconds the calling thread has spent on a CPU. The kernel updates this figure at
/// scheduler ticks and switches, so it is only good to a few milliseconds; the CPU-time
/// groups therefore use long, equal samples (see [`cpu_config`]).
fn thread_cpu_ns() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").expect("Linux schedstat");
    stat.split_whitespace().next().and_then(|ns| ns.parse().ok()).expect("schedstat starts with on-CPU ns")
}

/// Criterion measurement: on-CPU time of the benchmark thread, formatted like wall time.
struct ThreadCpuTime;

impl Measurement for ThreadCpuTime {
    type Intermediate = u64;
    type Value = u64;

    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, start: u64) -> u64 {
        thread_cpu_ns().saturating_sub(start)
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, value: &u64) -> f64 {
        *value as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        // Both count nanoseconds, so wall time's units and throughput scaling apply.
        WallTime.formatter()
    }
}

fn halves() -> (Sealer, Opener) {
    let keys = derive_keys(&[1; 32], &[2; 32], &[3; 32]);
    let (sealer, _) = keys.split(Role::Client);
    let (_, opener) = keys.split(Role::Server);
    (sealer, opener)
}

fn seal<M: Measurement>(c: &mut Criterion<M>, clock: &str) {
    let mut group = c.benchmark_group(format!("{clock}/seal"));
    group.sampling_mode(SamplingMode::Flat);
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

fn seal_open<M: Measurement>(c: &mut Criterion<M>, clock: &str) {
    let mut group = c.benchmark_group(format!("{clock}/seal+open"));
    group.sampling_mode(SamplingMode::Flat);
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

/// Messages queued for one connection, sealed the way a writer does it (PROTOCOL.md section
/// 4): `BATCH` chat lines of 128 bytes as one frame each, or together as one frame
/// (`Sealer::seal_record`, what `SecureWriter` does with everything queued at a flush), and
/// each opened again. Throughput counts the `BATCH` × 128 plaintext bytes.
fn batch<M: Measurement>(c: &mut Criterion<M>, clock: &str) {
    const BATCH: usize = 64;
    const LINE: usize = 128;
    let mut group = c.benchmark_group(format!("{clock}/batch of {BATCH} × {LINE} B"));
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Bytes((BATCH * LINE) as u64));
    let line = vec![0x5a; LINE];
    let mut out = BytesMut::with_capacity(BATCH * (LINE + 128));
    let (mut sealer, mut opener) = halves();
    group.bench_function("one frame each, seal + open", |b| {
        b.iter(|| {
            out.clear();
            for _ in 0..BATCH {
                sealer.seal_frame(black_box(&line), &mut out, MAX_FRAME_LEN).expect("seal");
            }
            let mut at = 0;
            while at < out.len() {
                let end = at + HEADER_LEN + classchat_wire::crypto::sealed_len(LINE);
                black_box(opener.open(&mut out[at + HEADER_LEN..end]).expect("open"));
                at = end;
            }
        });
    });
    let (mut sealer, mut opener) = halves();
    group.bench_function("one frame for all, seal + open", |b| {
        b.iter(|| {
            out.clear();
            out.resize(RECORD_HEAD, 0);
            for _ in 0..BATCH {
                out.extend_from_slice(black_box(&line));
            }
            sealer.seal_record(&mut out, 0, MAX_FRAME_LEN).expect("seal");
            let opened = opener.open(&mut out[HEADER_LEN..]).expect("open");
            assert_eq!(opened.len(), BATCH * LINE);
            black_box(opened);
        });
    });
    group.finish();
}

/// 8 records of 64 KiB sealed one after another against the same 8 sealed at once
/// (`Sealer::seal_records`, their CBC chains in lockstep): what a file sender does.
fn records<M: Measurement>(c: &mut Criterion<M>, clock: &str) {
    const COUNT: usize = 8;
    const LEN: usize = 64 * 1024;
    let mut group = c.benchmark_group(format!("{clock}/{COUNT} records of 64 KiB"));
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Bytes((COUNT * LEN) as u64));
    let fill = |bufs: &mut Vec<BytesMut>| {
        bufs.clear();
        for _ in 0..COUNT {
            let mut r = BytesMut::with_capacity(LEN + 256);
            r.put_bytes(0, RECORD_HEAD);
            r.put_bytes(0x5a, LEN);
            bufs.push(r);
        }
    };
    let (mut sealer, _) = halves();
    let mut bufs = Vec::with_capacity(COUNT);
    group.bench_function("one by one", |b| {
        b.iter(|| {
            fill(&mut bufs);
            for r in &mut bufs {
                sealer.seal_record(r, 0, MAX_FRAME_LEN).expect("seal");
            }
            black_box(&bufs);
        });
    });
    group.bench_function("at once", |b| {
        b.iter(|| {
            fill(&mut bufs);
            sealer.seal_records(&mut bufs, MAX_FRAME_LEN).expect("seal");
            black_box(&bufs);
        });
    });
    group.finish();
}

/// One 170-byte chat event delivered to `MEMBERS` connections (PROTOCOL.md section 4.1):
/// sealed for each connection alone, against sealed once as a room record that each
/// connection only tags (`Sealer::seal_room_record`). Throughput counts deliveries. Then
/// what one receiver pays to open each kind.
fn room<M: Measurement>(c: &mut Criterion<M>, clock: &str) {
    use classchat_wire::room_record::{RoomKey, RoomRecord};
    const MEMBERS: usize = 1000;
    const LINE: usize = 170;
    let mut group = c.benchmark_group(format!("{clock}/one {LINE} B event to {MEMBERS} connections"));
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(MEMBERS as u64));
    let line = bytes::Bytes::from(vec![0x5a; LINE]);
    let mut sealers: Vec<Sealer> = (0..MEMBERS).map(|_| halves().0).collect();
    let mut out = BytesMut::with_capacity(MEMBERS * (LINE + 128));
    group.bench_function("sealed for each connection", |b| {
        b.iter(|| {
            out.clear();
            for sealer in &mut sealers {
                sealer.seal_frame(black_box(&line), &mut out, MAX_FRAME_LEN).expect("seal");
            }
            black_box(&out);
        });
    });
    let key = RoomKey::generate();
    group.bench_function("one room record, tagged per connection", |b| {
        b.iter(|| {
            out.clear();
            let record = RoomRecord::seal("lab", &key, black_box(line.clone()));
            for sealer in &mut sealers {
                sealer.seal_room_record(0, &record, &mut out, MAX_FRAME_LEN).expect("seal");
            }
            black_box(&out);
        });
    });
    group.finish();

    let mut group = c.benchmark_group(format!("{clock}/open one {LINE} B event"));
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(1));
    let keys = derive_keys(&[1; 32], &[2; 32], &[3; 32]);
    let (mut sealer, _) = keys.split(Role::Server);
    let (_, mut opener) = keys.split(Role::Client);
    // Each frame is sealed outside the timing (the sealer and the opener stay in step).
    group.bench_function("ordinary frame", |b| {
        b.iter_batched(
            || {
                let mut frame = BytesMut::new();
                sealer.seal_frame(&line, &mut frame, MAX_FRAME_LEN).expect("seal");
                frame.split_off(HEADER_LEN)
            },
            |mut body| {
                opener.open_frame(&mut body).expect("open");
                body
            },
            BatchSize::SmallInput,
        );
    });
    let (mut sealer, _) = keys.split(Role::Server);
    let (_, opener) = keys.split(Role::Client);
    let mut opener = opener.with_room_records();
    let install = classchat_wire::message::encode(&classchat_wire::room_record::RoomKeyMsg::RoomKey {
        slot: 0,
        room: "lab".into(),
        key: key.bytes().to_vec(),
    })
    .expect("encode");
    opener.install_room_key(&install).expect("install");
    let record = RoomRecord::seal("lab", &key, line.clone());
    group.bench_function("room record", |b| {
        b.iter_batched(
            || {
                let mut frame = BytesMut::new();
                sealer.seal_room_record(0, &record, &mut frame, MAX_FRAME_LEN).expect("seal");
                frame.split_off(HEADER_LEN)
            },
            |mut body| {
                opener.open_frame(&mut body).expect("open");
                body
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

/// The two primitives alone, on 64 KiB, to show where sealing spends its time. CBC
/// encryption is inherently serial (each block needs the previous ciphertext), so it runs
/// at the latency of AES-NI rather than its throughput; the MAC then reads the data again.
fn parts<M: Measurement>(c: &mut Criterion<M>, clock: &str) {
    use aes::cipher::block_padding::Pkcs7;
    use aes::cipher::{BlockModeEncrypt, KeyIvInit};
    let len = 64 * 1024;
    let mut group = c.benchmark_group(format!("{clock}/parts"));
    group.sampling_mode(SamplingMode::Flat);
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

fn wall(c: &mut Criterion) {
    seal(c, "wall");
    seal_open(c, "wall");
    batch(c, "wall");
    records(c, "wall");
    room(c, "wall");
    parts(c, "wall");
}

fn cpu(c: &mut Criterion<ThreadCpuTime>) {
    seal(c, "cpu");
    seal_open(c, "cpu");
    batch(c, "cpu");
    records(c, "cpu");
    room(c, "cpu");
    parts(c, "cpu");
}

/// 30 samples of about 300 ms each: long enough that the clock's granularity is noise.
fn cpu_config() -> Criterion<ThreadCpuTime> {
    Criterion::default()
        .with_measurement(ThreadCpuTime)
        .sample_size(30)
        .measurement_time(std::time::Duration::from_secs(9))
}

criterion_group!(wall_clock, wall);
criterion_group! {
    name = cpu_time;
    config = cpu_config();
    targets = cpu
}
criterion_main!(wall_clock, cpu_time);
