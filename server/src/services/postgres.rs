//! A throwaway PostgreSQL cluster (`initdb` + `pg_ctl`) for tests and benchmarks.
//!
//! The cluster lives in a temporary directory: its data, its log and its unix socket. It
//! listens on a free loopback port with password-less (`trust`) access for the one
//! superuser `classchat`, and keeps `fsync` on: an acknowledged message must survive a
//! crash of the database too. Debian's own cluster (port 5432, started by the package)
//! is neither used nor needed.
//!
//! PostgreSQL refuses to run as root: when the process is root (CI), the binaries run as
//! the `postgres` system user (`runuser`), which owns the directory.

use std::path::PathBuf;
use std::process::Command;

use anyhow::Context as _;

/// Where Debian installs the server binaries, one directory per major version.
const PG_LIB: &str = "/usr/lib/postgresql";
/// The superuser `initdb` creates, and the database the URL names.
const SUPERUSER: &str = "classchat";
/// The system user the binaries run as when this process is root.
const SYSTEM_USER: &str = "postgres";
/// Tries at starting on a free port: another process may take the port between the
/// probe and the start.
const START_TRIES: usize = 3;

/// A running throwaway cluster; stopped and removed on drop.
#[derive(Debug)]
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_system_user: bool,
    running: bool,
}

impl Postgres {
    /// Creates a cluster in a temporary directory and starts it on a free loopback port.
    pub fn start() -> anyhow::Result<Postgres> {
        let bin = newest_bin()?;
        let as_system_user = is_root();
        let dir = tempfile::Builder::new().prefix("classchat-pg-").tempdir()?;
        if as_system_user {
            run(Command::new("chown").arg(SYSTEM_USER).arg(dir.path()))
                .with_context(|| format!("cannot hand {} to the {SYSTEM_USER} user", dir.path().display()))?;
        }
        let mut pg = Postgres { dir, bin, port: 0, as_system_user, running: false };
        let data = pg.data_dir();
        pg.run_bin(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                SUPERUSER.as_ref(),
                "--auth=trust".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                "--no-locale".as_ref(),
                "--no-instructions".as_ref(),
                // Only initdb's own final flush of the new files (4 s here); the running
                // server keeps fsync on.
                "--no-sync".as_ref(),
            ],
        )
        .context("initdb failed")?;
        let mut last = None;
        for _ in 0..START_TRIES {
            pg.port = free_port()?;
            match pg.start_again() {
                Ok(()) => return Ok(pg),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("PostgreSQL did not start")))
    }

    /// The URL the server's `store` setting takes.
    pub fn url(&self) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/postgres", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The same database through the cluster's unix socket (in its directory).
    pub fn socket_url(&self) -> String {
        let dir = self.dir.path().display().to_string().replace('/', "%2F");
        format!("postgres://{SUPERUSER}@{dir}:{}/postgres", self.port)
    }

    /// Stops the cluster (fast shutdown: open connections are cut), keeping its data.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        if !self.running {
            return Ok(());
        }
        let data = self.data_dir();
        self.run_bin(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-m".as_ref(),
                "fast".as_ref(),
                "-w".as_ref(),
                "stop".as_ref(),
            ],
        )
        .context("pg_ctl stop failed")?;
        self.running = false;
        Ok(())
    }

    /// Starts the cluster again (after [`Postgres::stop`]) on the same port.
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        if self.running {
            return Ok(());
        }
        let data = self.data_dir();
        let log = self.dir.path().join("postgres.log");
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        let started = self.run_bin(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
                "-o".as_ref(),
                options.as_ref(),
                "-w".as_ref(),
                "start".as_ref(),
            ],
        );
        if let Err(e) = started {
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(10).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            anyhow::bail!("PostgreSQL did not start on port {}: {e}\n{}", self.port, tail.join("\n"));
        }
        self.running = true;
        Ok(())
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn run_bin(&self, name: &str, args: &[&std::ffi::OsStr]) -> anyhow::Result<()> {
        let exe = self.bin.join(name);
        let mut cmd = if self.as_system_user {
            let mut c = Command::new("runuser");
            c.args(["-u", SYSTEM_USER, "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        cmd.args(args).current_dir(self.dir.path());
        run(&mut cmd)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.running {
            let data = self.data_dir();
            let stopped = self.run_bin(
                "pg_ctl",
                &[
                    "-D".as_ref(),
                    data.as_os_str(),
                    "-m".as_ref(),
                    "immediate".as_ref(),
                    "-w".as_ref(),
                    "stop".as_ref(),
                ],
            );
            if let Err(e) = stopped {
                tracing::warn!(error = %e, "could not stop the throwaway PostgreSQL");
            }
        }
    }
}

/// The `bin` directory of the newest PostgreSQL installed.
fn newest_bin() -> anyhow::Result<PathBuf> {
    let not_installed = || {
        anyhow::anyhow!("PostgreSQL is not installed (no {PG_LIB}/*/bin/initdb): apt-get install postgresql")
    };
    let entries = std::fs::read_dir(PG_LIB).map_err(|_| not_installed())?;
    entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .max_by_key(|(v, _)| *v)
        .map(|(_, bin)| bin)
        .ok_or_else(not_installed)
}

fn is_root() -> bool {
    // The effective uid without `unsafe` (no libc::geteuid): /proc/self is owned by it.
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd.output().with_context(|| format!("cannot run {:?}", cmd.get_program()))?;
    anyhow::ensure!(
        out.status.success(),
        "{:?} failed ({}): {}",
        cmd.get_program(),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}
