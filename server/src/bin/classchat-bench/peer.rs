//! `peer`: one shared file fetched straight from its sharer (issue 15), on loopback or
//! between two network namespaces.
//!
//! - Loopback: the sharer and the fetcher are two real clients in this process.
//! - `--netns`: two namespaces this run creates (veth pairs to the host, where the server
//!   listens on the host end of the first, and one veth pair between them: the direct
//!   path). The sharer and the fetcher are this binary again (`peer-share`, `peer-fetch`)
//!   run with `ip netns exec`. `--block-direct` leaves the direct pair out (and
//!   blackholes the sharer's host-side address in the fetcher's namespace), so the fetch
//!   falls back to the server's relay. The namespaces are removed when the run ends, also
//!   on failure. Without root or `ip`, the run says why and reports `skipped`.
//!
//! Each fetch is timed from the `peer_fetch` request to the verified, renamed file; the
//! JSON line carries the route, the server's own byte counters (`admin stats`) before and
//! after, and for `--netns` the bytes that crossed the sharer's link to the host.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use anyhow::Context;
use classchat_wire::e2e::Identity;
use classchat_wire::peer::{
    FetchOptions, FetchRequest, Route, SharedEntry, SharedIndex, Sharer, SharerConfig, fetch,
};
use classchat_wire::{Client, Request};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::conn;
use crate::stats::{Row, round3};
use crate::target::{Account, DataDir, ServerOpts, Target, seed_room, seed_users};

const ROOM: &str = "peers";

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Size of the shared file, MiB.
    #[arg(long, default_value_t = 1024)]
    pub mib: u64,
    /// Fetches measured; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Put the two peers in two network namespaces joined by veth pairs (needs root).
    #[arg(long)]
    pub netns: bool,
    /// With `--netns`: no direct path between the namespaces (the relay must carry it).
    #[arg(long)]
    pub block_direct: bool,
}

/// `peer-share` / `peer-fetch`: one peer of a `--netns` run, inside its namespace.
#[derive(Debug, Clone, clap::Args)]
pub struct RoleArgs {
    /// The server's `host:port`.
    #[arg(long)]
    pub addr: String,
    #[arg(long)]
    pub user: String,
    /// The resume token, hex.
    #[arg(long)]
    pub token: String,
    /// share: the file to share; fetch: where to save.
    #[arg(long)]
    pub file: PathBuf,
    /// fetch: who shares it.
    #[arg(long, default_value = "")]
    pub sharer: String,
    /// fetch: its SHA-256 (hex) and size.
    #[arg(long, default_value = "")]
    pub sha256: String,
    #[arg(long, default_value_t = 0)]
    pub size: u64,
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
}

pub async fn run(opts: &ServerOpts, a: &Args) -> anyhow::Result<(Value, Vec<Row>)> {
    anyhow::ensure!(a.runs > 0 && a.mib > 0, "--runs and --mib must be positive");
    if a.netns {
        return run_netns(opts, a).await;
    }
    let data = DataDir::new(opts)?;
    let accounts = seed_users(&data.db()?, "p", 2)?;
    seed_room(&data.db()?, ROOM, &["p0", "p1"])?;
    let target = Target::start(opts, &data).await?;
    let addr = target.addr_string();
    let work = tempfile::Builder::new().prefix("classchat-bench-peer-").tempdir_in(&opts.data_root)?;
    let source = work.path().join("shared.bin");
    crate::file::write_source(&source, a.mib)?;
    let (sha256, size) = hash(&source).await?;

    let sharer = share(&addr, accounts[0].clone(), &source, "127.0.0.1:0".parse()?, Some(Vec::new())).await?;
    let before = counts(data.path()).await?;
    let out = work.path().join("received.bin");
    let fetched = fetch_runs(&addr, accounts[1].clone(), "p0", &sha256, size, &out, a.runs).await?;
    let after = counts(data.path()).await?;
    sharer.stop().await?;
    target.stop().await?;
    report(a, "loopback", &fetched, before, after, None)
}

/// What the server counted: (relayed, bulk) bytes.
async fn counts(data: &Path) -> anyhow::Result<(u64, u64)> {
    let out = classchat_server::admin::send(data, "stats").await?;
    let get = |key: &str| -> anyhow::Result<u64> {
        out.lines()
            .find_map(|l| l.strip_prefix(key))
            .context("no counter in admin stats")?
            .trim()
            .parse()
            .context("a counter")
    };
    Ok((get("relayed_bytes")?, get("bulk_bytes")?))
}

async fn hash(path: &Path) -> anyhow::Result<(Vec<u8>, u64)> {
    let p = path.to_owned();
    let entry = tokio::task::spawn_blocking(move || SharedEntry::from_path(&p)).await??;
    Ok((entry.sha256.to_vec(), entry.size))
}

