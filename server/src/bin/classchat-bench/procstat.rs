//! CPU time and resident memory of a process, from /proc.

use std::time::Instant;

/// Clock ticks per second of /proc/PID/stat (USER_HZ; 100 on every Linux build this runs
/// on, and what `getconf CLK_TCK` prints).
const CLK_TCK: f64 = 100.0;

#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// User + system CPU time, seconds.
    pub cpu_s: f64,
    pub rss_kib: u64,
    pub at: Instant,
}

/// Reads `pid`'s CPU time and RSS; `None` if the process is gone.
pub fn sample(pid: u32) -> Option<Sample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; fields after it are plain.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of the full line, 12 and 13 after the name.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Some(Sample { cpu_s: (utime + stime) as f64 / CLK_TCK, rss_kib, at: Instant::now() })
}

pub fn own() -> Option<Sample> {
    sample(std::process::id())
}

/// CPU use between two samples, in cores (1.0 = one core busy all the time).
pub fn cores(a: &Sample, b: &Sample) -> f64 {
    let wall = b.at.duration_since(a.at).as_secs_f64();
    if wall <= 0.0 { 0.0 } else { (b.cpu_s - a.cpu_s) / wall }
}

/// Load average over the last minute, for the record of how busy the machine was.
pub fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(-1.0)
}
