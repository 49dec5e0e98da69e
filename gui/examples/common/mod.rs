//! Shared by the examples that run a real server in-process and the real app against it
//! (`demo_server`, `transfer_frames`): starting the server, wire users, an app data
//! directory that logs in by itself, and pseudo-random file content.

// Each example uses part of this.
#![allow(dead_code)]

use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;
use classchat::e2e::WireSender;
use classchat::local::LocalStore;
use classchat_wire::crypto::ServerKey;
use classchat_wire::{Client, ClientConfig, Fingerprint, TrustPolicy};

/// Every seeded user's password.
pub const PASSWORD: &str = "demo-password";

/// A server running on the caller's tokio runtime until [`Server::stop`].
pub struct Server {
    pub addr: String,
    pub port: u16,
    pub fingerprint: Fingerprint,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Server {
    /// Starts a server on `listen` with `config`, keeping its key in `config.data_dir`
    /// (made on first use).
    pub async fn start(listen: &str, config: classchat_server::Config) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("create {}", config.data_dir.display()))?;
        let key_path = config.data_dir.join("server_key.der");
        if !key_path.exists() {
            // 2048 bits: generated in a second rather than several.
            let key = tokio::task::spawn_blocking(|| ServerKey::generate(2048)).await??;
            std::fs::write(&key_path, key.to_pkcs8_der()?)?;
        }
        let fingerprint = *ServerKey::from_pkcs8_der(&std::fs::read(&key_path)?)?.fingerprint();
        let listener =
            tokio::net::TcpListener::bind(listen).await.with_context(|| format!("bind {listen}"))?;
        let local = listener.local_addr()?;
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(classchat_server::run(listener, config, async move {
            let _ = stop_rx.await;
        }));
        Ok(Self { addr: local.to_string(), port: local.port(), fingerprint, stop, task })
    }

    /// Shuts the server down and waits for it to flush its store.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.task.await?
    }
}

/// Registers `name` (or logs in if it exists) on a new connection whose events are
/// drained and dropped.
pub async fn connect(addr: &str, name: &str, device: &str) -> anyhow::Result<Client> {
    let (client, mut events) = connect_with_events(addr, name, device).await?;
    // Nobody reads these; drain them so the server never sees a stalled client.
    tokio::spawn(async move { while events.recv().await.is_some() {} });
    Ok(client)
}

/// Like [`connect`], handing back the connection's events.
pub async fn connect_with_events(
    addr: &str,
    name: &str,
    device: &str,
) -> anyhow::Result<(Client, tokio::sync::mpsc::Receiver<classchat_wire::Event>)> {
    let (client, events) = Client::connect(ClientConfig::new(addr, TrustPolicy::AnyKey)).await?;
    let key = auth_key(name).await?;
    if client.register(name, &key, device).await.is_err() {
        client.login(name, &key, device).await?;
    }
    Ok((client, events))
}

async fn auth_key(name: &str) -> anyhow::Result<[u8; classchat_wire::auth::KEY_LEN]> {
    let name = name.to_owned();
    Ok(tokio::task::spawn_blocking(move || classchat_wire::auth::auth_key(&name, PASSWORD)).await??)
}

/// Makes and publishes an identity key for `name`, logged in on `client`.
pub async fn publish_key(client: &Client, name: &str) -> anyhow::Result<WireSender> {
    WireSender::publish(client, name, PASSWORD, 2048).await.map_err(anyhow::Error::msg)
}

/// Puts the files the app would have after a first login as `user` into `dir`: the
/// server's key trusted, a device id, its resume token and `me_key` as its identity, and
/// `contacts` in the DM list. `classchat --data-dir DIR --server ADDR --user USER` then
/// logs straight in.
pub async fn prepare_app(
    dir: &Path,
    addr: &str,
    user: &str,
    fingerprint: Fingerprint,
    me_key: &WireSender,
    contacts: &[&str],
) -> anyhow::Result<()> {
    let identity = me_key.identity.to_pkcs8_der().map_err(anyhow::Error::msg)?;
    let store = LocalStore::new(dir);
    let device = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || store.device_id()).await??
    };
    // Log in once on this device to get its resume token.
    let key = auth_key(user).await?;
    let (client, _events) = Client::connect(ClientConfig::new(addr, TrustPolicy::AnyKey)).await?;
    let welcome = client.login(user, &key, &device).await?;
    client.close().await;
    let (addr, user) = (addr.to_owned(), user.to_owned());
    let contacts: Vec<String> = contacts.iter().map(|c| (*c).to_owned()).collect();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        store.known_servers()?.trust(&addr, fingerprint)?;
        store.set_resume_token(&addr, &user, Some(&welcome.resume_token))?;
        store.set_identity(&addr, &user, &identity)?;
        for contact in contacts {
            store.add_dm_contact(&addr, &user, &contact)?;
        }
        Ok(())
    })
    .await??;
    Ok(())
}

/// Fills `buf` with xorshift64 output continuing from `state`: cheap enough to make a
/// 1 GiB file in well under a second, and not compressible.
fn fill_pseudo_random(state: &mut u64, buf: &mut [u8]) {
    for chunk in buf.chunks_mut(8) {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
}

const SEED: u64 = 0x9e37_79b9_7f4a_7c15;

/// `len` pseudo-random bytes, the same every run.
pub fn pseudo_random(len: usize) -> Vec<u8> {
    let mut bytes = vec![0; len];
    let mut state = SEED;
    fill_pseudo_random(&mut state, &mut bytes);
    bytes
}

/// Writes `len` pseudo-random bytes (the same every run) to `path`, a few MiB at a time.
pub fn write_pseudo_random(path: &Path, len: u64) -> anyhow::Result<()> {
    let mut file = std::fs::File::create(path).with_context(|| format!("create {}", path.display()))?;
    let mut state = SEED;
    let mut buf = vec![0u8; 4 << 20];
    let mut left = len;
    while left > 0 {
        let n = usize::try_from(left.min(buf.len() as u64))?;
        fill_pseudo_random(&mut state, &mut buf[..n]);
        file.write_all(&buf[..n])?;
        left -= n as u64;
    }
    file.sync_all()?;
    Ok(())
}