/// Logs `account` in, publishes a fresh identity key, and returns the client, its events
/// and the key.
async fn login(
    addr: &str,
    mut account: Account,
) -> anyhow::Result<(Client, tokio::sync::mpsc::Receiver<classchat_wire::Event>, Identity)> {
    let (client, events, _) = conn::login(addr, None, &mut account, 1024).await?;
    let identity = tokio::task::spawn_blocking(|| Identity::generate(2048)).await??;
    let public_key = identity.public().der().to_vec();
    client.request(Request::PublishKey { public_key, backup: vec![0; 64] }).await?;
    Ok((client, events, identity))
}

/// Starts sharing `file` as `account`; the sharer answers the session's events.
async fn share(
    addr: &str,
    account: Account,
    file: &Path,
    listen: std::net::SocketAddr,
    advertise: Option<Vec<IpAddr>>,
) -> anyhow::Result<Sharer> {
    let name = account.name.clone();
    let (client, mut events, identity) = login(addr, account).await?;
    let index = SharedIndex::new();
    let p = file.to_owned();
    index.insert(tokio::task::spawn_blocking(move || SharedEntry::from_path(&p)).await??);
    index.set_enabled(true);
    let mut config = SharerConfig::new(name, identity);
    config.listen = listen;
    config.advertise = advertise;
    config.max_uploads = 3;
    let (sharer, mut sharer_events) = Sharer::start(client, index, config).await?;
    let s = sharer.clone();
    tokio::spawn(async move {
        while let Some(ev) = events.recv().await {
            s.handle_event(&ev);
        }
    });
    tokio::spawn(async move { while sharer_events.recv().await.is_some() {} });
    Ok(sharer)
}

/// One fetch's time and route.
struct Fetched {
    seconds: f64,
    route: Route,
}

async fn fetch_runs(
    addr: &str,
    account: Account,
    sharer: &str,
    sha256: &[u8],
    size: u64,
    out: &Path,
    runs: usize,
) -> anyhow::Result<Vec<Fetched>> {
    let name = account.name.clone();
    let (client, mut events, identity) = login(addr, account).await?;
    tokio::spawn(async move { while events.recv().await.is_some() {} });
    let options = FetchOptions::new(name, identity);
    let req = FetchRequest {
        room: ROOM.into(),
        sharer: sharer.into(),
        name: "shared.bin".into(),
        size,
        sha256: sha256.to_vec(),
        dest: out.to_owned(),
    };
    let mut done = Vec::new();
    for run in 0..runs {
        let t0 = Instant::now();
        let got = fetch(&client, &req, &options).await?;
        let seconds = t0.elapsed().as_secs_f64();
        eprintln!("peer run {run}: {:.0} MB/s ({seconds:.2} s, {})", size as f64 / seconds / 1e6, got.route);
        std::fs::remove_file(out)?;
        done.push(Fetched { seconds, route: got.route });
    }
    Ok(done)
}

fn report(
    a: &Args,
    place: &str,
    fetched: &[Fetched],
    before: (u64, u64),
    after: (u64, u64),
    link_bytes: Option<u64>,
) -> anyhow::Result<(Value, Vec<Row>)> {
    let mut secs: Vec<f64> = fetched.iter().map(|f| f.seconds).collect();
    secs.sort_by(f64::total_cmp);
    let median = secs[secs.len() / 2];
    let size = a.mib << 20;
    let mbps = size as f64 / median / 1e6;
    let routes: Vec<String> = fetched.iter().map(|f| f.route.to_string()).collect();
    let result = json!({
        "scenario": "peer",
        "where": place,
        "mib": a.mib,
        "runs": a.runs,
        "seconds": secs.iter().map(|t| round3(*t)).collect::<Vec<_>>(),
        "median_s": round3(median),
        "median_mb_per_s": round3(mbps),
        "routes": routes,
        "server_relayed_bytes": after.0 - before.0,
        "server_bulk_bytes": after.1 - before.1,
        "sharer_link_bytes": link_bytes,
        "verified": true,
    });
    let rows = vec![
        Row::new(
            "peer",
            &format!("{} MiB fetched, {place}, {}, median of {}", a.mib, routes[0], a.runs),
            format!("{mbps:.0} MB/s"),
        )
        .target(">= 500 MB/s", mbps >= 500.0),
    ];
    Ok((result, rows))
}

// ---- network namespaces ----------------------------------------------------------------

