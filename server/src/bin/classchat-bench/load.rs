//! What fan-out receivers record, shared by the ClassChat and the IRC load: every
//! delivery's latency, counted for the step whose messages it carries.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::stats::{Hist, now_ns};

/// Receivers spread their records over this many locks so they rarely contend.
const SHARDS: usize = 64;

#[derive(Debug, Default)]
struct Shard {
    hist: Hist,
    count: u64,
    stale: u64,
    last_ns: u64,
}

impl Shard {
    fn add(&mut self, (step, sent): (u32, u64), current: u32, now: u64) {
        if step == current {
            self.hist.record_us(now.saturating_sub(sent) / 1000);
            self.count += 1;
            self.last_ns = now;
        } else {
            self.stale += 1;
        }
    }
}

/// Shared by all receivers of one run.
#[derive(Debug)]
pub struct Recorder {
    shards: Vec<Mutex<Shard>>,
    /// The step whose deliveries are being counted; older ones are `stale`.
    pub step: AtomicU32,
    /// Receivers whose connection ended (any is a failure: nothing may be dropped).
    pub closed: AtomicUsize,
}

/// What the receivers saw during one step.
#[derive(Debug, Default)]
pub struct Tally {
    pub hist: Hist,
    pub count: u64,
    pub stale: u64,
    pub last_ns: u64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Recorder {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            step: AtomicU32::new(u32::MAX),
            closed: AtomicUsize::new(0),
        })
    }

    /// Records the deliveries `texts` (message texts as sent) received just now by
    /// receiver `who`.
    pub fn record<'a>(&self, who: usize, texts: impl Iterator<Item = &'a str>) {
        let now = now_ns();
        let current = self.step.load(Ordering::Relaxed);
        let mut s = lock(&self.shards[who % SHARDS]);
        for stamp in texts.filter_map(|t| parse(t.as_bytes())) {
            s.add(stamp, current, now);
        }
    }

    /// Records one delivery of the message stamped `(step, sent_ns)` (see [`parse`]).
    pub fn record_stamp(&self, who: usize, stamp: (u32, u64)) {
        let now = now_ns();
        let current = self.step.load(Ordering::Relaxed);
        lock(&self.shards[who % SHARDS]).add(stamp, current, now);
    }

    /// Starts counting `step`, forgetting what came before.
    pub fn begin(&self, step: u32) {
        for s in &self.shards {
            *lock(s) = Shard::default();
        }
        self.step.store(step, Ordering::Relaxed);
    }

    pub fn delivered(&self) -> u64 {
        self.shards.iter().map(|s| lock(s).count).sum()
    }

    pub fn tally(&self) -> Tally {
        let mut t = Tally::default();
        for s in &self.shards {
            let s = lock(s);
            t.hist.merge(&s.hist);
            t.count += s.count;
            t.stale += s.stale;
            t.last_ns = t.last_ns.max(s.last_ns);
        }
        t
    }
}

/// The text of a bench message: `b{step}:{sent_ns}:` and padding up to `len` bytes.
pub fn text(step: u32, len: usize) -> String {
    let mut t = format!("b{step}:{}:", now_ns());
    while t.len() < len {
        t.push('x');
    }
    t
}

/// `(step, sent_ns)` of a bench message text, read from its bytes (a receiver does this
/// for every delivery, so it neither checks UTF-8 nor splits into strings).
pub fn parse(text: &[u8]) -> Option<(u32, u64)> {
    let rest = text.strip_prefix(b"b")?;
    let (step, rest) = digits(rest)?;
    let (sent, _) = digits(rest)?;
    Some((u32::try_from(step).ok()?, sent))
}

/// The number before the first `:` of `bytes`, and what follows the `:`.
fn digits(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let end = bytes.iter().position(|&b| b == b':')?;
    let (number, rest) = bytes.split_at(end);
    if number.is_empty() || number.len() > 19 || !number.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let value = number.iter().fold(0u64, |v, &d| v * 10 + u64::from(d - b'0'));
    Some((value, &rest[1..]))
}

#[cfg(test)]
mod tests {
    #[test]
    fn texts_parse_back() {
        let t = super::text(7, 64);
        assert_eq!(t.len(), 64);
        let (step, sent) = super::parse(t.as_bytes()).expect("parses");
        assert_eq!(step, 7);
        assert!(sent <= crate::stats::now_ns());
        assert!(super::parse(b"hello").is_none());
        assert!(super::parse(b"b:1:").is_none());
        assert!(super::parse(b"b1:99999999999999999999:").is_none(), "too long for u64");
        assert_eq!(super::parse(b"b4294967295:0:"), Some((u32::MAX, 0)));
        assert!(super::parse(b"b4294967296:0:").is_none(), "too big for a step");
    }
}
