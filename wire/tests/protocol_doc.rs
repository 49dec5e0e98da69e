//! PROTOCOL.md cannot drift from the code: every worked example in it is recomputed here
//! and compared byte for byte, and every message, field and error code must be named in it.
//!
//! Examples are fenced code blocks preceded by a marker line, e.g.
//!
//! ````text
//! <!-- example:c2s_frame -->
//! ```hex
//! 00 00 00 50 60 61 …
//! ```
//! ````
//!
//! `hex` blocks are compared as bytes (whitespace ignored), `text` blocks as trimmed text.
//! A failing check prints the block as it should read.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::OnceLock;

use bytes::BytesMut;
use classchat_wire::crypto::{self, ClientKey, Role, ServerHello, ServerKey};
use classchat_wire::message::{decode, encode};
use classchat_wire::{
    Body, ChatMessage, ClientMsg, Conv, ErrorCode, Event, Fingerprint, MAX_FRAME_LEN, PROTOCOL_VERSION,
    Request, Response, ServerMsg, auth, frame, message,
};
use common::samples;
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

// ---- reading the document -----------------------------------------------------------------

struct Doc {
    text: String,
    /// Example name -> (fence language, content).
    examples: BTreeMap<String, (String, String)>,
}

fn doc() -> &'static Doc {
    static DOC: OnceLock<Doc> = OnceLock::new();
    DOC.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../PROTOCOL.md");
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
        let examples = parse_examples(&text);
        Doc { text, examples }
    })
}

fn parse_examples(text: &str) -> BTreeMap<String, (String, String)> {
    let mut examples = BTreeMap::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let Some(name) = line.trim().strip_prefix("<!-- example:").and_then(|r| r.strip_suffix("-->")) else {
            continue;
        };
        let name = name.trim().to_owned();
        let fence = lines.next().unwrap_or_default().trim();
        let lang = fence
            .strip_prefix("```")
            .unwrap_or_else(|| panic!("example {name}: the marker must be followed by a ``` fence"));
        let mut content = String::new();
        for line in lines.by_ref() {
            if line.trim() == "```" {
                break;
            }
            content.push_str(line);
            content.push('\n');
        }
        assert!(
            examples.insert(name.clone(), (lang.to_owned(), content)).is_none(),
            "example {name} appears twice"
        );
    }
    examples
}

fn example(name: &str) -> &'static (String, String) {
    doc().examples.get(name).unwrap_or_else(|| panic!("PROTOCOL.md has no example `{name}`"))
}

fn doc_hex(name: &str) -> Vec<u8> {
    let (lang, content) = example(name);
    assert_eq!(lang, "hex", "example {name} must be a ```hex block");
    let digits: String = content.split_whitespace().collect();
    hex::decode(&digits).unwrap_or_else(|e| panic!("example {name} is not hex: {e}"))
}

/// Bytes as PROTOCOL.md shows them: 16 to a line, separated by spaces.
struct HexLines<'a>(&'a [u8]);

impl fmt::Display for HexLines<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in self.0.chunks(16) {
            let bytes: Vec<String> = line.iter().map(|b| format!("{b:02x}")).collect();
            writeln!(f, "{}", bytes.join(" "))?;
        }
        Ok(())
    }
}

/// Collects mismatches so one run shows every block that needs fixing.
#[derive(Default)]
struct Checker {
    failures: Vec<String>,
}

impl Checker {
    fn hex(&mut self, name: &str, actual: &[u8]) {
        if doc_hex(name) != actual {
            self.failures.push(format!("<!-- example:{name} -->\n```hex\n{}```", HexLines(actual)));
        }
    }

    fn text(&mut self, name: &str, actual: &str) {
        let (lang, content) = example(name);
        assert_eq!(lang, "text", "example {name} must be a ```text block");
        if content.trim() != actual.trim() {
            self.failures.push(format!("<!-- example:{name} -->\n```text\n{actual}\n```"));
        }
    }

    fn finish(self) {
        assert!(
            self.failures.is_empty(),
            "PROTOCOL.md disagrees with the code; these blocks should read:\n\n{}",
            self.failures.join("\n\n")
        );
    }
}

