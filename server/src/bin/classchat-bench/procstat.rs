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

/// The processes whose CPU a scenario reports: the server node(s), and (for a cluster) the
/// PostgreSQL and NATS servers it runs on. PostgreSQL counts with its backends.
#[derive(Debug, Clone, Default)]
pub struct Watch {
    pub servers: Vec<u32>,
    /// The postmaster: its time, its children's, and that of children that have ended.
    pub postgres: Option<u32>,
    pub nats: Option<u32>,
}

/// CPU seconds used so far by each part of a [`Watch`].
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    pub servers: f64,
    pub postgres: f64,
    pub nats: f64,
    pub at: Instant,
}

/// CPU use between two [`Usage`]s, in cores.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cores {
    pub servers: f64,
    pub postgres: f64,
    pub nats: f64,
}

impl Watch {
    pub fn one(pid: u32) -> Self {
        Self { servers: vec![pid], ..Self::default() }
    }

    /// `None` once a server is gone.
    pub fn sample(&self) -> Option<Usage> {
        let mut servers = 0.0;
        for &pid in &self.servers {
            servers += sample(pid)?.cpu_s;
        }
        Some(Usage {
            servers,
            postgres: self.postgres.map_or(0.0, tree_cpu_s),
            nats: self.nats.and_then(sample).map_or(0.0, |s| s.cpu_s),
            at: Instant::now(),
        })
    }
}

impl Usage {
    pub fn cores_since(&self, earlier: &Usage) -> Cores {
        let wall = self.at.duration_since(earlier.at).as_secs_f64();
        if wall <= 0.0 {
            return Cores::default();
        }
        Cores {
            servers: (self.servers - earlier.servers) / wall,
            postgres: (self.postgres - earlier.postgres) / wall,
            nats: (self.nats - earlier.nats) / wall,
        }
    }
}

impl Cores {
    pub fn total(&self) -> f64 {
        self.servers + self.postgres + self.nats
    }
}

/// Fields 14–17 of /proc/PID/stat (utime, stime, cutime, cstime) and field 4 (ppid).
fn stat_fields(pid: u32) -> Option<([u64; 4], u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ppid = fields.get(1)?.parse().ok()?;
    let mut t = [0u64; 4];
    for (k, v) in t.iter_mut().enumerate() {
        *v = fields.get(11 + k)?.parse().ok()?;
    }
    Some((t, ppid))
}

/// CPU seconds of `root` and its live children, and of the children it has reaped.
pub fn tree_cpu_s(root: u32) -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0.0 };
    let mut ticks = 0;
    for entry in dir.filter_map(Result::ok) {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        match stat_fields(pid) {
            Some((t, _)) if pid == root => ticks += t.iter().sum::<u64>(),
            Some((t, ppid)) if ppid == root => ticks += t[0] + t[1],
            _ => {}
        }
    }
    ticks as f64 / CLK_TCK
}

/// The process whose program name ends with `program` and whose arguments hold
/// `-p PORT`: the throwaway PostgreSQL's postmaster or NATS server.
pub fn find_listener(program: &str, port: u16) -> Option<u32> {
    let port = port.to_string();
    std::fs::read_dir("/proc").ok()?.filter_map(Result::ok).find_map(|entry| {
        let pid = entry.file_name().to_str()?.parse::<u32>().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        let named = args.first().is_some_and(|a| a.ends_with(program.as_bytes()));
        let on_port = args.windows(2).any(|w| w[0] == b"-p" && w[1] == port.as_bytes());
        (named && on_port).then_some(pid)
    })
}
