//! The server as the .deb's systemd unit runs it: `classchat-server --config
//! /etc/classchat/server.toml --data /var/lib/classchat` (packaging/classchat-server.service),
//! here with packaging/server.toml copied unchanged and a temporary data dir. The one
//! difference is `--listen 127.0.0.1:PORT`: the unit listens on every interface, and the
//! day keeps all traffic on loopback.

use std::io::BufRead as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use classchat_wire::Fingerprint;
use classchat_wire::invite::Invite;

/// How long the server may take to print its fingerprint and invite.
const START_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct ServerProcess {
    bin: PathBuf,
    pub config: PathBuf,
    pub data: PathBuf,
    pub addr: String,
    child: Option<Child>,
    /// Lines the running server printed on stdout.
    out: Arc<Mutex<Vec<String>>>,
    pub fingerprint: Option<Fingerprint>,
    pub invites: Vec<String>,
}

impl ServerProcess {
    /// Copies `config_src` to `work/server.toml`, makes `work/data`, and picks a free
    /// loopback port (kept for restarts, so clients reconnect to the same address).
    pub fn new(bin: &Path, config_src: &Path, work: &Path) -> anyhow::Result<Self> {
        let config = work.join("server.toml");
        std::fs::copy(config_src, &config)
            .with_context(|| format!("cannot copy {} (the .deb's config)", config_src.display()))?;
        let data = work.join("data");
        std::fs::create_dir_all(&data)?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        Ok(Self {
            bin: bin.to_owned(),
            config,
            data,
            addr: format!("127.0.0.1:{port}"),
            child: None,
            out: Arc::default(),
            fingerprint: None,
            invites: Vec::new(),
        })
    }

    /// The command line, as the report shows it.
    pub fn command_line(&self) -> String {
        format!(
            "{} --config {} --data {} --listen {}",
            self.bin.display(),
            self.config.display(),
            self.data.display(),
            self.addr
        )
    }

    /// Starts the server and waits until it printed its fingerprint and invite links.
    pub async fn start(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            bail!("the server is already running");
        }
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path())?;
        let mut child = Command::new(&self.bin)
            .arg("--config")
            .arg(&self.config)
            .arg("--data")
            .arg(&self.data)
            .args(["--listen", &self.addr])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", self.bin.display()))?;
        let stdout = child.stdout.take().context("the server's stdout")?;
        self.child = Some(child);
        let out = Arc::clone(&self.out);
        lock(&out).clear();
        // Drains stdout for the server's whole life, so it never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                lock(&out).push(line);
            }
        });
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let (fp, invites) = parse_banner(&lock(&self.out));
            // The invites are the banner's last lines and are printed before the server
            // accepts: once one is there and a connection is taken, the banner is complete.
            if let Some(fp) = fp
                && !invites.is_empty()
                && tokio::net::TcpStream::connect(&self.addr).await.is_ok()
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let (_, invites) = parse_banner(&lock(&self.out));
                self.fingerprint = Some(fp);
                self.invites = invites;
                return Ok(());
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                self.child = None;
                bail!("the server exited ({status}); see {}", self.log_path().display());
            }
            if Instant::now() > deadline {
                bail!("the server printed no fingerprint and invite within {START_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The invite for this server's loopback address.
    pub fn invite(&self) -> anyhow::Result<Invite> {
        self.invites
            .iter()
            .filter_map(|l| Invite::parse(l).ok())
            .find(|i| i.addr() == self.addr)
            .context("no invite for the loopback address")
    }

    /// `kill -9`: no shutdown, no flush.
    pub fn kill9(&mut self) -> anyhow::Result<()> {
        let mut child = self.child.take().context("the server is not running")?;
        child.kill()?; // SIGKILL on Unix
        child.wait()?;
        Ok(())
    }

    /// Graceful stop (SIGTERM, as systemd stops the service); SIGKILL after 20 s.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        for _ in 0..200 {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// `classchat-server user grant-admin NAME` with the service's config and data dir.
    pub fn grant_admin(&self, name: &str) -> anyhow::Result<String> {
        let out = Command::new(&self.bin)
            .arg("--config")
            .arg(&self.config)
            .arg("--data")
            .arg(&self.data)
            .args(["user", "grant-admin", name])
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            bail!("grant-admin failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    pub fn log_path(&self) -> PathBuf {
        self.data.with_file_name("server.log")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The fingerprint (the indented line after "fingerprint") and the invite links the
/// server printed at start-up.
fn parse_banner(lines: &[String]) -> (Option<Fingerprint>, Vec<String>) {
    let mut fp = None;
    let mut invites = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.contains("fingerprint")
            && let Some(next) = lines.get(i + 1)
        {
            fp = Fingerprint::parse(next.trim());
        }
        if line.trim_start().starts_with(classchat_wire::invite::SCHEME) {
            invites.push(line.trim().to_owned());
        }
    }
    (fp, invites)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
