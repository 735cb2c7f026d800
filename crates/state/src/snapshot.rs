//! Snapshots and the state digest.
//!
//! Layout: `magic (8) | version u32 LE | body_len u64 LE | xxh3-64(body) u64 LE | body`,
//! where body is the bincode (2.0, standard config) encoding of the logical
//! state. The digest is xxh3-64 of the same body: states that are equal field
//! by field encode to the same bytes (every map is a BTreeMap), so equal
//! states have equal digests on every member and after a restore.

use thiserror::Error;
use xxhash_rust::xxh3::{xxh3_64, Xxh3};

use crate::state::State;

pub const SNAPSHOT_MAGIC: &[u8; 8] = b"CAIRNSNP";
/// 2: the body is `State` then `StateExt` (members, upgrade hold).
/// 1: `State` alone (the first release); still read, as an empty `StateExt`.
pub const SNAPSHOT_VERSION: u32 = 2;
const HEADER_LEN: usize = 8 + 4 + 8 + 8;
/// Largest body accepted (64 GiB).
const MAX_BODY_LEN: usize = 1 << 36;

#[derive(Error, Debug, Clone, PartialEq, Eq)]
pub enum SnapshotError {
    #[error("snapshot is truncated: {len} bytes, the header alone is {HEADER_LEN}")]
    Truncated { len: usize },
    #[error("not a Cairn snapshot (bad magic)")]
    BadMagic,
    #[error(
        "snapshot version {0} is not supported (this binary reads versions 1 to {SNAPSHOT_VERSION})"
    )]
    UnknownVersion(u32),
    #[error("snapshot body is {actual} bytes, the header says {expected}")]
    LengthMismatch { expected: u64, actual: u64 },
    #[error("snapshot body of {0} bytes exceeds the 64 GiB limit")]
    TooLarge(usize),
    #[error("snapshot checksum mismatch: header {expected:#018x}, body {actual:#018x}")]
    Checksum { expected: u64, actual: u64 },
    #[error("snapshot body does not decode: {0}")]
    Decode(String),
    #[error("snapshot could not be encoded: {0}")]
    Encode(String),
    #[error("snapshot decodes to an invalid state: {0}")]
    Invalid(String),
}

fn encode_config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Decodes with a limit on the bytes the decoder may claim. bincode claims
/// the in-memory size of every primitive it reads (at most 8x its varint
/// encoding) and allocates a string's whole claimed length before reading
/// it, so a limit of 16x the body keeps every valid body decodable while a
/// corrupt length can make the decoder allocate at most ~32x the input,
/// instead of aborting the process on a failed multi-GiB allocation. The
/// limit is a const generic in bincode 2, hence one instance per size class.
fn decode_limited<const LIMIT: usize>(
    body: &[u8],
) -> Result<(State, usize), bincode::error::DecodeError> {
    bincode::serde::decode_from_slice(body, bincode::config::standard().with_limit::<LIMIT>())
}

fn decode(body: &[u8]) -> Result<(State, usize), SnapshotError> {
    let n = body.len();
    let r = if n <= 1 << 12 {
        decode_limited::<{ 1 << 16 }>(body)
    } else if n <= 1 << 16 {
        decode_limited::<{ 1 << 20 }>(body)
    } else if n <= 1 << 20 {
        decode_limited::<{ 1 << 24 }>(body)
    } else if n <= 1 << 24 {
        decode_limited::<{ 1 << 28 }>(body)
    } else if n <= 1 << 28 {
        decode_limited::<{ 1 << 32 }>(body)
    } else if n <= 1 << 32 {
        decode_limited::<{ 1 << 36 }>(body)
    } else if n <= MAX_BODY_LEN {
        decode_limited::<{ 1 << 40 }>(body)
    } else {
        return Err(SnapshotError::TooLarge(n));
    };
    r.map_err(|e| SnapshotError::Decode(e.to_string()))
}

/// The v2 tail: at most 64 member records of at most ~17 KiB each, so one
/// size class.
fn decode_ext(rest: &[u8]) -> Result<(crate::state::StateExt, usize), SnapshotError> {
    if rest.len() > 1 << 24 {
        return Err(SnapshotError::Decode(format!(
            "{} bytes of member records",
            rest.len()
        )));
    }
    bincode::serde::decode_from_slice(rest, encode_config().with_limit::<{ 1 << 28 }>())
        .map_err(|e| SnapshotError::Decode(e.to_string()))
}

impl State {
    fn body(&self) -> Result<Vec<u8>, SnapshotError> {
        let mut body = bincode::serde::encode_to_vec(self, encode_config())
            .map_err(|e| SnapshotError::Encode(e.to_string()))?;
        bincode::serde::encode_into_std_write(&self.ext, &mut body, encode_config())
            .map_err(|e| SnapshotError::Encode(e.to_string()))?;
        Ok(body)
    }

