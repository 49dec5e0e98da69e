//! Room records: a room's message encrypted once for all its members (PROTOCOL.md
//! section 4.1).
//!
//! A server sending one message to a room of a thousand would otherwise encrypt and MAC it
//! a thousand times, once under each member's session keys. A room record is encrypted once,
//! under the room's *transport key*, and each connection adds only its own tag:
//!
//! ```text
//! frame body = slot (u32 BE) || IV || CT || TAG
//! CT  = AES-256-CBC(key = room key installed in `slot`, iv = IV, PKCS#7-pad(plaintext))
//! TAG = HMAC-SHA256(key = s2c_mac, seq_u64_be || slot_u32_be || SHA-256(IV || CT))
//! ```
//!
//! `seq` is the connection's own count of server → client frames, shared with ordinary
//! frames, so a room record is replayed, reordered, dropped or spliced exactly as
//! unsuccessfully as an ordinary one: only the connection's MAC key makes a valid tag, and
//! a member, who holds the room key, does not have the other members' MAC keys. The room
//! key gives confidentiality among the members: the server installs it in a connection's
//! `slot` with a [`RoomKeyMsg`] sent in an ordinary sealed frame just before the first record
//! under it, and replaces a room's key whenever someone leaves it or is removed, so a removed
//! member never receives the key of later records.
//!
//! - [`RoomKey`]: a room's transport key (the server's side).
//! - [`RoomRecord`]: one message (or several) sealed once under a room key.
//! - [`RoomSlots`]: which key each of a connection's slots holds (the writer's side).
//! - [`RoomKeyMsg`]: the message that installs a key in a slot.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aes::Aes256;
use aes::cipher::KeyInit;
use bytes::{BufMut, Bytes, BytesMut};
use rand::Rng;
use rsa::sha2::{Digest, Sha256};
use serde::{Deserialize, Serialize};

use crate::cbc_lanes;
use crate::crypto::{IV_LEN, MAC_LEN, MIN_SEALED_LEN};
use crate::error::{Error, Result};

/// Slots a connection has for room keys. A server never refers to a slot it has not filled
/// on that connection; a client keeps at most this many keys.
pub const SLOTS: usize = 64;
/// The slot number in front of a room record's IV.
pub const SLOT_LEN: usize = 4;
/// Smallest room record body: slot, IV, one block, tag.
pub const MIN_ROOM_RECORD_LEN: usize = SLOT_LEN + MIN_SEALED_LEN;
/// Length of a room key.
pub const KEY_LEN: usize = 32;

/// Unique ids for keys made by this process, so a writer can tell a room's new key from
/// its old one without comparing key bytes.
static NEXT_KEY_ID: AtomicU64 = AtomicU64::new(1);

/// Whether a frame body of `len` bytes is a room record (`true`) or an ordinary sealed frame:
/// an ordinary body is `IV || CT || TAG`, a multiple of 16 bytes long; a room record has 4
/// bytes more.
pub const fn is_room_record_len(len: usize) -> bool {
    len % 16 == SLOT_LEN
}

/// A room's transport key, replaced whenever a member leaves or is removed.
pub struct RoomKey {
    id: u64,
    key: [u8; KEY_LEN],
    cipher: Aes256,
}

impl std::fmt::Debug for RoomKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomKey").field("id", &self.id).finish_non_exhaustive()
    }
}

impl RoomKey {
    /// A fresh random key.
    pub fn generate() -> Arc<RoomKey> {
        let mut key = [0u8; KEY_LEN];
        rand::rng().fill_bytes(&mut key);
        Self::from_bytes(key)
    }

    /// A key with the given bytes (tests and vectors).
    pub fn from_bytes(key: [u8; KEY_LEN]) -> Arc<RoomKey> {
        Arc::new(RoomKey {
            id: NEXT_KEY_ID.fetch_add(1, Ordering::Relaxed),
            cipher: Aes256::new(&key.into()),
            key,
        })
    }

    /// This process's id for the key (never sent).
    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.key
    }
}

/// A plaintext sealed once under a room key: `IV || CT` and the SHA-256 of it, which every
/// connection's tag covers. Also keeps the plaintext, for connections that do not take room
/// records (their writer seals it as an ordinary frame).
#[derive(Debug)]
pub struct RoomRecord {
    room: String,
    key: Arc<RoomKey>,
    plaintext: Bytes,
    /// `IV || CT`.
    body: Bytes,
    digest: [u8; 32],
}

