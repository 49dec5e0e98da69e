//! End-to-end encrypted direct messages in the app (the scheme is `classchat_wire::e2e`).
//!
//! This is the one place where DM text becomes the opaque bytes the server stores and
//! back. The [`E2e`] engine lives in the net task and holds, for the logged-in user:
//!
//! - their identity key (created at registration, restored from the server's backup on a
//!   new machine, see [`setup_identity`]);
//! - the contacts' keys they accepted (pinned on first contact, saved in `e2e_peers`),
//!   and whether the directory now offers a different one (a key change: the app warns
//!   and asks before sending anything further);
//! - the conversation keys opened so far, by id, so reading history costs one RSA
//!   operation per key rather than per message;
//! - the `(key, sender, seq)` of every message seen, so a replayed envelope shows once.
//!
//! Opening a received message checks the MAC and decrypts it (microseconds). The
//! sender's RSA signature is checked at once for a live message; for catch-up and
//! history it is left as a [`PendingCheck`] that the chat view runs for the rows it is
//! about to show. A row is not shown as text until its signature checked out; one that
//! fails any check says "could not be verified" and never shows text.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use classchat_wire::e2e::{
    DmDelete, DmEdit, DmKey, Envelope, IDENTITY_BITS, Identity, KEY_ID_LEN, KeyGrant, PublicIdentity,
    ROTATE_AFTER, SignatureCheck, open_backup, safety_number, seal_backup,
};
use classchat_wire::sealed_file::{FileKey, FileSecret, sealed_size};
use classchat_wire::{Body, ChatMessage, Client, Conv, FileInfo, MessageId, Request, Response};

use crate::local::{LocalStore, PeerKeyState};
use crate::model::{Content, Meta, Msg};

/// Why nothing can be sealed: this computer holds no identity key for the account.
pub const NO_IDENTITY: &str =
    "This computer has no key for direct messages; log out and log in with your password.";
/// What a message that failed a check says instead of its text.
pub const UNVERIFIED: &str = "This message could not be verified";
/// Most `(key, sender, seq)` triples remembered for replay detection (about 40 bytes each).
const MAX_SEEN: usize = 200_000;
/// Most conversation keys kept open in memory (each is 64 bytes plus bookkeeping).
const MAX_KEYS: usize = 20_000;
/// Bytes an envelope adds to the text, at most: PKCS#7 padding, IV, MAC, key id, an
/// RSA-4096 signature and the MessagePack field names.
const ENVELOPE_OVERHEAD: usize = 16 + 16 + 32 + KEY_ID_LEN + 512 + 64;

/// The largest envelope a text of `len` bytes becomes (for the server's size limit).
pub fn sealed_len(len: usize) -> usize {
    len + ENVELOPE_OVERHEAD
}

/// A signature to check before a row may be shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingCheck {
    check: SignatureCheck,
    sender: PublicIdentity,
}

impl PendingCheck {
    /// One RSA-PSS verification (about a third of a millisecond): run it off the UI thread.
    pub fn verify(&self) -> bool {
        self.check.verify(&self.sender).is_ok()
    }
}

/// What the UI shows about a contact's key in the DM header.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeerInfo {
    pub peer: String,
    /// The safety number of the accepted key; `None` while there is no key to show.
    pub safety_number: Option<String>,
    /// The user compared the safety number and marked it verified.
    pub verified: bool,
    /// The directory now holds a different key from the accepted one: the safety number
    /// with the new key, for the warning. Sending waits until the user accepts it.
    pub changed_to: Option<String>,
    /// The contact has not published a key yet (never logged in with an E2E app).
    pub no_key: bool,
}

/// How logging in left the user's identity key.
#[derive(Debug)]
enum IdentitySetup {
    Ready(Box<Identity>),
    /// The backup on the server does not open with this password (an admin reset it, or
    /// it was changed elsewhere without the key). Old DMs cannot be read; the user must
    /// be asked before a new key replaces it. Keeps the backup key to seal a new one.
    BackupUnreadable {
        backup_key: [u8; 32],
    },
    /// Something else went wrong; the words say what. DMs cannot be used this session.
    Failed(String),
}

/// How to get the identity key after a login.
#[derive(Debug)]
pub enum KeyPlan {
    /// A password login or a registration: restore from the backup or make a key.
    /// `keygen` is a generation already under way (registration starts it before
    /// connecting, so it overlaps the handshake).
    Password { password: String, keygen: Option<tokio::task::JoinHandle<Result<Identity, String>>> },
    /// A token login: the key saved on this machine.
    Saved,
}

/// A user's own key status, for the UI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyStatus {
    Ready,
    BackupUnreadable,
    Missing(String),
}

struct Peer {
    /// Display name as last seen.
    name: String,
    accepted: Option<PublicIdentity>,
    verified: bool,
    /// Earlier accepted keys: old messages signed with them still verify.
    old: Vec<PublicIdentity>,
    changed_to: Option<PublicIdentity>,
    /// The directory was asked during this session.
    checked: bool,
    no_key: bool,
}

