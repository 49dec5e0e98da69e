//! A local ClassChat server with a few users, rooms and messages, for screenshots and
//! demos (`gui/screenshots.sh` uses it).
//!
//! ```text
//! cargo run -p classchat --example demo_server -- \
//!     --listen 127.0.0.1:7431 --data /tmp/demo/server --app-data /tmp/demo/ada --user ada
//! ```
//!
//! With `--app-data`, it also prepares that directory for the desktop app as user `--user`
//! (known server key, device id and resume token), so
//! `classchat --data-dir /tmp/demo/ada --server 127.0.0.1:7431 --user ada` logs straight in.
//! It prints `READY` when seeded, then serves until stdin closes or Ctrl+C.
//!
//! bob and carol share lab files with classmates (issue 15): `/whohas lab3` in
//! #physics-lab finds them, and Get fetches them straight from this process's sharers
//! (`--big-share MB` sets the size of bob's large file, for a transfer in progress).

mod common;

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use classchat::e2e::WireSender;
use classchat_wire::peer::{SharedEntry, SharedIndex, Sharer, SharerConfig};
use classchat_wire::{Body, Client, Conv, Request, Response};
use common::{Server, connect, prepare_app, pseudo_random, publish_key};

#[derive(Debug, Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:7431")]
    listen: String,
    #[arg(long)]
    data: PathBuf,
    #[arg(long)]
    app_data: Option<PathBuf>,
    #[arg(long, default_value = "ada")]
    user: String,
    /// Size in MB of `lab3-fringes-raw.bin`, the large file bob shares.
    #[arg(long, default_value_t = 1500)]
    big_share: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = classchat_server::Config {
        server_name: "Physics Lab 2".into(),
        data_dir: args.data.clone(),
        rsa_bits: 2048,
        admins: vec!["prof".into()],
        ..Default::default()
    };
    let server = Server::start(&args.listen, config).await?;
    let (addr, port, fingerprint) = (server.addr.clone(), server.port, server.fingerprint);

    let (mut online, me_key) = seed(&addr, &args.user).await?;
    let _sharers = start_sharers(&addr, &online, args.big_share).await?;
    if let Some(dir) = &args.app_data {
        prepare_app(dir, &addr, &args.user, fingerprint, &me_key, &["bob", "carol"]).await?;
    }
    // Heard by apps started with `--discovery loopback` (this computer only).
    let _announcement = classchat_wire::discovery::announce(
        "Physics Lab 2",
        port,
        &fingerprint,
        classchat_wire::discovery::Scope::Loopback,
    )
    .map_err(|e| eprintln!("not announced on loopback: {e}"))
    .ok();
    println!("READY {addr} {fingerprint}");

    // Serve until stdin closes or Ctrl+C. A line `live` makes the others write a few
    // messages now, so the app shows them arriving (unread counts, a mention).
    let (lines_tx, mut lines) = tokio::sync::mpsc::channel::<String>(8);
    std::thread::spawn(move || {
        let mut line = String::new();
        while std::io::stdin().read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            if lines_tx.blocking_send(std::mem::take(&mut line)).is_err() {
                break;
            }
        }
    });
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            line = lines.recv() => match line {
                None => break,
                Some(l) if l.trim() == "live" => live(&mut online, &args.user).await?,
                Some(_) => {}
            },
        }
    }
    drop(online);
    server.stop().await
}

async fn say(client: &Client, room: &str, text: &str) -> anyhow::Result<()> {
    client.request(Request::SendRoom { room: room.into(), text: text.into(), reply_to: None }).await?;
    // Spread the timestamps a little, as a real conversation would.
    tokio::time::sleep(Duration::from_millis(30)).await;
    Ok(())
}

/// Clients that stay online, with their keys for end-to-end encrypted DMs.
type Online = Vec<(Client, WireSender)>;

async fn dm(from: &mut WireSender, client: &Client, to: &str, text: &str) -> anyhow::Result<()> {
    from.send(client, to, text).await.map_err(anyhow::Error::msg)?;
    tokio::time::sleep(Duration::from_millis(30)).await;
    Ok(())
}