/// Two namespaces and their links, removed on drop.
struct Netns {
    a: String,
    b: String,
    /// The host ends of the links (the sharer's carries the byte counters).
    host_a: String,
    host_b: String,
    /// Subnet base: 10.X.0.0/16 for this run.
    x: u8,
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = std::process::Command::new("ip").args(args).output().context("cannot run ip")?;
    anyhow::ensure!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

fn in_ns(ns: &str, args: &[&str]) -> anyhow::Result<()> {
    let mut all = vec!["netns", "exec", ns, "ip"];
    all.extend_from_slice(args);
    ip(&all)
}

impl Netns {
    /// Why namespaces cannot be made here, if they cannot.
    fn unavailable() -> Option<String> {
        let uid = std::process::Command::new("id").arg("-u").output().ok()?;
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            return Some("not root: network namespaces need root".into());
        }
        match std::process::Command::new("ip").arg("-V").output() {
            Ok(o) if o.status.success() => None,
            _ => Some("the ip command (iproute2) is not installed".into()),
        }
    }

    fn create(direct: bool) -> anyhow::Result<Self> {
        static RUN: AtomicU32 = AtomicU32::new(0);
        let pid = std::process::id();
        let n = RUN.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{}{}", pid % 100_000, n);
        let x = 100 + ((pid.wrapping_mul(7) + n * 13) % 100) as u8;
        let ns = Netns {
            a: format!("ccp{tag}a"),
            b: format!("ccp{tag}b"),
            host_a: format!("cc{tag}ha"),
            host_b: format!("cc{tag}hb"),
            x,
        };
        // From here on, drop removes whatever was made.
        ns.setup(direct, &tag)?;
        Ok(ns)
    }

    fn setup(&self, direct: bool, tag: &str) -> anyhow::Result<()> {
        let (a, b, x) = (&self.a, &self.b, self.x);
        let (in_a, in_b) = (format!("cc{tag}a0"), format!("cc{tag}b0"));
        ip(&["netns", "add", a])?;
        ip(&["netns", "add", b])?;
        for (ns, host, inner, net) in [(a, &self.host_a, &in_a, 1), (b, &self.host_b, &in_b, 2)] {
            ip(&["link", "add", host, "type", "veth", "peer", "name", inner])?;
            ip(&["link", "set", inner, "netns", ns])?;
            ip(&["addr", "add", &format!("10.{x}.{net}.1/24"), "dev", host])?;
            ip(&["link", "set", host, "up"])?;
            in_ns(ns, &["addr", "add", &format!("10.{x}.{net}.2/24"), "dev", inner])?;
            in_ns(ns, &["link", "set", inner, "up"])?;
            in_ns(ns, &["link", "set", "lo", "up"])?;
            in_ns(ns, &["route", "add", "default", "via", &format!("10.{x}.{net}.1")])?;
        }
        // The fetcher never reaches the sharer through the host, even where it forwards.
        in_ns(b, &["route", "add", "blackhole", &format!("10.{x}.1.2/32")])?;
        if direct {
            let (da, db) = (format!("cc{tag}da"), format!("cc{tag}db"));
            ip(&["link", "add", &da, "type", "veth", "peer", "name", &db])?;
            ip(&["link", "set", &da, "netns", a])?;
            ip(&["link", "set", &db, "netns", b])?;
            in_ns(a, &["addr", "add", &format!("10.{x}.3.1/24"), "dev", &da])?;
            in_ns(b, &["addr", "add", &format!("10.{x}.3.2/24"), "dev", &db])?;
            in_ns(a, &["link", "set", &da, "up"])?;
            in_ns(b, &["link", "set", &db, "up"])?;
        }
        Ok(())
    }

    fn server_ip(&self) -> String {
        format!("10.{}.1.1", self.x)
    }

    /// Bytes through the host end of the sharer's link, both ways.
    fn link_bytes(&self) -> u64 {
        ["rx_bytes", "tx_bytes"]
            .iter()
            .filter_map(|f| {
                std::fs::read_to_string(format!("/sys/class/net/{}/statistics/{f}", self.host_a)).ok()
            })
            .filter_map(|s| s.trim().parse::<u64>().ok())
            .sum()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veths in it, and so their host ends.
        for ns in [&self.a, &self.b] {
            let _ = ip(&["netns", "del", ns]);
        }
        // The host ends go with their peers, but not always at once: remove them too.
        for link in [&self.host_a, &self.host_b] {
            let _ =
                std::process::Command::new("ip").args(["link", "del", link]).stderr(Stdio::null()).status();
        }
    }
}

fn skipped(a: &Args, why: &str) -> (Value, Vec<Row>) {
    eprintln!("peer --netns skipped: {why}");
    let place = if a.block_direct { "veth, direct path blocked" } else { "veth" };
    (
        json!({ "scenario": "peer", "where": place, "skipped": why }),
        vec![Row::new("peer", &format!("{} MiB, {place}", a.mib), format!("skipped: {why}"))],
    )
}