impl RoomRecord {
    /// Seals `plaintext` (one or more encoded `ServerMsg`s) for `room` under `key`, with a
    /// fresh random IV.
    pub fn seal(room: &str, key: &Arc<RoomKey>, plaintext: Bytes) -> RoomRecord {
        let mut iv = [0u8; IV_LEN];
        rand::rng().fill_bytes(&mut iv);
        Self::seal_with_iv(room, key, plaintext, &iv)
    }

    /// As [`RoomRecord::seal`] with a caller-chosen IV. Only for tests and vectors: an IV
    /// must never repeat under one key.
    #[doc(hidden)]
    pub fn seal_with_iv(room: &str, key: &Arc<RoomKey>, plaintext: Bytes, iv: &[u8; IV_LEN]) -> RoomRecord {
        let pad = 16 - plaintext.len() % 16;
        let mut body = BytesMut::with_capacity(IV_LEN + plaintext.len() + pad);
        body.extend_from_slice(iv);
        body.extend_from_slice(&plaintext);
        body.put_bytes(pad as u8, pad);
        cbc_lanes::encrypt(&key.cipher, &mut [(&mut body[IV_LEN..], (*iv).into())]);
        let digest = Sha256::digest(&body).into();
        RoomRecord { room: room.to_owned(), key: Arc::clone(key), plaintext, body: body.freeze(), digest }
    }

    pub fn room(&self) -> &str {
        &self.room
    }

    pub fn key(&self) -> &Arc<RoomKey> {
        &self.key
    }

    /// The messages, encoded, as an ordinary frame would carry them.
    pub fn plaintext(&self) -> &Bytes {
        &self.plaintext
    }

    /// `IV || CT`.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// SHA-256 of `IV || CT`.
    pub fn digest(&self) -> &[u8; 32] {
        &self.digest
    }

    /// Length of the frame body this record makes on a connection.
    pub fn frame_body_len(&self) -> usize {
        SLOT_LEN + self.body.len() + MAC_LEN
    }
}

/// The input of a room record's tag: `seq || slot || SHA-256(IV || CT)`, 44 bytes. An
/// ordinary frame's MAC input (`seq || IV || CT`) is 8 more than a multiple of 16 long, so
/// the two can never be the same bytes.
pub fn tag_input(seq: u64, slot: u32, digest: &[u8; 32]) -> [u8; 44] {
    let mut input = [0u8; 44];
    input[..8].copy_from_slice(&seq.to_be_bytes());
    input[8..12].copy_from_slice(&slot.to_be_bytes());
    input[12..].copy_from_slice(digest);
    input
}

/// The message that installs a room key in a slot of one connection. It travels in an
/// ordinary sealed frame, among the `ServerMsg`s, and is taken out by the connection layer:
/// applications never see it. Encoded `{"room_key": {"slot": u32, "room": str, "key": bin}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoomKeyMsg {
    RoomKey {
        slot: u32,
        room: String,
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
}

/// What every encoded [`RoomKeyMsg`] starts with: a one-entry map whose key is `"room_key"`.
/// No `ServerMsg` starts this way.
pub const ROOM_KEY_PREFIX: &[u8] = b"\x81\xa8room_key";

/// Whether an encoded message is a [`RoomKeyMsg`].
pub fn is_room_key_msg(msg: &[u8]) -> bool {
    msg.starts_with(ROOM_KEY_PREFIX)
}

/// A client's room keys, by slot (the receiving side).
pub struct ClientRoomKeys {
    /// Per slot: the room named when the key was installed, the key, its schedule.
    slots: Vec<Option<(String, [u8; KEY_LEN], Aes256)>>,
}

impl std::fmt::Debug for ClientRoomKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let filled = self.slots.iter().filter(|s| s.is_some()).count();
        f.debug_struct("ClientRoomKeys").field("filled", &filled).finish()
    }
}

impl ClientRoomKeys {
    pub(crate) fn new() -> Self {
        Self { slots: Vec::new() }
    }

