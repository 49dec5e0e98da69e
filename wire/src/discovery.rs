//! Finding servers on the local network with mDNS / DNS-SD (`_classchat._tcp`).
//!
//! The server announces its name, port and key fingerprint; the app browses and lists
//! what it hears. Discovery does not cross routers or VLANs, so typing an address always
//! works too. The fingerprint in the announcement is a hint only: the app still checks
//! the key it receives in the handshake against the known-servers store (an attacker on
//! the LAN can announce anything).

use std::net::IpAddr;

use mdns_sd::{IfKind, ServiceDaemon, ServiceEvent, ServiceInfo};

use crate::fingerprint::Fingerprint;
use crate::invite::join_host_port;

/// The DNS-SD service type.
pub const SERVICE_TYPE: &str = "_classchat._tcp.local.";
/// Most servers a browser remembers (bounds memory against a noisy network).
pub const MAX_FOUND: usize = 64;

/// Which network interfaces to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every interface: the normal case for a lab server.
    Lan,
    /// Loopback only: a server that listens on 127.0.0.1, and tests.
    Loopback,
}

fn daemon(scope: Scope) -> Result<ServiceDaemon, mdns_sd::Error> {
    let d = ServiceDaemon::new()?;
    if scope == Scope::Loopback {
        d.disable_interface(IfKind::All)?;
        d.enable_interface(IfKind::LoopbackV4)?;
    }
    Ok(d)
}

/// A running announcement; dropping it withdraws the service.
pub struct Announcement {
    daemon: ServiceDaemon,
    fullname: String,
}

impl std::fmt::Debug for Announcement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Announcement").field("fullname", &self.fullname).finish()
    }
}

/// Announces a server called `name` on `port`.
pub fn announce(
    name: &str,
    port: u16,
    fingerprint: &Fingerprint,
    scope: Scope,
) -> Result<Announcement, mdns_sd::Error> {
    let daemon = daemon(scope)?;
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "classchat-server".to_owned());
    // The instance name must be unique on the link: two servers on one machine differ by port.
    let instance = format!("{name} ({host}:{port})");
    let fp = fingerprint.to_hex();
    let props = [("name", name), ("fp", fp.as_str()), ("v", "1")];
    let info = match scope {
        Scope::Lan => {
            ServiceInfo::new(SERVICE_TYPE, &instance, &format!("{host}.local."), "", port, &props[..])?
                .enable_addr_auto()
        }
        Scope::Loopback => ServiceInfo::new(
            SERVICE_TYPE,
            &instance,
            &format!("{host}.local."),
            "127.0.0.1",
            port,
            &props[..],
        )?,
    };
    let fullname = info.get_fullname().to_owned();
    daemon.register(info)?;
    Ok(Announcement { daemon, fullname })
}

impl Drop for Announcement {
    fn drop(&mut self) {
        let _ = self.daemon.unregister(&self.fullname);
        let _ = self.daemon.shutdown();
    }
}

/// A server heard on the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundServer {
    pub name: String,
    /// `host:port` to connect to (an IP address; IPv4 preferred).
    pub addr: String,
    pub fingerprint: Option<Fingerprint>,
    /// The DNS-SD instance name, unique per server.
    pub instance: String,
}

/// Listens for announcements in the background; poll it from the UI.
pub struct Browser {
    daemon: ServiceDaemon,
    rx: mdns_sd::Receiver<ServiceEvent>,
    found: Vec<FoundServer>,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser").field("found", &self.found).finish_non_exhaustive()
    }
}

impl Browser {
    pub fn start(scope: Scope) -> Result<Self, mdns_sd::Error> {
        let daemon = daemon(scope)?;
        let rx = daemon.browse(SERVICE_TYPE)?;
        Ok(Self { daemon, rx, found: Vec::new() })
    }

    /// The servers known after the last [`Browser::poll`].
    pub fn found(&self) -> &[FoundServer] {
        &self.found
    }

    /// Takes in whatever was heard since the last call (never blocks) and returns the
    /// servers currently known, sorted by name.
    pub fn poll(&mut self) -> &[FoundServer] {
        while let Ok(event) = self.rx.try_recv() {
            match event {
                ServiceEvent::ServiceResolved(info) => {
                    let Some(ip) = best_ip(info.addresses.iter().map(|a| a.to_ip_addr())) else { continue };
                    let name = info
                        .txt_properties
                        .get_property_val_str("name")
                        .map(str::to_owned)
                        .unwrap_or_else(|| info.fullname.clone());
                    let fingerprint =
                        info.txt_properties.get_property_val_str("fp").and_then(Fingerprint::parse);
                    let server = FoundServer {
                        name: name.chars().take(64).collect(),
                        addr: join_host_port(&ip.to_string(), info.port),
                        fingerprint,
                        instance: info.fullname.clone(),
                    };
                    self.found.retain(|s| s.instance != server.instance);
                    if self.found.len() < MAX_FOUND {
                        self.found.push(server);
                    }
                }
                ServiceEvent::ServiceRemoved(_, fullname) => self.found.retain(|s| s.instance != fullname),
                _ => {}
            }
        }
        self.found.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.addr.cmp(&b.addr)));
        &self.found
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.daemon.stop_browse(SERVICE_TYPE);
        let _ = self.daemon.shutdown();
    }
}

/// IPv4 first (what lab networks route), then IPv6 that is not link-local.
fn best_ip(addrs: impl Iterator<Item = IpAddr>) -> Option<IpAddr> {
    let mut all: Vec<IpAddr> = addrs.collect();
    all.sort_by_key(|a| match a {
        IpAddr::V4(_) => 0,
        IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) != 0xfe80 => 1,
        IpAddr::V6(_) => 2,
    });
    all.into_iter().find(|a| match a {
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) != 0xfe80,
        IpAddr::V4(_) => true,
    })
}
