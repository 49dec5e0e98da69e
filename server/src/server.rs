//! The accept loop, connection permits and graceful shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use classchat_wire::{Body, DEFAULT_ROOM, SystemEvent};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::state::{Room, State, room_conv};
use crate::store::{Store, Write};
use crate::{admin, keys, session};

/// File name of the database inside the data dir.
pub const DB_FILE: &str = "classchat.db";
/// How long shutdown waits for connections to say goodbye.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens the data dir: key, database, in-memory state, default room.
pub async fn open_state(config: Config) -> anyhow::Result<State> {
    config.validate()?;
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| anyhow::anyhow!("cannot create data dir {}: {e}", config.data_dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&config.data_dir, std::fs::Permissions::from_mode(0o700));
    }
    let (dir, bits) = (config.data_dir.clone(), config.rsa_bits);
    let key = tokio::task::spawn_blocking(move || keys::load_or_create(&dir, bits)).await??;
    let (store, snapshot) = match &config.store {
        // Connecting and loading block: off the async workers.
        Some(url) => {
            let (url, batch, queue) = (url.clone(), config.store_batch, config.store_queue);
            tokio::task::spawn_blocking(move || Store::open_postgres(&url, batch, queue)).await??
        }
        None => Store::open(&config.data_dir.join(DB_FILE), config.store_batch, config.store_queue)?,
    };
    let bus = if config.bus.is_empty() {
        None
    } else {
        let bus = crate::bus::Bus::connect(&config.bus, &config.cluster, node_name(&config)).await?;
        store.set_hook(bus.clone());
        Some(bus)
    };
    let state = State::new(config, key, store, snapshot, bus);
    ensure_default_room(&state).await?;
    Ok(state)
}

/// The configured node name, or this machine's host name.
fn node_name(config: &Config) -> String {
    if !config.node_name.is_empty() {
        return config.node_name.clone();
    }
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".to_owned())
}

async fn ensure_default_room(state: &State) -> anyhow::Result<()> {
    {
        let mut inner = state.lock();
        if inner.rooms.contains_key(DEFAULT_ROOM) {
            return Ok(());
        }
        inner.rooms.insert(
            DEFAULT_ROOM.to_owned(),
            Room {
                name: DEFAULT_ROOM.to_owned(),
                topic: "Everyone on this server".to_owned(),
                password: None,
                admin: String::new(),
                members: Default::default(),
                bans: Default::default(),
                settings: Default::default(),
                last_post: Default::default(),
                key: classchat_wire::room_record::RoomKey::generate(),
            },
        );
    }
    let writes = vec![
        Write::CreateRoom {
            name: DEFAULT_ROOM.to_owned(),
            topic: "Everyone on this server".to_owned(),
            password: None,
            admin: String::new(),
        },
        Write::Message {
            conv: room_conv(DEFAULT_ROOM),
            sender: state.config.server_name.clone(),
            body: Body::System { event: SystemEvent::Created },
            reply_to: None,
        },
    ];
    if let Err(e) = state.store.commit(writes).await {
        // Nodes that share a database and start together: another one created it first.
        let snapshot = state.store.reload_snapshot().await?;
        anyhow::ensure!(
            snapshot.rooms.iter().any(|r| r.name.eq_ignore_ascii_case(DEFAULT_ROOM)),
            "cannot create the default room: {e}"
        );
    }
    Ok(())
}

/// Serves `listener` until `shutdown` resolves (or an admin asks), then stops accepting,
/// tells connected clients, waits briefly for them, and flushes the store.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let state = open_state(config).await?;
    serve(listener, state, shutdown).await
}

/// As [`run`], with state opened already (the binary prints the fingerprint first).
pub async fn serve(
    listener: TcpListener,
    state: State,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let _ = state.local_addr.set(listener.local_addr()?);
    let tracker = TaskTracker::new();
    match admin::bind_socket(&state.config.data_dir) {
        Ok(sock) => {
            tracker.spawn(admin::serve_socket(state.clone(), sock));
        }
        Err(e) => tracing::warn!(error = %e, "admin socket unavailable"),
    }
    tracing::info!(
        addr = %listener.local_addr()?,
        fingerprint = %state.key.fingerprint(),
        "serving"
    );
    tracker.spawn(crate::files::sweep_task(state.clone()));
    if let Some(bus) = &state.bus {
        tracker.spawn(std::sync::Arc::clone(bus).run(state.clone()));
    }
    tracker.spawn(crate::cursors::flush_task(state.clone()));
    tracker.spawn(crate::class::close_due_polls_task(state.clone()));
    let permits = Arc::new(Semaphore::new(state.config.max_connections));
    let c = &state.config;
    let gate =
        crate::gate::Gate::new(c.max_pre_login, c.max_pre_login_per_address, c.max_connections_per_address);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            () = state.shutdown.cancelled() => break,
            p = Arc::clone(&permits).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, addr) = tokio::select! {
            () = &mut shutdown => break,
            () = state.shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Some(ticket) = gate.admit(addr.ip()) else {
            tracing::info!(%addr, "refused: too many connections from this address");
            continue;
        };
        let st = state.clone();
        tracker.spawn(async move {
            session::serve(st, stream, addr, ticket).await;
            drop(permit);
        });
    }
    tracing::info!("shutting down: closing connections");
    state.shutdown.cancel();
    drop(listener);
    tracker.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, tracker.wait()).await.is_err() {
        tracing::warn!("some connections did not close in time");
    }
    crate::cursors::flush(&state, None).await;
    state.store.flush().await.map_err(|e| anyhow::anyhow!("final store flush failed: {e}"))?;
    let _ = std::fs::remove_file(admin::socket_path(&state.config.data_dir));
    tracing::info!("stopped");
    Ok(())
}