    /// Serializes the logical state with a versioned, checksummed header.
    pub fn snapshot(&self) -> Result<Vec<u8>, SnapshotError> {
        let body = self.body()?;
        let mut out = Vec::with_capacity(HEADER_LEN + body.len());
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
        out.extend_from_slice(&(body.len() as u64).to_le_bytes());
        out.extend_from_slice(&xxh3_64(&body).to_le_bytes());
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Rebuilds a state from [`State::snapshot`] bytes. Every way the bytes
    /// can be wrong is a typed error; a decoded state that breaks an
    /// invariant is refused too.
    pub fn restore(bytes: &[u8]) -> Result<State, SnapshotError> {
        if bytes.len() < HEADER_LEN {
            return Err(SnapshotError::Truncated { len: bytes.len() });
        }
        let (header, body) = bytes.split_at(HEADER_LEN);
        if &header[..8] != SNAPSHOT_MAGIC {
            return Err(SnapshotError::BadMagic);
        }
        let word = |r: std::ops::Range<usize>| {
            let mut b = [0u8; 8];
            b[..r.len()].copy_from_slice(&header[r]);
            u64::from_le_bytes(b)
        };
        let version = word(8..12) as u32;
        if !(1..=SNAPSHOT_VERSION).contains(&version) {
            return Err(SnapshotError::UnknownVersion(version));
        }
        let expected_len = word(12..20);
        if expected_len != body.len() as u64 {
            return Err(SnapshotError::LengthMismatch {
                expected: expected_len,
                actual: body.len() as u64,
            });
        }
        let expected = word(20..28);
        let actual = xxh3_64(body);
        if expected != actual {
            return Err(SnapshotError::Checksum { expected, actual });
        }
        let (mut state, mut used) = decode(body)?;
        if version >= 2 {
            let rest = body.get(used..).unwrap_or(&[]);
            let (ext, n) = decode_ext(rest)?;
            state.ext = ext;
            used += n;
        }
        if used != body.len() {
            return Err(SnapshotError::Decode(format!(
                "{} trailing bytes",
                body.len() - used
            )));
        }
        state.rebuild_derived();
        state
            .check_invariants()
            .map_err(|e| SnapshotError::Invalid(e.0))?;
        Ok(state)
    }

    /// A stable hash of the logical state (derived indexes excluded): xxh3-64
    /// of the snapshot body, streamed so no copy of the state is made.
    pub fn digest(&self) -> u64 {
        let mut hasher = HashWriter(Xxh3::new());
        // Writing into a hasher cannot fail, and the state's types always
        // encode; should that ever change, the digest still differs from any
        // complete state's because the stream stops early.
        let _ = bincode::serde::encode_into_std_write(self, &mut hasher, encode_config());
        let _ = bincode::serde::encode_into_std_write(&self.ext, &mut hasher, encode_config());
        hasher.0.digest()
    }
}

struct HashWriter(Xxh3);

impl std::io::Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Cmd, CreateVolume, EntryMeta, Provisioning, EXTENT_SIZE_BYTES};

    fn state_with_volume() -> State {
        let mut s = State::new();
        let mut index = 0;
        let mut apply = |s: &mut State, cmd: Cmd| {
            index += 1;
            let meta = EntryMeta {
                index,
                term: 1,
                leader_time_ms: 0,
            };
            s.apply(meta, &cmd).map_err(|e| e.to_string())
        };
        for h in ["a", "b"] {
            let cmd = Cmd::RegisterChunk {
                hostname: h.into(),
                data_addr: String::new(),
                brick: None,
                version: String::new(),
                capabilities: vec![],
            };
            assert!(apply(&mut s, cmd).is_ok());
        }
        let cmd = Cmd::CreateVolume(CreateVolume {
            name: "v".into(),
            size_bytes: 3 * EXTENT_SIZE_BYTES,
            provisioning: Provisioning::Thin,
            replicas: 2,
            prefer_cid: 0,
            even: false,
            preferred_zone: 0,
            locs: vec![vec![1, 2]; 3],
        });
        assert_eq!(apply(&mut s, cmd).map(|_| ()), Ok(()));
        s
    }

    /// A checksum is no MAC: a sealed body can hold a pid range that
    /// overflows. It must be refused, not panic nor skip the extent checks.
    #[test]
    fn a_snapshot_whose_pid_range_overflows_is_refused() {
        let mut s = state_with_volume();
        let vid = s.volumes.keys().next().copied().unwrap_or(0);
        if let Some(v) = s.volumes.get_mut(&vid) {
            v.first_pid = u64::MAX - 1;
        }
        s.next_pid = u64::MAX;
        s.rebuild_derived();
        let bytes = s.snapshot().unwrap();
        assert!(
            matches!(State::restore(&bytes), Err(SnapshotError::Invalid(ref m)) if m.contains("overflows")),
            "{:?}",
            State::restore(&bytes).err()
        );
    }
}