impl Peer {
    fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            accepted: None,
            verified: false,
            old: Vec::new(),
            changed_to: None,
            checked: false,
            no_key: false,
        }
    }

    fn key_with_fp(&self, fp: &[u8]) -> Option<&PublicIdentity> {
        self.accepted.iter().chain(&self.old).find(|k| k.fingerprint().0[..] == fp[..])
    }
}

struct KeyInfo {
    key: DmKey,
    /// The other party of the conversation, lowercase.
    peer: String,
    my_fp: Vec<u8>,
    peer_fp: Vec<u8>,
}

struct Sending {
    key_id: [u8; KEY_ID_LEN],
    next_seq: u64,
}

type SeenKey = ([u8; KEY_ID_LEN], String, u64);

struct Engine {
    store: LocalStore,
    addr: String,
    me: String,
    identity: Option<Arc<Identity>>,
    peers: HashMap<String, Peer>,
    keys: HashMap<[u8; KEY_ID_LEN], KeyInfo>,
    /// The key this device sends under, per contact. Keys are per device and session,
    /// so two devices (or two runs) never reuse a `(key, sender, seq)`.
    sending: HashMap<String, Sending>,
    seen: HashMap<SeenKey, MessageId>,
    /// Key ids asked for and not found, so a bad id does not cost a request each time.
    missing: HashSet<[u8; KEY_ID_LEN]>,
    /// After a login whose backup would not open: the password's backup key, to seal a
    /// new identity if the user agrees to make one.
    backup_key: Option<[u8; 32]>,
}

/// The engine, shared by the net task's workers. Cheap to clone.
#[derive(Clone)]
pub struct E2e(Arc<tokio::sync::Mutex<Engine>>);

impl std::fmt::Debug for E2e {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("E2e")
    }
}

fn lc(s: &str) -> String {
    s.to_ascii_lowercase()
}

/// The text shown for a message that failed, with why.
fn unverified(why: &str) -> Content {
    Content::Unreadable(format!("{UNVERIFIED} ({why})."))
}

impl E2e {
    /// An engine for `me` on `addr`. `peer_keys` is what [`LocalStore::peer_keys`] returned.
    pub fn new(
        store: LocalStore,
        addr: &str,
        me: &str,
        peer_keys: Vec<(String, PeerKeyState, Vec<u8>)>,
    ) -> Self {
        let mut peers: HashMap<String, Peer> = HashMap::new();
        for (name, state, der) in peer_keys {
            let Ok(key) = PublicIdentity::from_der(&der) else { continue };
            let p = peers.entry(lc(&name)).or_insert_with(|| Peer::new(&name));
            match state {
                PeerKeyState::Old => p.old.push(key),
                PeerKeyState::Accepted | PeerKeyState::Verified => {
                    p.verified = state == PeerKeyState::Verified;
                    p.accepted = Some(key);
                }
            }
        }
        Self(Arc::new(tokio::sync::Mutex::new(Engine {
            store,
            addr: addr.to_owned(),
            me: me.to_owned(),
            identity: None,
            peers,
            keys: HashMap::new(),
            sending: HashMap::new(),
            seen: HashMap::new(),
            missing: HashSet::new(),
            backup_key: None,
        })))
    }

    /// Sets up the identity key after a login, as a task. The engine is locked before
    /// this returns (when it is free, as a new one is), so messages that arrive in the
    /// meantime wait for the key instead of failing without it. `done` gets the outcome.
    pub fn start_setup(
        &self,
        client: Client,
        plan: KeyPlan,
        bits: usize,
        done: impl FnOnce(KeyStatus) + Send + 'static,
    ) {
        let engine = Arc::clone(&self.0);
        let locked = Arc::clone(&self.0).try_lock_owned().ok();
        tokio::spawn(async move {
            let mut e = match locked {
                Some(guard) => guard,
                None => engine.lock_owned().await,
            };
            if e.identity.is_some() {
                // A reconnect of the same user: the key is already here.
                done(KeyStatus::Ready);
                return;
            }
            let (store, addr, me) = (e.store.clone(), e.addr.clone(), e.me.clone());
            let setup = match plan {
                KeyPlan::Password { password, keygen } => {
                    setup_identity(&client, &store, &addr, &me, password, keygen, bits).await
                }
                KeyPlan::Saved => local_identity(&store, &addr, &me).await,
            };
            let status = match setup {
                IdentitySetup::Ready(identity) => {
                    e.identity = Some(Arc::new(*identity));
                    KeyStatus::Ready
                }
                IdentitySetup::BackupUnreadable { backup_key } => {
                    e.backup_key = Some(backup_key);
                    KeyStatus::BackupUnreadable
                }
                IdentitySetup::Failed(why) => KeyStatus::Missing(why),
            };
            drop(e);
            done(status);
        });
    }

    /// Replaces an identity whose backup would not open (the user agreed): a new key,
    /// published with a backup under the password of this login.
    pub async fn new_identity(&self, client: &Client, bits: usize) -> KeyStatus {
        let mut e = self.0.lock().await;
        let Some(backup_key) = e.backup_key else {
            return KeyStatus::Missing("Log in with your password again to make a new key.".into());
        };
        let made = match generate(bits).await {
            Ok(identity) => publish(client, &e.store, &e.addr, &e.me, identity, &backup_key).await,
            Err(e) => Err(e),
        };
        match made {
            Ok(identity) => {
                e.backup_key = None;
                e.identity = Some(Arc::new(identity));
                e.sending.clear();
                e.missing.clear();
                KeyStatus::Ready
            }
            Err(why) => KeyStatus::Missing(why),
        }
    }

