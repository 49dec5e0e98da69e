//! The admin console (the server's stdin, when it is a terminal) and the admin socket
//! (`admin.sock` in the data dir, mode 0600) that `classchat-server admin …` talks to.
//!
//! Both take the same one-line commands; a leading `/` is optional. The socket protocol
//! is one command line in, the answer text out, then the server closes the connection.

use std::path::{Path, PathBuf};

use classchat_wire::{Body, Response};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::handlers::{self, admin as ops};
use crate::state::{ANNOUNCEMENTS, State};
use crate::store::Write;

/// File name of the admin socket inside the data dir.
pub const SOCKET: &str = "admin.sock";
/// Who the audit log names for actions taken at the console or through the socket.
const CONSOLE: &str = "console";
/// Longest command line accepted, bytes.
const MAX_LINE: u64 = 64 * 1024;

pub const HELP: &str = "\
commands (a leading / is optional):
  help                     this list
  users                    accounts, with who is online
  rooms                    rooms with member counts
  broadcast TEXT           announce TEXT to everyone
  kick NAME [REASON]       disconnect a user
  ban NAME [REASON]        ban an account and disconnect it
  unban NAME               lift an account ban
  remove-room NAME         delete a room and its history
  files                    stored files with sizes (and uploads in progress)
  remove-file ID           delete a stored file
  cleanup-files            delete expired files now
  audit [N]                the last N moderation actions (default 50, at most 200)
  grant-admin NAME         make NAME a server admin
  revoke-admin NAME        take server admin rights away
  stats                    bytes the server carried: relayed peer transfers, file content
  nodes                    the nodes of this server's cluster, with connections per node
  fingerprint              the server key fingerprint
  invite                   invite links (classchat://host:port#fingerprint) to hand out
  shutdown                 stop the server gracefully";

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET)
}

