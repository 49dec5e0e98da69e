//! A throwaway NATS server (`nats-server`) for tests and benchmarks.
//!
//! Started from Debian's `nats-server` on a free loopback port with its log in a temporary
//! directory; [`Nats::stop`] and [`Nats::start_again`] take it away and bring it back on
//! the same port (the outage tests), and dropping the handle kills it.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

/// Where Debian installs the server, then `$PATH`.
const CANDIDATES: &[&str] = &["/usr/sbin/nats-server", "/usr/bin/nats-server", "nats-server"];

/// How long a start may take before it counts as failed.
const START_TIMEOUT: Duration = Duration::from_secs(20);

pub struct Nats {
    binary: PathBuf,
    dir: tempfile::TempDir,
    addr: SocketAddr,
    child: Option<Child>,
}

impl std::fmt::Debug for Nats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nats").field("addr", &self.addr).finish_non_exhaustive()
    }
}

fn find_binary() -> anyhow::Result<PathBuf> {
    for c in CANDIDATES {
        let path = PathBuf::from(c);
        if path.is_absolute() && path.exists() {
            return Ok(path);
        }
        if !path.is_absolute()
            && Command::new(c).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
        {
            return Ok(path);
        }
    }
    anyhow::bail!("nats-server is not installed (apt-get install nats-server; `make test` installs it)")
}

/// A loopback port nobody listens on right now.
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Nats {
    /// Starts a NATS server on a free loopback port and waits until it accepts connections.
    pub fn start() -> anyhow::Result<Nats> {
        let binary = find_binary()?;
        let dir = tempfile::Builder::new().prefix("classchat-nats-").tempdir()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let mut nats = Nats { binary, dir, addr, child: None };
        nats.start_again()?;
        Ok(nats)
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Kills the server (the clients see their connection drop).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (after [`Nats::stop`]).
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        self.stop();
        let log = self.dir.path().join("nats.log");
        let child = Command::new(&self.binary)
            .args(["-a", "127.0.0.1", "-p", &self.addr.port().to_string(), "-l"])
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", self.binary.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        while TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_err() {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                let tail = std::fs::read_to_string(&log).unwrap_or_default();
                anyhow::bail!("nats-server exited with {status}: {tail}");
            }
            anyhow::ensure!(Instant::now() < deadline, "nats-server did not start within {START_TIMEOUT:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.stop();
    }
}