    pub async fn identity(&self) -> Option<Arc<Identity>> {
        self.0.lock().await.identity.clone()
    }

    /// What the UI shows for `peer`.
    pub async fn peer_info(&self, peer: &str) -> PeerInfo {
        self.0.lock().await.info(peer)
    }

    /// Asks the directory for `peer`'s key: pins it on first contact, flags a change.
    pub async fn check_peer(&self, client: &Client, peer: &str) -> PeerInfo {
        let mut e = self.0.lock().await;
        e.check_peer(client, peer).await;
        e.info(peer)
    }

    /// The user accepted `peer`'s new key: it replaces the old one (kept for old
    /// messages), is unverified, and the next message starts a new conversation key.
    pub async fn accept_key(&self, peer: &str) -> PeerInfo {
        let mut e = self.0.lock().await;
        let key = lc(peer);
        if let Some(p) = e.peers.get_mut(&key)
            && let Some(new) = p.changed_to.take()
        {
            if let Some(old) = p.accepted.replace(new) {
                p.old.push(old);
            }
            p.verified = false;
            e.sending.remove(&key);
            e.missing.clear();
            e.persist(&key);
        }
        e.info(peer)
    }

    pub async fn mark_verified(&self, peer: &str, verified: bool) -> PeerInfo {
        let mut e = self.0.lock().await;
        let key = lc(peer);
        if let Some(p) = e.peers.get_mut(&key)
            && p.accepted.is_some()
        {
            p.verified = verified;
            e.persist(&key);
        }
        e.info(peer)
    }

    /// Encrypts and signs `text` for `peer`, starting (and storing on the server) a new
    /// conversation key when needed. The error is in words for the user.
    pub async fn seal(&self, client: &Client, peer: &str, text: &str) -> Result<Vec<u8>, String> {
        self.seal_bytes(client, peer, text.as_bytes().to_vec()).await
    }

    /// The `meta` of a file sent to `peer`: its key, name and size, sealed like a direct
    /// message (PROTOCOL.md section 15.5).
    pub async fn seal_file(
        &self,
        client: &Client,
        peer: &str,
        secret: &FileSecret,
    ) -> Result<Vec<u8>, String> {
        self.seal_bytes(client, peer, secret.to_plaintext()).await
    }

    /// Opens the `meta` of a file `file.from` sent us, signature included: the key to
    /// decrypt it with and its real name and size. The error is in words for the user.
    pub async fn open_file(&self, client: &Client, file: &FileInfo) -> Result<FileSecret, String> {
        let meta = file.meta.as_deref().ok_or("it was sent without end-to-end encryption")?;
        let env = Envelope::from_bytes(meta).map_err(|_| "its description is malformed".to_owned())?;
        let peer = file.from.as_str();
        let mut e = self.0.lock().await;
        if let Ok(id) = <[u8; KEY_ID_LEN]>::try_from(env.key_id.as_slice())
            && !e.keys.contains_key(&id)
            && !e.missing.contains(&id)
        {
            e.fetch_grants(client, &lc(peer), peer).await;
        }
        let (plaintext, check) = e.open_envelope(peer, peer, &env)?;
        drop(e);
        let ok = tokio::task::spawn_blocking(move || check.verify()).await.unwrap_or(false);
        if !ok {
            return Err("its signature does not check out".into());
        }
        FileSecret::from_plaintext(&plaintext, file.size).map_err(|e| e.to_string())
    }