/// Runs one command and returns what to show.
pub async fn execute(state: &State, line: &str) -> String {
    let line = line.trim();
    let line = line.strip_prefix('/').unwrap_or(line);
    let (cmd, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    let rest = rest.trim();
    let (arg, tail) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let done = |r: handlers::ApiResult, ok: String| match r {
        Ok(_) => ok,
        Err(e) => format!("error: {}", e.message),
    };
    match (cmd, arg.is_empty()) {
        ("" | "help", _) => HELP.to_owned(),
        ("users", _) => users(state),
        ("nodes", _) => nodes(state),
        ("rooms", _) => rooms(state),
        ("fingerprint", _) => state.key.fingerprint().to_string(),
        ("stats", _) => {
            let t = state.traffic();
            format!("relayed_bytes {}\nbulk_bytes {}", t.relayed_bytes, t.bulk_bytes)
        }
        ("files", _) => files(state),
        ("cleanup-files", _) => format!("deleted {} expired files", crate::files::sweep(state).await),
        ("remove-file", false) => match arg.parse::<u64>() {
            Ok(id) if crate::files::delete(state, id).await.is_some() => format!("removed file {id}"),
            _ => format!("error: there is no file {arg:?} (see files)"),
        },
        ("invite", _) => {
            let links = invites(state);
            if links.is_empty() {
                "error: the server is not listening yet".to_owned()
            } else {
                links.join("\n")
            }
        }
        ("broadcast", false) => {
            let write = Write::Message {
                conv: ANNOUNCEMENTS.to_owned(),
                sender: state.config.server_name.clone(),
                body: Body::Text { text: rest.to_owned() },
                reply_to: None,
            };
            let online = state.lock().sessions.len();
            done(
                handlers::commit(state, vec![write], None).await.map(|_| Response::Done),
                format!("sent to {online} sessions"),
            )
        }
        ("kick", false) => done(ops::kick_user(state, CONSOLE, arg, tail).await, format!("kicked {arg}")),
        ("ban", false) => done(ops::ban_user(state, CONSOLE, arg, tail, true).await, format!("banned {arg}")),
        ("unban", false) => {
            done(ops::ban_user(state, CONSOLE, arg, "", false).await, format!("unbanned {arg}"))
        }
        ("remove-room", false) => done(ops::remove_room(state, CONSOLE, arg).await, format!("removed {arg}")),
        ("audit", _) => audit(state, arg).await,
        ("grant-admin", false) => {
            done(ops::set_server_admin(state, arg, true).await, format!("{arg} is now a server admin"))
        }
        ("revoke-admin", false) => {
            done(ops::set_server_admin(state, arg, false).await, format!("{arg} is no longer a server admin"))
        }
        ("shutdown", _) => {
            state.shutdown.cancel();
            "shutting down".to_owned()
        }
        (c, true)
            if [
                "broadcast",
                "kick",
                "ban",
                "unban",
                "remove-room",
                "remove-file",
                "grant-admin",
                "revoke-admin",
            ]
            .contains(&c) =>
        {
            format!("error: {c} needs an argument (try help)")
        }
        (c, _) => format!("error: unknown command {c:?} (try help)"),
    }
}

/// The newest moderation actions, oldest of them first, one a line.
async fn audit(state: &State, arg: &str) -> String {
    let limit = if arg.is_empty() { Ok(50) } else { arg.parse::<u32>() };
    let limit = match limit {
        Ok(n @ 1..=classchat_wire::MAX_AUDIT_PAGE) => n,
        _ => return format!("error: audit takes a count from 1 to {}", classchat_wire::MAX_AUDIT_PAGE),
    };
    match state.store.audit_page(None, limit).await {
        Ok((entries, _)) if entries.is_empty() => "no moderation actions yet".to_owned(),
        Ok((entries, _)) => entries
            .iter()
            .rev()
            .map(|e| {
                let when = jiff::Timestamp::from_millisecond(i64::try_from(e.ts).unwrap_or(i64::MAX))
                    .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
                    .unwrap_or_default();
                let target = if e.target.is_empty() { String::new() } else { format!(" {}", e.target) };
                let detail = if e.detail.is_empty() { String::new() } else { format!(" ({})", e.detail) };
                format!("{when}  {}: {}{target}{detail}", e.actor, e.action.as_str())
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Err(e) => format!("error: could not read the audit log: {e}"),
    }
}

/// Invite links for this server: one listing every node when `public_addresses` is set,
/// else the configured public host, else one per address of this machine when listening
/// on every interface.
pub fn invites(state: &State) -> Vec<String> {
    use classchat_wire::invite::Invite;
    let fingerprint = *state.key.fingerprint();
    // Checked when the configuration was loaded; an error here means a caller skipped that.
    match state.config.public_invite_nodes() {
        Ok(nodes) if !nodes.is_empty() => {
            return Invite::new(nodes, fingerprint).map(|i| i.to_string()).into_iter().collect();
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("no multi-node invite: {e:#}"),
    }
    let Some(addr) = state.local_addr.get() else { return Vec::new() };
    let hosts: Vec<String> = if !state.config.public_host.is_empty() {
        vec![state.config.public_host.clone()]
    } else if addr.ip().is_unspecified() {
        let mut hosts: Vec<String> = if_addrs::get_if_addrs()
            .unwrap_or_default()
            .into_iter()
            .filter(|i| !i.is_loopback() && (i.ip().is_ipv4() || addr.is_ipv6()))
            .filter(|i| !matches!(i.ip(), std::net::IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80))
            .map(|i| i.ip().to_string())
            .collect();
        hosts.sort();
        hosts.dedup();
        if hosts.is_empty() { vec!["127.0.0.1".to_owned()] } else { hosts }
    } else {
        vec![addr.ip().to_string()]
    };
    hosts.into_iter().map(|host| Invite::single(host, addr.port(), fingerprint).to_string()).collect()
}

/// The cluster's nodes as this node knows them, one a line.
fn nodes(state: &State) -> String {
    let Some(bus) = &state.bus else {
        let connections = state.lock().sessions.len();
        return format!(
            "1 node (this server runs alone; no bus configured)\nthis node: {connections} connections"
        );
    };
    let nodes = bus.nodes(state);
    let total: u64 = nodes.iter().map(|(n, _, _)| u64::from(n.connections)).sum();
    let mut out = format!("{} nodes, {total} connections\n", nodes.len());
    for (n, me, age) in nodes {
        let started = jiff::Timestamp::from_millisecond(i64::try_from(n.started_ms).unwrap_or(0))
            .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
            .unwrap_or_default();
        let seen = if me { "this node".to_owned() } else { format!("heard {age} s ago") };
        out.push_str(&format!(
            "{:<20} {:<22} {:>6} connections, {:>5} users online, up since {started} ({seen})\n",
            n.name,
            n.listen,
            n.connections,
            n.online.len()
        ));
    }
    out.truncate(out.trim_end().len());
    out
}

fn users(state: &State) -> String {
    let inner = state.lock();
    let mut rows: Vec<_> = inner.users.values().collect();
    rows.sort_by_key(|u| u.name.to_ascii_lowercase());
    let online = rows.iter().filter(|u| u.online()).count();
    let mut out = format!("{} users, {online} online\n", rows.len());
    for u in rows {
        let mut flags = Vec::new();
        match (u.sessions.len(), u.remote) {
            (0, 0) => {}
            (here, 0) => flags.push(format!("online ({here} sessions)")),
            (here, elsewhere) => {
                flags.push(format!("online ({here} sessions here, {elsewhere} on other nodes)"));
            }
        }
        if u.server_admin {
            flags.push("admin".into());
        }
        if u.banned {
            flags.push("banned".into());
        }
        out.push_str(&format!("  {} {}\n", u.name, flags.join(", ")));
    }
    out.trim_end().to_owned()
}

fn files(state: &State) -> String {
    let rows = state.files.list();
    let total: u64 = rows.iter().map(|(r, _)| r.size).sum();
    let mut out = format!("{} files, {total} bytes\n", rows.len());
    for (r, uploading) in rows {
        let to = match (&r.recipient_lc, r.conv.strip_prefix("r:")) {
            (Some(user), _) => format!("to={user}"),
            (None, Some(room)) => format!("room={room}"),
            (None, None) => String::new(),
        };
        let state = if uploading {
            "uploading".to_owned()
        } else {
            r.sha256.as_deref().map(hex::encode).unwrap_or_default()
        };
        out.push_str(&format!("  {} {:?} size={} from={} {to} {state}\n", r.id, r.name, r.size, r.owner_lc));
    }
    out.trim_end().to_owned()
}

fn rooms(state: &State) -> String {
    let inner = state.lock();
    let mut rows: Vec<_> = inner.rooms.values().collect();
    rows.sort_by_key(|r| r.name.to_ascii_lowercase());
    let mut out = format!("{} rooms\n", rows.len());
    for r in rows {
        let admin = if r.admin.is_empty() { "-".to_owned() } else { State::display_name(&inner, &r.admin) };
        out.push_str(&format!(
            "  {} members={} admin={}{} topic={:?}\n",
            r.name,
            r.members.len(),
            admin,
            if r.password.is_some() { " locked" } else { "" },
            r.topic
        ));
    }
    out.trim_end().to_owned()
}

/// Binds the admin socket, replacing a stale one, with owner-only permissions.
pub fn bind_socket(data_dir: &Path) -> std::io::Result<UnixListener> {
    let path = socket_path(data_dir);
    if path.exists() {
        // A live server answers; a stale socket from a crash does not and is replaced.
        if std::os::unix::net::UnixStream::connect(&path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                "another server uses this data dir",
            ));
        }
        std::fs::remove_file(&path)?;
    }
    let listener = UnixListener::bind(&path)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

pub async fn serve_socket(state: State, listener: UnixListener) {
    loop {
        let conn = tokio::select! {
            () = state.shutdown.cancelled() => return,
            c = listener.accept() => c,
        };
        match conn {
            Ok((stream, _)) => {
                let state = state.clone();
                tokio::spawn(async move {
                    if let Err(e) = answer(&state, stream).await {
                        tracing::debug!(error = %e, "admin socket client failed");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "admin socket accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

async fn answer(state: &State, stream: UnixStream) -> std::io::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut line = String::new();
    BufReader::new(r).take(MAX_LINE).read_line(&mut line).await?;
    let out = execute(state, &line).await;
    w.write_all(out.as_bytes()).await?;
    w.write_all(b"\n").await?;
    w.shutdown().await
}

/// Sends one command to the server running on `data_dir` and returns its answer.
pub async fn send(data_dir: &Path, command: &str) -> anyhow::Result<String> {
    let path = socket_path(data_dir);
    let mut stream = UnixStream::connect(&path).await.map_err(|e| {
        anyhow::anyhow!("no server is running on {} ({}: {e})", data_dir.display(), path.display())
    })?;
    stream.write_all(command.replace('\n', " ").as_bytes()).await?;
    stream.write_all(b"\n").await?;
    let mut out = String::new();
    stream.read_to_string(&mut out).await?;
    Ok(out.trim_end().to_owned())
}

/// Reads commands from the terminal on a plain thread and runs them on the runtime.
pub fn spawn_console(state: State) {
    let handle = tokio::runtime::Handle::current();
    let spawned = std::thread::Builder::new().name("classchat-console".into()).spawn(move || {
        println!("Admin console ready: type /help");
        let stdin = std::io::stdin();
        let mut line = String::new();
        loop {
            line.clear();
            match std::io::BufRead::read_line(&mut stdin.lock(), &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line.trim().is_empty() {
                continue;
            }
            let out = handle.block_on(execute(&state, &line));
            println!("{out}");
            if state.shutdown.is_cancelled() {
                return;
            }
        }
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "could not start the admin console");
    }
}
