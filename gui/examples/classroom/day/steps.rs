//! The day's steps, in order. Each prints what it did and checks what it expects; a step
//! that cannot go on returns an error, which ends the day with a failed check.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use classchat::e2e::WireSender;
use classchat_wire::discovery::{Browser, Scope};
use classchat_wire::files::{DownloadStep, Downloader};
use classchat_wire::{
    Body, ChatMessage, Conv, Error, ErrorCode, Fingerprint, MessageId, Request, Response, TrustPolicy,
};
use sha2::Digest as _;

use super::report::{Report, mb};
use super::server::ServerProcess;
use super::student::{PASSWORD, Student, client_config, lock};
use super::windows::Windows;
use super::{INSTRUCTOR, Options, ROOM, wait_until};

/// The instructor's room message of step 3 (the data dir scan of step 4 looks for it).
const ROOM_MESSAGE: &str = "Good morning! Today: TLS, and why we pin keys.";
/// How long live deliveries may take to reach everyone.
const LIVE: Duration = Duration::from_secs(60);
/// How long a room of students may take to reconnect after the server is back.
const RECONNECT: Duration = Duration::from_secs(120);
/// Most one student's part may take once started (a registration, a key, a download).
const PART: Duration = Duration::from_secs(300);

/// The class: the instructor and the students, with their parts.
struct Class {
    prof: Arc<Student>,
    students: Vec<Arc<Student>>,
    /// Indices into `students`.
    troll: usize,
    pairs: Vec<(usize, usize)>,
    uploader: usize,
    downloaders: Vec<usize>,
    senders: Vec<usize>,
    offline: Vec<usize>,
}

impl Class {
    fn roles(opts: &Options, prof: Arc<Student>, students: Vec<Arc<Student>>) -> Self {
        let mut next = 0..;
        let mut take = || next.next().unwrap_or_default();
        let troll = take();
        let pairs = (0..opts.dm_pairs).map(|_| (take(), take())).collect();
        let uploader = take();
        let downloaders = (0..opts.downloaders).map(|_| take()).collect();
        let senders = (0..opts.senders).map(|_| take()).collect();
        let offline = (opts.students - opts.offline..opts.students).collect();
        Self { prof, students, troll, pairs, uploader, downloaders, senders, offline }
    }

    fn s(&self, i: usize) -> &Arc<Student> {
        &self.students[i]
    }

    /// Everyone who should be connected now, but the troll once banned.
    fn present(&self, troll_banned: bool, offline_away: bool) -> Vec<&Arc<Student>> {
        self.students
            .iter()
            .enumerate()
            .filter(|(i, _)| !(troll_banned && *i == self.troll || offline_away && self.offline.contains(i)))
            .map(|(_, s)| s)
            .chain(std::iter::once(&self.prof))
            .collect()
    }
}

/// Totals for the figures.
#[derive(Default)]
struct Tally {
    room_messages: u64,
    dms: u64,
    file_bytes_up: u64,
    file_bytes_down: u64,
}