    /// Installs `key` for `room` in `slot`, replacing what was there.
    pub(crate) fn install(&mut self, slot: u32, room: String, key: &[u8]) -> Result<()> {
        let key: &[u8; KEY_LEN] =
            key.try_into().map_err(|_| Error::Protocol("a room key must be 32 bytes".into()))?;
        let slot = usize::try_from(slot)
            .ok()
            .filter(|s| *s < SLOTS)
            .ok_or_else(|| Error::Protocol(format!("room key slot {slot} is outside 0..{SLOTS}")))?;
        if self.slots.len() <= slot {
            self.slots.resize_with(slot + 1, || None);
        }
        self.slots[slot] = Some((room, *key, Aes256::new(key.into())));
        Ok(())
    }

    pub(crate) fn get(&self, slot: u32) -> Option<&Aes256> {
        self.slots.get(usize::try_from(slot).ok()?)?.as_ref().map(|(_, _, cipher)| cipher)
    }

    /// The keys installed: slot, room, key.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &str, &[u8; KEY_LEN])> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|(room, key, _)| (i as u32, room.as_str(), key)))
    }
}

/// Which room key each of one connection's [`SLOTS`] holds, as its writer sent them. A key
/// not in a slot takes the first free one, else the one used longest ago, and the writer
/// sends a [`RoomKeyMsg`] for it first. Allocates nothing until the first room record.
#[derive(Debug, Default)]
pub struct RoomSlots {
    /// Per slot: the key's id and when the slot was last used.
    slots: Vec<(u64, u64)>,
    clock: u64,
}

impl RoomSlots {
    /// The slot for `key`, and whether its key must be installed (sent) first.
    pub fn slot_for(&mut self, key: &RoomKey) -> (u32, bool) {
        self.clock += 1;
        let now = self.clock;
        if let Some((i, s)) = self.slots.iter_mut().enumerate().find(|(_, s)| s.0 == key.id) {
            s.1 = now;
            return (i as u32, false);
        }
        if self.slots.len() < SLOTS {
            self.slots.push((key.id, now));
            return ((self.slots.len() - 1) as u32, true);
        }
        // Full: the least recently used slot. `SLOTS` entries, so the minimum exists.
        let i = (0..self.slots.len()).min_by_key(|i| self.slots[*i].1).unwrap_or(0);
        self.slots[i] = (key.id, now);
        (i as u32, true)
    }
}

#[cfg(test)]
mod tests {
    use bytes::{Buf, Bytes, BytesMut};

    use super::*;
    use crate::crypto::{Opener, Role, Sealer, derive_keys};
    use crate::error::CryptoError;
    use crate::message::{self, Event, ServerMsg};
    use crate::{Body, ChatMessage, Conv, MAX_FRAME_LEN};

    /// The two ends of a fresh session: the server's sealer, the client's opener.
    fn session(seed: u8) -> (Sealer, Opener) {
        let keys = derive_keys(&[seed; 32], &[1; 32], &[2; 32]);
        let (sealer, _) = keys.split(Role::Server);
        let (_, opener) = keys.split(Role::Client);
        (sealer, opener.with_room_records())
    }

    fn chat(id: u64, text: &str) -> Bytes {
        let message = ChatMessage::new(
            id,
            Conv::room("lab"),
            "prof",
            1_700_000_000_000,
            Body::Text { text: text.into() },
        );
        Bytes::from(message::encode(&ServerMsg::Event { event: Event::Message { message } }).expect("encode"))
    }

    /// The body of the next frame in `wire` (after its length prefix).
    fn next_frame(wire: &mut BytesMut) -> BytesMut {
        let len = wire.get_u32() as usize;
        wire.split_to(len)
    }

    /// Installs `key` in `slot` of `opener` the way a client's reader does: from the
    /// encoded `room_key` message.
    fn install(opener: &mut Opener, slot: u32, key: &RoomKey) {
        let msg =
            message::encode(&RoomKeyMsg::RoomKey { slot, room: "lab".into(), key: key.bytes().to_vec() })
                .expect("encode");
        assert!(is_room_key_msg(&msg), "the prefix picks it out");
        opener.install_room_key(&msg).expect("install");
    }

