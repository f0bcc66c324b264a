//! Pool work: `mining.notify` parsed and checked, and the header it gives for an extranonce.

use bm13xx::BlockHeader;
use bm13xx::header::{prev_hash_from_stratum, sha256d};
use serde_json::Value;

use crate::PoolError;

/// Limits on what a pool may send, so a hostile pool cannot make the miner allocate without end.
pub const MAX_COINBASE_PART: usize = 64 * 1024;
pub const MAX_MERKLE_BRANCHES: usize = 32;
pub const MAX_JOB_ID: usize = 128;

/// One `mining.notify`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notify {
    pub job_id: String,
    /// As the pool sends it: internal order with each 4-byte word byte-swapped.
    pub prev_hash: [u8; 32],
    pub coinb1: Vec<u8>,
    pub coinb2: Vec<u8>,
    pub merkle_branches: Vec<[u8; 32]>,
    pub version: u32,
    pub nbits: u32,
    pub ntime: u32,
    pub clean_jobs: bool,
}

pub(crate) fn hex_bytes(value: &Value, field: &str, max: usize) -> Result<Vec<u8>, PoolError> {
    let text = value
        .as_str()
        .ok_or_else(|| PoolError::Malformed(format!("{field} is not a string")))?;
    if text.len() % 2 != 0 || text.len() / 2 > max {
        return Err(PoolError::Malformed(format!(
            "{field} is not hex of at most {max} bytes"
        )));
    }
    let mut out = vec![0u8; text.len() / 2];
    bm13xx::hex::decode_into(text, &mut out)
        .map_err(|e| PoolError::Malformed(format!("{field}: {e}")))?;
    Ok(out)
}

fn hex_array<const N: usize>(value: &Value, field: &str) -> Result<[u8; N], PoolError> {
    let bytes = hex_bytes(value, field, N)?;
    bytes
        .try_into()
        .map_err(|_| PoolError::Malformed(format!("{field} is not {N} bytes")))
}

fn hex_u32(value: &Value, field: &str) -> Result<u32, PoolError> {
    Ok(u32::from_be_bytes(hex_array::<4>(value, field)?))
}

impl Notify {
    /// From `mining.notify`'s params: `[job_id, prevhash, coinb1, coinb2, [branches], version,
    /// nbits, ntime, clean_jobs]`.
    pub fn from_params(params: &Value) -> Result<Self, PoolError> {
        let p = params
            .as_array()
            .filter(|p| p.len() >= 9)
            .ok_or_else(|| PoolError::Malformed("mining.notify needs 9 params".into()))?;
        let job_id = p[0]
            .as_str()
            .filter(|id| !id.is_empty() && id.len() <= MAX_JOB_ID)
            .ok_or_else(|| PoolError::Malformed("job id is not a short string".into()))?
            .to_string();
        let branches = p[4]
            .as_array()
            .filter(|b| b.len() <= MAX_MERKLE_BRANCHES)
            .ok_or_else(|| PoolError::Malformed("merkle branches are not a short list".into()))?;
        Ok(Self {
            job_id,
            prev_hash: hex_array(&p[1], "prevhash")?,
            coinb1: hex_bytes(&p[2], "coinb1", MAX_COINBASE_PART)?,
            coinb2: hex_bytes(&p[3], "coinb2", MAX_COINBASE_PART)?,
            merkle_branches: branches
                .iter()
                .map(|b| hex_array(b, "merkle branch"))
                .collect::<Result<_, _>>()?,
            version: hex_u32(&p[5], "version")?,
            nbits: hex_u32(&p[6], "nbits")?,
            ntime: hex_u32(&p[7], "ntime")?,
            clean_jobs: p[8]
                .as_bool()
                .ok_or_else(|| PoolError::Malformed("clean_jobs is not a boolean".into()))?,
        })
    }

    /// coinb1 ‖ extranonce1 ‖ extranonce2 ‖ coinb2.
    pub fn coinbase(&self, extranonce1: &[u8], extranonce2: &[u8]) -> Vec<u8> {
        let mut tx = Vec::with_capacity(
            self.coinb1.len() + extranonce1.len() + extranonce2.len() + self.coinb2.len(),
        );
        tx.extend_from_slice(&self.coinb1);
        tx.extend_from_slice(extranonce1);
        tx.extend_from_slice(extranonce2);
        tx.extend_from_slice(&self.coinb2);
        tx
    }

    /// The header to hash for an extranonce2 (nonce 0).
    pub fn header(&self, extranonce1: &[u8], extranonce2: &[u8]) -> BlockHeader {
        let coinbase_hash = sha256d(&self.coinbase(extranonce1, extranonce2));
        BlockHeader {
            version: self.version,
            prev_hash: prev_hash_from_stratum(&self.prev_hash),
            merkle_root: merkle_root(coinbase_hash, &self.merkle_branches),
            ntime: self.ntime,
            nbits: self.nbits,
            nonce: 0,
        }
    }
}

/// The merkle root from the coinbase's hash and the pool's branches: each step hashes the running
/// value followed by the branch, all in internal byte order.
pub fn merkle_root(coinbase_hash: [u8; 32], branches: &[[u8; 32]]) -> [u8; 32] {
    branches.iter().fold(coinbase_hash, |root, branch| {
        let mut pair = [0u8; 64];
        pair[..32].copy_from_slice(&root);
        pair[32..].copy_from_slice(branch);
        sha256d(&pair)
    })
}