    /// Seals `plaintext` for `peer` like a direct message (edits, deletes, file keys).
    pub async fn seal_bytes(
        &self,
        client: &Client,
        peer: &str,
        plaintext: Vec<u8>,
    ) -> Result<Vec<u8>, String> {
        let mut e = self.0.lock().await;
        let identity = e.identity.clone().ok_or_else(|| NO_IDENTITY.to_owned())?;
        let key = lc(peer);
        // Asked once a session, and again while they have no key (they may have made
        // one since).
        if !e.peers.get(&key).is_some_and(|p| p.checked && p.accepted.is_some()) {
            e.check_peer(client, peer).await;
        }
        let p = e.peers.get(&key).ok_or_else(|| format!("Could not get {peer}'s key."))?;
        if p.changed_to.is_some() {
            return Err(format!("{peer}'s key changed; accept the new key before sending."));
        }
        let Some(peer_key) = p.accepted.clone() else {
            return Err(format!(
                "{peer} has no encryption key yet: they need to log in once with an up-to-date app."
            ));
        };
        let my_fp = identity.public().fingerprint().0.to_vec();
        let peer_fp = peer_key.fingerprint().0.to_vec();
        let reusable = e.sending.get(&key).and_then(|s| {
            let info = e.keys.get(&s.key_id)?;
            (info.my_fp == my_fp && info.peer_fp == peer_fp && s.next_seq < ROTATE_AFTER)
                .then(|| (info.key.clone(), s.next_seq))
        });
        let (dm_key, seq) = match reusable {
            Some(k) => k,
            None => {
                let dm_key = DmKey::generate();
                let (me, id, to, pk, k) =
                    (e.me.clone(), Arc::clone(&identity), peer.to_owned(), peer_key.clone(), dm_key.clone());
                let grant = tokio::task::spawn_blocking(move || KeyGrant::new(&k, &me, &id, &to, &pk))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| format!("Could not make a conversation key: {e}"))?;
                let grant = classchat_wire::encode(&grant).map_err(|e| e.to_string())?;
                client
                    .request(Request::PutDmKey { to: peer.to_owned(), grant })
                    .await
                    .map_err(|e| format!("Could not store the conversation key: {e}"))?;
                e.remember_key(KeyInfo { key: dm_key.clone(), peer: key.clone(), my_fp, peer_fp });
                (dm_key, 0)
            }
        };
        e.sending.insert(key, Sending { key_id: dm_key.id, next_seq: seq + 1 });
        let (me, to) = (e.me.clone(), peer.to_owned());
        drop(e);
        let envelope = tokio::task::spawn_blocking(move || {
            Envelope::seal_bytes(&dm_key, seq, &me, &to, &identity, &plaintext)
        })
        .await
        .map_err(|e| e.to_string())?;
        Ok(envelope.to_bytes())
    }

    /// Who deleted direct message `id` of the conversation with `peer`, as the app may
    /// say it: `by` when `proof` is that person's signed `DmDelete` of this message, "the
    /// server" otherwise (PROTOCOL.md 18.3).
    pub async fn deleted_by(&self, peer: &str, id: MessageId, by: &str, proof: Option<&[u8]>) -> String {
        let e = self.0.lock().await;
        e.deleted_by(peer, id, by, proof)
    }

    /// Opens the edit of direct message `id` in `conv` (PROTOCOL.md 18.3), signature
    /// checked. Only a message's sender may edit it, and the event does not say who that
    /// is: the envelope opens as the one or the other side, never both.
    pub async fn open_edit(
        &self,
        client: &Client,
        conv: Conv,
        id: MessageId,
        body: Body,
        ts: classchat_wire::Timestamp,
    ) -> Option<crate::net::NetEvent> {
        let Conv::Direct { user } = &conv else { return None };
        let me = self.0.lock().await.me.clone();
        let mut last = None;
        for from in [user.clone(), me] {
            let mut m = ChatMessage::new(id, conv.clone(), from, ts, body.clone());
            m.edited = Some(ts);
            let Some((_, msg)) = self.open(client, vec![m], true).await.pop() else { continue };
            let ok = matches!(msg.content, Content::Text(_));
            last = Some(msg);
            if ok {
                break;
            }
        }
        let msg = last?;
        Some(crate::net::NetEvent::DmEdited {
            conv,
            id,
            content: msg.content,
            ts,
            envelope: msg.meta.envelope,
        })
    }

    /// Opens direct messages (one live message, a catch-up, a history page). With
    /// `verify`, signatures are checked now; otherwise they are left to the view.
    /// Replays and anything that is not a DM are left out.
    pub async fn open(&self, client: &Client, messages: Vec<ChatMessage>, verify: bool) -> Vec<(Conv, Msg)> {
        let mut e = self.0.lock().await;
        // Every unknown key id costs one request per contact (not per message).
        let mut parsed = Vec::with_capacity(messages.len());
        let mut wanted: HashMap<String, String> = HashMap::new();
        for m in messages {
            let Conv::Direct { user } = &m.conv else { continue };
            let env = match &m.body {
                Body::Opaque { data } => Envelope::from_bytes(data).ok(),
                _ => None,
            };
            if let Some(env) = &env
                && let Ok(id) = <[u8; KEY_ID_LEN]>::try_from(env.key_id.as_slice())
                && !e.keys.contains_key(&id)
                && !e.missing.contains(&id)
            {
                wanted.insert(lc(user), user.clone());
            }
            parsed.push((m, env));
        }
        for (key, name) in wanted {
            e.fetch_grants(client, &key, &name).await;
        }
        let mut out = Vec::with_capacity(parsed.len());
        for (m, env) in parsed {
            let Conv::Direct { user } = &m.conv else { continue };
            if let Body::Deleted { by, proof } = &m.body {
                let by = e.deleted_by(user, m.id, by, proof.as_deref());
                let content = Content::Deleted(crate::model::deleted_text(&m.from, &by));
                out.push((m.conv.clone(), Msg::new(m.id, m.from.clone(), m.ts, content)));
                continue;
            }
            let (content, seen) = e.open_one(user, &m, env.as_ref());
            let envelope = seen.as_ref().map(|(key, _, seq)| (*key, *seq));
            if let Some(seen) = seen {
                if e.seen.len() >= MAX_SEEN {
                    // Forgetting costs little: a replay that old would merely show twice.
                    e.seen.clear();
                }
                match e.seen.get(&seen) {
                    Some(first) if *first != m.id => continue,
                    Some(_) => {}
                    None => {
                        e.seen.insert(seen, m.id);
                    }
                }
            }
            let meta = Meta { envelope, ..Meta::of(&m) };
            out.push((m.conv.clone(), Msg { id: m.id, from: m.from.clone(), ts: m.ts, content, meta }));
        }
        drop(e);
        if verify {
            for (_, msg) in &mut out {
                if let Content::Sealed { text, check, .. } = &msg.content {
                    let ok = check.verify();
                    msg.content = if ok { Content::Text(text.clone()) } else { unverified("bad signature") };
                }
            }
        }
        out
    }
}

