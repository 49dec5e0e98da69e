//! Latency histograms, the shared clock, and the result table.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use serde_json::Value;

/// One clock for the whole process: senders stamp messages with it and receivers (in the
/// same process) subtract, so a latency is exact without any clock synchronisation.
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

pub fn now_ns() -> u64 {
    u64::try_from(EPOCH.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Exact below 64 µs, then 32 buckets per power of two (at most ~3 % error).
const LINEAR: u64 = 64;
const SUB: u64 = 32;
/// Latencies are clamped here (about 35 minutes): far beyond anything a run waits for.
const MAX_US: u64 = 1 << 31;
const BUCKETS: usize = (LINEAR + (31 - 6 + 1) * SUB) as usize;

/// Latency histogram in microseconds.
#[derive(Debug, Clone)]
pub struct Hist {
    counts: Vec<u64>,
    total: u64,
    max_us: u64,
}

impl Default for Hist {
    fn default() -> Self {
        Self { counts: vec![0; BUCKETS], total: 0, max_us: 0 }
    }
}

fn index(us: u64) -> usize {
    let v = us.min(MAX_US - 1);
    if v < LINEAR {
        return v as usize;
    }
    let log = 63 - u64::from(v.leading_zeros()); // >= 6
    let top = v >> (log - 5); // 32..=63
    (LINEAR + (log - 6) * SUB + (top - SUB)) as usize
}

/// The middle of bucket `i`, in microseconds.
fn value(i: usize) -> f64 {
    let i = i as u64;
    if i < LINEAR {
        return i as f64;
    }
    let log = (i - LINEAR) / SUB + 6;
    let top = (i - LINEAR) % SUB + SUB;
    let low = top << (log - 5);
    low as f64 + ((1u64 << (log - 5)) as f64) / 2.0
}

impl Hist {
    pub fn record_us(&mut self, us: u64) {
        self.counts[index(us)] += 1;
        self.total += 1;
        self.max_us = self.max_us.max(us);
    }

    pub fn record(&mut self, d: Duration) {
        self.record_us(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }

    pub fn merge(&mut self, other: &Hist) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max_us = self.max_us.max(other.max_us);
    }

    /// The `q` quantile (0..=1) in milliseconds; 0 when empty.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        let want = ((self.total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= want {
                return value(i).min(self.max_us as f64) / 1000.0;
            }
        }
        self.max_us as f64 / 1000.0
    }

    pub fn max_ms(&self) -> f64 {
        self.max_us as f64 / 1000.0
    }

    pub fn json(&self) -> Value {
        serde_json::json!({
            "count": self.total,
            "p50_ms": round3(self.quantile_ms(0.50)),
            "p99_ms": round3(self.quantile_ms(0.99)),
            "max_ms": round3(self.max_ms()),
        })
    }
}

pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// One line of the human table.
#[derive(Debug, Clone)]
pub struct Row {
    pub scenario: String,
    pub metric: String,
    pub value: String,
    pub target: String,
    pub verdict: String,
}

impl Row {
    pub fn new(scenario: &str, metric: &str, value: impl Into<String>) -> Self {
        Self {
            scenario: scenario.into(),
            metric: metric.into(),
            value: value.into(),
            target: String::new(),
            verdict: String::new(),
        }
    }

    /// Adds a target and whether it is met.
    pub fn target(mut self, target: &str, met: bool) -> Self {
        self.target = target.into();
        self.verdict = if met { "met" } else { "NOT met" }.into();
        self
    }
}

pub fn print_table(rows: &[Row]) {
    let w = |f: fn(&Row) -> &str, title: &str| {
        rows.iter().map(|r| f(r).len()).max().unwrap_or(0).max(title.len())
    };
    let (a, b, c, d) = (
        w(|r| &r.scenario, "scenario"),
        w(|r| &r.metric, "metric"),
        w(|r| &r.value, "value"),
        w(|r| &r.target, "target"),
    );
    println!();
    println!("| {:a$} | {:b$} | {:>c$} | {:d$} | verdict |", "scenario", "metric", "value", "target");
    println!(
        "|{}|{}|{}|{}|---------|",
        "-".repeat(a + 2),
        "-".repeat(b + 2),
        "-".repeat(c + 2),
        "-".repeat(d + 2)
    );
    for r in rows {
        println!(
            "| {:a$} | {:b$} | {:>c$} | {:d$} | {} |",
            r.scenario, r.metric, r.value, r.target, r.verdict
        );
    }
}

/// Prints a result as one JSON line (machine-readable; the table comes at the end).
pub fn emit(v: &Value) {
    println!("{v}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_close() {
        let mut last = 0;
        for us in [0, 1, 63, 64, 65, 100, 1000, 12_345, 1_000_000, 100_000_000] {
            let i = index(us);
            assert!(i >= last);
            last = i;
            let v = value(i);
            assert!((v - us as f64).abs() <= us as f64 * 0.04 + 1.0, "{us} -> {v}");
        }
        assert!(index(u64::MAX) < BUCKETS);
    }

    #[test]
    fn quantiles() {
        let mut h = Hist::default();
        for us in 1..=1000 {
            h.record_us(us);
        }
        assert!((h.quantile_ms(0.5) - 0.5).abs() < 0.02);
        assert!((h.quantile_ms(0.99) - 0.99).abs() < 0.03);
    }
}