    #[test]
    fn a_record_sealed_once_opens_on_every_connection_as_what_sealing_for_each_alone_gives() {
        let key = RoomKey::generate();
        let record = RoomRecord::seal("lab", &key, chat(7, "hello, room"));
        let mut shared = Vec::new();
        for seed in 0..5u8 {
            // An ordinary frame first, so the record is not at sequence number 0; then the
            // record, with the key in a slot of this connection's own.
            let slot = u32::from(seed) * 7;
            let (mut sealer, mut opener) = session(seed);
            install(&mut opener, slot, &key);
            let mut wire = BytesMut::new();
            sealer.seal_frame(b"\xa4ping", &mut wire, MAX_FRAME_LEN).expect("seal");
            sealer.seal_room_record(slot, &record, &mut wire, MAX_FRAME_LEN).expect("seal record");
            opener.open_frame(&mut next_frame(&mut wire)).expect("ordinary frame");
            let mut body = next_frame(&mut wire);
            assert!(is_room_record_len(body.len()));
            assert_eq!(body.len(), record.frame_body_len());
            shared.push(body[SLOT_LEN..SLOT_LEN + record.body().len()].to_vec());
            opener.open_frame(&mut body).expect("room record");
            assert_eq!(opener.seq(), 2, "a room record counts in the connection's sequence");
            // The same session sealing the message for this connection alone.
            let (mut sealer, mut opener) = session(seed);
            let mut wire = BytesMut::new();
            sealer.seal_frame(b"\xa4ping", &mut wire, MAX_FRAME_LEN).expect("seal");
            sealer.seal_frame(record.plaintext(), &mut wire, MAX_FRAME_LEN).expect("seal");
            opener.open_frame(&mut next_frame(&mut wire)).expect("frame 0");
            let mut alone = next_frame(&mut wire);
            opener.open_frame(&mut alone).expect("frame 1");
            assert_eq!(body, alone, "connection {seed}: what a frame of its own carries");
            assert_eq!(&body[..], &record.plaintext()[..]);
        }
        assert!(shared.windows(2).all(|w| w[0] == w[1]), "IV || CT is encrypted once for every connection");
    }

    #[test]
    fn a_replayed_reordered_or_spliced_record_fails_like_a_forged_frame() {
        let key = RoomKey::generate();
        let one = RoomRecord::seal("lab", &key, chat(1, "one"));
        let two = RoomRecord::seal("lab", &key, chat(2, "two"));
        let seal = |sealer: &mut Sealer, records: &[&RoomRecord]| {
            let mut wire = BytesMut::new();
            for r in records {
                sealer.seal_room_record(0, r, &mut wire, MAX_FRAME_LEN).expect("seal");
            }
            let mut frames = Vec::new();
            while !wire.is_empty() {
                frames.push(next_frame(&mut wire));
            }
            frames
        };
        // Replay: the first record a second time.
        let (mut sealer, mut opener) = session(1);
        install(&mut opener, 0, &key);
        let frames = seal(&mut sealer, &[&one, &two]);
        opener.open_frame(&mut frames[0].clone()).expect("first");
        assert_eq!(opener.open_frame(&mut frames[0].clone()), Err(CryptoError::BadMac), "replay");
        // Reorder: the second before the first.
        let (mut sealer, mut opener) = session(1);
        install(&mut opener, 0, &key);
        let frames = seal(&mut sealer, &[&one, &two]);
        assert_eq!(opener.open_frame(&mut frames[1].clone()), Err(CryptoError::BadMac), "reorder");
        // Drop: the first never arrives.
        let (mut sealer, mut opener) = session(1);
        install(&mut opener, 0, &key);
        let frames = seal(&mut sealer, &[&one, &two]);
        assert_eq!(opener.open_frame(&mut frames[1].clone()), Err(CryptoError::BadMac), "drop");
        // Splice: the same record as another member's connection got it.
        let (mut other_sealer, _) = session(2);
        let (_, mut opener) = session(1);
        install(&mut opener, 0, &key);
        let spliced = seal(&mut other_sealer, &[&one]);
        assert_eq!(opener.open_frame(&mut spliced[0].clone()), Err(CryptoError::BadMac), "splice");
        // Moved to another slot: the slot is under the tag.
        let (mut sealer, mut opener) = session(1);
        install(&mut opener, 0, &key);
        install(&mut opener, 1, &key);
        let mut moved = seal(&mut sealer, &[&one]).remove(0);
        moved[3] = 1;
        assert_eq!(opener.open_frame(&mut moved), Err(CryptoError::BadMac), "slot changed");
    }