// ---- the worked example -------------------------------------------------------------------

/// Every example block the document must contain, each checked by a test below.
const EXAMPLES: &[&str] = &[
    "server_private_key",
    "server_public_key",
    "fingerprint",
    "fingerprint_display",
    "server_hello",
    "server_hello_frame",
    "secret",
    "encrypted_secret",
    "client_key_frame",
    "server_nonce",
    "client_nonce",
    "salt",
    "c2s_enc",
    "c2s_mac",
    "s2c_enc",
    "s2c_mac",
    "c2s_plaintext",
    "c2s_iv",
    "c2s_ciphertext",
    "c2s_mac_input",
    "c2s_tag",
    "c2s_frame",
    "c2s_plaintext_1",
    "c2s_iv_1",
    "c2s_frame_1",
    "s2c_plaintext",
    "s2c_iv",
    "s2c_frame",
    "s2c_plaintext_1",
    "s2c_iv_1",
    "s2c_frame_1",
    "s2c_plaintext_2",
    "s2c_iv_2",
    "s2c_frame_2",
    "room_key",
    "room_record_plaintext",
    "room_record_iv",
    "room_record_ciphertext",
    "room_record_digest",
    "room_record_mac_input",
    "room_record_tag",
    "room_record_frame",
    "msg_join_room",
    "msg_send_direct",
    "msg_err",
    "msg_event_message",
    "auth_key",
];

fn counting(start: u8, len: u8) -> Vec<u8> {
    (start..start + len).collect()
}

/// Seals `plaintext` with the IV `iv_start, iv_start + 1, …` and checks the document's
/// `{dir}_plaintext{suffix}`, `{dir}_iv{suffix}` and `{dir}_frame{suffix}` blocks against
/// it; returns the frame.
fn sealed_example(
    check: &mut Checker,
    sealer: &mut crypto::Sealer,
    (dir, suffix): (&str, &str),
    plaintext: &[u8],
    iv_start: u8,
) -> BytesMut {
    check.hex(&format!("{dir}_plaintext{suffix}"), plaintext);
    let iv: [u8; 16] = counting(iv_start, 16).try_into().expect("16 bytes");
    check.hex(&format!("{dir}_iv{suffix}"), &iv);
    let mut frame = BytesMut::new();
    sealer.seal_frame_with_iv(plaintext, &iv, &mut frame, MAX_FRAME_LEN).expect("seal");
    check.hex(&format!("{dir}_frame{suffix}"), &frame);
    frame
}

const SERVER_NAME: &str = "CS Lab 3";

fn framed(body: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    frame::encode(body, &mut out, MAX_FRAME_LEN).expect("frame");
    out.to_vec()
}

fn example_key() -> ServerKey {
    ServerKey::from_pkcs8_der(&doc_hex("server_private_key")).expect("the example private key is PKCS#8 DER")
}

fn example_hello(key: &ServerKey) -> ServerHello {
    ServerHello {
        version: PROTOCOL_VERSION,
        server_name: SERVER_NAME.into(),
        public_key: key.public_der().to_vec(),
        nonce: counting(0x20, 32),
    }
}

#[test]
fn the_document_has_exactly_the_checked_examples() {
    let in_doc: BTreeSet<&str> = doc().examples.keys().map(String::as_str).collect();
    let checked: BTreeSet<&str> = EXAMPLES.iter().copied().collect();
    assert_eq!(
        in_doc, checked,
        "every example in PROTOCOL.md is checked here, and every checked one is there"
    );
}

