//! Cost of end-to-end encrypted direct messages: sending one (encrypt + RSA-PSS sign),
//! receiving one (verify + MAC + decrypt), and opening a conversation of 10,000 messages
//! (one grant unwrap, then every envelope verified and decrypted).
//!
//! `cargo bench -p classchat-wire --bench e2e`

use std::hint::black_box;

use classchat_wire::e2e::{DmKey, Envelope, IDENTITY_BITS, Identity, KeyGrant};
use criterion::{Criterion, criterion_group, criterion_main};

fn bench(c: &mut Criterion) {
    let alice = Identity::generate(IDENTITY_BITS).expect("keygen");
    let bob = Identity::generate(IDENTITY_BITS).expect("keygen");
    let key = DmKey::generate();
    let grant = KeyGrant::new(&key, "alice", &alice, "bob", bob.public()).expect("grant");
    let text = "Did you get problem 3 to converge? I keep getting NaN after step 40.";
    let env = Envelope::seal(&key, 1, "alice", "bob", &alice, text);

    let mut g = c.benchmark_group("dm");
    g.bench_function("send (encrypt + sign, RSA-3072)", |b| {
        b.iter(|| Envelope::seal(&key, 2, "alice", "bob", &alice, black_box(text)))
    });
    g.bench_function("receive (verify + MAC + decrypt)", |b| {
        b.iter(|| black_box(&env).open(&key, "alice", "bob", alice.public()).expect("opens"))
    });
    g.bench_function("unwrap a key grant", |b| {
        b.iter(|| black_box(&grant).open("bob", &bob, alice.public()).expect("opens"))
    });
    g.finish();

    let history: Vec<Vec<u8>> =
        (0..10_000u64).map(|i| Envelope::seal(&key, i, "alice", "bob", &alice, text).to_bytes()).collect();
    let mut g = c.benchmark_group("open conversation");
    g.sample_size(10);
    g.bench_function("10,000 messages, one thread", |b| {
        b.iter(|| {
            let k = grant.open("bob", &bob, alice.public()).expect("key");
            history
                .iter()
                .map(|bytes| {
                    Envelope::from_bytes(bytes).and_then(|e| e.open(&k, "alice", "bob", alice.public()))
                })
                .filter(Result::is_ok)
                .count()
        })
    });
    g.bench_function("10,000 messages, every core", |b| {
        b.iter(|| {
            let k = grant.open("bob", &bob, alice.public()).expect("key");
            classchat_wire::e2e::open_all(&history, &k, "alice", "bob", alice.public())
                .iter()
                .filter(|r| r.is_ok())
                .count()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
