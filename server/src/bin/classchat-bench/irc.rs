//! The IRC side of the fan-out comparison: InspIRCd 3 (Debian's package) with the
//! loopback-only, flood-limits-off config in `server/bench/inspircd.conf`, and plain IRC
//! clients over TCP that send and receive exactly what the ClassChat clients do.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::load::Recorder;

/// Lines queued for one IRC connection's writer.
const WRITE_QUEUE: usize = 65_536;

#[derive(Debug, Clone)]
pub struct IrcOpts {
    pub bin: PathBuf,
    pub config: PathBuf,
    /// `taskset -c` list, as for the ClassChat server.
    pub cpus: Option<String>,
}

pub fn default_config() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/bench/inspircd.conf"))
}

pub struct Ircd {
    pub addr: String,
    pub pid: u32,
    child: Child,
}

impl Ircd {
    pub async fn start(opts: &IrcOpts) -> anyhow::Result<Ircd> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut cmd = match &opts.cpus {
            Some(cpus) => {
                let mut c = Command::new("taskset");
                c.args(["-c", cpus]).arg(&opts.bin);
                c
            }
            None => Command::new(&opts.bin),
        };
        let child = cmd
            .arg(format!("--config={}", opts.config.display()))
            .args(["--nofork", "--nopid", "--runasroot"])
            .env("CLASSCHAT_BENCH_IRC_PORT", port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {} (apt-get install inspircd)", opts.bin.display()))?;
        let addr = format!("127.0.0.1:{port}");
        for _ in 0..100 {
            if TcpStream::connect(&addr).await.is_ok() {
                return Ok(Ircd { addr, pid: child.id(), child });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut ircd = Ircd { addr, pid: child.id(), child };
        ircd.kill();
        anyhow::bail!("InspIRCd did not start listening")
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Ircd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One registered IRC client that has joined `chan`; lines sent through `tx` are written
/// in batches, and PRIVMSGs received are recorded as receiver `who`.
pub async fn client(
    addr: &str,
    who: usize,
    chan: &str,
    rec: Arc<Recorder>,
) -> anyhow::Result<mpsc::Sender<Vec<u8>>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (r, mut w) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
    tokio::spawn(async move {
        let mut buf = Vec::with_capacity(4096);
        while let Some(first) = rx.recv().await {
            buf.clear();
            buf.extend_from_slice(&first);
            while buf.len() < 64 * 1024 {
                match rx.try_recv() {
                    Ok(more) => buf.extend_from_slice(&more),
                    Err(_) => break,
                }
            }
            if w.write_all(&buf).await.is_err() {
                break;
            }
        }
    });
    let (numerics_tx, mut numerics) = mpsc::channel::<&'static str>(4);
    let pong = tx.clone();
    tokio::spawn(async move {
        let mut r = BufReader::with_capacity(64 * 1024, r);
        let mut line = Vec::with_capacity(512);
        loop {
            line.clear();
            match r.read_until(b'\n', &mut line).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let Ok(text) = std::str::from_utf8(&line) else { continue };
            let text = text.trim_end();
            if let Some(i) = text.find(" PRIVMSG ") {
                if let Some(j) = text[i + 9..].find(" :") {
                    rec.record(who, std::iter::once(&text[i + 9 + j + 2..]));
                }
            } else if let Some(token) = text.strip_prefix("PING ") {
                let _ = pong.try_send(format!("PONG {token}\r\n").into_bytes());
            } else {
                for code in [" 001 ", " 366 "] {
                    if text.contains(code) {
                        let _ = numerics_tx.try_send(code);
                    }
                }
                if text.starts_with("ERROR") {
                    eprintln!("irc client {who}: {text}");
                }
            }
        }
        rec.closed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    });
    tx.send(format!("NICK b{who}\r\nUSER b{who} 0 * :bench\r\n").into_bytes()).await?;
    wait_numeric(&mut numerics, " 001 ").await?;
    tx.send(format!("JOIN {chan}\r\n").into_bytes()).await?;
    wait_numeric(&mut numerics, " 366 ").await?;
    Ok(tx)
}

async fn wait_numeric(rx: &mut mpsc::Receiver<&'static str>, want: &str) -> anyhow::Result<()> {
    let wait = async {
        while let Some(code) = rx.recv().await {
            if code == want {
                return Ok(());
            }
        }
        anyhow::bail!("IRC connection closed before{want}")
    };
    tokio::time::timeout(Duration::from_secs(120), wait).await.context("IRC registration timed out")?
}
