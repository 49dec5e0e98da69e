//! Fan-out under load: the writers batch frames per connection (across commits), and that
//! must never lose, duplicate or reorder anything.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use classchat_wire::{Conv, Event, Request, Response};
use common::{TestServer, TestUser, text_of};

/// Senders per room, messages per sender, and members (who are not senders) per room.
const SENDERS: usize = 3;
const MESSAGES: usize = 120;
const LISTENERS: usize = 8;

/// Every member of two busy rooms, and a listener in both, receives every message of the
/// rooms it is in exactly once, in commit (id) order, with nothing else missing: many
/// senders keep many messages in flight at once, so commits carry several messages and
/// writers find frames of several commits queued when they run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_messages_to_many_members_arrive_complete_and_in_order() {
    // The per-user rate limit would refuse a burst; what is tested is the delivery.
    let server = TestServer::start_with(tempfile::tempdir().expect("tempdir"), |c| {
        c.messages_per_second = 1_000_000;
        c.message_burst = 1_000_000;
    })
    .await;
    let rooms = ["alpha", "beta"];
    let mut senders: Vec<(TestUser, &str)> = Vec::new();
    let mut listeners: Vec<(TestUser, Vec<&str>)> = Vec::new();
    for (r, room) in rooms.iter().enumerate() {
        let admin = server.user(&format!("{room}_admin")).await;
        admin.create_room(room).await;
        for k in 0..LISTENERS {
            let u = server.user(&format!("{room}_l{k}")).await;
            u.join(room).await;
            listeners.push((u, vec![room]));
        }
        for k in 0..SENDERS {
            let u = server.user(&format!("{room}_s{k}")).await;
            u.join(room).await;
            senders.push((u, room));
        }
        senders.push((admin, rooms[r]));
    }
    let both = server.user("both").await;
    for room in rooms {
        both.join(room).await;
    }
    listeners.push((both, rooms.to_vec()));
    // Everyone sends at once, each with all its messages in flight.
    let mut sends = tokio::task::JoinSet::new();
    for (u, room) in &senders {
        for n in 0..MESSAGES {
            let (client, room, text) = (u.client.clone(), room.to_string(), format!("{}:{n}", u.name));
            sends.spawn(async move {
                match client
                    .request(Request::SendRoom { room: room.clone(), text: text.clone(), reply_to: None })
                    .await
                {
                    Ok(Response::Sent { id, .. }) => (room, id, text),
                    other => panic!("{text}: expected Sent, got {other:?}"),
                }
            });
        }
    }
    // room → id → text, as acknowledged to the senders.
    let mut sent: BTreeMap<String, BTreeMap<u64, String>> = BTreeMap::new();
    while let Some(r) = sends.join_next().await {
        let (room, id, text) = r.expect("send task");
        sent.entry(room).or_default().insert(id, text);
    }

    for (u, in_rooms) in &mut listeners {
        let expected: BTreeMap<u64, &String> = in_rooms
            .iter()
            .flat_map(|room| sent.get(*room).into_iter().flatten())
            .map(|(id, text)| (*id, text))
            .collect();
        check(u, &expected).await;
    }
    // A sender gets the others' messages of its room, not its own (it got `Sent`).
    for (u, room) in &mut senders {
        let expected: BTreeMap<u64, &String> = sent[*room]
            .iter()
            .filter(|(_, text)| !text.starts_with(&format!("{}:", u.name)))
            .map(|(id, text)| (*id, text))
            .collect();
        check(u, &expected).await;
    }
}

/// `user` receives exactly `expected` (id → text), in id order, each once.
async fn check(user: &mut TestUser, expected: &BTreeMap<u64, &String>) {
    let got = receive(user, expected.len()).await;
    let ids: Vec<u64> = got.iter().map(|(id, _)| *id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{}: deliveries out of order: {ids:?}", user.name);
    let got: BTreeMap<u64, &String> = got.iter().map(|(id, text)| (*id, text)).collect();
    assert_eq!(&got, expected, "{}: deliveries differ from what was sent", user.name);
}

/// The first `count` room text messages `user` receives (id, text), in arrival order;
/// other events (presence, the setup's system messages) are skipped. Waits at most 60 s overall (a hang guard, not a timing check).
async fn receive(user: &mut TestUser, count: usize) -> Vec<(u64, String)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut out = Vec::with_capacity(count);
    let mut seen = HashSet::new();
    while out.len() < count {
        let ev = match tokio::time::timeout_at(deadline, user.events.recv()).await {
            Ok(Some(ev)) => ev,
            Ok(None) => panic!("{}: connection closed after {} of {count} messages", user.name, out.len()),
            Err(_) => panic!("{}: only {} of {count} messages arrived", user.name, out.len()),
        };
        let Event::Message { message } = &ev else { continue };
        let (Conv::Room { .. }, Some(text)) = (&message.conv, text_of(&ev)) else { continue };
        assert!(seen.insert(message.id), "{}: message {} delivered twice", user.name, message.id);
        out.push((message.id, text.to_owned()));
    }
    out
}