impl Engine {
    fn info(&self, peer: &str) -> PeerInfo {
        let mine = self.identity.as_ref().map(|i| i.public().fingerprint());
        let number = |k: &PublicIdentity| mine.map(|m| safety_number(&self.me, m, peer, k.fingerprint()));
        match self.peers.get(&lc(peer)) {
            None => PeerInfo { peer: peer.to_owned(), ..PeerInfo::default() },
            Some(p) => PeerInfo {
                peer: p.name.clone(),
                safety_number: p.accepted.as_ref().and_then(number),
                verified: p.verified,
                changed_to: p.changed_to.as_ref().and_then(number),
                no_key: p.no_key && p.accepted.is_none(),
            },
        }
    }

    fn persist(&self, key: &str) {
        let Some(p) = self.peers.get(key) else { return };
        let mut keys: Vec<(PeerKeyState, Vec<u8>)> =
            p.old.iter().map(|k| (PeerKeyState::Old, k.der().to_vec())).collect();
        if let Some(k) = &p.accepted {
            let state = if p.verified { PeerKeyState::Verified } else { PeerKeyState::Accepted };
            keys.push((state, k.der().to_vec()));
        }
        let (store, addr, me, peer) =
            (self.store.clone(), self.addr.clone(), self.me.clone(), p.name.clone());
        tokio::task::spawn_blocking(move || {
            if let Err(e) = store.set_peer_keys(&addr, &me, &peer, &keys) {
                tracing::warn!("could not save {peer}'s key: {e}");
            }
        });
    }

    async fn check_peer(&mut self, client: &Client, peer: &str) {
        let key = lc(peer);
        let reply = client.request(Request::GetKey { user: peer.to_owned() }).await;
        let p = self.peers.entry(key.clone()).or_insert_with(|| Peer::new(peer));
        let der = match reply {
            Ok(Response::Key { user, public_key }) => {
                p.name = user;
                public_key
            }
            other => {
                tracing::debug!(%peer, "key lookup failed: {other:?}");
                return;
            }
        };
        p.checked = true;
        let Some(der) = der else {
            p.no_key = true;
            return;
        };
        p.no_key = false;
        let Ok(found) = PublicIdentity::from_der(&der) else {
            tracing::warn!(%peer, "the directory holds a malformed key");
            return;
        };
        match &p.accepted {
            None => {
                // Trust on first use; the safety number is there to check it.
                p.accepted = Some(found);
                self.persist(&key);
            }
            Some(accepted) if *accepted == found => p.changed_to = None,
            Some(_) => {
                tracing::warn!(%peer, "the directory holds a different key from the accepted one");
                p.changed_to = Some(found);
            }
        }
    }

    fn remember_key(&mut self, info: KeyInfo) {
        if self.keys.len() >= MAX_KEYS {
            // Rare (tens of thousands of keys); dropping them only costs a refetch.
            self.keys.clear();
            self.sending.clear();
        }
        self.keys.insert(info.key.id, info);
    }

    /// Fetches the grants of the conversation with `peer` and opens the new ones: one
    /// RSA decryption (and one signature check) per key, off the runtime's workers.
    async fn fetch_grants(&mut self, client: &Client, key: &str, name: &str) {
        let Some(identity) = self.identity.clone() else { return };
        if self.peers.get(key).is_none_or(|p| p.accepted.is_none()) {
            // First contact on this machine: the contact's key, to check their grants.
            self.check_peer(client, name).await;
        }
        let grants = match client.request(Request::DmKeys { user: name.to_owned() }).await {
            Ok(Response::DmKeys { grants, .. }) => grants,
            other => {
                tracing::debug!(%name, "grant lookup failed: {other:?}");
                return;
            }
        };
        let me = lc(&self.me);
        let mut todo = Vec::new();
        let mut needs_check = false;
        for bytes in grants {
            let Ok(grant) = classchat_wire::decode::<KeyGrant>(&bytes) else { continue };
            let Ok(id) = <[u8; KEY_ID_LEN]>::try_from(grant.key_id.as_slice()) else { continue };
            if self.keys.contains_key(&id) {
                continue;
            }
            // A grant of another conversation slipped into this list is not used here.
            let (mine, other) = if grant.from == me && grant.to == key {
                (&grant.from_fp, &grant.to_fp)
            } else if grant.to == me && grant.from == key {
                (&grant.to_fp, &grant.from_fp)
            } else {
                continue;
            };
            let creator = if grant.from == me {
                Some(identity.public().clone())
            } else {
                self.peers.get(key).and_then(|p| p.key_with_fp(&grant.from_fp)).cloned()
            };
            match creator {
                Some(c) => todo.push((id, mine.clone(), other.clone(), grant, c)),
                None => needs_check = true,
            }
        }
        if needs_check && !self.peers.get(key).is_some_and(|p| p.checked) {
            // Grants signed with a key we never accepted: perhaps the contact's key
            // changed. Asking the directory raises the warning if so.
            self.check_peer(client, name).await;
        }
        for (id, my_fp, peer_fp, grant, creator) in todo {
            let (me, identity) = (self.me.clone(), Arc::clone(&identity));
            let opened = tokio::task::spawn_blocking(move || grant.open(&me, &identity, &creator)).await;
            match opened {
                Ok(Ok(dm_key)) if dm_key.id == id => {
                    self.remember_key(KeyInfo { key: dm_key, peer: key.to_owned(), my_fp, peer_fp })
                }
                other => tracing::warn!(%name, "a conversation key did not open: {other:?}"),
            }
        }
    }

