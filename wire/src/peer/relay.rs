//! The client side of the server's relay: a bulk connection attached to a ticket, which
//! becomes a raw byte pipe to the other peer once both ends are there (PROTOCOL.md 17.6).

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::Chain;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use super::proto::RelaySide;
use crate::client::{ClientConfig, open_session};
use crate::error::{Error, Result};
use crate::message::{ClientMsg, Request, Response, ServerMsg};

/// How long an end waits at the server for the other end to attach.
pub const RELAY_PAIRING_TIMEOUT: Duration = Duration::from_secs(15);

/// The reading half of a relayed connection: what the server's session had read past the
/// attach reply, then the socket.
pub type RelayReader = Chain<std::io::Cursor<BytesMut>, OwnedReadHalf>;

/// Opens a bulk connection to the server of `config`, attaches it as `side` of the relay
/// of `ticket` and waits (at most [`RELAY_PAIRING_TIMEOUT`] and the request timeout) for
/// the other end. Returns the raw halves: the peer session runs through them.
pub async fn open_relay(
    config: &ClientConfig,
    ticket: &[u8],
    side: RelaySide,
) -> Result<(RelayReader, OwnedWriteHalf)> {
    let (mut reader, mut writer, _, _) = open_session(config).await?;
    const ID: u32 = 1;
    writer
        .send(&ClientMsg::Request { id: ID, body: Request::AttachRelay { ticket: ticket.to_vec(), side } })
        .await?;
    let wait = RELAY_PAIRING_TIMEOUT.max(config.request_timeout);
    let reply = tokio::time::timeout(wait, async {
        loop {
            match reader.recv::<ServerMsg>().await? {
                Some(ServerMsg::Ok { id: ID, body: Response::Done }) => return Ok(()),
                Some(ServerMsg::Ok { id: ID, body }) => {
                    return Err(Error::Protocol(format!("unexpected reply to attach_relay: {body:?}")));
                }
                Some(ServerMsg::Err { id: ID, code, message }) => {
                    return Err(Error::Server { code, message });
                }
                Some(ServerMsg::Ping { nonce }) => writer.send(&ClientMsg::Pong { nonce }).await?,
                Some(_) => {}
                None => return Err(Error::Closed("the server closed the relay".into())),
            }
        }
    })
    .await
    .map_err(|_| Error::Closed(format!("the other peer did not reach the relay within {wait:?}")))?;
    reply?;
    let (read, rest) = reader.into_raw()?;
    let write = writer.into_inner()?;
    Ok((tokio::io::AsyncReadExt::chain(std::io::Cursor::new(rest), read), write))
}