/// Seeds users, rooms and messages; returns the clients that stay online, and the
/// user's own key (for the app's data dir).
async fn seed(addr: &str, user: &str) -> anyhow::Result<(Online, WireSender)> {
    let me = connect(addr, user, "demo-seed").await?;
    let prof = connect(addr, "prof", "demo").await?;
    let bob = connect(addr, "bob", "demo").await?;
    let carol = connect(addr, "carol", "demo").await?;
    let dave = connect(addr, "dave", "demo").await?;
    let erin = connect(addr, "erin", "demo").await?;
    let frank = connect(addr, "frank", "demo").await?;

    let room = |name: &str, topic: &str, password: Option<&str>| Request::CreateRoom {
        name: name.into(),
        topic: topic.into(),
        password: password.map(Into::into),
    };
    let join = |name: &str, password: Option<&str>| Request::JoinRoom {
        name: name.into(),
        password: password.map(Into::into),
    };
    carol.request(room("physics-lab", "Thursday lab: optics bench 3", None)).await?;
    prof.request(room("exam-prep", "Past papers and questions", Some("maxwell"))).await?;
    dave.request(room("project-x", "Team X: spectrometer build", None)).await?;
    erin.request(room("random", "Anything goes", None)).await?;
    frank.request(room("book-club", "", None)).await?;
    prof.request(room("staff-room", "Tutors only", Some("faraday"))).await?;
    for c in [&me, &bob, &dave, &erin] {
        c.request(join("physics-lab", None)).await?;
    }
    me.request(join("exam-prep", Some("maxwell"))).await?;
    me.request(join("random", None)).await?;
    bob.request(join("random", None)).await?;

    say(&prof, "lobby", "Welcome to the Physics Lab 2 chat. Lab questions go to #physics-lab.").await?;
    say(&carol, "physics-lab", "Morning all! Bench 3 has the new laser, please book slots in the sheet.")
        .await?;
    say(&bob, "physics-lab", "Is the interferometer calibrated yet?").await?;
    say(&carol, "physics-lab", "Yes, since yesterday. Fringe spacing was 0.42 mm at 632.8 nm.").await?;
    say(&dave, "physics-lab", "I get 0.45 mm with the same setup. Could be the mirror tilt?").await?;
    say(
        &me,
        "physics-lab",
        "Probably. We saw the same drift last week; re-seating the mirror mount fixed it.",
    )
    .await?;
    say(&erin, "physics-lab", "Who has the spare polariser? It's not in the drawer.").await?;
    say(&bob, "physics-lab", "Me, sorry! Bringing it back after lunch.").await?;
    say(
        &carol,
        "physics-lab",
        "Reminder for the report:\n  1. raw data as CSV\n  2. uncertainty analysis\n  3. one plot per measurement series",
    )
    .await?;
    say(&dave, "physics-lab", &format!("@{user} can you share your fitting script?")).await?;
    say(&me, "physics-lab", "Sure, it's in the project folder under analysis/fit_fringes.py. It uses scipy's curve_fit with the wavelength as a fixed parameter, so you only fit the spacing and the phase offset.").await?;
    say(&erin, "physics-lab", "Thanks! That saved me an hour.").await?;
    carol
        .request(Request::SetTopic {
            room: "physics-lab".into(),
            topic: "Thursday lab: optics bench 3 (reports due Fri)".into(),
        })
        .await?;
    say(&bob, "physics-lab", "Back with the polariser. It's on bench 2.").await?;
    share_files(&carol, &dave).await?;

    rich_room(&me, &bob, &carol, &prof, user).await?;

    say(&erin, "random", "Anyone up for the physics quiz night on Friday?").await?;
    say(&bob, "random", "Count me in").await?;
    say(&me, "exam-prep", "Is question 4 from 2023 in scope this year?").await?;
    say(&prof, "exam-prep", "Yes, all of chapter 7 is.").await?;

    let mut me_key = publish_key(&me, user).await?;
    let mut bob_key = publish_key(&bob, "bob").await?;
    let mut carol_key = publish_key(&carol, "carol").await?;
    let prof_key = publish_key(&prof, "prof").await?;
    for text in ["Hey, did you get the lab sheet?", "The link in the email is broken for me."] {
        dm(&mut bob_key, &bob, user, text).await?;
    }
    dm(&mut me_key, &me, "bob", "Yes, I'll forward it to you.").await?;
    dm(&mut me_key, &me, "bob", "Done, check your inbox.").await?;
    dm(&mut bob_key, &bob, user, "Got it, thanks!").await?;
    dm(&mut carol_key, &carol, user, "Can you swap bench slots with me on Thursday?").await?;

    prof.request(Request::Broadcast {
        text: "Lab reports are due Friday 17:00. Submit them as one PDF.".into(),
    })
    .await?;

    // Dave and Erin log off; the others stay online.
    dave.close().await;
    erin.close().await;
    frank.close().await;
    me.close().await;
    Ok((vec![(prof, prof_key), (bob, bob_key), (carol, carol_key)], me_key))
}