async fn run_netns(opts: &ServerOpts, a: &Args) -> anyhow::Result<(Value, Vec<Row>)> {
    if let Some(why) = Netns::unavailable() {
        return Ok(skipped(a, &why));
    }
    let ns = match Netns::create(!a.block_direct) {
        Ok(ns) => ns,
        Err(e) => return Ok(skipped(a, &format!("could not create network namespaces: {e:#}"))),
    };
    let data = DataDir::new(opts)?;
    let accounts = seed_users(&data.db()?, "p", 2)?;
    seed_room(&data.db()?, ROOM, &["p0", "p1"])?;
    let target = Target::start_on(opts, &data, &format!("{}:0", ns.server_ip()), |_| {}).await?;
    let addr = target.addr_string();
    let work = tempfile::Builder::new().prefix("classchat-bench-peer-").tempdir_in(&opts.data_root)?;
    let source = work.path().join("shared.bin");
    crate::file::write_source(&source, a.mib)?;
    let (sha256, size) = hash(&source).await?;
    let exe = std::env::current_exe()?;
    let token = |acc: &Account| hex::encode(&acc.token);

    let mut sharer = tokio::process::Command::new("ip")
        .args(["netns", "exec", &ns.a])
        .arg(&exe)
        .args(["peer-share", "--addr", &addr, "--user", "p0", "--token", &token(&accounts[0]), "--file"])
        .arg(&source)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = BufReader::new(sharer.stdout.take().context("sharer stdout")?).lines();
    loop {
        match lines.next_line().await? {
            Some(l) if l.trim() == "READY" => break,
            Some(_) => {}
            None => anyhow::bail!("the sharer exited before it was ready"),
        }
    }
    let before = counts(data.path()).await?;
    let link_before = ns.link_bytes();
    let out = work.path().join("received.bin");
    let fetcher = tokio::process::Command::new("ip")
        .args(["netns", "exec", &ns.b])
        .arg(&exe)
        .args(["peer-fetch", "--addr", &addr, "--user", "p1", "--token", &token(&accounts[1])])
        .args(["--sharer", "p0", "--sha256", &hex::encode(&sha256), "--size", &size.to_string()])
        .args(["--runs", &a.runs.to_string(), "--file"])
        .arg(&out)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .output()
        .await?;
    let link = ns.link_bytes() - link_before;
    let after = counts(data.path()).await?;
    let _ = sharer.kill().await;
    anyhow::ensure!(fetcher.status.success(), "the fetcher failed (its stderr is above)");
    let mut fetched = Vec::new();
    for line in String::from_utf8_lossy(&fetcher.stdout).lines() {
        let v: Value = serde_json::from_str(line).context("a fetch result line")?;
        let route = match v["route"].as_str() {
            Some("relayed") => Route::Relayed,
            _ => Route::Direct(std::net::SocketAddr::from(([0, 0, 0, 0], 0))),
        };
        fetched.push(Fetched { seconds: v["seconds"].as_f64().unwrap_or(f64::NAN), route });
    }
    anyhow::ensure!(fetched.len() == a.runs, "the fetcher reported {} of {} runs", fetched.len(), a.runs);
    target.stop().await?;
    let place = if a.block_direct { "veth, direct path blocked" } else { "veth" };
    let r = report(a, place, &fetched, before, after, Some(link));
    drop(ns);
    r
}

/// `peer-share`: shares `--file` until killed; prints `READY` once registered.
pub async fn share_role(r: &RoleArgs) -> anyhow::Result<()> {
    let account = Account { name: r.user.clone(), token: hex::decode(&r.token)? };
    let _sharer = share(&r.addr, account, &r.file, "0.0.0.0:0".parse()?, None).await?;
    println!("READY");
    std::io::stdout().flush()?;
    std::future::pending::<()>().await;
    Ok(())
}

/// `peer-fetch`: fetches `--runs` times, checks each copy against the hash (the fetch
/// does) and prints one JSON line per fetch.
pub async fn fetch_role(r: &RoleArgs) -> anyhow::Result<()> {
    let account = Account { name: r.user.clone(), token: hex::decode(&r.token)? };
    let sha256 = hex::decode(&r.sha256)?;
    let fetched = fetch_runs(&r.addr, account, &r.sharer, &sha256, r.size, &r.file, r.runs).await?;
    for f in fetched {
        println!("{}", json!({ "seconds": f.seconds, "route": f.route.to_string() }));
    }
    Ok(())
}