    fn deleted_by(&self, peer: &str, id: MessageId, by: &str, proof: Option<&[u8]>) -> String {
        const SERVER: &str = "the server";
        let Some(env) = proof.and_then(|p| Envelope::from_bytes(p).ok()) else { return SERVER.into() };
        let Ok((bytes, check)) = self.open_envelope(peer, by, &env) else { return SERVER.into() };
        let names_it = DmDelete::from_bytes(&bytes).is_ok_and(|d| d.of == id);
        if names_it && check.verify() { by.to_owned() } else { SERVER.into() }
    }

    /// Opens one DM (no signature check yet). Returns what to show and, for a message
    /// that opened, its replay identity.
    fn open_one(&self, peer: &str, m: &ChatMessage, env: Option<&Envelope>) -> (Content, Option<SeenKey>) {
        let Some(env) = env else { return (unverified("not an encrypted message"), None) };
        let (bytes, check) = match self.open_envelope(peer, &m.from, env) {
            Ok(opened) => opened,
            Err(why) => return (unverified(&why), None),
        };
        // An edited message holds its latest edit: a `DmEdit` naming this very message.
        let text = match String::from_utf8(bytes) {
            Ok(text) if m.edited.is_none() => text,
            Ok(_) => return (unverified("an edit that is not an edit"), None),
            Err(e) => match DmEdit::from_bytes(e.as_bytes()) {
                Ok(edit) if m.edited.is_some() && edit.of == m.id => edit.text,
                Ok(_) => return (unverified("an edit of another message"), None),
                Err(_) => return (unverified("not message text"), None),
            },
        };
        let Ok(id) = <[u8; KEY_ID_LEN]>::try_from(env.key_id.as_slice()) else {
            return (unverified("malformed"), None);
        };
        let seen = (id, lc(&m.from), env.seq);
        (Content::Sealed { text, check: Arc::new(check), requested: false }, Some(seen))
    }

    /// Checks the MAC of an envelope `from` sent in the conversation with `peer` and
    /// decrypts it; the signature check is returned for later. The error says why.
    fn open_envelope(
        &self,
        peer: &str,
        sent_by: &str,
        env: &Envelope,
    ) -> Result<(Vec<u8>, PendingCheck), String> {
        let identity = self.identity.as_ref().ok_or("no key on this computer")?;
        let id = <[u8; KEY_ID_LEN]>::try_from(env.key_id.as_slice()).map_err(|_| "malformed")?;
        let info = self.keys.get(&id).ok_or("its key is unknown or was not made for this key of yours")?;
        if info.peer != lc(peer) {
            return Err("its key belongs to another conversation".into());
        }
        let from_me = sent_by.eq_ignore_ascii_case(&self.me);
        let (from, to) = if from_me { (self.me.as_str(), peer) } else { (peer, self.me.as_str()) };
        let sender = if from_me {
            (identity.public().fingerprint().0[..] == info.my_fp[..]).then(|| identity.public().clone())
        } else if sent_by.eq_ignore_ascii_case(peer) {
            self.peers.get(&lc(peer)).and_then(|p| p.key_with_fp(&info.peer_fp)).cloned()
        } else {
            return Err("wrong sender".into());
        };
        let sender = sender.ok_or("signed with a key you have not accepted")?;
        let (bytes, check) = env.open_unsigned_bytes(&info.key, from, to).map_err(|e| e.to_string())?;
        Ok((bytes, PendingCheck { check, sender }))
    }
}

/// A registration's key: made (already under way in `keygen`), published with its
/// backup and saved here before the app says it is signed in, so even a user who
/// quits at once can receive DMs. On failure the login's key setup tries again.
pub async fn register_identity(
    client: &Client,
    store: &LocalStore,
    addr: &str,
    user: &str,
    password: &str,
    keygen: tokio::task::JoinHandle<Result<Identity, String>>,
    bits: usize,
) -> KeyPlan {
    match setup_identity(client, store, addr, user, password.to_owned(), Some(keygen), bits).await {
        IdentitySetup::Ready(_) => KeyPlan::Saved,
        other => {
            tracing::warn!("could not set up the new account's key: {other:?}");
            KeyPlan::Password { password: password.to_owned(), keygen: None }
        }
    }
}

