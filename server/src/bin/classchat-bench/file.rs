//! `file`: one file from one client through the server to another, over loopback,
//! encrypted. Alice offers the file to Bob; Bob accepts as soon as the offer arrives and
//! downloads while the upload is still running (the server relays what it has written),
//! so the two transfers overlap. Timed from the `upload_file` request to Bob's verified,
//! renamed copy. Source and destination files are on `--data-root`'s filesystem. Beside
//! the wall-clock rate it reports the CPU seconds each process spent per GiB moved (the
//! server, and this process, which runs both clients), which a busy machine disturbs less.

use std::io::Write;
use std::time::Instant;

use classchat_wire::{Conv, Event};
use serde_json::{Value, json};

use crate::conn;
use crate::procstat;
use crate::stats::{Row, round3};
use crate::target::{DataDir, ServerOpts, Target, seed_users};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Size of the file, MiB.
    #[arg(long, default_value_t = 1024)]
    pub mib: u64,
    /// Transfers measured; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
}

pub async fn run(opts: &ServerOpts, a: &Args) -> anyhow::Result<(Value, Vec<Row>)> {
    anyhow::ensure!(a.runs > 0 && a.mib > 0, "--runs and --mib must be positive");
    let data = DataDir::new(opts)?;
    let mut accounts = seed_users(&data.db()?, "f", 2)?;
    let target = Target::start(opts, &data).await?;
    let addr = target.addr_string();
    let (alice, _alice_events, _) = conn::login(&addr, None, &mut accounts[0], 64).await?;
    let (bob, mut bob_events, _) = conn::login(&addr, None, &mut accounts[1], 64).await?;
    let bob_name = accounts[1].name.clone();

    let work = tempfile::Builder::new().prefix("classchat-bench-files-").tempdir_in(&opts.data_root)?;
    let source = work.path().join("source.bin");
    write_source(&source, a.mib)?;
    let size = a.mib << 20;

    let mut totals = Vec::new();
    let mut uploads = Vec::new();
    let (mut server_cpu, mut clients_cpu) = (Vec::new(), Vec::new());
    let gib = size as f64 / f64::from(1u32 << 30);
    let s0 = procstat::sample(target.pid);
    for run in 0..a.runs {
        let dest = work.path().join(format!("received-{run}.bin"));
        let (server0, own0) = (procstat::sample(target.pid), procstat::own());
        let t0 = Instant::now();
        let ticket = alice.upload_file(Conv::direct(bob_name.as_str()), "source.bin", size, None).await?;
        let (up_client, up_source) = (alice.clone(), source.clone());
        let upload = tokio::spawn(async move {
            let r = up_client.upload_from(&ticket, &up_source, |_| {}).await;
            (r, t0.elapsed())
        });
        let offered = loop {
            match bob_events.recv().await {
                Some(Event::FileOffer { file }) => break file.id,
                Some(_) => {}
                None => anyhow::bail!("bob was disconnected"),
            }
        };
        let grant = bob.download_file(offered).await?;
        let got = bob.download_to(&grant, &dest, |_| {}).await?;
        let total = t0.elapsed();
        let (sent, up_time) = upload.await?;
        let sent = sent?;
        anyhow::ensure!(got.sha256 == sent.sha256 && got.size == size, "run {run}: the copy differs");
        let cpu = |a: Option<procstat::Sample>, b: Option<procstat::Sample>| match (a, b) {
            (Some(a), Some(b)) => (b.cpu_s - a.cpu_s) / gib,
            _ => f64::NAN,
        };
        let (server_s, clients_s) = (cpu(server0, procstat::sample(target.pid)), cpu(own0, procstat::own()));
        std::fs::remove_file(&dest)?;
        eprintln!(
            "file run {run}: {:.0} MB/s end to end ({:.2} s), upload done after {:.2} s; \
             CPU s per GiB: server {server_s:.2}, clients {clients_s:.2}",
            size as f64 / total.as_secs_f64() / 1e6,
            total.as_secs_f64(),
            up_time.as_secs_f64()
        );
        server_cpu.push(server_s);
        clients_cpu.push(clients_s);
        totals.push(total.as_secs_f64());
        uploads.push(up_time.as_secs_f64());
    }
    let s1 = procstat::sample(target.pid);
    let server_cores = match (s0, s1) {
        (Some(x), Some(y)) => procstat::cores(&x, &y),
        _ => 0.0,
    };
    totals.sort_by(f64::total_cmp);
    uploads.sort_by(f64::total_cmp);
    server_cpu.sort_by(f64::total_cmp);
    clients_cpu.sort_by(f64::total_cmp);
    let median = totals[totals.len() / 2];
    let mbps = size as f64 / median / 1e6;
    let result = json!({
        "scenario": "file",
        "mib": a.mib,
        "runs": a.runs,
        "seconds": totals.iter().map(|t| round3(*t)).collect::<Vec<_>>(),
        "median_s": round3(median),
        "median_mb_per_s": round3(mbps),
        "upload_done_median_s": round3(uploads[uploads.len() / 2]),
        "server_cores": round3(server_cores),
        "server_cpu_s_per_gib_median": round3(server_cpu[server_cpu.len() / 2]),
        "clients_cpu_s_per_gib_median": round3(clients_cpu[clients_cpu.len() / 2]),
        "load1": procstat::loadavg(),
    });
    let rows = vec![
        Row::new(
            "file",
            &format!("{} MiB A -> server -> B, median of {}", a.mib, a.runs),
            format!("{mbps:.0} MB/s"),
        )
        .target(">= 300 MB/s", mbps >= 300.0),
    ];
    target.stop().await?;
    Ok((result, rows))
}

/// `mib` MiB of incompressible-looking bytes (one random MiB, each copy shifted).
pub fn write_source(path: &std::path::Path, mib: u64) -> anyhow::Result<()> {
    let mut block = vec![0u8; 1 << 20];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut block);
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for i in 0..mib {
        block.rotate_left(1 + (i % 7) as usize);
        out.write_all(&block)?;
    }
    out.flush()?;
    Ok(())
}
