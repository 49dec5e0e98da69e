//! `classchat-server`: run the server, or administer a running one.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use classchat_server::{Config, admin, server};

#[derive(Parser, Debug)]
#[command(
    name = "classchat-server",
    version,
    about = "ClassChat server: encrypted chat for classes and labs"
)]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0:7420", global = true)]
    listen: String,
    /// Data directory (database, server key, admin socket). Overrides the config file.
    #[arg(long, global = true)]
    data: Option<PathBuf>,
    /// TOML configuration file (see `classchat-server config`).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Server name shown to clients. Overrides the config file.
    #[arg(long)]
    name: Option<String>,
    /// NATS URL joining this node to a cluster (`nats://host:4222`). Overrides the config
    /// file's `bus`.
    #[arg(long)]
    bus: Option<String>,
    /// This node's name in `admin nodes`. Overrides the config file's `node_name`.
    #[arg(long)]
    node_name: Option<String>,
    /// A PostgreSQL database shared by several nodes (postgres://user@host:port/db)
    /// instead of the SQLite file in the data dir. Overrides the config file.
    #[arg(long, global = true)]
    store: Option<String>,
    /// One node of this server for the printed invite, `host[:port]`; repeat it for every
    /// node, in the order clients should try them. Overrides `public_addresses`.
    #[arg(long = "public-address", value_name = "HOST[:PORT]")]
    public_address: Vec<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Send a command to the running server, e.g. `admin users` or `admin kick bob`.
    Admin {
        /// The command and its arguments; `admin help` lists them.
        // Not `trailing_var_arg`: that swallowed global options given after the command
        // (`admin users --data DIR` sent "users --data DIR" to the default data dir).
        // Text that starts with '-' can still be passed after `--`.
        #[arg(required = true)]
        args: Vec<String>,
    },
    /// Manage accounts.
    User {
        #[command(subcommand)]
        action: UserAction,
    },
    /// Print the default configuration (a commented TOML file).
    Config,
    /// Print the server key fingerprint, creating the key if needed.
    Fingerprint,
}

#[derive(Subcommand, Debug)]
enum UserAction {
    /// Make a user a server admin (instructor).
    GrantAdmin { name: String },
    /// Take server admin rights away.
    RevokeAdmin { name: String },
}

fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    let mut config = match &cli.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(data) = &cli.data {
        config.data_dir = data.clone();
    }
    if let Some(name) = &cli.name {
        config.server_name = name.clone();
    }
    if let Some(bus) = &cli.bus {
        config.bus = bus.clone();
    }
    if let Some(node) = &cli.node_name {
        config.node_name = node.clone();
    }
    if let Some(url) = &cli.store {
        config.store = Some(url.clone());
    }
    if !cli.public_address.is_empty() {
        config.public_addresses.clone_from(&cli.public_address);
    }
    config.validate()?;
    Ok(config)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = Cli::parse();
    let config = load_config(&cli)?;
    match &cli.command {
        None | Some(Command::Serve) => serve(&cli, config).await,
        Some(Command::Admin { args }) => {
            println!("{}", admin::send(&config.data_dir, &args.join(" ")).await?);
            Ok(())
        }
        Some(Command::User { action }) => {
            let (name, grant) = match action {
                UserAction::GrantAdmin { name } => (name, true),
                UserAction::RevokeAdmin { name } => (name, false),
            };
            let cmd = format!("{} {name}", if grant { "grant-admin" } else { "revoke-admin" });
            // A running server must hear about it; otherwise change the database directly.
            match admin::send(&config.data_dir, &cmd).await {
                Ok(out) => println!("{out}"),
                Err(_) => {
                    let config = config.clone();
                    let user = name.clone();
                    // Blocking (PostgreSQL's client runs its own runtime): off the workers.
                    tokio::task::spawn_blocking(move || {
                        classchat_server::set_admin_offline(&config, &user, grant)
                    })
                    .await??;
                    println!("{name} is {} a server admin", if grant { "now" } else { "no longer" });
                }
            }
            Ok(())
        }
        Some(Command::Config) => {
            print!("{}", Config::default_toml());
            Ok(())
        }
        Some(Command::Fingerprint) => {
            let state = server::open_state(config).await?;
            println!("{}", state.key.fingerprint());
            Ok(())
        }
    }
}

async fn serve(cli: &Cli, config: Config) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(&cli.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cli.listen))?;
    let state = server::open_state(config).await?;
    let addr = listener.local_addr()?;
    println!("ClassChat server \"{}\" listening on {addr}", state.config.server_name);
    println!("Data directory: {}", state.config.data_dir.display());
    println!("Server key fingerprint (students compare this on first connect):");
    println!("    {}", state.key.fingerprint());
    let _ = state.local_addr.set(addr);
    println!("Invite links (paste into the app, or open as a link):");
    for link in admin::invites(&state) {
        println!("    {link}");
    }
    let _announcement = announce(&state, addr);
    if std::io::stdin().is_terminal() {
        admin::spawn_console(state.clone());
    }
    server::serve(listener, state, shutdown_signal()).await
}

/// Announces the server on the network unless disabled; a loopback-only server is
/// announced on loopback only. Failure is not fatal: typing the address still works.
fn announce(
    state: &classchat_server::State,
    addr: std::net::SocketAddr,
) -> Option<classchat_wire::discovery::Announcement> {
    use classchat_wire::discovery::{Scope, announce};
    if !state.config.discovery {
        return None;
    }
    let scope = if addr.ip().is_loopback() { Scope::Loopback } else { Scope::Lan };
    match announce(&state.config.server_name, addr.port(), state.key.fingerprint(), scope) {
        Ok(a) => {
            tracing::info!(?scope, "announced on the local network (mDNS _classchat._tcp)");
            Some(a)
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not announce the server on the local network");
            None
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("signal received");
}
