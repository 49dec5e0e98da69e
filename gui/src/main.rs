//! `classchat`: the desktop app. Builds the tokio runtime (its worker threads own the
//! connection), then hands the main thread to eframe.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;

use classchat_wire::discovery::Scope;

use classchat::{AppConfig, ClassChatApp, local::LocalStore};

/// ClassChat: chat for classes and labs.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// An invite link from the server's admin (`classchat://host:port#fingerprint`, or
    /// `classchat://host1:port,host2:port#fingerprint` for a server of several nodes):
    /// fills in the address and trusts the server's key without asking.
    #[arg(value_name = "INVITE")]
    invite: Option<String>,
    /// Server address (host:port); overrides the one remembered from last time.
    #[arg(long, value_name = "ADDR")]
    server: Option<String>,
    /// Where known servers, the resume token and the settings live
    /// (default: the per-user data directory). Handy for running two instances.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Username to fill in; with a saved session for it, the app logs straight in.
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// Do not log in with the saved session at start-up.
    #[arg(long)]
    no_resume: bool,
    /// Where the connect screen looks for servers announced with mDNS: `lan` (every
    /// network interface), `loopback` (this computer only) or `off`.
    #[arg(long, value_name = "WHERE", default_value = "lan", value_parser = ["lan", "loopback", "off"])]
    discovery: String,
    /// The folder to share with classmates (as Settings → Shared folder). Sharing itself
    /// stays as it was: off until switched on ("Share my files" or `/share on`).
    #[arg(long, value_name = "DIR")]
    share_folder: Option<PathBuf>,
    /// The TCP port classmates' apps connect to when they fetch a file you share (as the
    /// Shared files panel's "Port"); 0 takes any free port.
    #[arg(long, value_name = "PORT")]
    peer_port: Option<u16>,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "classchat=info".into()),
        )
        .init();
    let args = Args::parse();
    let base = match args.data_dir {
        Some(dir) => dir,
        None => LocalStore::default_dir().context("cannot find a home directory for the app's data")?,
    };
    // A second window gets a directory (settings, sessions) of its own, so it can sign in
    // as someone else; the claim is held until the app exits.
    let instance = classchat::instance::claim(&base)
        .with_context(|| format!("cannot use the app's data directory {}", base.display()))?;
    if instance.number > 1 {
        tracing::info!("another ClassChat is running; this one keeps its data in {}", instance.dir.display());
    }
    let data_dir = instance.dir.clone();

    // Two workers are plenty for one connection, and leave the UI thread its core.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("classchat-net")
        .enable_all()
        .build()
        .context("cannot start the network runtime")?;

    let mut config = AppConfig::new(data_dir.clone(), runtime.handle().clone());
    config.server = args.server;
    config.user = args.user;
    config.auto_resume = !args.no_resume;
    config.invite = args.invite;
    config.share_folder = args.share_folder;
    config.peer_port = args.peer_port;
    config.discovery = match args.discovery.as_str() {
        "loopback" => Some(Scope::Loopback),
        "off" => None,
        _ => Some(Scope::Lan),
    };

    let mut viewport = egui::ViewportBuilder::default()
        .with_title("ClassChat")
        .with_app_id("classchat")
        .with_inner_size([1100.0, 720.0])
        .with_min_inner_size([640.0, 420.0]);
    if let Some(icon) = classchat::app_icon() {
        viewport = viewport.with_icon(icon);
    }
    let options = eframe::NativeOptions {
        viewport,
        // Keep eframe's settings (window size, theme, server, username) beside our own
        // files, so `--data-dir` gives a fully separate instance.
        persistence_path: Some(data_dir),
        ..Default::default()
    };
    let result = eframe::run_native(
        "ClassChat",
        options,
        Box::new(move |cc| Ok(Box::new(ClassChatApp::new(cc, config)))),
    );
    // Give the net task a moment to say goodbye to the server.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    result.map_err(|e| anyhow::anyhow!("the window could not be opened: {e}"))
}