/// #cs101: code, a reply, an edited and a deleted message, reactions (issue 16).
async fn rich_room(
    me: &Client,
    bob: &Client,
    carol: &Client,
    prof: &Client,
    user: &str,
) -> anyhow::Result<()> {
    let sent = |r: Response| match r {
        Response::Sent { id, .. } => Ok(id),
        other => Err(anyhow::anyhow!("unexpected reply {other:?}")),
    };
    let send = |c: &Client, text: &str, reply_to: Option<u64>| {
        let request = Request::SendRoom { room: "cs101".into(), text: text.into(), reply_to };
        let c = c.clone();
        async move {
            let r = c.request(request).await?;
            tokio::time::sleep(Duration::from_millis(30)).await;
            sent(r)
        }
    };
    prof.request(Request::CreateRoom {
        name: "cs101".into(),
        topic: "Intro to programming, week 7".into(),
        password: None,
    })
    .await?;
    for c in [me, bob, carol] {
        c.request(Request::JoinRoom { name: "cs101".into(), password: None }).await?;
    }
    send(
        prof,
        "Lab 7 is up: **read the spec first**, then `make test`. Spec: https://example.org/cs101/lab7",
        None,
    )
    .await?;
    let q = send(
        bob,
        "Why does this *segfault* on an empty list?\n```c\nint first(struct node *head) {\n    return head->value;  // crash when head == NULL\n}\n```",
        None,
    )
    .await?;
    let a = send(
        carol,
        "You dereference `head` before checking it. Return early:\n```c\nif (head == NULL) return -1;\n```",
        Some(q),
    )
    .await?;
    for (c, e) in [(bob, "🎉"), (me, "👍"), (prof, "👍")] {
        c.request(Request::React { id: a, emoji: e.into(), on: true }).await?;
    }
    let typo = send(bob, "thnaks, taht fixed it", None).await?;
    bob.request(Request::Edit { id: typo, body: Body::Text { text: "thanks, that fixed it".into() } })
        .await?;
    let oops = send(bob, "(pasted my password by mistake)", None).await?;
    bob.request(Request::Delete { id: oops, proof: None }).await?;
    send(prof, &format!("@{user} could you post the Python version for the others?"), None).await?;
    let py = send(
        me,
        "```python\ndef first(xs: list[int]) -> int | None:\n    \"\"\"The first item, or None for an empty list.\"\"\"\n    return xs[0] if xs else None\n```",
        None,
    )
    .await?;
    for c in [bob, carol] {
        c.request(Request::React { id: py, emoji: "❤".into(), on: true }).await?;
    }
    Ok(())
}