#[test]
fn worked_example_handshake_matches_the_code() {
    let mut check = Checker::default();
    let key = example_key();
    check.hex("server_public_key", key.public_der());
    check.hex("fingerprint", &key.fingerprint().0);
    assert_eq!(*key.fingerprint(), Fingerprint::of_der(key.public_der()));
    check.text("fingerprint_display", &key.fingerprint().to_string());

    let hello = example_hello(&key);
    let (_, fingerprint) = crypto::check_server_hello(&hello).expect("the example hello is acceptable");
    assert_eq!(&fingerprint, key.fingerprint());
    let hello_body = encode(&hello).expect("encode hello");
    check.hex("server_hello", &hello_body);
    check.hex("server_hello_frame", &framed(&hello_body));

    let secret = counting(0x00, 32);
    check.hex("secret", &secret);
    check.hex("server_nonce", &hello.nonce);
    let client_nonce = counting(0x40, 32);
    check.hex("client_nonce", &client_nonce);
    check.hex("salt", &[&hello.nonce[..], &client_nonce[..]].concat());

    // RSA-OAEP is randomised, so the document's ciphertext is an input. The server must
    // unwrap exactly the example secret from it, which the derived keys show.
    let client_key = ClientKey {
        version: PROTOCOL_VERSION,
        encrypted_secret: doc_hex("encrypted_secret"),
        nonce: client_nonce,
    };
    assert_eq!(client_key.encrypted_secret.len(), 256, "one 2048-bit RSA block");
    check.hex("client_key_frame", &framed(&encode(&client_key).expect("encode client key")));
    let keys = crypto::server_accept(&key, &hello, &client_key).expect("accept");
    assert_eq!(keys, crypto::derive_keys(&secret, &hello.nonce, &client_key.nonce), "the secret unwraps");
    check.hex("c2s_enc", &keys.c2s_enc);
    check.hex("c2s_mac", &keys.c2s_mac);
    check.hex("s2c_enc", &keys.s2c_enc);
    check.hex("s2c_mac", &keys.s2c_mac);
    check.finish();
}

#[test]
fn worked_example_sealed_frames_match_the_code() {
    let mut check = Checker::default();
    let keys = crypto::derive_keys(&counting(0x00, 32), &counting(0x20, 32), &counting(0x40, 32));
    let (mut client_sealer, mut client_opener) = keys.split(Role::Client);
    let (mut server_sealer, mut server_opener) = keys.split(Role::Server);

    // Client to server, seq 0, with the pieces of its frame shown one by one.
    let plaintext = encode(&ClientMsg::Request { id: 1, body: Request::Ping }).expect("encode");
    let frame0 = sealed_example(&mut check, &mut client_sealer, ("c2s", ""), &plaintext, 0x60);
    let body = &frame0[frame::HEADER_LEN..];
    let (signed, tag) = body.split_at(body.len() - crypto::MAC_LEN);
    check.hex("c2s_ciphertext", &signed[crypto::IV_LEN..]);
    check.hex("c2s_mac_input", &[&0u64.to_be_bytes()[..], signed].concat());
    check.hex("c2s_tag", tag);

    // Client to server, seq 1: the same keys, the next sequence number.
    let plaintext1 = encode(&ClientMsg::Pong { nonce: 42 }).expect("encode");
    sealed_example(&mut check, &mut client_sealer, ("c2s", "_1"), &plaintext1, 0x70);

    // Server to client, seq 0 in its own direction.
    let reply = encode(&ServerMsg::Ok { id: 1, body: Response::Pong }).expect("encode");
    sealed_example(&mut check, &mut server_sealer, ("s2c", ""), &reply, 0x80);

    // Server to client, seq 1: two messages in one frame.
    let two = [
        encode(&ServerMsg::Ping { nonce: 7 }).expect("encode"),
        encode(&ServerMsg::Event { event: Event::CaughtUp }).expect("encode"),
    ]
    .concat();
    sealed_example(&mut check, &mut server_sealer, ("s2c", "_1"), &two, 0x90);
    check.finish();

    // The document's frames open on the other side, in order, to the document's plaintexts.
    for (name, expected) in [("c2s_frame", "c2s_plaintext"), ("c2s_frame_1", "c2s_plaintext_1")] {
        let mut wire = doc_hex(name);
        let opened = server_opener.open(&mut wire[frame::HEADER_LEN..]).expect("open");
        assert_eq!(opened, doc_hex(expected));
    }
    let mut wire = doc_hex("s2c_frame");
    assert_eq!(client_opener.open(&mut wire[frame::HEADER_LEN..]).expect("open"), doc_hex("s2c_plaintext"));
    // The two-message frame opens once and decodes as the two messages, in order.
    let mut wire = doc_hex("s2c_frame_1");
    let plaintext = client_opener.open(&mut wire[frame::HEADER_LEN..]).expect("open");
    let (first, used): (ServerMsg, usize) = message::decode_first(plaintext).expect("the first message");
    assert_eq!(first, ServerMsg::Ping { nonce: 7 });
    let (second, rest): (ServerMsg, usize) = message::decode_first(&plaintext[used..]).expect("the second");
    assert_eq!(second, ServerMsg::Event { event: Event::CaughtUp });
    assert_eq!(used + rest, plaintext.len(), "nothing after the second message");
}

