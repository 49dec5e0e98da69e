//! The peer handshake, sans-I/O: identity proofs bound to the ticket and both nonces, and
//! the session key (PROTOCOL.md section 17.4).
//!
//! 1. asker → sharer: [`PeerHello`] (ticket, both names, the asker's nonce `na`).
//! 2. sharer → asker: [`PeerChallenge::Proof`]: the sharer's nonce `ns` and its signature
//!    over `transcript("classchat peer sharer v1", ticket, asker, sharer, na, ns)`.
//! 3. asker → sharer: [`PeerKey`]: a fresh 32-byte secret under the sharer's identity key
//!    (RSA-OAEP-SHA256) and the asker's signature over
//!    `transcript("classchat peer asker v1", ticket, asker, sharer, na, ns, encrypted_secret)`.
//! 4. Both derive the session keys as the server session does ([`crypto::derive_keys`]
//!    with `secret`, `ns` as the server nonce and `na` as the client nonce); the asker
//!    seals as the client, the sharer as the server.
//!
//! Names in transcripts are lowercased. Each signature covers both fresh nonces, so a
//! proof cannot be replayed into another connection, and the ticket, so it cannot be
//! moved to another transfer.

use rand::Rng;

use super::PeerError;
use super::proto::{PEER_VERSION, PeerChallenge, PeerHello, PeerKey, TICKET_LEN};
use crate::crypto::{self, NONCE_LEN, SECRET_LEN, SessionKeys};
use crate::e2e::{Identity, PublicIdentity, transcript};

const SHARER_LABEL: &str = "classchat peer sharer v1";
const ASKER_LABEL: &str = "classchat peer asker v1";

fn sharer_transcript(hello: &PeerHello, sharer_nonce: &[u8]) -> Vec<u8> {
    transcript(
        SHARER_LABEL,
        &[
            &hello.ticket,
            hello.asker.to_ascii_lowercase().as_bytes(),
            hello.sharer.to_ascii_lowercase().as_bytes(),
            &hello.nonce,
            sharer_nonce,
        ],
    )
}

fn asker_transcript(hello: &PeerHello, sharer_nonce: &[u8], encrypted_secret: &[u8]) -> Vec<u8> {
    transcript(
        ASKER_LABEL,
        &[
            &hello.ticket,
            hello.asker.to_ascii_lowercase().as_bytes(),
            hello.sharer.to_ascii_lowercase().as_bytes(),
            &hello.nonce,
            sharer_nonce,
            encrypted_secret,
        ],
    )
}

/// The asker's side of the handshake.
#[derive(Debug)]
pub struct AskerHandshake {
    hello: PeerHello,
}

impl AskerHandshake {
    /// Step 1: the hello to send.
    pub fn new(ticket: &[u8], asker: &str, sharer: &str) -> Self {
        let hello = PeerHello {
            version: PEER_VERSION,
            ticket: ticket.to_vec(),
            asker: asker.to_owned(),
            sharer: sharer.to_owned(),
            nonce: crypto::random_nonce().to_vec(),
        };
        Self { hello }
    }

    pub fn hello(&self) -> &PeerHello {
        &self.hello
    }

    /// Step 3: checks the sharer's proof with `sharer_key` (from the key directory) and
    /// makes the key message and the session keys. A refusal becomes
    /// [`PeerError::Refused`], a proof that does not verify [`PeerError::BadIdentity`].
    pub fn on_challenge(
        self,
        challenge: PeerChallenge,
        me: &Identity,
        sharer_key: &PublicIdentity,
    ) -> Result<(PeerKey, SessionKeys), PeerError> {
        let (nonce, signature) = match challenge {
            PeerChallenge::Proof { nonce, signature } => (nonce, signature),
            PeerChallenge::Refused { code, message } => return Err(PeerError::Refused { code, message }),
        };
        if nonce.len() != NONCE_LEN {
            return Err(PeerError::Protocol("the sharer's nonce is not 32 bytes".into()));
        }
        sharer_key
            .verify(&sharer_transcript(&self.hello, &nonce), &signature)
            .map_err(|_| PeerError::BadIdentity { peer: self.hello.sharer.clone() })?;
        let mut secret = [0u8; SECRET_LEN];
        rand::rng().fill_bytes(&mut secret);
        let encrypted_secret = sharer_key
            .wrap(&secret)
            .map_err(|_| PeerError::BadIdentity { peer: self.hello.sharer.clone() })?;
        let signature = me.sign(&asker_transcript(&self.hello, &nonce, &encrypted_secret));
        let keys = crypto::derive_keys(&secret, &nonce, &self.hello.nonce);
        Ok((PeerKey { encrypted_secret, signature }, keys))
    }
}

/// The sharer's side of the handshake, after it accepted the hello's ticket.
#[derive(Debug)]
pub struct SharerHandshake {
    hello: PeerHello,
    nonce: [u8; NONCE_LEN],
}