pub async fn day(opts: &Options, report: &mut Report) -> anyhow::Result<()> {
    let work = tempfile::Builder::new().prefix("classchat-classroom-").tempdir_in(&opts.work_root)?;
    let mut tally = Tally::default();

    report.step("1. The server starts as the .deb's service starts it");
    let mut server = ServerProcess::new(&opts.server_bin, &opts.config, work.path())?;
    report.info(format!("config: {} (copied unchanged)", opts.config.display()));
    report.info(format!("command: {}", server.command_line()));
    report.info("(the unit's ExecStart with a temporary data dir, on loopback instead of 0.0.0.0:7420)");
    server.start().await?;
    let fingerprint = server.fingerprint.context("no fingerprint")?;
    report.info(format!("fingerprint: {fingerprint}"));
    for invite in &server.invites {
        report.info(format!("invite: {invite}"));
    }
    let invite = server.invite()?;
    report.check(invite.fingerprint == fingerprint, "the invite pins the fingerprint the server printed");

    report.step(&format!("2. {} students find the server, register and join #{ROOM}", opts.students));
    let class = enrol(opts, report, &server, fingerprint).await?;
    let windows = match &opts.windows {
        Some(w) => {
            let started = Windows::start(w, work.path(), &server.addr, fingerprint, &class.prof).await;
            match started {
                Ok(windows) => {
                    report.info(format!(
                        "two app windows ({}) logged in on {} (Xvfb display {})",
                        windows.users().join(" and "),
                        server.addr,
                        windows.display()
                    ));
                    Some(windows)
                }
                Err(e) => {
                    report.fail(format!("the app windows did not start: {e:#}"));
                    None
                }
            }
        }
        None => None,
    };
    for &i in &class.offline {
        class.s(i).go_offline().await;
    }
    let away: HashSet<String> = class.offline.iter().map(|&i| class.s(i).name.to_ascii_lowercase()).collect();
    let expect_online = opts.students - opts.offline;
    let names: HashSet<String> = class.students.iter().map(|s| s.name.to_ascii_lowercase()).collect();
    let online_now = wait_online(&class.prof, &names, &away, expect_online).await;
    report.check(
        online_now == Some(expect_online),
        format!("{} students went offline; the room lists {expect_online} students online", opts.offline),
    );

    report.step("3. The instructor's announcement and room message, live and on next login");
    announce(report, &class, windows.as_ref(), &mut tally).await?;

    report.step(&format!("4. End-to-end encrypted DMs between {} pairs", opts.dm_pairs));
    dms(opts, report, &class, &server, &mut tally).await?;

    report
        .step(&format!("5. A {} MiB file dropped in #{ROOM}, {} downloads", opts.file_mib, opts.downloaders));
    file(opts, report, &class, work.path(), &mut tally).await?;

    report.step("6. The instructor kicks and bans a troll");
    troll(report, &class).await?;

    report.step("7. kill -9 mid-class, restart, everyone reconnects by themselves");
    crash(opts, report, &class, &mut server, windows.as_ref(), &mut tally).await?;

    if let Some(windows) = windows {
        report.step("8. The two app windows at the end of the day");
        match windows.screenshots().await {
            Ok(shots) => {
                for s in &shots {
                    report.info(format!("screenshot: {}", s.display()));
                }
                report.check(shots.len() == 2, "screenshots of both windows saved");
            }
            Err(e) => report.fail(format!("screenshots: {e:#}")),
        }
        windows.stop();
    }

    report.end_step();
    let deliveries: usize = class.students.iter().map(|s| lock(&s.inbox).messages.len()).sum();
    report.figure("room messages sent (acknowledged)", tally.room_messages.to_string());
    report.figure("messages delivered to students (all conversations)", deliveries.to_string());
    report.figure("end-to-end encrypted DMs", tally.dms.to_string());
    report.figure("file bytes uploaded", mb(tally.file_bytes_up));
    report.figure("file bytes downloaded", mb(tally.file_bytes_down));
    report.figure("server data dir at the end", mb(dir_size(&server.data)));
    for s in class.students.iter().chain([&class.prof]) {
        s.go_offline().await;
    }
    server.stop().await;
    Ok(())
}

/// Registers the instructor (made a server admin with the CLI) and the students, each
/// with the full handshake; a few find the server by mDNS, the rest by the invite.
async fn enrol(
    opts: &Options,
    report: &mut Report,
    server: &ServerProcess,
    fingerprint: Fingerprint,
) -> anyhow::Result<Class> {
    let pinned = TrustPolicy::Pinned(fingerprint);
    let prof = Student::new(INSTRUCTOR, "lectern", client_config(&server.addr, pinned.clone()));
    prof.register().await.context("the instructor's registration")?;
    let granted = server.grant_admin(INSTRUCTOR)?;
    report.info(format!("classchat-server user grant-admin {INSTRUCTOR}: {granted}"));
    prof.request(Request::CreateRoom {
        name: ROOM.into(),
        topic: "Networks, week 7: transport security".into(),
        password: None,
    })
    .await
    .context("creating the room")?;
    let users = match prof.request(Request::ListUsers).await? {
        Response::Users { users } => users,
        other => bail!("unexpected reply {other:?}"),
    };
    report.check(
        users.iter().any(|u| u.name == INSTRUCTOR && u.server_admin),
        format!("{INSTRUCTOR} registered, created #{ROOM} and is a server admin"),
    );

    // Found by mDNS on loopback, as the app's connect screen (`--discovery loopback`) does.
    let t0 = Instant::now();
    let found = discover(&server.addr, opts.discover).await;
    let found_ok = found.iter().filter(|f| f.as_ref().is_some_and(|fp| *fp == fingerprint)).count();
    report.check(
        found_ok == opts.discover,
        format!(
            "{found_ok} of {} students found the server by mDNS on loopback ({:.1} s), announcing the fingerprint the invite pins",
            opts.discover,
            t0.elapsed().as_secs_f64()
        ),
    );
    report.info(format!("{} students use the invite link", opts.students - opts.discover));

    let students: Vec<Arc<Student>> = (0..opts.students)
        .map(|i| {
            let trust = match found.get(i) {
                Some(Some(fp)) => TrustPolicy::Pinned(*fp),
                _ => pinned.clone(),
            };
            Student::new(&student_name(i), "laptop", client_config(&server.addr, trust))
        })
        .collect();
    let t0 = Instant::now();
    let results = for_each(&students, opts.login_concurrency, |s| async move {
        s.register().await?;
        s.request(Request::JoinRoom { name: ROOM.into(), password: None }).await?;
        anyhow::Ok(())
    })
    .await;
    let failed: Vec<String> = errors(&students, &results);
    report.check(
        failed.is_empty(),
        format!(
            "{} of {} registered (Argon2id key, RSA handshake) and joined #{ROOM} in {:.1} s{}",
            opts.students - failed.len(),
            opts.students,
            t0.elapsed().as_secs_f64(),
            first_errors(&failed)
        ),
    );
    if !failed.is_empty() {
        bail!("not every student could register");
    }
    let members = members(&prof).await?;
    report.check(
        members.len() == opts.students + 1,
        format!("#{ROOM} lists {} members (the students and the instructor)", members.len()),
    );
    Ok(Class::roles(opts, prof, students))
}

