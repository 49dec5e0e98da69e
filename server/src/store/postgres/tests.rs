//! Two `Store` handles on one database: two nodes.

use std::sync::{Arc, Mutex};

use classchat_wire::Body;

use crate::services::postgres::Postgres;
use crate::store::{Job, Store, Write};

async fn node(url: &str) -> Store {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || Store::open_postgres(&url, 64, 1024))
        .await
        .expect("join")
        .expect("open the store")
        .0
}

fn message(conv: &str, text: String) -> Write {
    Write::Message {
        conv: conv.to_owned(),
        sender: "alice".to_owned(),
        body: Body::Text { text },
        reply_to: None,
    }
}

/// Two nodes write to one conversation at once while a reader follows it the way
/// catch-up does ("everything after the last id I saw"): the reader sees every message,
/// in id order, so no id ever committed before a smaller one of the same conversation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_writing_one_conversation_commit_its_ids_in_order() {
    const CONV: &str = "r:race";
    const PER_WRITER: usize = 150;
    let pg = tokio::task::spawn_blocking(Postgres::start).await.expect("join").expect("PostgreSQL");
    let nodes = [node(&pg.url()).await, node(&pg.url()).await];
    let acked = Arc::new(Mutex::new(Vec::new()));
    let mut writers = Vec::new();
    for (n, store) in nodes.iter().enumerate() {
        for w in 0..2 {
            let (store, acked) = (store.clone(), Arc::clone(&acked));
            writers.push(std::thread::spawn(move || {
                for i in 0..PER_WRITER {
                    let acked = Arc::clone(&acked);
                    // One message per job (several such jobs are written by one
                    // statement), or a second one in another conversation (locks are
                    // taken for both).
                    let mut writes = vec![message(CONV, format!("writer{w} {n}/{w}/{i}"))];
                    if w == 1 {
                        writes.push(message(&format!("r:side{n}"), "x".into()));
                    }
                    let job = Job {
                        writes,
                        done: Some(Box::new(move |r, _| {
                            let ids = r.expect("committed");
                            acked.lock().expect("lock").push(ids[0].0);
                        })),
                    };
                    store.submit_blocking(job).expect("submit");
                }
            }));
        }
    }
    let reader = nodes[0].clone();
    let follow = tokio::spawn(async move {
        let mut seen: Vec<u64> = Vec::new();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        while seen.len() < 4 * PER_WRITER && tokio::time::Instant::now() < deadline {
            let after = seen.last().copied().unwrap_or(0);
            let page = reader.read(move |b| b.messages_after(CONV, after, 10_000)).await.expect("read");
            if page.is_empty() {
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
            seen.extend(page.iter().map(|m| m.id));
        }
        seen
    });
    for w in writers {
        w.join().expect("writer");
    }
    for store in &nodes {
        store.flush().await.expect("flush");
    }
    let seen = follow.await.expect("reader");
    let mut all = acked.lock().expect("lock").clone();
    all.sort_unstable();
    assert_eq!(all.len(), 4 * PER_WRITER);
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "the reader saw ids in order");
    assert_eq!(seen, all, "the reader, always asking for what is after its last id, missed none");
    let found = nodes[1].search(vec!["writer0".into()], vec![CONV.into()], 0, 1000).await.expect("search");
    assert_eq!(found.len(), 2 * PER_WRITER, "every message of the one-message jobs is indexed");
}

/// A job that fails (a name another node took a moment before) fails alone: the other
/// jobs of its batch commit. And a node reloading its snapshot sees what another wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_job_fails_alone_and_a_reload_sees_the_other_node() {
    let pg = tokio::task::spawn_blocking(Postgres::start).await.expect("join").expect("PostgreSQL");
    let (a, b) = (node(&pg.url()).await, node(&pg.url()).await);
    let user = |name: &str| Write::CreateUser { name: name.to_owned(), auth: vec![1, 2, 3] };
    a.commit(vec![user("alice")]).await.expect("alice");
    let (dup, bob) =
        tokio::join!(b.commit(vec![user("Alice")]), b.commit(vec![user("bob"), message("a", "hi".into())]));
    assert!(dup.expect_err("a taken name").contains("duplicate key"), "a clear reason");
    let bob = bob.expect("the other job commits");
    assert_eq!(bob.len(), 1, "the message's id");
    // Many at once, so that the writer takes several per batch: a failing job among
    // others fails alone there too.
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    for i in 0..20 {
        for (name, taken) in [("alice".to_owned(), true), (format!("user{i}"), false)] {
            let outcomes = Arc::clone(&outcomes);
            let done: crate::store::write::Done = Box::new(move |r, _| {
                outcomes.lock().expect("lock").push((r.is_ok(), taken));
            });
            b.submit_blocking(Job { writes: vec![user(&name)], done: Some(done) }).expect("submit");
        }
    }
    b.flush().await.expect("flush");
    let outcomes = outcomes.lock().expect("lock").clone();
    assert_eq!(outcomes.len(), 40);
    assert!(outcomes.iter().all(|(ok, taken)| ok != taken), "exactly the taken names failed: {outcomes:?}");
    let snapshot = a.reload_snapshot().await.expect("reload");
    let mut names: Vec<String> = snapshot.users.iter().map(|u| u.name.clone()).collect();
    names.sort();
    assert_eq!(names.len(), 22);
    assert_eq!(names[..2], ["alice", "bob"]);
    assert_eq!(snapshot.last_message_id, bob[0].0);
    let found = a.search(vec!["hi".into()], vec!["a".into()], 0, 10).await.expect("search");
    assert_eq!(found.iter().map(|m| m.id).collect::<Vec<_>>(), vec![bob[0].0]);
}
