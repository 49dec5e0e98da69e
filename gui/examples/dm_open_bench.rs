//! Measures end-to-end encrypted DMs through the app's own code (`classchat::e2e`)
//! against an in-process server on 127.0.0.1: sending one DM, receiving one, and opening
//! a conversation of 10,000 messages (10 conversation keys, as rotation every 1,000
//! messages makes): fetch and open the keys, MAC-check and decrypt everything, put it in
//! the model, and verify the signatures of the rows on screen.
//!
//! ```text
//! cargo run --release -p classchat --example dm_open_bench -- [MESSAGES]
//! ```

use std::time::{Duration, Instant};

use classchat::e2e::{E2e, KeyPlan, WireSender};
use classchat::local::LocalStore;
use classchat::model::{Content, Model};
use classchat_wire::e2e::IDENTITY_BITS;
use classchat_wire::{Client, ClientConfig, Conv, Request, Response, TrustPolicy};

/// Rows a 1280x800 window shows, plus the margin the chat view verifies around them.
const VISIBLE: usize = 40 + 2 * 30;

async fn user(addr: &str, name: &str) -> anyhow::Result<Client> {
    let (client, mut events) = Client::connect(ClientConfig::new(addr, TrustPolicy::AnyKey)).await?;
    tokio::spawn(async move { while events.recv().await.is_some() {} });
    let key = {
        let name = name.to_owned();
        tokio::task::spawn_blocking(move || classchat_wire::auth::auth_key(&name, "bench-password")).await??
    };
    client.register(name, &key, "bench").await?;
    Ok(client)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let count: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let dir = tempfile::tempdir()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    let config = classchat_server::Config {
        data_dir: dir.path().join("server"),
        rsa_bits: 2048,
        messages_per_second: 1_000_000,
        message_burst: 1_000_000,
        ..Default::default()
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(classchat_server::run(listener, config, async move {
        let _ = stop_rx.await;
    }));

    let alice = user(&addr, "alice").await?;
    let bob = user(&addr, "bob").await?;
    println!("making identity keys ({IDENTITY_BITS} bits)…");
    let alice_keys = WireSender::publish(&alice, "alice", "bench-password", IDENTITY_BITS)
        .await
        .map_err(anyhow::Error::msg)?;
    let mut bob_keys = WireSender::publish(&bob, "bob", "bench-password", IDENTITY_BITS)
        .await
        .map_err(anyhow::Error::msg)?;

    // Alice's app: her key saved on this machine, the engine set up as after a login.
    let store = LocalStore::new(dir.path().join("alice-app"));
    store.set_identity(&addr, "alice", &alice_keys.identity.to_pkcs8_der().map_err(anyhow::Error::msg)?)?;
    let e2e = E2e::new(store, &addr, "alice", Vec::new());
    let (tx, rx) = tokio::sync::oneshot::channel();
    e2e.start_setup(alice.clone(), KeyPlan::Saved, IDENTITY_BITS, move |status| {
        let _ = tx.send(status);
    });
    println!("alice's key: {:?}", rx.await?);

    // Sending: the first message of a session also makes and stores a conversation key.
    let t = Instant::now();
    let first = e2e.seal(&alice, "bob", "hello").await.map_err(anyhow::Error::msg)?;
    let first_send = t.elapsed();
    let mut sends = Vec::new();
    for i in 0..20 {
        let t = Instant::now();
        let body = e2e.seal(&alice, "bob", &format!("message {i}")).await.map_err(anyhow::Error::msg)?;
        sends.push(t.elapsed());
        alice.request(Request::SendDirect { to: "bob".into(), body, reply_to: None }).await?;
    }
    alice.request(Request::SendDirect { to: "bob".into(), body: first, reply_to: None }).await?;
    sends.sort();

    println!("bob sends {count} messages (this takes a while: one RSA signature each)…");
    let t = Instant::now();
    for i in 0..count {
        let body = bob_keys
            .seal(&bob, "alice", &format!("message {i}: the quick brown fox jumps over the lazy dog"))
            .await
            .map_err(anyhow::Error::msg)?;
        bob.request(Request::SendDirect { to: "alice".into(), body, reply_to: None }).await?;
    }
    println!("  sealed and sent in {:.1} s", t.elapsed().as_secs_f64());

    // The conversation as the app loads it: history pages from the server.
    let t = Instant::now();
    let mut messages = Vec::new();
    let mut before = None;
    loop {
        let reply = alice.request(Request::History { conv: Conv::direct("bob"), before, limit: 200 }).await?;
        let Response::History { messages: page, more, .. } = reply else { anyhow::bail!("not history") };
        before = page.last().map(|m| m.id);
        messages.extend(page);
        if !more {
            break;
        }
    }
    let fetch = t.elapsed();
    let total = messages.len();

    // Receiving one live message (verified at once).
    let one = messages.iter().find(|m| m.from == "bob").cloned().into_iter().collect::<Vec<_>>();
    let t0 = Instant::now();
    let fresh = E2e::new(LocalStore::new(dir.path().join("alice-app")), &addr, "alice", Vec::new());
    let (tx, rx) = tokio::sync::oneshot::channel();
    fresh.start_setup(alice.clone(), KeyPlan::Saved, IDENTITY_BITS, move |s| {
        let _ = tx.send(s);
    });
    rx.await?;
    let setup = t0.elapsed();
    let t = Instant::now();
    let _ = fresh.open(&alice, one.clone(), true).await;
    let first_receive = t.elapsed();
    let t = Instant::now();
    let reps = 50;
    for _ in 0..reps {
        let mut again = one.clone();
        again[0].id += 1; // a different message id each time, so it is not a replay
        let _ = e2e.open(&alice, again, true).await;
    }
    let receive = t.elapsed() / reps;

    // Opening the whole conversation: keys, MAC + decrypt, model, visible signatures.
    let t = Instant::now();
    let opened = e2e.open(&alice, messages, false).await;
    let open_all = t.elapsed();
    let t2 = Instant::now();
    let mut model = Model::new();
    let conv = Conv::direct("bob");
    model.on_dm_history(&conv, opened, false);
    let insert = t2.elapsed();
    let t3 = Instant::now();
    let c = model.conversation(&conv).ok_or_else(|| anyhow::anyhow!("no conversation"))?;
    let ids: Vec<_> = c.messages().iter().rev().take(VISIBLE).map(|m| m.id).collect();
    let checks = model.take_checks(&conv, &ids);
    let results: Vec<_> = checks.iter().map(|(id, check)| (*id, check.verify())).collect();
    let verified = results.iter().filter(|(_, ok)| *ok).count();
    model.on_verified(&conv, results);
    let verify = t3.elapsed();
    let opened_total = t.elapsed();
    let c = model.conversation(&conv).ok_or_else(|| anyhow::anyhow!("no conversation"))?;
    let shown = c.messages().iter().filter(|m| matches!(m.content, Content::Text(_))).count();

    println!("send one DM (seal: AES-CBC + HMAC + RSA-PSS sign), median of 20: {}", ms(sends[10]));
    println!(
        "first DM of a session (also a new conversation key: 2 RSA-OAEP + sign + put_dm_key): {}",
        ms(first_send)
    );
    println!("receive one live DM (MAC, decrypt, RSA-PSS verify), mean of {reps}: {}", ms(receive));
    println!(
        "first DM from a contact on a fresh engine (load key {}, then fetch + open the keys): {}",
        ms(setup),
        ms(first_receive)
    );
    println!("fetch {total} messages from the server in pages of 200: {}", ms(fetch));
    println!("open {total} messages: fetch and open 10 keys, MAC-check + decrypt all: {}", ms(open_all));
    println!("  insert into the model: {}", ms(insert));
    println!("  verify the {VISIBLE} rows on screen and around ({verified} verified): {}", ms(verify));
    println!("  total, from the fetched messages to the first screen of verified text: {}", ms(opened_total));
    println!("  messages shown as text: {shown} of {}", c.messages().len());

    let _ = stop_tx.send(());
    server.await??;
    Ok(())
}