/// Loads, restores or creates the identity key after a password login or a
/// registration.
async fn setup_identity(
    client: &Client,
    store: &LocalStore,
    addr: &str,
    user: &str,
    password: String,
    keygen: Option<tokio::task::JoinHandle<Result<Identity, String>>>,
    bits: usize,
) -> IdentitySetup {
    let derive = {
        let user = user.to_owned();
        tokio::task::spawn_blocking(move || classchat_wire::auth::backup_key(&user, &password))
    };
    let local = {
        let (store, addr, user) = (store.clone(), addr.to_owned(), user.to_owned());
        tokio::task::spawn_blocking(move || {
            store.identity(&addr, &user).ok().flatten().and_then(|der| Identity::from_pkcs8_der(&der).ok())
        })
    };
    let backup = client.request(Request::GetBackup).await;
    let Ok(Ok(backup_key)) = derive.await else {
        return IdentitySetup::Failed("key derivation failed".into());
    };
    let local = local.await.ok().flatten();
    match backup {
        Ok(Response::Backup { public_key: Some(published), backup: Some(blob) }) => {
            if let Some(local) = local
                && local.public().der() == published.as_slice()
            {
                return IdentitySetup::Ready(Box::new(local));
            }
            let opened = tokio::task::spawn_blocking(move || open_backup(&blob, &backup_key)).await;
            match opened {
                Ok(Ok(identity)) if identity.public().der() == published.as_slice() => {
                    save_identity(store, addr, user, &identity).await;
                    IdentitySetup::Ready(Box::new(identity))
                }
                _ => IdentitySetup::BackupUnreadable { backup_key },
            }
        }
        Ok(Response::Backup { .. }) => {
            // Nothing published yet (a new account, or one from before E2E).
            let identity = match (local, keygen) {
                (Some(local), _) => local,
                (None, Some(job)) => match job.await {
                    Ok(Ok(identity)) => identity,
                    _ => return IdentitySetup::Failed("could not create a key".into()),
                },
                (None, None) => match generate(bits).await {
                    Ok(identity) => identity,
                    Err(e) => return IdentitySetup::Failed(e),
                },
            };
            match publish(client, store, addr, user, identity, &backup_key).await {
                Ok(identity) => IdentitySetup::Ready(Box::new(identity)),
                Err(e) => IdentitySetup::Failed(e),
            }
        }
        Ok(other) => IdentitySetup::Failed(format!("unexpected reply: {other:?}")),
        Err(e) => IdentitySetup::Failed(e.to_string()),
    }
}

/// A new identity key (slow: run as its own task).
pub async fn generate(bits: usize) -> Result<Identity, String> {
    tokio::task::spawn_blocking(move || Identity::generate(bits))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("could not create a key: {e}"))
}

/// Starts making a key now, to be awaited later.
pub fn start_keygen(bits: usize) -> tokio::task::JoinHandle<Result<Identity, String>> {
    tokio::task::spawn_blocking(move || Identity::generate(bits).map_err(|e| e.to_string()))
}

/// Publishes `identity` with its backup sealed under `backup_key`, then saves it locally.
pub async fn publish(
    client: &Client,
    store: &LocalStore,
    addr: &str,
    user: &str,
    identity: Identity,
    backup_key: &[u8; 32],
) -> Result<Identity, String> {
    let backup = seal_backup(&identity, backup_key).map_err(|e| e.to_string())?;
    let public_key = identity.public().der().to_vec();
    client
        .request(Request::PublishKey { public_key, backup })
        .await
        .map_err(|e| format!("could not publish the key: {e}"))?;
    save_identity(store, addr, user, &identity).await;
    Ok(identity)
}

async fn save_identity(store: &LocalStore, addr: &str, user: &str, identity: &Identity) {
    let Ok(der) = identity.to_pkcs8_der() else { return };
    let (store, addr, user) = (store.clone(), addr.to_owned(), user.to_owned());
    let saved = tokio::task::spawn_blocking(move || store.set_identity(&addr, &user, &der)).await;
    if !matches!(saved, Ok(Ok(()))) {
        tracing::warn!("could not save the identity key: {saved:?}");
    }
}

/// The identity saved on this machine (for a token login, which has no password).
async fn local_identity(store: &LocalStore, addr: &str, user: &str) -> IdentitySetup {
    let (store, addr, user) = (store.clone(), addr.to_owned(), user.to_owned());
    let found = tokio::task::spawn_blocking(move || store.identity(&addr, &user)).await;
    match found {
        Ok(Ok(Some(der))) => match Identity::from_pkcs8_der(&der) {
            Ok(identity) => IdentitySetup::Ready(Box::new(identity)),
            Err(e) => IdentitySetup::Failed(format!("the saved key is damaged: {e}")),
        },
        Ok(Ok(None)) => IdentitySetup::Failed(
            "This computer has no key for your direct messages; log out and log in with your password."
                .into(),
        ),
        other => IdentitySetup::Failed(format!("cannot read the saved key: {other:?}")),
    }
}

/// The default identity key size.
pub const DEFAULT_BITS: usize = IDENTITY_BITS;

/// Sends end-to-end encrypted DMs from outside the app (tests, the demo server): a
/// published identity and one conversation key per contact.
pub struct WireSender {
    pub name: String,
    pub identity: Identity,
    keys: HashMap<String, (DmKey, u64)>,
}