impl SharerHandshake {
    /// Checks the hello's shape (version, lengths); the caller checks the ticket.
    pub fn check_hello(hello: &PeerHello) -> Result<(), PeerError> {
        if hello.version != PEER_VERSION {
            return Err(PeerError::Protocol(format!(
                "peer protocol version {} (this app speaks {PEER_VERSION})",
                hello.version
            )));
        }
        if hello.ticket.len() != TICKET_LEN || hello.nonce.len() != NONCE_LEN {
            return Err(PeerError::Protocol("a ticket and a nonce are 32 bytes each".into()));
        }
        Ok(())
    }

    /// Step 2: the proof to send for `hello`, signed with the sharer's identity.
    pub fn prove(hello: PeerHello, me: &Identity) -> (Self, PeerChallenge) {
        let nonce = crypto::random_nonce();
        let signature = me.sign(&sharer_transcript(&hello, &nonce));
        (Self { hello, nonce }, PeerChallenge::Proof { nonce: nonce.to_vec(), signature })
    }

    /// Step 4: checks the asker's proof with `asker_key` (from the key directory) and
    /// unwraps the session secret.
    pub fn on_key(
        self,
        key: &PeerKey,
        me: &Identity,
        asker_key: &PublicIdentity,
    ) -> Result<SessionKeys, PeerError> {
        self.verify_asker(key, asker_key)?;
        self.session_keys(key, me)
    }

    /// The asker's proof alone.
    pub fn verify_asker(&self, key: &PeerKey, asker_key: &PublicIdentity) -> Result<(), PeerError> {
        asker_key
            .verify(&asker_transcript(&self.hello, &self.nonce, &key.encrypted_secret), &key.signature)
            .map_err(|_| PeerError::BadIdentity { peer: self.hello.asker.clone() })
    }

    /// The session keys alone (the secret unwrapped with the sharer's key). A sharer whose
    /// peer failed [`SharerHandshake::verify_asker`] uses them only to seal its refusal.
    pub fn session_keys(&self, key: &PeerKey, me: &Identity) -> Result<SessionKeys, PeerError> {
        let bad = || PeerError::BadIdentity { peer: self.hello.asker.clone() };
        let secret = me.unwrap_secret(&key.encrypted_secret).map_err(|_| bad())?;
        if secret.len() != SECRET_LEN {
            return Err(bad());
        }
        Ok(crypto::derive_keys(&secret, &self.nonce, &self.hello.nonce))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use super::*;
    use crate::crypto::Role;

    fn ids() -> &'static [Identity; 3] {
        static IDS: OnceLock<[Identity; 3]> = OnceLock::new();
        IDS.get_or_init(|| [0, 1, 2].map(|_| Identity::generate(2048).expect("keygen")))
    }

    #[test]
    fn both_sides_derive_the_same_keys_and_wrong_keys_are_refused() {
        let [ada, bob, eve] = ids();
        let asker = AskerHandshake::new(&[7; 32], "Ada", "bob");
        let hello = asker.hello().clone();
        SharerHandshake::check_hello(&hello).expect("well formed");
        let (sharer, proof) = SharerHandshake::prove(hello.clone(), bob);

        // An asker checking against someone else's key refuses the proof.
        let wrong = AskerHandshake { hello: hello.clone() }.on_challenge(proof.clone(), ada, eve.public());
        assert!(matches!(wrong, Err(PeerError::BadIdentity { .. })), "{wrong:?}");

        let (key, asker_keys) = asker.on_challenge(proof, ada, bob.public()).expect("proof verifies");
        // A sharer checking against the wrong asker key refuses.
        let (again, _) = SharerHandshake::prove(hello, bob);
        let other = SharerHandshake { nonce: sharer.nonce, ..again };
        assert!(matches!(other.on_key(&key, bob, eve.public()), Err(PeerError::BadIdentity { .. })));
        let sharer_keys = sharer.on_key(&key, bob, ada.public()).expect("asker proof verifies");
        assert_eq!(asker_keys, sharer_keys);

        // And the halves talk.
        let (mut seal, _) = asker_keys.split(Role::Client);
        let (_, mut open) = sharer_keys.split(Role::Server);
        let mut out = bytes::BytesMut::new();
        seal.seal_frame(b"hi", &mut out, 1 << 20).expect("seal");
        assert_eq!(open.open(&mut out[4..]).expect("open"), b"hi");
    }

    #[test]
    fn a_proof_for_another_hello_does_not_verify() {
        let [ada, bob, _] = ids();
        let first = AskerHandshake::new(&[1; 32], "ada", "bob");
        let (_, proof) = SharerHandshake::prove(first.hello().clone(), bob);
        // Replayed into a connection with a fresh asker nonce (or another ticket).
        let second = AskerHandshake::new(&[1; 32], "ada", "bob");
        assert!(matches!(second.on_challenge(proof, ada, bob.public()), Err(PeerError::BadIdentity { .. })));
    }
}
