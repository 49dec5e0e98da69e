//! Every message variant survives MessagePack byte-exactly, and the encoding follows the
//! rules PROTOCOL.md states (named fields, externally tagged enums, nil, bin).

mod common;

use std::collections::{BTreeMap, BTreeSet};

use classchat_wire::message::{decode, encode};
use classchat_wire::{ClientMsg, Error, ErrorCode, Request, Response, ServerMsg};
use common::samples::{self, ERROR_CODES};
use serde::Serialize;
use serde::de::{DeserializeOwned, IgnoredAny};

/// Asserts `decode(encode(x)) == x` and that encoding the decoded value gives the same bytes.
fn assert_round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(x: &T) -> Vec<u8> {
    let bytes = encode(x).expect("encode");
    let back: T = decode(&bytes).unwrap_or_else(|e| panic!("decode {x:?}: {e}"));
    assert_eq!(&back, x);
    assert_eq!(encode(&back).expect("re-encode"), bytes, "re-encoding {x:?} changed the bytes");
    bytes
}

/// The externally tagged variant name at the top of `bytes`: a string for a unit variant,
/// the one key of a one-entry map otherwise.
fn wire_tag(bytes: &[u8]) -> String {
    if let Ok(s) = decode::<String>(bytes) {
        return s;
    }
    #[expect(clippy::zero_sized_map_values, reason = "only the keys matter")]
    let map: BTreeMap<String, IgnoredAny> = decode(bytes).expect("a string or a map");
    assert_eq!(map.len(), 1, "an enum variant is a one-entry map");
    map.into_keys().next().expect("one key")
}

