//! Connects to a running server with the real client, registers a throwaway user, sends a
//! message to `lobby` and reads it back from history. Used by packaging/test-packages.sh.
//!
//! Usage: `probe HOST:PORT FINGERPRINT` (the fingerprint in any form the server prints).

use classchat_wire::{Body, ClientConfig, Conv, Fingerprint, Request, Response, TrustPolicy};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(addr), Some(fp)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: probe HOST:PORT FINGERPRINT");
    };
    let fp = Fingerprint::parse(&fp).ok_or_else(|| anyhow::anyhow!("not a fingerprint: {fp}"))?;
    let (client, _events) =
        classchat_wire::Client::connect(ClientConfig::new(addr.clone(), TrustPolicy::Pinned(fp))).await?;
    let name = format!("probe-{}", std::process::id());
    let key = classchat_wire::auth::auth_key(&name, "probe password")?;
    let welcome = client.register(&name, &key, "probe").await?;
    let text = format!("hello from {name}");
    client.request(Request::SendRoom { room: "lobby".into(), text: text.clone(), reply_to: None }).await?;
    let Response::History { messages, .. } =
        client.request(Request::History { conv: Conv::room("lobby"), before: None, limit: 10 }).await?
    else {
        anyhow::bail!("unexpected reply to history");
    };
    anyhow::ensure!(
        messages.iter().any(|m| matches!(&m.body, Body::Text { text: t } if *t == text)),
        "the message did not come back in history"
    );
    println!(
        "ok: connected to \"{}\" at {addr}, registered {name}, sent and read back a message",
        welcome.server_name
    );
    client.close().await;
    Ok(())
}