    #[test]
    fn a_member_holding_the_room_key_cannot_forge_a_record_for_another_member() {
        let key = RoomKey::generate();
        let (_, mut victim) = session(1);
        install(&mut victim, 0, &key);
        // The forger has the room key and a session of its own, but not the victim's MAC key.
        let forged = RoomRecord::seal("lab", &key, chat(99, "the exam is cancelled"));
        let (mut forger_sealer, _) = session(3);
        let mut wire = BytesMut::new();
        forger_sealer.seal_room_record(0, &forged, &mut wire, MAX_FRAME_LEN).expect("seal");
        assert_eq!(victim.open_frame(&mut next_frame(&mut wire)), Err(CryptoError::BadMac));
    }

    #[test]
    fn records_after_a_new_key_do_not_open_with_the_old_one() {
        let old = RoomKey::generate();
        let new = RoomKey::generate();
        assert_ne!(old.bytes(), new.bytes());
        let record = RoomRecord::seal("lab", &new, chat(5, "after the kick"));
        // The removed member's connection has only the old key in its slot; suppose the
        // record even reached it with a valid tag: it does not decrypt to the message.
        let (mut sealer, mut removed) = session(4);
        install(&mut removed, 0, &old);
        let mut wire = BytesMut::new();
        sealer.seal_room_record(0, &record, &mut wire, MAX_FRAME_LEN).expect("seal");
        let mut body = next_frame(&mut wire);
        match removed.open_frame(&mut body) {
            Err(CryptoError::BadPadding) => {}
            Ok(()) => assert_ne!(&body[..], &record.plaintext()[..], "the old key must not read it"),
            Err(e) => panic!("unexpected {e}"),
        }
        // A record in a slot that was never filled is refused.
        let (mut sealer, mut fresh) = session(5);
        let mut wire = BytesMut::new();
        sealer.seal_room_record(9, &record, &mut wire, MAX_FRAME_LEN).expect("seal");
        assert_eq!(fresh.open_frame(&mut next_frame(&mut wire)), Err(CryptoError::UnknownRoomKey));
    }

    #[test]
    fn a_server_opener_takes_no_room_records_and_bad_slots_are_refused() {
        let key = RoomKey::generate();
        let record = RoomRecord::seal("lab", &key, chat(1, "x"));
        let keys = derive_keys(&[1; 32], &[1; 32], &[2; 32]);
        let (mut client_sealer, _) = keys.split(Role::Client);
        let (_, mut server_opener) = keys.split(Role::Server);
        let mut wire = BytesMut::new();
        client_sealer.seal_room_record(0, &record, &mut wire, MAX_FRAME_LEN).expect("seal");
        assert_eq!(server_opener.open_frame(&mut next_frame(&mut wire)), Err(CryptoError::Truncated));
        assert!(server_opener.install_room_key(b"\x81\xa8room_key\x80").is_err());
        let (_, mut opener) = session(1);
        for (slot, len) in [(SLOTS as u32, 32), (0, 16)] {
            let msg = message::encode(&RoomKeyMsg::RoomKey { slot, room: "lab".into(), key: vec![7; len] })
                .expect("encode");
            assert!(opener.install_room_key(&msg).is_err(), "slot {slot}, {len}-byte key");
        }
    }

    #[test]
    fn slots_fill_then_the_least_recently_used_is_replaced() {
        let keys: Vec<_> = (0..=SLOTS).map(|_| RoomKey::generate()).collect();
        let mut slots = RoomSlots::default();
        for (i, k) in keys[..SLOTS].iter().enumerate() {
            assert_eq!(slots.slot_for(k), (i as u32, true));
        }
        assert_eq!(slots.slot_for(&keys[0]), (0, false), "known: no new key message");
        // Slot 1 is now the least recently used.
        assert_eq!(slots.slot_for(&keys[SLOTS]), (1, true));
        assert_eq!(slots.slot_for(&keys[1]), (2, true), "evicted keys are sent again");
    }
}