#[test]
fn worked_example_room_record_matches_the_code() {
    use classchat_wire::room_record::{RoomKey, RoomKeyMsg, RoomRecord, SLOT_LEN};
    use sha2::Digest;
    let mut check = Checker::default();
    let keys = crypto::derive_keys(&counting(0x00, 32), &counting(0x20, 32), &counting(0x40, 32));
    let (mut server_sealer, _) = keys.split(Role::Server);
    let (_, client_opener) = keys.split(Role::Client);
    let mut client_opener = client_opener.with_room_records();
    // Seq 0 and 1 are section 13.7 and 13.8's frames.
    for _ in 0..2 {
        let mut skipped = BytesMut::new();
        server_sealer.seal_frame(b"\xc0", &mut skipped, MAX_FRAME_LEN).expect("seal");
    }
    let room_key: [u8; 32] = counting(0xb0, 32).try_into().expect("32 bytes");
    check.hex("room_key", &room_key);
    let install = encode(&RoomKeyMsg::RoomKey { slot: 0, room: "cs101".into(), key: room_key.to_vec() })
        .expect("encode");
    let frame2 = sealed_example(&mut check, &mut server_sealer, ("s2c", "_2"), &install, 0xa0);

    let message = classchat_wire::ChatMessage::new(
        5,
        classchat_wire::Conv::room("cs101"),
        "prof",
        1_700_000_000_000,
        classchat_wire::Body::Text { text: "hello".into() },
    );
    let plaintext = encode(&ServerMsg::Event { event: Event::Message { message } }).expect("encode");
    check.hex("room_record_plaintext", &plaintext);
    let iv: [u8; 16] = counting(0xd0, 16).try_into().expect("16 bytes");
    check.hex("room_record_iv", &iv);
    let record = RoomRecord::seal_with_iv(
        "cs101",
        &RoomKey::from_bytes(room_key),
        bytes::Bytes::from(plaintext.clone()),
        &iv,
    );
    check.hex("room_record_ciphertext", &record.body()[crypto::IV_LEN..]);
    let digest: [u8; 32] = sha2::Sha256::digest(record.body()).into();
    assert_eq!(&digest, record.digest());
    check.hex("room_record_digest", &digest);
    let mac_input = classchat_wire::room_record::tag_input(3, 0, &digest);
    check.hex("room_record_mac_input", &mac_input);
    let mut frame3 = BytesMut::new();
    server_sealer.seal_room_record(0, &record, &mut frame3, MAX_FRAME_LEN).expect("seal");
    check.hex("room_record_tag", &frame3[frame3.len() - crypto::MAC_LEN..]);
    check.hex("room_record_frame", &frame3);
    assert_eq!(&frame3[frame::HEADER_LEN..frame::HEADER_LEN + SLOT_LEN], &[0, 0, 0, 0]);
    check.finish();

    // The client, two frames in (seq 2), opens the installation, then the record.
    let mut skip = BytesMut::new();
    let (mut replay_sealer, _) = keys.split(Role::Server);
    replay_sealer.seal_frame(b"\xc0", &mut skip, MAX_FRAME_LEN).expect("seal");
    replay_sealer.seal_frame(b"\xc0", &mut skip, MAX_FRAME_LEN).expect("seal");
    while !skip.is_empty() {
        let len = u32::from_be_bytes([skip[0], skip[1], skip[2], skip[3]]) as usize;
        let mut body = skip.split_to(frame::HEADER_LEN + len).split_off(frame::HEADER_LEN);
        client_opener.open_frame(&mut body).expect("frames 0 and 1");
    }
    let mut body = BytesMut::from(&doc_hex("s2c_frame_2")[frame::HEADER_LEN..]);
    assert_eq!(body.len(), frame2.len() - frame::HEADER_LEN);
    client_opener.open_frame(&mut body).expect("open the installation");
    client_opener.install_room_key(&body).expect("install");
    let mut body = BytesMut::from(&doc_hex("room_record_frame")[frame::HEADER_LEN..]);
    client_opener.open_frame(&mut body).expect("open the record");
    assert_eq!(&body[..], &doc_hex("room_record_plaintext")[..]);
    assert_eq!(client_opener.seq(), 4);
}

