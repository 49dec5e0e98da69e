//! AES-256-CBC encryption of several independent chains at once.
//!
//! CBC encryption is serial within one chain: each block needs the previous ciphertext, so
//! one chain runs at the latency of the AES instructions (about 0.9 GB/s here), not at
//! their throughput. Records are independent chains (each has its own IV), so a sender
//! with several records to seal runs up to [`LANES`] of them in lockstep: block `i` of
//! every chain is encrypted before block `i + 1` of any, and the processor overlaps the
//! independent AES rounds. The output is byte for byte what encrypting each chain alone
//! gives (the tests check it against the `cbc` crate). Padding is the caller's: every
//! chain's length is a multiple of the block size.

use aes::Aes256;
use aes::cipher::consts::U16;
use aes::cipher::{BlockCipherEncBackend, BlockCipherEncClosure, BlockCipherEncrypt, BlockSizeUser};

/// AES block length.
pub const BLOCK: usize = 16;
/// Chains run in lockstep: 8 keep the AES unit busy; more measured no faster (BENCHMARKS.md,
/// "Wire: sealing").
pub const LANES: usize = 8;

/// One chain: its bytes (plaintext in, ciphertext out; a whole number of blocks) and its IV.
pub type Lane<'a> = (&'a mut [u8], aes::Block);

/// Encrypts every lane in place, [`LANES`] at a time. A lane whose length is not a multiple
/// of [`BLOCK`] has its last partial block left as it is (callers pad first).
pub fn encrypt(cipher: &Aes256, lanes: &mut [Lane<'_>]) {
    for group in lanes.chunks_mut(LANES) {
        cipher.encrypt_with_backend(Lockstep { lanes: group });
    }
}

/// The closure `aes` runs with its fastest backend for this CPU.
struct Lockstep<'a, 'b> {
    lanes: &'b mut [Lane<'a>],
}

impl BlockSizeUser for Lockstep<'_, '_> {
    type BlockSize = U16;
}

impl BlockCipherEncClosure for Lockstep<'_, '_> {
    #[inline(always)]
    fn call<B: BlockCipherEncBackend<BlockSize = U16>>(self, backend: &B) {
        let lanes = self.lanes;
        let blocks = |l: &Lane<'_>| l.0.len() / BLOCK * BLOCK;
        // All lanes together up to the shortest, then each one's rest alone.
        let common = lanes.iter().map(blocks).min().unwrap_or(0);
        match lanes.len() {
            0 => {}
            1 => lockstep::<1, B>(backend, lanes, 0, common),
            2 => lockstep::<2, B>(backend, lanes, 0, common),
            3 => lockstep::<3, B>(backend, lanes, 0, common),
            4 => lockstep::<4, B>(backend, lanes, 0, common),
            5 => lockstep::<5, B>(backend, lanes, 0, common),
            6 => lockstep::<6, B>(backend, lanes, 0, common),
            7 => lockstep::<7, B>(backend, lanes, 0, common),
            _ => lockstep::<LANES, B>(backend, lanes, 0, common),
        }
        for lane in lanes.iter_mut() {
            let end = blocks(lane);
            if end > common {
                lockstep::<1, B>(backend, std::slice::from_mut(lane), common, end);
            }
        }
    }
}

/// Encrypts bytes `from..to` of the first `N` lanes, block by block across the lanes. `N`
/// is a constant so the per-lane state stays in registers and the loop unrolls.
#[inline(always)]
fn lockstep<const N: usize, B: BlockCipherEncBackend<BlockSize = U16>>(
    backend: &B,
    lanes: &mut [Lane<'_>],
    from: usize,
    to: usize,
) {
    let Some(lanes) = lanes.get_mut(..N).and_then(|l| <&mut [Lane<'_>; N]>::try_from(l).ok()) else {
        return;
    };
    let mut prev: [aes::Block; N] = std::array::from_fn(|k| lanes[k].1);
    let mut off = from;
    while off + BLOCK <= to {
        for (lane, prev) in lanes.iter_mut().zip(prev.iter_mut()) {
            let Some(block) = lane.0.get_mut(off..off + BLOCK) else { return };
            for (x, y) in prev.iter_mut().zip(block.iter()) {
                *x ^= *y;
            }
            backend.encrypt_block(prev.into());
            block.copy_from_slice(prev);
        }
        off += BLOCK;
    }
    for (lane, prev) in lanes.iter_mut().zip(prev) {
        lane.1 = prev;
    }
}

#[cfg(test)]
mod tests {
    use aes::cipher::block_padding::NoPadding;
    use aes::cipher::{BlockModeEncrypt, InnerIvInit, KeyInit};

    use super::*;

    fn alone(cipher: &Aes256, iv: [u8; 16], data: &[u8]) -> Vec<u8> {
        let mut out = data.to_vec();
        let enc = cbc::Encryptor::<Aes256>::inner_iv_init(cipher.clone(), (&iv).into());
        let n = out.len();
        assert!(enc.encrypt_padded::<NoPadding>(&mut out, n).is_ok());
        out
    }

    #[test]
    fn chains_of_any_count_and_length_match_encrypting_each_alone() {
        let cipher = Aes256::new(&[9u8; 32].into());
        // 0 to 19 chains (more than two groups of 8), lengths from 0 to 40 blocks, mixed.
        for count in 0..20usize {
            let plain: Vec<Vec<u8>> =
                (0..count).map(|i| (0..(i * 7 % 41) * BLOCK).map(|b| (b * 31 + i) as u8).collect()).collect();
            let ivs: Vec<[u8; 16]> = (0..count).map(|i| [i as u8 ^ 0x5a; 16]).collect();
            let mut bufs = plain.clone();
            let mut lanes: Vec<Lane<'_>> =
                bufs.iter_mut().zip(&ivs).map(|(b, iv)| (b.as_mut_slice(), (*iv).into())).collect();
            encrypt(&cipher, &mut lanes);
            for (i, (lane, iv)) in lanes.iter().zip(&ivs).enumerate() {
                assert_eq!(&*lane.0, alone(&cipher, *iv, &plain[i]).as_slice(), "chain {i} of {count}");
            }
        }
    }
}
