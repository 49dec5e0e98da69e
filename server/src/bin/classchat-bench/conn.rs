//! Logging in seeded accounts with the real client: TCP, the RSA handshake, `Resume`.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use anyhow::Context;
use classchat_wire::{Client, ClientConfig, Event, TrustPolicy, Welcome};
use tokio::sync::mpsc;

use crate::target::{Account, DEVICE};

/// Local address number `i` of `sources` in 127.0.1.0/24 (port chosen by the kernel): each
/// source address has its own ephemeral port range, so many of them carry more than the
/// ~28,000 connections one address can open to one server port.
pub fn source(i: usize, sources: usize) -> Option<SocketAddr> {
    if sources <= 1 {
        return None;
    }
    let host = 1 + (i % sources.min(254)) as u8;
    Some(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 1, host), 0)))
}

pub fn client_config(addr: &str, bind: Option<SocketAddr>, event_buffer: usize) -> ClientConfig {
    let mut c = ClientConfig::new(addr, TrustPolicy::AnyKey);
    c.bind = bind;
    c.event_buffer = event_buffer;
    // Under a connection storm the server's RSA work queues up: be patient, not wrong.
    c.connect_timeout = Duration::from_secs(60);
    c.handshake_timeout = Duration::from_secs(120);
    c.request_timeout = Duration::from_secs(120);
    c.idle_timeout = Duration::from_secs(300);
    c
}

/// Connects and resumes `account`, updating its token. Returns once the server has sent
/// everything the device missed (`CaughtUp`), so the session is quiet.
pub async fn login(
    addr: &str,
    bind: Option<SocketAddr>,
    account: &mut Account,
    event_buffer: usize,
) -> anyhow::Result<(Client, mpsc::Receiver<Event>, Welcome)> {
    let (client, mut events) = Client::connect(client_config(addr, bind, event_buffer))
        .await
        .with_context(|| format!("{} could not connect", account.name))?;
    let welcome = client
        .resume(&account.name, &account.token, DEVICE)
        .await
        .with_context(|| format!("{} could not resume", account.name))?;
    account.token.clone_from(&welcome.resume_token);
    loop {
        match events.recv().await {
            Some(Event::CaughtUp) => break,
            Some(_) => {}
            None => anyhow::bail!("{} was disconnected during catch-up", account.name),
        }
    }
    Ok((client, events, welcome))
}

/// Logs in every account, `concurrency` at a time, updating their tokens. Each session's
/// events go to `on_events` as soon as it is logged in, so nothing piles up in a client
/// that nobody reads (the server would rightly cut it off). Returns the clients in the
/// accounts' order.
pub async fn login_all<F>(
    addr: &str,
    accounts: &mut [Account],
    sources: usize,
    concurrency: usize,
    event_buffer: usize,
    on_events: F,
) -> anyhow::Result<Vec<Client>>
where
    F: Fn(usize, mpsc::Receiver<Event>) + Clone + Send + 'static,
{
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, account) in accounts.iter().enumerate() {
        let (addr, mut account, sem, on_events) =
            (addr.to_owned(), account.clone(), sem.clone(), on_events.clone());
        tasks.spawn(async move {
            let _permit = sem.acquire_owned().await?;
            let (c, e, _) = login(&addr, source(i, sources), &mut account, event_buffer).await?;
            on_events(i, e);
            anyhow::Ok((i, account, c))
        });
    }
    let mut out: Vec<Option<Client>> = (0..accounts.len()).map(|_| None).collect();
    while let Some(r) = tasks.join_next().await {
        let (i, account, c) = r??;
        accounts[i] = account;
        out[i] = Some(c);
    }
    out.into_iter().map(|o| o.context("a login did not finish")).collect()
}

/// Drains and drops a session's events (idle connections still get pings and presence).
pub fn discard(_: usize, mut events: mpsc::Receiver<Event>) {
    tokio::spawn(async move { while events.recv().await.is_some() {} });
}