#[test]
fn message_examples_match_the_code() {
    let mut check = Checker::default();
    check.hex(
        "msg_join_room",
        &encode(&ClientMsg::Request {
            id: 2,
            body: Request::JoinRoom { name: "cs101".into(), password: None },
        })
        .expect("encode"),
    );
    check.hex(
        "msg_send_direct",
        &encode(&ClientMsg::Request {
            id: 3,
            body: Request::SendDirect {
                to: "bob".into(),
                body: vec![0xde, 0xad, 0xbe, 0xef],
                reply_to: None,
            },
        })
        .expect("encode"),
    );
    check.hex(
        "msg_err",
        &encode(&ServerMsg::Err { id: 2, code: ErrorCode::NoSuchRoom, message: "No room cs101.".into() })
            .expect("encode"),
    );
    check.hex(
        "msg_event_message",
        &encode(&ServerMsg::Event {
            event: Event::Message {
                message: ChatMessage {
                    id: 1001,
                    conv: Conv::room("lobby"),
                    from: "alice".into(),
                    ts: 1_767_225_600_000,
                    body: Body::Text { text: "hi".into() },
                    reply_to: None,
                    edited: None,
                    reactions: Vec::new(),
                },
            },
        })
        .expect("encode"),
    );
    check.finish();
}

#[test]
fn auth_key_example_matches_the_code() {
    let mut check = Checker::default();
    check.hex("auth_key", &auth::auth_key("Alice", "correct horse battery staple").expect("argon2"));
    check.finish();
    assert!(doc().text.contains(&format!("m = {} KiB", auth::ARGON2_M_KIB)), "memory cost is documented");
    assert!(doc().text.contains(&format!("t = {}", auth::ARGON2_T)), "passes are documented");
    assert!(doc().text.contains(&format!("p = {}", auth::ARGON2_P)), "lanes are documented");
}

// ---- every name is documented -------------------------------------------------------------

fn assert_documented(what: &str, names: impl IntoIterator<Item = String>) {
    let missing: Vec<String> =
        names.into_iter().filter(|n| !doc().text.contains(&format!("`{n}`"))).collect();
    assert!(missing.is_empty(), "PROTOCOL.md does not mention these {what} (in backticks): {missing:?}");
}

#[test]
fn every_error_code_is_documented() {
    assert_documented("error codes", samples::ERROR_CODES.iter().map(|c| c.as_str().to_owned()));
}

#[test]
fn every_variant_is_documented() {
    fn names<T>(items: Vec<T>, name: fn(&T) -> &'static str) -> Vec<String> {
        items.iter().map(|i| name(i).to_owned()).collect()
    }
    assert_documented("requests", names(samples::requests(), samples::request_name));
    assert_documented("client messages", names(samples::client_msgs(), samples::client_msg_name));
    assert_documented("server messages", names(samples::server_msgs(), samples::server_msg_name));
    assert_documented("responses", names(samples::responses(), samples::response_name));
    assert_documented("events", names(samples::events(), samples::event_name));
    assert_documented("bodies", names(samples::bodies(), samples::body_name));
    assert_documented("system events", names(samples::system_events(), samples::system_event_name));
    assert_documented("conversations", names(samples::convs(), samples::conv_name));
}

/// Every map key anywhere in a MessagePack value: field names and struct-variant tags.
#[derive(Default)]
struct Keys(BTreeSet<String>);