impl WireSender {
    /// Makes a key for `name` (already logged in on `client`) and publishes it with a
    /// backup sealed under `password`.
    pub async fn publish(client: &Client, name: &str, password: &str, bits: usize) -> Result<Self, String> {
        let identity = generate(bits).await?;
        let (n, p) = (name.to_owned(), password.to_owned());
        let backup_key = tokio::task::spawn_blocking(move || classchat_wire::auth::backup_key(&n, &p))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let backup = seal_backup(&identity, &backup_key).map_err(|e| e.to_string())?;
        client
            .request(Request::PublishKey { public_key: identity.public().der().to_vec(), backup })
            .await
            .map_err(|e| e.to_string())?;
        Ok(Self { name: name.to_owned(), identity, keys: HashMap::new() })
    }

    /// The envelope bytes of `text` to `to` (making and storing a key on first use and
    /// after every [`ROTATE_AFTER`] messages).
    pub async fn seal(&mut self, client: &Client, to: &str, text: &str) -> Result<Vec<u8>, String> {
        self.seal_bytes(client, to, text.as_bytes()).await
    }

    /// [`WireSender::seal`] for bytes that are not text (a file's sealed `meta`).
    pub async fn seal_bytes(
        &mut self,
        client: &Client,
        to: &str,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, String> {
        if self.keys.get(&lc(to)).is_none_or(|(_, seq)| *seq >= ROTATE_AFTER) {
            let der = match client.request(Request::GetKey { user: to.to_owned() }).await {
                Ok(Response::Key { public_key: Some(der), .. }) => der,
                other => return Err(format!("no key for {to}: {other:?}")),
            };
            let peer = PublicIdentity::from_der(&der).map_err(|e| e.to_string())?;
            let key = DmKey::generate();
            let grant =
                KeyGrant::new(&key, &self.name, &self.identity, to, &peer).map_err(|e| e.to_string())?;
            let grant = classchat_wire::encode(&grant).map_err(|e| e.to_string())?;
            client
                .request(Request::PutDmKey { to: to.to_owned(), grant })
                .await
                .map_err(|e| e.to_string())?;
            self.keys.insert(lc(to), (key, 0));
        }
        let (key, seq) = self.keys.get_mut(&lc(to)).ok_or("no key")?;
        *seq += 1;
        Ok(Envelope::seal_bytes(key, *seq, &self.name, to, &self.identity, plaintext).to_bytes())
    }

    /// Offers the file at `path` to `to`, end to end encrypted as the app does it.
    pub async fn offer_file(
        &mut self,
        client: &Client,
        to: &str,
        path: &std::path::Path,
    ) -> Result<FileInfo, String> {
        let size = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
        let name =
            classchat_wire::sanitize_file_name(&path.file_name().unwrap_or_default().to_string_lossy());
        let secret = FileSecret::new(&name, size, &FileKey::generate());
        let meta = self.seal_bytes(client, to, &secret.to_plaintext()).await?;
        let ticket = client
            .upload_file(Conv::direct(to), "", sealed_size(size), Some(meta))
            .await
            .map_err(|e| e.to_string())?;
        client.upload_sealed_from(&ticket, path, &secret, |_| {}).await.map_err(|e| e.to_string())
    }

    /// Seals and sends.
    pub async fn send(&mut self, client: &Client, to: &str, text: &str) -> Result<(), String> {
        let body = self.seal(client, to, text).await?;
        client
            .request(Request::SendDirect { to: to.to_owned(), body, reply_to: None })
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Reads a DM sent to this user (tests).
    pub async fn open(&self, client: &Client, from: &str, data: &[u8]) -> Result<String, String> {
        String::from_utf8(self.open_bytes(client, from, data).await?).map_err(|e| e.to_string())
    }

    /// Opens an envelope sent to this user, signature checked (tests).
    pub async fn open_bytes(&self, client: &Client, from: &str, data: &[u8]) -> Result<Vec<u8>, String> {
        let env = Envelope::from_bytes(data).map_err(|e| e.to_string())?;
        let grants = match client.request(Request::DmKeys { user: from.to_owned() }).await {
            Ok(Response::DmKeys { grants, .. }) => grants,
            other => return Err(format!("{other:?}")),
        };
        let sender = match client.request(Request::GetKey { user: from.to_owned() }).await {
            Ok(Response::Key { public_key: Some(der), .. }) => {
                PublicIdentity::from_der(&der).map_err(|e| e.to_string())?
            }
            other => return Err(format!("{other:?}")),
        };
        for g in grants {
            let Ok(grant) = classchat_wire::decode::<KeyGrant>(&g) else { continue };
            if grant.key_id != env.key_id {
                continue;
            }
            let key = grant.open(&self.name, &self.identity, &sender).map_err(|e| e.to_string())?;
            let (bytes, check) =
                env.open_unsigned_bytes(&key, from, &self.name).map_err(|e| e.to_string())?;
            check.verify(&sender).map_err(|e| e.to_string())?;
            return Ok(bytes);
        }
        Err("no grant for this key".into())
    }
}