fn student_name(i: usize) -> String {
    const FIRST: [&str; 40] = [
        "ada", "ben", "chloe", "dev", "emma", "farid", "grace", "hugo", "ines", "jonas", "kira", "liam",
        "mei", "nora", "omar", "pia", "quinn", "ravi", "sara", "tomas", "uma", "vik", "wen", "xavi", "yara",
        "zoe", "alba", "bruno", "cleo", "dario", "elif", "felix", "gita", "hana", "ivan", "jade", "kofi",
        "lena", "milo", "nina",
    ];
    format!("{}.{}", FIRST[i % FIRST.len()], i / FIRST.len() + 1)
}

/// `count` browsers on loopback, each waiting (up to 20 s) for the server at `addr`;
/// returns the fingerprint each one heard announced.
async fn discover(addr: &str, count: usize) -> Vec<Option<Fingerprint>> {
    let mut tasks = Vec::new();
    for _ in 0..count {
        let addr = addr.to_owned();
        tasks.push(tokio::task::spawn_blocking(move || {
            let mut browser = Browser::start(Scope::Loopback).ok()?;
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Some(s) = browser.poll().iter().find(|s| s.addr == addr) {
                    return s.fingerprint;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            None
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.ok().flatten());
    }
    out
}

/// The class room's member list.
async fn members(prof: &Student) -> anyhow::Result<Vec<classchat_wire::Member>> {
    match prof.request(Request::RoomMembers { name: ROOM.into() }).await? {
        Response::Members { members, .. } => Ok(members),
        other => bail!("unexpected reply {other:?}"),
    }
}

/// Waits (up to 20 s) until the room lists `expect` of the simulated `students` online,
/// none of them from `away`; returns the last count seen.
async fn wait_online(
    prof: &Student,
    students: &HashSet<String>,
    away: &HashSet<String>,
    expect: usize,
) -> Option<usize> {
    let mut last = None;
    for _ in 0..100 {
        if let Ok(m) = members(prof).await {
            let online: Vec<_> =
                m.iter().filter(|m| m.online && students.contains(&m.name.to_ascii_lowercase())).collect();
            let n = online.len();
            last = Some(n);
            if n == expect && online.iter().all(|m| !away.contains(&m.name.to_ascii_lowercase())) {
                return last;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    last
}

async fn announce(
    report: &mut Report,
    class: &Class,
    windows: Option<&Windows>,
    tally: &mut Tally,
) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let (announcement, recipients) = match class
        .prof
        .request(Request::Broadcast { text: "Announcement: the lab report is due Friday at 17:00.".into() })
        .await?
    {
        Response::Broadcast { id, recipients, .. } => (id, recipients),
        other => bail!("unexpected reply {other:?}"),
    };
    let text = ROOM_MESSAGE;
    let (room_msg, how) = match windows {
        // Typed into the instructor's app window; its id is read where it arrived.
        Some(w) => {
            w.type_in_instructor(text).await?;
            let probe = class.s(class.uploader);
            let is_it = |m: &ChatMessage| {
                m.from == INSTRUCTOR && matches!(&m.body, Body::Text { text: t } if t == text)
            };
            wait_until(LIVE, || probe.find(is_it).is_some()).await;
            let id = probe.find(is_it).map(|m| m.id).with_context(|| {
                format!("the room message typed in {INSTRUCTOR}'s window did not reach {}", probe.name)
            })?;
            (id, format!("typed in {INSTRUCTOR}'s app window"))
        }
        None => {
            let sent = class
                .prof
                .request(Request::SendRoom { room: ROOM.into(), text: text.into(), reply_to: None })
                .await?;
            (sent_id(sent)?, "sent by the client".to_owned())
        }
    };
    tally.room_messages += 1;
    report.info(format!(
        "announcement #{announcement} (the server counted {recipients} online users), room message #{room_msg} ({how})"
    ));
    let ids = [announcement, room_msg];
    let online: Vec<&Arc<Student>> = class
        .students
        .iter()
        .enumerate()
        .filter(|(i, _)| !class.offline.contains(i))
        .map(|(_, s)| s)
        .collect();
    let got_all = |s: &Arc<Student>| ids.iter().all(|&id| s.count(id) >= 1);
    wait_until(LIVE, || online.iter().all(|s| got_all(s))).await;
    let live = online.iter().filter(|s| got_all(s)).count();
    report.check(
        live == online.len(),
        format!(
            "{live} of {} online students got both live ({:.2} s)",
            online.len(),
            t0.elapsed().as_secs_f64()
        ),
    );
    let offline: Vec<&Arc<Student>> = class.offline.iter().map(|&i| class.s(i)).collect();
    report.check(
        offline.iter().all(|s| ids.iter().all(|&id| s.count(id) == 0)),
        format!("the {} offline students got nothing while away", offline.len()),
    );
    let t1 = Instant::now();
    let before: Vec<u32> = offline.iter().map(|s| s.logins.load(Ordering::SeqCst)).collect();
    for s in &offline {
        s.come_back();
    }
    let back = |ss: &[&Arc<Student>]| {
        ss.iter().zip(&before).all(|(s, &b)| s.logins.load(Ordering::SeqCst) > b && got_all(s))
    };
    wait_until(LIVE, || back(&offline)).await;
    let caught = offline.iter().filter(|s| got_all(s)).count();
    report.check(
        caught == offline.len(),
        format!(
            "{caught} of {} got both on their next login (resume token, catch-up; {:.2} s)",
            offline.len(),
            t1.elapsed().as_secs_f64()
        ),
    );
    // Anything sent twice would have arrived by now.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let twice: Vec<&str> = class
        .students
        .iter()
        .filter(|s| ids.iter().any(|&id| s.count(id) > 1))
        .map(|s| s.name.as_str())
        .collect();
    report.check(
        twice.is_empty(),
        format!(
            "none got either twice{}",
            first_errors(&twice.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        ),
    );
    Ok(())
}

async fn dms(
    opts: &Options,
    report: &mut Report,
    class: &Class,
    server: &ServerProcess,
    tally: &mut Tally,
) -> anyhow::Result<()> {
    let t0 = Instant::now();
    // Identity keys as the app makes them at registration: generated here, published
    // with their backup sealed under the password-derived key.
    let people: Vec<Arc<Student>> =
        class.pairs.iter().flat_map(|&(a, b)| [Arc::clone(class.s(a)), Arc::clone(class.s(b))]).collect();
    let bits = opts.identity_bits;
    let keys = Arc::new(tokio::sync::Mutex::new(HashMap::<String, WireSender>::new()));
    let results = for_each(&people, 2, |s| {
        let keys = Arc::clone(&keys);
        async move {
            let client = s.wait_client(Duration::from_secs(30)).await?;
            let key =
                WireSender::publish(&client, &s.name, PASSWORD, bits).await.map_err(anyhow::Error::msg)?;
            keys.lock().await.insert(s.name.clone(), key);
            anyhow::Ok(())
        }
    })
    .await;
    let failed = errors(&people, &results);
    report.check(
        failed.is_empty(),
        format!(
            "{} identity keys (RSA-{bits}) made and published with their sealed backups ({:.1} s){}",
            people.len() - failed.len(),
            t0.elapsed().as_secs_f64(),
            first_errors(&failed)
        ),
    );
    if !failed.is_empty() {
        bail!("identity keys missing");
    }
    let t1 = Instant::now();
    let mut keys = keys.lock().await;
    let mut secrets = Vec::new();
    let mut delivered = 0;
    for &(a, b) in &class.pairs {
        for (from, to) in [(class.s(a), class.s(b)), (class.s(b), class.s(a))] {
            let text = format!("dm-secret from {} to {}: {}", from.name, to.name, hex::encode(rand_bytes()));
            let client = from.wait_client(Duration::from_secs(30)).await?;
            let sender = keys.get_mut(&from.name).context("no key")?;
            sender.send(&client, &to.name, &text).await.map_err(anyhow::Error::msg)?;
            tally.dms += 1;
            let recv = keys.get(&to.name).context("no key")?;
            if read_dm(to, recv, &from.name, &text).await? {
                delivered += 1;
            }
            secrets.push(text);
        }
    }
    report.check(
        delivered == secrets.len(),
        format!(
            "{delivered} of {} DMs arrived, signature and MAC checked, and decrypted to what was sent ({:.1} s)",
            secrets.len(),
            t1.elapsed().as_secs_f64()
        ),
    );
    // The server stores them: a DM's history holds opaque envelopes only.
    let (a, b) = class.pairs[0];
    let history = match class
        .s(a)
        .request(Request::History { conv: Conv::direct(class.s(b).name.as_str()), before: None, limit: 10 })
        .await?
    {
        Response::History { messages, .. } => messages,
        other => bail!("unexpected reply {other:?}"),
    };
    report.check(
        history.len() == 2 && history.iter().all(|m| matches!(m.body, Body::Opaque { .. })),
        format!(
            "the server keeps the DMs as opaque envelopes ({} in {}'s history with {})",
            history.len(),
            class.s(a).name,
            class.s(b).name
        ),
    );
    // Every file of the data dir, raw: the database, its WAL, stored files.
    let control = ROOM_MESSAGE.as_bytes().to_vec();
    let mut needles: Vec<Vec<u8>> = secrets.iter().map(|s| s.as_bytes().to_vec()).collect();
    needles.push(b"dm-secret".to_vec());
    needles.push(control);
    let data = server.data.clone();
    let scan = tokio::task::spawn_blocking(move || super::scan::scan(&data, &needles)).await??;
    let names: Vec<String> = scan
        .files
        .iter()
        .filter_map(|f| f.strip_prefix(&server.data).ok())
        .map(|f| f.display().to_string())
        .collect();
    report.info(format!("scanned {} files, {} ({})", scan.files.len(), mb(scan.bytes), names.join(", ")));
    let (control_hits, rest) = scan.found.split_last().context("scan")?;
    report.check(
        !control_hits.is_empty(),
        "the scan finds the instructor's room message (stored as text), so it can see stored text",
    );
    let leaked: Vec<String> = rest
        .iter()
        .zip(secrets.iter().map(String::as_str).chain(["dm-secret"]))
        .filter(|(f, _)| !f.is_empty())
        .map(|(f, s)| format!("{s:?} in {f:?}"))
        .collect();
    report.check(
        leaked.is_empty(),
        format!(
            "none of the {} DM texts, nor their common marker, is in the data dir{}",
            secrets.len(),
            first_errors(&leaked)
        ),
    );
    Ok(())
}

/// Waits for `to` to receive a DM from `from` and opens it with `to`'s key.
async fn read_dm(to: &Student, key: &WireSender, from: &str, text: &str) -> anyhow::Result<bool> {
    let mut seen = HashSet::new();
    let deadline = Instant::now() + LIVE;
    while Instant::now() < deadline {
        let candidates: Vec<_> = lock(&to.inbox)
            .messages
            .iter()
            .filter(|m| m.from.eq_ignore_ascii_case(from) && matches!(m.conv, Conv::Direct { .. }))
            .filter(|m| !seen.contains(&m.id))
            .cloned()
            .collect();
        for m in candidates {
            seen.insert(m.id);
            if let Body::Opaque { data } = &m.body {
                let client = to.wait_client(Duration::from_secs(30)).await?;
                if key.open(&client, from, data).await.is_ok_and(|t| t == text) {
                    return Ok(true);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(false)
}

async fn file(
    opts: &Options,
    report: &mut Report,
    class: &Class,
    work: &Path,
    tally: &mut Tally,
) -> anyhow::Result<()> {
    let path = work.join("lecture-7-recording.mp4");
    let size = opts.file_mib << 20;
    let (p, h) = (path.clone(), path.clone());
    tokio::task::spawn_blocking(move || crate::common::write_pseudo_random(&p, size)).await??;
    let source_hash = tokio::task::spawn_blocking(move || sha256_file(&h)).await??;
    let uploader = class.s(class.uploader);
    let t0 = Instant::now();
    let client = uploader.wait_client(Duration::from_secs(30)).await?;
    let stored = client.send_file(Conv::room(ROOM), &path, |_| {}).await.context("upload")?;
    let up_secs = t0.elapsed().as_secs_f64();
    tally.file_bytes_up += size;
    report.check(
        stored.sha256 == source_hash && stored.size == size,
        format!(
            "{} dropped {} ({}) in #{ROOM}: uploaded in {up_secs:.1} s ({:.0} MB/s), the server's hash matches",
            uploader.name,
            stored.name,
            mb(size),
            size as f64 / up_secs / 1e6
        ),
    );
    let id = stored.id;
    let downloaders: Vec<Arc<Student>> = class.downloaders.iter().map(|&i| Arc::clone(class.s(i))).collect();
    let announced =
        |s: &Arc<Student>| s.find(|m| matches!(&m.body, Body::File { file } if file.id == id)).is_some();
    wait_until(LIVE, || downloaders.iter().all(announced)).await;
    report.check(
        downloaders.iter().all(announced),
        format!("the file's message reached all {} downloaders live", downloaders.len()),
    );
    let t1 = Instant::now();
    let hashes = Arc::new(std::sync::Mutex::new(Vec::new()));
    let results = for_each(&downloaders, opts.download_concurrency, |s| {
        let hashes = Arc::clone(&hashes);
        async move {
            let client = s.wait_client(Duration::from_secs(30)).await?;
            let ticket = client.download_file(id).await?;
            let mut dl = Downloader::attach(client.bulk_config(), &ticket.token, 0).await?;
            let mut hasher = sha2::Sha256::new();
            let mut len = 0u64;
            // Ends at `Done`; the downloader's idle timeout bounds each wait.
            while let DownloadStep::Chunk(data) = dl.next().await? {
                len += data.len() as u64;
                hasher.update(&data);
            }
            lock(&hashes).push((len, hasher.finalize().to_vec()));
            anyhow::Ok(())
        }
    })
    .await;
    let secs = t1.elapsed().as_secs_f64();
    let failed = errors(&downloaders, &results);
    let hashes = lock(&hashes).clone();
    let good = hashes.iter().filter(|(len, h)| *len == size && *h == source_hash).count();
    let bytes: u64 = hashes.iter().map(|(l, _)| l).sum();
    tally.file_bytes_down += bytes;
    report.check(
        good == downloaders.len(),
        format!(
            "{good} of {} copies have the uploader's SHA-256 ({} in {secs:.1} s, {:.0} MB/s, {} at once){}",
            downloaders.len(),
            mb(bytes),
            bytes as f64 / secs / 1e6,
            opts.download_concurrency,
            first_errors(&failed)
        ),
    );
    std::fs::remove_file(&path)?;
    Ok(())
}

async fn troll(report: &mut Report, class: &Class) -> anyhow::Result<()> {
    let troll = class.s(class.troll);
    let name = troll.name.clone();
    report.info(format!("the troll: {name}"));
    let removed =
        |t: &Student, n: usize| lock(&t.inbox).removed.iter().filter(|(r, _)| r == ROOM).count() >= n;
    class.prof.request(Request::Kick { room: ROOM.into(), user: name.clone() }).await?;
    let kicked = wait_until(LIVE, || removed(troll, 1)).await;
    report.check(kicked, format!("kicked: {name} is told and is out of #{ROOM}"));
    class.prof.request(Request::Ban { room: ROOM.into(), user: name.clone() }).await?;
    let rejoin = troll.request(Request::JoinRoom { name: ROOM.into(), password: None }).await;
    report.check(
        matches!(rejoin, Err(Error::Server { code: ErrorCode::Banned, .. })),
        format!("banned from #{ROOM}: rejoining is refused ({})", outcome(&rejoin)),
    );
    let in_room = members(&class.prof).await?.iter().any(|m| m.name == name);
    report.check(!in_room, format!("#{ROOM}'s member list no longer has {name}"));
    class.prof.request(Request::AdminBan { user: name.clone(), reason: "trolling in class".into() }).await?;
    let refused = wait_until(LIVE, || lock(&troll.gave_up).is_some()).await;
    let why = lock(&troll.gave_up).clone().unwrap_or_default();
    report.check(
        refused && why.contains("AccountBanned"),
        format!(
            "banned from the server: disconnected, and the reconnect with the resume token is refused ({why})"
        ),
    );
    // A fresh password login from another machine is refused too.
    let key = {
        let n = name.clone();
        tokio::task::spawn_blocking(move || classchat_wire::auth::auth_key(&n, PASSWORD)).await??
    };
    let (client, _events) = classchat_wire::Client::connect(class.prof.config()).await?;
    let login = client.login(&name, &key, "another-pc").await;
    report.check(
        matches!(login, Err(Error::Server { code: ErrorCode::AccountBanned, .. })),
        format!(
            "a password login from another machine is refused ({})",
            match &login {
                Ok(_) => "logged in".to_owned(),
                Err(e) => e.to_string(),
            }
        ),
    );
    client.close().await;
    Ok(())
}

async fn crash(
    opts: &Options,
    report: &mut Report,
    class: &Class,
    server: &mut ServerProcess,
    windows: Option<&Windows>,
    tally: &mut Tally,
) -> anyhow::Result<()> {
    let senders: Vec<Arc<Student>> = class.senders.iter().map(|&i| Arc::clone(class.s(i))).collect();
    let per_sender = opts.per_sender;
    let acked = Arc::new(std::sync::Mutex::new(Vec::<(MessageId, String, String)>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();
    for s in &senders {
        let (s, acked, stop) = (Arc::clone(s), Arc::clone(&acked), Arc::clone(&stop));
        tasks.spawn(async move {
            let mut mine = 0;
            // Bounded: at most three attempts per message, and the deadline.
            for n in 0..per_sender * 3 {
                if mine == per_sender || stop.load(Ordering::SeqCst) {
                    break;
                }
                let text = format!("{} note {n}", s.name);
                match s
                    .request(Request::SendRoom { room: ROOM.into(), text: text.clone(), reply_to: None })
                    .await
                {
                    Ok(Response::Sent { id, .. }) => {
                        lock(&acked).push((id, s.name.clone(), text));
                        mine += 1;
                    }
                    // Not acknowledged: the server went away. Try the next once back.
                    _ => tokio::time::sleep(Duration::from_millis(200)).await,
                }
                // Under the server's per-user rate (20 a second).
                tokio::time::sleep(Duration::from_millis(70)).await;
            }
        });
    }
    let total = senders.len() * per_sender;
    wait_until(LIVE, || lock(&acked).len() >= total / 3).await;
    let everyone = class.present(true, false);
    let logins: Vec<u32> = everyone.iter().map(|s| s.logins.load(Ordering::SeqCst)).collect();
    let before_kill = lock(&acked).len();
    server.kill9()?;
    let t_kill = Instant::now();
    report.info(format!("kill -9 after {before_kill} acknowledged messages from {} senders", senders.len()));
    server.start().await?;
    report.info(format!("restarted with the same command in {:.1} s", t_kill.elapsed().as_secs_f64()));
    let back = |ss: &[&Arc<Student>]| {
        ss.iter().zip(&logins).filter(|(s, b)| s.logins.load(Ordering::SeqCst) > **b).count()
    };
    wait_until(RECONNECT, || back(&everyone) == everyone.len()).await;
    let reconnected = back(&everyone);
    report.check(
        reconnected == everyone.len(),
        format!(
            "{reconnected} of {} reconnected by themselves (backoff, resume token) and caught up, {:.1} s after the kill",
            everyone.len(),
            t_kill.elapsed().as_secs_f64()
        ),
    );
    let deadline =
        tokio::time::timeout(RECONNECT, async { while tasks.join_next().await.is_some() {} }).await;
    stop.store(true, Ordering::SeqCst);
    if deadline.is_err() {
        tasks.abort_all();
    }
    let acked = lock(&acked).clone();
    tally.room_messages += acked.len() as u64;
    report.check(
        acked.len() == total,
        format!("{} of {total} messages acknowledged across the crash", acked.len()),
    );

    // Nothing acknowledged is missing: from the history the server keeps...
    let history = room_history(&class.prof, acked.iter().map(|(id, ..)| *id).min().unwrap_or(0)).await?;
    let missing: Vec<String> = acked
        .iter()
        .filter(|(id, _, text)| !matches!(history.get(id), Some(Body::Text { text: t }) if t == text))
        .map(|(id, _, t)| format!("#{id} {t:?}"))
        .collect();
    report.check(
        missing.is_empty(),
        format!(
            "all {} acknowledged messages are in #{ROOM}'s history{}",
            acked.len(),
            first_errors(&missing)
        ),
    );
    // ...and from what every student received, live or in the catch-up after reconnecting.
    let students = class.present(true, false);
    // A sender's own messages come back in its `Sent` replies, not as events: the server
    // delivers a message to every session but the one that sent it.
    let has_all = |s: &Arc<Student>| acked.iter().all(|(id, from, _)| *from == s.name || s.count(*id) >= 1);
    wait_until(LIVE, || students.iter().all(|s| has_all(s))).await;
    let complete = students.iter().filter(|s| has_all(s)).count();
    let repeats: u64 = students
        .iter()
        .map(|s| acked.iter().map(|(id, ..)| u64::from(s.count(*id).saturating_sub(1))).sum::<u64>())
        .sum();
    report.check(
        complete == students.len(),
        format!("{complete} of {} have every acknowledged message of the others", students.len()),
    );
    report.info(format!(
        "{repeats} deliveries came again in the catch-up after the crash (acks not yet saved); clients drop them by id"
    ));
    if let Some(w) = windows {
        check_windows_after_crash(report, class, w).await;
    }
    Ok(())
}

/// The app windows came back by themselves, and the student's window still sends.
async fn check_windows_after_crash(report: &mut Report, class: &Class, w: &Windows) {
    let user = w.student().to_owned();
    let mut online = false;
    for _ in 0..100 {
        if members(&class.prof).await.is_ok_and(|m| m.iter().any(|m| m.name == user && m.online)) {
            online = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    report.check(online, format!("{user}'s app window reconnected by itself (online in #{ROOM} again)"));
    let text = format!("Typed in {user}'s window after the restart {}", hex::encode(&rand_bytes()[..4]));
    if let Err(e) = w.type_in_student(&text).await {
        report.fail(format!("typing in {user}'s window: {e:#}"));
        return;
    }
    let listener = class.s(class.uploader);
    let arrived = wait_until(LIVE, || {
        listener.find(|m| m.from == user && matches!(&m.body, Body::Text { text: t } if *t == text)).is_some()
    })
    .await;
    report.check(arrived, format!("a message typed in {user}'s window reached {}: {text:?}", listener.name));
}

/// The room's history down to message `oldest`, by id.
async fn room_history(prof: &Student, oldest: MessageId) -> anyhow::Result<HashMap<MessageId, Body>> {
    let mut out = HashMap::new();
    let mut before = None;
    // Bounded: 100 pages of 200.
    for _ in 0..100 {
        let (messages, more) =
            match prof.request(Request::History { conv: Conv::room(ROOM), before, limit: 200 }).await? {
                Response::History { messages, more, .. } => (messages, more),
                other => bail!("unexpected reply {other:?}"),
            };
        let Some(last) = messages.last().map(|m| m.id) else { break };
        for m in messages {
            out.insert(m.id, m.body);
        }
        if !more || last <= oldest {
            break;
        }
        before = Some(last);
    }
    Ok(out)
}

/// Runs `f` for each student, at most `limit` at once, each for at most [`PART`]; the
/// results in the students' order.
async fn for_each<F, Fut>(students: &[Arc<Student>], limit: usize, f: F) -> Vec<anyhow::Result<()>>
where
    F: Fn(Arc<Student>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let sem = Arc::new(tokio::sync::Semaphore::new(limit.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, s) in students.iter().enumerate() {
        let (sem, fut) = (Arc::clone(&sem), f(Arc::clone(s)));
        tasks.spawn(async move {
            let _permit = sem.acquire_owned().await;
            let r = tokio::time::timeout(PART, fut).await;
            (i, r.unwrap_or_else(|_| Err(anyhow::anyhow!("did not finish within {PART:?}"))))
        });
    }
    let mut out: Vec<anyhow::Result<()>> =
        students.iter().map(|_| Err(anyhow::anyhow!("did not finish"))).collect();
    while let Some(r) = tasks.join_next().await {
        if let Ok((i, r)) = r {
            out[i] = r;
        }
    }
    out
}

fn errors(students: &[Arc<Student>], results: &[anyhow::Result<()>]) -> Vec<String> {
    students
        .iter()
        .zip(results)
        .filter_map(|(s, r)| r.as_ref().err().map(|e| format!("{}: {e:#}", s.name)))
        .collect()
}

/// `": first, second (and N more)"`, or nothing.
fn first_errors(errors: &[String]) -> String {
    match errors {
        [] => String::new(),
        [one] => format!(": {one}"),
        [a, b] => format!(": {a}; {b}"),
        [a, b, rest @ ..] => format!(": {a}; {b} (and {} more)", rest.len()),
    }
}

fn outcome(r: &classchat_wire::Result<Response>) -> String {
    match r {
        Ok(resp) => format!("accepted: {resp:?}"),
        Err(e) => e.to_string(),
    }
}

fn sent_id(r: Response) -> anyhow::Result<MessageId> {
    match r {
        Response::Sent { id, .. } => Ok(id),
        other => bail!("unexpected reply {other:?}"),
    }
}

fn rand_bytes() -> [u8; 16] {
    let mut b = [0u8; 16];
    b.copy_from_slice(&classchat_wire::crypto::random_nonce()[..16]);
    b
}

fn sha256_file(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut f = std::fs::File::open(path)?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(h.finalize().to_vec());
        }
        h.update(&buf[..n]);
    }
}

fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}