/// bob and carol share lab files, each from a connection of its own whose events go to
/// its sharer; carol's results file is the same as bob's, so a search lists it twice.
async fn start_sharers(addr: &str, online: &Online, big_mb: u64) -> anyhow::Result<Vec<Sharer>> {
    let results = pseudo_random(48_213);
    let big = demo_file("lab3-fringes-raw.bin", b"")?;
    // Sparse: no disk space, and the hash is of zeros.
    std::fs::File::options().write(true).open(&big)?.set_len(big_mb * 1_000_000)?;
    let shares: [(&str, Vec<PathBuf>); 2] = [
        ("bob", vec![demo_file("lab3-results.csv", &results)?, big]),
        (
            "carol",
            vec![
                demo_file_in("carol", "lab3-results.csv", &results)?,
                demo_file("lab3-report-draft.pdf", &pseudo_random(310_000))?,
            ],
        ),
    ];
    let mut sharers = Vec::new();
    for (name, paths) in shares {
        let Some((_, key)) = online.iter().find(|(_, k)| k.name == name) else { continue };
        let index = SharedIndex::new();
        for path in paths {
            let entry = tokio::task::spawn_blocking(move || SharedEntry::from_path(&path)).await??;
            index.insert(entry);
        }
        index.set_enabled(true);
        let (client, mut events) = common::connect_with_events(addr, name, "demo-sharer").await?;
        let (sharer, mut uploads) =
            Sharer::start(client, index, SharerConfig::new(name, key.identity.clone())).await?;
        let s = sharer.clone();
        tokio::spawn(async move {
            while let Some(ev) = events.recv().await {
                s.handle_event(&ev);
            }
        });
        tokio::spawn(async move { while uploads.recv().await.is_some() {} });
        sharers.push(sharer);
    }
    Ok(sharers)
}

/// Files shared in #physics-lab: a plot (an image, so the app shows a thumbnail) and a
/// report template.
async fn share_files(carol: &Client, dave: &Client) -> anyhow::Result<()> {
    let plot = image::RgbImage::from_fn(480, 300, |x, y| {
        // Interference fringes: a cosine in x under a soft vertical envelope.
        let fringe = ((x as f32 / 18.0).cos() * 0.5 + 0.5) * (1.0 - (y as f32 / 300.0 - 0.5).abs());
        let v = (fringe * 255.0) as u8;
        image::Rgb([v, (f32::from(v) * 0.35) as u8, 40])
    });
    let mut png = Vec::new();
    plot.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)?;
    let plot_path = demo_file("fringes-bench3.png", &png)?;
    carol.send_file(Conv::room("physics-lab"), &plot_path, |_| {}).await?;
    tokio::time::sleep(Duration::from_millis(30)).await;
    let template = demo_file("report-template.docx", &pseudo_random(245_000))?;
    dave.send_file(Conv::room("physics-lab"), &template, |_| {}).await?;
    Ok(())
}

/// Writes `bytes` to a file named `name` in a temporary folder of this process.
fn demo_file(name: &str, bytes: &[u8]) -> anyhow::Result<PathBuf> {
    demo_file_in("", name, bytes)
}

/// [`demo_file`] in a subfolder `sub` (so two people's files of the same name can exist).
fn demo_file_in(sub: &str, name: &str, bytes: &[u8]) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("classchat-demo-{}", std::process::id())).join(sub);
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(name);
    std::fs::write(&path, bytes)?;
    Ok(path)
}

/// Messages that arrive while the app is open.
async fn live(online: &mut Online, user: &str) -> anyhow::Result<()> {
    let [(prof, _), (bob, bob_key), (carol, carol_key)] = online.as_mut_slice() else { return Ok(()) };
    say(bob, "random", "Quiz night is at 19:00 in the common room").await?;
    say(bob, "random", "Bring snacks!").await?;
    say(carol, "lobby", &format!("@{user} are you coming to the seminar?")).await?;
    dm(carol_key, carol, user, "Thanks for swapping!").await?;
    let sheet = demo_file("lab-sheet-week-7.pdf", &pseudo_random(180_000))?;
    bob_key.offer_file(bob, user, &sheet).await.map_err(anyhow::Error::msg)?;
    prof.request(Request::Broadcast { text: "The lab is closed on Monday for maintenance.".into() }).await?;
    Ok(())
}