fn names<T>(items: &[T], name: fn(&T) -> &'static str) -> BTreeSet<&'static str> {
    items.iter().map(name).collect()
}

#[test]
fn every_client_msg_round_trips_byte_exact() {
    let msgs = samples::client_msgs();
    for m in &msgs {
        assert_round_trip(m);
    }
    assert_eq!(names(&msgs, samples::client_msg_name).len(), 6, "samples cover every ClientMsg variant");
    assert_eq!(names(&samples::requests(), samples::request_name).len(), 67, "every Request variant");
    assert_eq!(samples::requests().len(), 67, "one sample per Request variant");
}

#[test]
fn every_server_msg_round_trips_byte_exact() {
    let msgs = samples::server_msgs();
    for m in &msgs {
        assert_round_trip(m);
    }
    assert_eq!(names(&msgs, samples::server_msg_name).len(), 5, "every ServerMsg variant");
    assert_eq!(names(&samples::responses(), samples::response_name).len(), 30, "every Response variant");
    assert_eq!(names(&samples::events(), samples::event_name).len(), 25, "every Event variant");
    assert_eq!(names(&samples::bodies(), samples::body_name).len(), 5, "every Body variant");
    assert_eq!(names(&samples::system_events(), samples::system_event_name).len(), 10);
    assert_eq!(names(&samples::convs(), samples::conv_name).len(), 3, "every Conv variant");
}

#[test]
fn error_code_list_is_complete_and_wire_names_match_as_str() {
    let indices: Vec<usize> = ERROR_CODES.iter().map(|&c| samples::error_code_index(c)).collect();
    assert_eq!(indices, (0..ERROR_CODES.len()).collect::<Vec<_>>());
    for code in ERROR_CODES {
        let bytes = assert_round_trip(&code);
        assert_eq!(wire_tag(&bytes), code.as_str());
        assert_eq!(code.to_string(), code.as_str());
    }
}

#[test]
fn variant_names_on_the_wire_are_the_documented_snake_case_names() {
    fn check<T: Serialize>(items: &[T], name: fn(&T) -> &'static str) {
        for item in items {
            assert_eq!(wire_tag(&encode(item).expect("encode")), name(item));
        }
    }
    check(&samples::client_msgs(), samples::client_msg_name);
    check(&samples::requests(), samples::request_name);
    check(&samples::server_msgs(), samples::server_msg_name);
    check(&samples::responses(), samples::response_name);
    check(&samples::events(), samples::event_name);
    check(&samples::bodies(), samples::body_name);
    check(&samples::system_events(), samples::system_event_name);
    check(&samples::convs(), samples::conv_name);
}

#[test]
fn encoding_uses_named_fields_nil_and_bin() {
    // {"join_room": {"name": "a", "password": nil}}
    let join = encode(&Request::JoinRoom { name: "a".into(), password: None }).expect("encode");
    assert_eq!(join, b"\x81\xa9join_room\x82\xa4name\xa1a\xa8password\xc0");
    // Some(x) is just x.
    let join = encode(&Request::JoinRoom { name: "a".into(), password: Some("pw".into()) }).expect("encode");
    assert_eq!(join, b"\x81\xa9join_room\x82\xa4name\xa1a\xa8password\xa2pw");
    // Byte fields are MessagePack bin (0xc4 = bin 8), not an array of integers.
    let direct = encode(&Request::SendDirect { to: "b".into(), body: vec![1, 2, 0xff], reply_to: None })
        .expect("encode");
    assert_eq!(direct, b"\x81\xabsend_direct\x82\xa2to\xa1b\xa4body\xc4\x03\x01\x02\xff");
    // The one newtype variant maps its tag straight to the struct's map.
    let welcome = encode(&Response::Welcome(samples::welcome())).expect("encode");
    assert_eq!(&welcome[..10], b"\x81\xa7welcome\x8a", "{{\"welcome\": {{10 fields}}}}");
    // A welcome from an older server without `dm_peers`, `class` or `room_records` still
    // decodes, and offers no room records.
    #[derive(serde::Serialize)]
    struct OldWelcome {
        user: String,
        server_name: String,
        #[serde(with = "serde_bytes")]
        resume_token: Vec<u8>,
        server_admin: bool,
        can_broadcast: bool,
        rooms: Vec<classchat_wire::RoomInfo>,
        limits: classchat_wire::Limits,
    }
    let new = samples::welcome();
    let old = OldWelcome {
        user: new.user.clone(),
        server_name: new.server_name.clone(),
        resume_token: new.resume_token.clone(),
        server_admin: new.server_admin,
        can_broadcast: new.can_broadcast,
        rooms: new.rooms.clone(),
        limits: new.limits,
    };
    let decoded: classchat_wire::Welcome = decode(&encode(&old).expect("encode")).expect("decodes");
    assert_eq!(
        decoded,
        classchat_wire::Welcome {
            dm_peers: Vec::new(),
            class: Default::default(),
            room_records: false,
            ..new
        }
    );
    // Unit variants of a nested enum are plain strings.
    let reply = encode(&ServerMsg::Ok { id: 1, body: Response::Done }).expect("encode");
    assert_eq!(reply, b"\x81\xa2ok\x82\xa2id\x01\xa4body\xa4done");
}

#[test]
fn unknown_fields_are_ignored() {
    // {"pong": {"nonce": 7, "extra": true}}: a newer peer may add fields.
    let msg: ClientMsg = decode(b"\x81\xa4pong\x82\xa5nonce\x07\xa5extra\xc3").expect("decode");
    assert_eq!(msg, ClientMsg::Pong { nonce: 7 });
}

#[test]
fn integers_of_any_width_decode() {
    // The nonce as uint64 (0xcf) instead of the shortest form.
    let msg: ClientMsg =
        decode(b"\x81\xa4pong\x81\xa5nonce\xcf\x00\x00\x00\x00\x00\x00\x00\x07").expect("decode");
    assert_eq!(msg, ClientMsg::Pong { nonce: 7 });
}

#[test]
fn unknown_error_code_decodes_as_internal() {
    // message.rs: "new codes may be added, so a client must treat an unknown code like
    // `internal`". {"err": {"id": 3, "code": "some_future_code", "message": "x"}}
    let bytes = b"\x81\xa3err\x83\xa2id\x03\xa4code\xb0some_future_code\xa7message\xa1x";
    let msg: ServerMsg = decode(bytes).expect("an unknown code must not break the connection");
    assert_eq!(msg, ServerMsg::Err { id: 3, code: ErrorCode::Internal, message: "x".into() });
}

#[test]
fn missing_fields_and_unknown_variants_are_decode_errors() {
    for bytes in [
        &b"\x81\xa4pong\x80"[..],          // {"pong": {}}
        b"\xa4nope",                       // unknown unit variant
        b"\x81\xa7request\x81\xa2id\x01",  // request without body
        b"\x82\xa4pong\x80\xa4pong\x80",   // two variants at once
        b"\x81\xa4pong\x81\xa5nonce\xa1x", // nonce is a string
        b"\x81\xa4pong\x81\xa5nonce\xff",  // negative fixint for a u64
    ] {
        assert!(matches!(decode::<ClientMsg>(bytes), Err(Error::Decode(_))), "{bytes:x?} must not decode");
    }
}

#[test]
fn every_truncation_of_every_message_is_a_decode_error() {
    let encoded: Vec<Vec<u8>> = samples::client_msgs()
        .iter()
        .map(|m| encode(m).expect("encode"))
        .chain(samples::server_msgs().iter().map(|m| encode(m).expect("encode")))
        .collect();
    for bytes in &encoded {
        // Long samples are cut at every 7th position to keep the test quick.
        let step = if bytes.len() > 1024 { 7 } else { 1 };
        for cut in (0..bytes.len()).step_by(step) {
            let prefix = &bytes[..cut];
            assert!(
                decode::<ClientMsg>(prefix).is_err() && decode::<ServerMsg>(prefix).is_err(),
                "cut {cut}"
            );
        }
    }
}

/// Every message, packed back to back the way a sealed frame carries several (PROTOCOL.md
/// section 4), decodes one after another to exactly what was packed; `value_len` finds each
/// one's end, and a plaintext cut short anywhere inside the last one fails to decode
/// instead of producing a message.
#[test]
fn messages_packed_back_to_back_decode_in_order_and_a_cut_one_fails() {
    use classchat_wire::message::{decode_first, value_len};
    let server: Vec<ServerMsg> = samples::server_msgs();
    let client: Vec<ClientMsg> = samples::client_msgs();
    for one in &server {
        let bytes = encode(one).expect("encode");
        assert_eq!(value_len(&bytes).expect("a whole value"), bytes.len(), "{one:?}");
        for cut in 0..bytes.len() {
            assert!(decode_first::<ServerMsg>(&bytes[..cut]).is_err(), "{one:?} cut at {cut}");
        }
    }
    assert_packed_decode_in_order(&server);
    assert_packed_decode_in_order(&client);
}

/// `msgs` encoded back to back decode one after another, exactly.
fn assert_packed_decode_in_order<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(msgs: &[T]) {
    let packed: Vec<u8> = msgs.iter().flat_map(|m| encode(m).expect("encode")).collect();
    let mut rest = &packed[..];
    for expected in msgs {
        let (got, used) = classchat_wire::message::decode_first::<T>(rest).expect("the next message");
        assert_eq!(&got, expected);
        rest = &rest[used..];
    }
    assert!(rest.is_empty());
}

/// `value_len` against every MessagePack form, including the ones no message uses (floats,
/// ext, 16- and 32-bit lengths), and hostile length fields.
#[test]
fn value_len_knows_every_messagepack_form() {
    use classchat_wire::message::value_len;
    let long = "x".repeat(70_000);
    let forms: Vec<Vec<u8>> = vec![
        encode(&0u8).expect("fixint"),
        encode(&-5i8).expect("negative fixint"),
        encode(&200u8).expect("u8"),
        encode(&70_000u32).expect("u32"),
        encode(&u64::MAX).expect("u64"),
        encode(&i64::MIN).expect("i64"),
        encode(&1.5f32).expect("f32"),
        encode(&1.5f64).expect("f64"),
        encode(&()).expect("nil"),
        encode(&true).expect("bool"),
        encode(&"é").expect("fixstr"),
        encode(&"y".repeat(40)).expect("str8"),
        encode(&&long[..300]).expect("str16"),
        encode(&long).expect("str32"),
        encode(&serde_bytes::ByteBuf::from(vec![1; 300])).expect("bin16"),
        encode(&vec![1u32; 20]).expect("array16"),
        encode(&(0..20).map(|i| (i, vec![i])).collect::<BTreeMap<u32, Vec<u32>>>()).expect("map16"),
        vec![0xd4, 1, 9],                                              // fixext 1
        vec![0xd8, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], // fixext 16
        vec![0xc7, 2, 5, 0xaa, 0xbb],                                  // ext 8
    ];
    for form in &forms {
        assert_eq!(value_len(form).expect("whole"), form.len(), "{form:02x?}");
        let mut padded = form.clone();
        padded.extend_from_slice(&[0x90, 0xc0]);
        assert_eq!(value_len(&padded).expect("whole"), form.len(), "followed by more: {form:02x?}");
        for cut in 0..form.len() {
            assert!(value_len(&form[..cut]).is_err(), "{form:02x?} cut at {cut}");
        }
    }
    for hostile in [
        &[0xc1][..],                               // reserved marker
        &[0xdd, 0xff, 0xff, 0xff, 0xff, 0x90][..], // 4 billion elements in 6 bytes
        &[0xdf, 0xff, 0xff, 0xff, 0xff][..],       // a map of 4 billion entries
        &[0xdb, 0xff, 0xff, 0xff, 0xff, b'a'][..], // a 4 GiB string
        &[0xc9, 0xff, 0xff, 0xff, 0xff, 1][..],    // a 4 GiB ext
    ] {
        assert!(value_len(hostile).is_err(), "{hostile:02x?}");
    }
}