impl<'de> Deserialize<'de> for Keys {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Keys;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any MessagePack value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Keys, A::Error> {
                let mut keys = Keys::default();
                while let Some(key) = map.next_key::<String>()? {
                    keys.0.insert(key);
                    keys.0.extend(map.next_value::<Keys>()?.0);
                }
                Ok(keys)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Keys, A::Error> {
                let mut keys = Keys::default();
                while let Some(inner) = seq.next_element::<Keys>()? {
                    keys.0.extend(inner.0);
                }
                Ok(keys)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Keys, E> {
                Ok(Keys::default())
            }
            fn visit_i64<E>(self, _: i64) -> Result<Keys, E> {
                Ok(Keys::default())
            }
            fn visit_u64<E>(self, _: u64) -> Result<Keys, E> {
                Ok(Keys::default())
            }
            fn visit_f64<E>(self, _: f64) -> Result<Keys, E> {
                Ok(Keys::default())
            }
            fn visit_str<E>(self, _: &str) -> Result<Keys, E> {
                Ok(Keys::default())
            }
            fn visit_bytes<E>(self, _: &[u8]) -> Result<Keys, E> {
                Ok(Keys::default())
            }
            fn visit_unit<E>(self) -> Result<Keys, E> {
                Ok(Keys::default())
            }
            fn visit_none<E>(self) -> Result<Keys, E> {
                Ok(Keys::default())
            }
        }
        d.deserialize_any(V)
    }
}

#[test]
fn every_field_name_is_documented() {
    let mut keys = BTreeSet::new();
    for bytes in samples::client_msgs()
        .iter()
        .map(|m| encode(m).expect("encode"))
        .chain(samples::server_msgs().iter().map(|m| encode(m).expect("encode")))
    {
        keys.extend(decode::<Keys>(&bytes).expect("walk the message").0);
    }
    let key = ServerKey::from_pkcs8_der(&doc_hex("server_private_key")).expect("example key");
    keys.extend(decode::<Keys>(&encode(&example_hello(&key)).expect("encode")).expect("walk").0);
    let client_key = ClientKey { version: 1, encrypted_secret: vec![1], nonce: vec![2] };
    keys.extend(decode::<Keys>(&encode(&client_key).expect("encode")).expect("walk").0);
    assert!(
        keys.contains("limits") && keys.contains("heartbeat_timeout_ms"),
        "the walk reaches nested structs"
    );
    assert_documented("field names", keys);
}

#[test]
fn documented_constants_match_the_code() {
    let text = &doc().text;
    for needle in [
        format!("`MAX_FRAME_LEN` = {}", MAX_FRAME_LEN),
        format!("version {PROTOCOL_VERSION}"),
        format!("{}", crypto::DEFAULT_RSA_BITS),
        format!("{}..={}", crypto::MIN_RSA_BITS, crypto::MAX_RSA_BITS),
        format!("{}", classchat_wire::MAX_HISTORY_PAGE),
        format!("\"{}\"", classchat_wire::DEFAULT_ROOM),
        format!("\"{}\"", String::from_utf8_lossy(crypto::LABEL_C2S_ENC)),
        format!("\"{}\"", String::from_utf8_lossy(crypto::LABEL_C2S_MAC)),
        format!("\"{}\"", String::from_utf8_lossy(crypto::LABEL_S2C_ENC)),
        format!("\"{}\"", String::from_utf8_lossy(crypto::LABEL_S2C_MAC)),
        format!("\"{}\"", auth::AUTH_SALT_PREFIX),
        format!("\"{}\"", auth::BACKUP_SALT_PREFIX),
        format!("{} bytes", crypto::sealed_len(0)),
        format!("{} bytes", MAX_FRAME_LEN - crypto::IV_LEN - crypto::MAC_LEN - 1),
    ] {
        assert!(text.contains(&needle), "PROTOCOL.md should contain {needle:?}");
    }
    // The largest plaintext that fits really is the documented one.
    let max_plain = MAX_FRAME_LEN - crypto::IV_LEN - crypto::MAC_LEN - 1;
    assert!(
        crypto::sealed_len(max_plain) <= MAX_FRAME_LEN && crypto::sealed_len(max_plain + 1) > MAX_FRAME_LEN
    );
}
