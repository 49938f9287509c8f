//! The transaction log: an append-only, segmented, checksummed log of opaque records.
//!
//! The engine appends a record for every change it must not lose, calls [`Wal::sync`], and only
//! then acknowledges (a 2PC YES vote, a commit decision, a client's commit). On restart,
//! [`Wal::open`] recovers every record after the database checkpoint so the engine can replay
//! them. Records are numbered by a sequence number (`seq`) that runs on across segments.
//!
//! # Use
//!
//! One owner (the node's storage task) holds the [`Wal`]; it is `Send` but not `Sync`.
//!
//! 1. [`Wal::open`]`(fs, checkpoint)` with the last sequence number the database has applied;
//!    replay [`Recovery::records`] into the database in order.
//! 2. [`Wal::append`] any number of records, then one [`Wal::sync`] (group commit), or
//!    [`Wal::append_sync`]. Acknowledge nothing before the sync returns; compare
//!    [`Wal::durable_seq`] when in doubt.
//! 3. After the database has durably applied everything up to some seq, call
//!    [`Wal::release_through`]`(seq)` to drop the segments no longer needed;
//!    [`Wal::bytes_since_release`] says when that is worth doing.
//! 4. Any error other than [`WalError::TooLarge`] is fatal: stop the node; restarting runs
//!    recovery from what is on disk.
//!
//! # Files
//!
//! The log directory holds segment files `sol00001.log`, `sol00002.log`, … (the number is
//! written with at least five digits; segments are ordered by number). Every other file name
//! is **ignored**, because by default the log directory is the node's working directory
//! (`[Logging] LogDir = .`), shared with `solid.ini`, the database and the message log. A
//! file that *has* a segment name but does not start with a valid segment header is
//! **rejected** as corruption (except the torn-creation case below): deleting or skipping a
//! file that claims to be part of the log could drop acknowledged records.
//!
//! A segment starts with a [`SEGMENT_HEADER_LEN`]-byte header, all integers little-endian:
//!
//! ```text
//! magic "SOLIDWAL" (8) | format version u32 | first seq u64 | crc32 of the preceding 20 bytes
//! ```
//!
//! followed by records:
//!
//! ```text
//! payload len u32 | crc32 u32 (over seq + payload) | seq u64 | payload
//! ```
//!
//! A payload is at most [`MAX_RECORD_LEN`] bytes. A segment is rotated (synced and closed,
//! then a new one started) when the next record would push it past
//! [`WalOptions::segment_max_bytes`].
//!
//! # Recovery rules
//!
//! [`Wal::open`] reads the segments in order and checks, for each one, the header (magic,
//! version, checksum, and that its first seq continues the previous segment), then each record:
//! complete, length within [`MAX_RECORD_LEN`], checksum correct, seq exactly one more than the
//! previous. The first record that fails is *damage*, and it is classified so:
//!
//! 1. **Torn tail** — the damage is in the **last** segment and **no valid record follows it**:
//!    the bytes from the start of the damaged record to the end of the file are what a crash
//!    leaves of writes that were never synced (a short record, a half-written header, zeros).
//!    They are dropped: the file is truncated at the damaged record's offset (durably) and the
//!    cut is reported in [`Recovery::torn_tail`]. "A valid record follows" is decided by
//!    trying *every* later byte offset of the segment as a record start: a header whose
//!    length fits, whose seq is above the last good seq (and no higher than the bytes before
//!    it allow), and whose checksum holds.
//! 2. **Corruption** — damage in any segment that is not the last, or damage followed by a
//!    valid record, means records that were (or may have been) acknowledged are unreadable.
//!    Recovery stops with [`WalError::Corrupt`] naming the file and the offset of the damaged
//!    record, and changes nothing on disk. It never skips records.
//! 3. A record whose checksum holds but whose seq is wrong is always corruption, even at the
//!    tail: a torn write cannot produce a record that checksums, so such a record means lost
//!    or misplaced data rather than an interrupted append.
//! 4. **Torn segment creation** — a last segment shorter than a header, or whose bytes are all
//!    zero, is what a crash right after creating it leaves: it is removed (durably) and
//!    reported as a torn tail at offset 0. Such a segment anywhere else is corruption.
//! 5. **Gaps** — the records the caller needs must all be present: the log's first seq must be
//!    at most `after_seq + 1` and it must reach at least `after_seq`; consecutive segments
//!    must continue each other's numbering. Otherwise [`WalError::Gap`].
//! 6. An empty log (no segment files) starts numbering at `after_seq + 1`.
//!
//! Nothing on disk is changed until every segment has been checked, so a recovery that fails
//! can be retried (or the files inspected) as they were.
//!
//! # Failures while running
//!
//! A failed append or sync leaves the log unable to tell what reached the disk — after a failed
//! `fsync`, Linux may already have dropped the dirty pages, so retrying can "succeed" without
//! writing them. The log is therefore **poisoned**: every later call returns
//! [`WalError::Poisoned`] and the node must stop and recover from disk.
//!
//! # A limit of the rules
//!
//! A disk may write back the pages of an *unsynced* batch in any order, so a crash in the
//! middle of writing a large group can leave a hole followed by valid (never acknowledged)
//! records. Rule 2 reports that as corruption: it fails safe (no acknowledged record is ever
//! dropped), at the price of a node that refuses to start in that rare case. Segments are
//! synced before the next one is created, so this cannot span segments.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::sync::Arc;

use thiserror::Error;

use super::logfs::{LogFile, LogFs};

/// Largest payload a record may carry: 64 MiB. Engine records (a transaction's changes, a
/// membership change) are far smaller; bulk data moves by snapshot streaming, not through
/// the log. The bound keeps one append from holding unbounded memory, and lets recovery
/// reject a damaged length field instead of trusting it.
pub const MAX_RECORD_LEN: usize = 64 << 20;

/// Default size at which a segment is rotated: 64 MiB. Large enough that rotation (one extra
/// fsync and a file creation) is rare, small enough that [`Wal::release_through`] frees space
/// in useful steps and recovery reads one segment into memory at a time.
pub const DEFAULT_SEGMENT_MAX_BYTES: u64 = 64 << 20;

/// Bytes in a segment header.
pub const SEGMENT_HEADER_LEN: usize = 24;

/// Bytes in a record header (`len`, `crc`, `seq`).
pub const RECORD_HEADER_LEN: usize = 16;

/// First bytes of every segment, so a foreign file with a segment's name is recognised.
const SEGMENT_MAGIC: [u8; 8] = *b"SOLIDWAL";

/// Version of the on-disk format described in the module docs.
const FORMAT_VERSION: u32 = 1;

/// Highest sequence number accepted from a segment header. Sequence numbers start at 1 and
/// grow by one per record: at a million records a second, 2^62 lasts 146,000 years, so a
/// larger value is damage; the bound also keeps seq arithmetic from overflowing.
const MAX_SEQ: u64 = 1 << 62;

/// Segment files are `sol` + number (at least this many digits, zero-padded) + `.log`.
const SEGMENT_NUMBER_DIGITS: usize = 5;
const SEGMENT_PREFIX: &str = "sol";
const SEGMENT_SUFFIX: &str = ".log";

/// Errors from the transaction log. All but [`WalError::TooLarge`] are fatal for the node.
#[derive(Debug, Error)]
pub enum WalError {
    /// A file-system call failed.
    #[error("transaction log: {op} failed on {file}: {source}")]
    Io {
        /// Path of the file (or directory) involved.
        file: String,
        /// What was being done ("read", "sync", …).
        op: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// A segment holds damage that is not a torn tail; see the recovery rules.
    #[error("transaction log {file} is corrupt at offset {offset}: {reason}")]
    Corrupt {
        /// Path of the damaged segment.
        file: String,
        /// Byte offset of the damaged header or record within the file.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// Records are missing: `expected` is the sequence number that had to come next and
    /// `found` is the one the log continues with instead (for a log that ends before the
    /// checkpoint, the number its next record would get).
    #[error(
        "transaction log {file} is missing records: expected sequence number {expected}, found {found}"
    )]
    Gap {
        /// Path of the segment where the gap shows.
        file: String,
        /// The sequence number that had to come next.
        expected: u64,
        /// The sequence number found instead.
        found: u64,
    },
    /// A payload exceeds [`MAX_RECORD_LEN`]; nothing was written. Not fatal.
    #[error("transaction log record of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The payload length asked for.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// An earlier append or sync failed, so what is durable is unknown; the log refuses all
    /// further use until it is reopened (the node must stop and recover).
    #[error(
        "transaction log {file} is unusable since a failed {op} ({cause}); the node must restart and recover"
    )]
    Poisoned {
        /// Path of the segment the failure happened on.
        file: String,
        /// The operation that failed.
        op: &'static str,
        /// The original error, as text.
        cause: String,
    },
    /// [`Wal::release_through`] was asked to release records the log has not written: the
    /// caller's checkpoint claims sequence numbers beyond [`Wal::last_seq`].
    #[error("transaction log cannot release through {seq}: the last record written is {last_seq}")]
    BeyondEnd {
        /// The sequence number asked for.
        seq: u64,
        /// The last sequence number in the log.
        last_seq: u64,
    },
}

/// Tunables of the log; [`WalOptions::default`] is what production uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalOptions {
    /// Rotate the active segment when the next record would take it past this many bytes.
    /// A single record larger than this still goes in (alone in its segment).
    pub segment_max_bytes: u64,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_max_bytes: DEFAULT_SEGMENT_MAX_BYTES,
        }
    }
}

/// What [`Wal::open`] found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Recovery {
    /// Every record with `seq > after_seq`, in order: `(seq, payload)`.
    pub records: Vec<(u64, Vec<u8>)>,
    /// The unsynced tail that a crash tore and recovery cut off, if any.
    pub torn_tail: Option<TornTail>,
}

/// An incomplete tail removed by recovery (see the recovery rules).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// Display path of the segment.
    pub file: String,
    /// Where the file was cut (0 if the whole segment was removed).
    pub offset: u64,
    /// How many bytes were dropped.
    pub bytes_dropped: u64,
}

/// A segment known to the running log.
#[derive(Debug, Clone)]
struct Segment {
    number: u64,
    name: String,
    first_seq: u64,
}

/// The open transaction log. See the module docs.
pub struct Wal {
    fs: Arc<dyn LogFs>,
    opts: WalOptions,
    /// Every segment on disk, oldest first; the last is the active one.
    segments: VecDeque<Segment>,
    /// Append handle on the last segment.
    active: Box<dyn LogFile>,
    /// Bytes in the active segment, header included.
    active_len: u64,
    /// Records in the active segment.
    active_records: u64,
    last_seq: u64,
    durable_seq: u64,
    bytes_since_release: u64,
    /// Set by the first failed append or sync; see [`WalError::Poisoned`].
    poison: Option<Poison>,
    /// Reused encoding buffer, so an append does not allocate.
    scratch: Vec<u8>,
}

#[derive(Debug, Clone)]
struct Poison {
    file: String,
    op: &'static str,
    cause: String,
}

impl fmt::Debug for Wal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wal")
            .field("fs", &self.fs)
            .field("segments", &self.segments)
            .field("active_len", &self.active_len)
            .field("last_seq", &self.last_seq)
            .field("durable_seq", &self.durable_seq)
            .field("poisoned", &self.poison.is_some())
            .finish_non_exhaustive()
    }
}

/// The name of segment `number`.
pub fn segment_name(number: u64) -> String {
    format!(
        "{SEGMENT_PREFIX}{number:0width$}{SEGMENT_SUFFIX}",
        width = SEGMENT_NUMBER_DIGITS
    )
}

/// The number of a segment file name, or `None` if the name is not one the log writes
/// (non-canonical spellings such as `sol1.log` or `sol000001.log` are not segments).
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name
        .strip_prefix(SEGMENT_PREFIX)?
        .strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() < SEGMENT_NUMBER_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let number: u64 = digits.parse().ok()?;
    (segment_name(number) == name).then_some(number)
}

/// Whether the directory holds any transaction log segment (a node to be added to a grid
/// must have none).
pub fn log_exists(fs: &dyn LogFs) -> Result<bool, WalError> {
    Ok(list_segments(fs)?.next().is_some())
}

fn list_segments(fs: &dyn LogFs) -> Result<impl Iterator<Item = (u64, String)>, WalError> {
    let names = fs.list().map_err(|source| WalError::Io {
        file: fs.display_path(""),
        op: "list directory",
        source,
    })?;
    let mut segments: Vec<(u64, String)> = names
        .into_iter()
        .filter_map(|name| parse_segment_name(&name).map(|n| (n, name)))
        .collect();
    segments.sort_unstable();
    Ok(segments.into_iter())
}

fn encode_segment_header(first_seq: u64) -> [u8; SEGMENT_HEADER_LEN] {
    let mut h = [0u8; SEGMENT_HEADER_LEN];
    h[0..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[12..20].copy_from_slice(&first_seq.to_le_bytes());
    let crc = crc32fast::hash(&h[0..20]);
    h[20..24].copy_from_slice(&crc.to_le_bytes());
    h
}

fn record_crc(seq: u64, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&seq.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

/// Appends one encoded record to `out`. The caller has checked the length bound.
fn encode_record(out: &mut Vec<u8>, seq: u64, payload: &[u8]) {
    let len = u32::try_from(payload.len()).expect("payload length checked against MAX_RECORD_LEN");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&record_crc(seq, payload).to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(payload);
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        bytes.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        bytes.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// Why a segment header is unusable.
enum HeaderFault {
    /// Shorter than a header, or all zero: a crash right after the segment was created.
    Torn,
    /// Anything else: a foreign or damaged file.
    Bad { offset: usize, reason: String },
}

fn parse_segment_header(bytes: &[u8]) -> Result<u64, HeaderFault> {
    let Some(header) = bytes.get(..SEGMENT_HEADER_LEN) else {
        return Err(HeaderFault::Torn);
    };
    if bytes.iter().all(|&b| b == 0) {
        return Err(HeaderFault::Torn);
    }
    if header[0..8] != SEGMENT_MAGIC {
        return Err(HeaderFault::Bad {
            offset: 0,
            reason: "not a transaction log segment (wrong magic bytes)".into(),
        });
    }
    let bad = |offset: usize, reason: String| HeaderFault::Bad { offset, reason };
    let version = read_u32(header, 8).ok_or_else(|| bad(8, "header cut short".into()))?;
    let first_seq = read_u64(header, 12).ok_or_else(|| bad(12, "header cut short".into()))?;
    let stored = read_u32(header, 20).ok_or_else(|| bad(20, "header cut short".into()))?;
    let computed = crc32fast::hash(&header[0..20]);
    if stored != computed {
        return Err(bad(
            0,
            format!(
                "segment header checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
            ),
        ));
    }
    if version != FORMAT_VERSION {
        return Err(bad(
            8,
            format!("unsupported log format version {version} (this build reads {FORMAT_VERSION})"),
        ));
    }
    if first_seq == 0 || first_seq > MAX_SEQ {
        return Err(bad(
            12,
            format!("first sequence number {first_seq} out of range"),
        ));
    }
    Ok(first_seq)
}

/// A record that could not be read at some offset.
struct Damage {
    reason: String,
    /// The record checksums but carries the wrong seq (never a torn write).
    checksummed: bool,
}

/// Reads the record at `pos`, which must carry `expected_seq`. Returns the payload range and
/// the offset after the record.
fn parse_record(
    bytes: &[u8],
    pos: usize,
    expected_seq: u64,
) -> Result<(std::ops::Range<usize>, usize), Damage> {
    let torn = |reason: String| Damage {
        reason,
        checksummed: false,
    };
    let remaining = bytes.len().saturating_sub(pos);
    if remaining < RECORD_HEADER_LEN {
        return Err(torn(format!(
            "record header cut short: {remaining} of {RECORD_HEADER_LEN} bytes"
        )));
    }
    let (Some(len), Some(stored_crc), Some(seq)) = (
        read_u32(bytes, pos),
        read_u32(bytes, pos + 4),
        read_u64(bytes, pos + 8),
    ) else {
        return Err(torn("record header unreadable".into()));
    };
    let len = len as usize;
    if len > MAX_RECORD_LEN {
        return Err(torn(format!(
            "record length {len} exceeds the limit of {MAX_RECORD_LEN} bytes"
        )));
    }
    let start = pos + RECORD_HEADER_LEN;
    let available = remaining - RECORD_HEADER_LEN;
    if len > available {
        return Err(torn(format!(
            "record cut short: payload of {len} bytes, {available} present"
        )));
    }
    let payload = start..start + len;
    let computed = record_crc(seq, &bytes[payload.clone()]);
    if computed != stored_crc {
        return Err(torn(format!(
            "record checksum mismatch (stored {stored_crc:#010x}, computed {computed:#010x})"
        )));
    }
    if seq != expected_seq {
        return Err(Damage {
            reason: format!("record has sequence number {seq} where {expected_seq} was expected"),
            checksummed: true,
        });
    }
    Ok((payload.clone(), payload.end))
}

/// Looks for a valid record starting anywhere after `damaged_at` in a segment whose first
/// seq is `first_seq` and whose last good record is `last_good`. Returns its offset and seq.
fn find_valid_record_after(
    bytes: &[u8],
    damaged_at: usize,
    first_seq: u64,
    last_good: u64,
) -> Option<(usize, u64)> {
    let last_start = bytes.len().checked_sub(RECORD_HEADER_LEN)?;
    for off in damaged_at + 1..=last_start {
        let (Some(len), Some(stored_crc), Some(seq)) = (
            read_u32(bytes, off),
            read_u32(bytes, off + 4),
            read_u64(bytes, off + 8),
        ) else {
            continue;
        };
        let len = len as usize;
        if len > MAX_RECORD_LEN || len > bytes.len() - off - RECORD_HEADER_LEN {
            continue;
        }
        // Every record before this offset takes at least a header's worth of bytes, which
        // bounds the seq a genuine record here could carry; this rejects almost all garbage
        // before paying for a checksum.
        let records_before = ((off - SEGMENT_HEADER_LEN) / RECORD_HEADER_LEN) as u64;
        if seq <= last_good || seq > first_seq.saturating_add(records_before) {
            continue;
        }
        let payload = &bytes[off + RECORD_HEADER_LEN..off + RECORD_HEADER_LEN + len];
        if record_crc(seq, payload) == stored_crc {
            return Some((off, seq));
        }
    }
    None
}

/// The result of checking one segment.
struct SegmentScan {
    segment: Segment,
    /// Valid bytes (header + good records); the file is cut here if it has a torn tail.
    valid_len: u64,
    /// Total bytes in the file.
    file_len: u64,
    records: u64,
    /// The segment is a torn creation and is to be removed.
    remove: bool,
}

impl Wal {
    /// Opens (creating if empty) and recovers the log with default options.
    ///
    /// `after_seq` is the last sequence number already applied to the database (its
    /// checkpoint): records up to it are verified but not returned; the first one returned is
    /// `after_seq + 1` (else [`WalError::Gap`]). An empty log starts numbering at
    /// `after_seq + 1`. See the module docs for the recovery rules.
    pub fn open(fs: Arc<dyn LogFs>, after_seq: u64) -> Result<(Wal, Recovery), WalError> {
        Self::open_with(fs, after_seq, WalOptions::default())
    }

    /// [`Wal::open`] with explicit options.
    pub fn open_with(
        fs: Arc<dyn LogFs>,
        after_seq: u64,
        opts: WalOptions,
    ) -> Result<(Wal, Recovery), WalError> {
        debug_assert!(
            after_seq < MAX_SEQ,
            "checkpoint seq {after_seq} out of range"
        );
        // Check everything first; only then change anything on disk.
        let LogScan {
            segments: scans,
            records,
        } = scan_log(fs.as_ref(), after_seq)?;
        check_coverage(fs.as_ref(), &scans, after_seq)?;
        let torn_tail = repair_torn_tail(fs.as_ref(), scans.last())?;

        let removed_number = scans.last().filter(|s| s.remove).map(|s| s.segment.number);
        let kept: Vec<SegmentScan> = scans.into_iter().filter(|s| !s.remove).collect();
        let bytes_found: u64 = kept.iter().map(|s| s.valid_len).sum();
        let (active_len, active_records) = kept.last().map_or((0, 0), |s| (s.valid_len, s.records));
        let mut segments: VecDeque<Segment> = kept.into_iter().map(|s| s.segment).collect();

        let wal = if let Some(active) = segments.back() {
            let handle = fs
                .open_append(&active.name)
                .map_err(|source| WalError::Io {
                    file: fs.display_path(&active.name),
                    op: "open for append",
                    source,
                })?;
            let last_seq = active.first_seq + active_records - 1;
            Wal {
                fs,
                opts,
                segments,
                active: handle,
                active_len,
                active_records,
                last_seq,
                durable_seq: last_seq,
                bytes_since_release: bytes_found,
                poison: None,
                scratch: Vec::new(),
            }
        } else {
            // Rule 6: an empty log (or one whose only segment was a torn creation).
            let number = removed_number.unwrap_or(1);
            let (segment, handle) =
                create_segment(fs.as_ref(), number, after_seq.saturating_add(1))?;
            segments.push_back(segment);
            Wal {
                fs,
                opts,
                segments,
                active: handle,
                active_len: SEGMENT_HEADER_LEN as u64,
                active_records: 0,
                last_seq: after_seq,
                durable_seq: after_seq,
                bytes_since_release: 0,
                poison: None,
                scratch: Vec::new(),
            }
        };
        tracing::info!(
            segments = wal.segments.len(),
            last_seq = wal.last_seq,
            replay = records.len(),
            "transaction log: recovered"
        );
        Ok((wal, Recovery { records, torn_tail }))
    }

    /// Appends a record and returns its sequence number. The bytes are handed to the OS but
    /// are **not durable** until [`Wal::sync`] returns: do not acknowledge before that.
    pub fn append(&mut self, payload: &[u8]) -> Result<u64, WalError> {
        self.check_poison()?;
        if payload.len() > MAX_RECORD_LEN {
            return Err(WalError::TooLarge {
                len: payload.len(),
                max: MAX_RECORD_LEN,
            });
        }
        let record_len = (RECORD_HEADER_LEN + payload.len()) as u64;
        if self.active_records > 0
            && self.active_len.saturating_add(record_len) > self.opts.segment_max_bytes
        {
            self.rotate()?;
        }
        let seq = self.last_seq + 1;
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        encode_record(&mut buf, seq, payload);
        let result = self.active.append(&buf);
        self.scratch = buf;
        if let Err(e) = result {
            return Err(self.poison_with("append", e));
        }
        self.last_seq = seq;
        self.active_len += record_len;
        self.active_records += 1;
        self.bytes_since_release += record_len;
        Ok(seq)
    }

    /// Makes every appended record durable (`fdatasync`). Only after this returns may the
    /// records be acknowledged. A failure poisons the log.
    pub fn sync(&mut self) -> Result<(), WalError> {
        self.check_poison()?;
        if self.durable_seq == self.last_seq {
            return Ok(());
        }
        if let Err(e) = self.active.sync() {
            return Err(self.poison_with("sync", e));
        }
        self.durable_seq = self.last_seq;
        Ok(())
    }

    /// [`Wal::append`] then [`Wal::sync`]: the record is durable when this returns.
    pub fn append_sync(&mut self, payload: &[u8]) -> Result<u64, WalError> {
        let seq = self.append(payload)?;
        self.sync()?;
        Ok(seq)
    }

    /// The last sequence number appended (durable or not).
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// The last sequence number known durable.
    pub fn durable_seq(&self) -> u64 {
        self.durable_seq
    }

    /// Bytes appended since the last [`Wal::release_through`]; right after open, the size of
    /// the segments found. The engine checkpoints when this grows too large.
    pub fn bytes_since_release(&self) -> u64 {
        self.bytes_since_release
    }

    /// Number of segment files the log consists of.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Whether an earlier failure poisoned the log.
    pub fn is_poisoned(&self) -> bool {
        self.poison.is_some()
    }

    /// After a durable database checkpoint covering every record `<= seq`: rotates to a fresh
    /// segment (if the active one holds records) and deletes the segments whose records are
    /// all `<= seq`. Records after `seq` are kept. The checkpoint must be durable before this
    /// is called.
    pub fn release_through(&mut self, seq: u64) -> Result<(), WalError> {
        self.check_poison()?;
        if seq > self.last_seq {
            return Err(WalError::BeyondEnd {
                seq,
                last_seq: self.last_seq,
            });
        }
        if self.active_records > 0 {
            self.rotate()?;
            // The new segment's header is made durable before any old segment goes, so the
            // directory always holds a valid log.
            if let Err(e) = self.active.sync() {
                return Err(self.poison_with("sync", e));
            }
        }
        // Delete oldest first, so a crash part-way leaves a contiguous suffix of the log.
        while self.segments.len() > 1 {
            let next_first = self.segments[1].first_seq;
            if next_first - 1 > seq {
                break;
            }
            let oldest = &self.segments[0];
            match self.fs.remove(&oldest.name) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(WalError::Io {
                        file: self.fs.display_path(&oldest.name),
                        op: "remove released segment",
                        source,
                    });
                }
            }
            tracing::debug!(
                file = %self.fs.display_path(&oldest.name),
                through = next_first - 1,
                "transaction log: released segment"
            );
            self.segments.pop_front();
        }
        self.bytes_since_release = 0;
        Ok(())
    }

    /// Syncs and closes the active segment and starts the next one.
    fn rotate(&mut self) -> Result<(), WalError> {
        if let Err(e) = self.active.sync() {
            return Err(self.poison_with("sync", e));
        }
        self.durable_seq = self.last_seq;
        let number = self.segments.back().map_or(1, |s| s.number + 1);
        let (segment, handle) = match create_segment(self.fs.as_ref(), number, self.last_seq + 1) {
            Ok(created) => created,
            Err(e) => {
                self.poison = Some(Poison {
                    file: self.fs.display_path(&segment_name(number)),
                    op: "create segment",
                    cause: e.to_string(),
                });
                tracing::error!(error = %e, "transaction log poisoned");
                return Err(e);
            }
        };
        tracing::debug!(
            file = %self.fs.display_path(&segment.name),
            first_seq = segment.first_seq,
            "transaction log: new segment"
        );
        self.segments.push_back(segment);
        self.active = handle;
        self.active_len = SEGMENT_HEADER_LEN as u64;
        self.active_records = 0;
        Ok(())
    }

    fn check_poison(&self) -> Result<(), WalError> {
        match &self.poison {
            None => Ok(()),
            Some(p) => Err(WalError::Poisoned {
                file: p.file.clone(),
                op: p.op,
                cause: p.cause.clone(),
            }),
        }
    }

    /// Records a failed write or sync on the active segment and returns the error to report.
    fn poison_with(&mut self, op: &'static str, source: io::Error) -> WalError {
        let file = self
            .segments
            .back()
            .map(|s| self.fs.display_path(&s.name))
            .unwrap_or_default();
        tracing::error!(file = %file, op, error = %source, "transaction log poisoned: what is durable is unknown");
        self.poison = Some(Poison {
            file: file.clone(),
            op,
            cause: source.to_string(),
        });
        WalError::Io { file, op, source }
    }
}

/// What recovery found in the whole log.
struct LogScan {
    /// One entry per segment file, oldest first.
    segments: Vec<SegmentScan>,
    /// The records after the checkpoint.
    records: Vec<(u64, Vec<u8>)>,
}

/// Reads and checks every segment in order (recovery rules 1-4), changing nothing.
fn scan_log(fs: &dyn LogFs, after_seq: u64) -> Result<LogScan, WalError> {
    let found: Vec<(u64, String)> = list_segments(fs)?.collect();
    let count = found.len();
    let mut scans: Vec<SegmentScan> = Vec::with_capacity(count);
    let mut records = Vec::new();
    for (index, (number, name)) in found.into_iter().enumerate() {
        let is_last = index + 1 == count;
        let bytes = fs.read(&name).map_err(|source| WalError::Io {
            file: fs.display_path(&name),
            op: "read",
            source,
        })?;
        // The seq this segment must start with, if a segment came before it.
        let continues = scans.last().map(|s| s.segment.first_seq + s.records);
        let scan = scan_segment(
            fs,
            Segment {
                number,
                name,
                first_seq: 0,
            },
            &bytes,
            is_last,
            continues,
            after_seq,
            &mut records,
        )?;
        scans.push(scan);
    }
    Ok(LogScan {
        segments: scans,
        records,
    })
}

/// Checks one segment. `segment.first_seq` is filled in from its header. Records after
/// `after_seq` are pushed to `records`.
fn scan_segment(
    fs: &dyn LogFs,
    mut segment: Segment,
    bytes: &[u8],
    is_last: bool,
    continues: Option<u64>,
    after_seq: u64,
    records: &mut Vec<(u64, Vec<u8>)>,
) -> Result<SegmentScan, WalError> {
    let file = fs.display_path(&segment.name);
    let file_len = bytes.len() as u64;
    let corrupt = |offset: usize, reason: String| WalError::Corrupt {
        file: file.clone(),
        offset: offset as u64,
        reason,
    };
    segment.first_seq = match parse_segment_header(bytes) {
        Ok(first_seq) => first_seq,
        // Rule 4: a crash right after the segment was created.
        Err(HeaderFault::Torn) if is_last => {
            segment.first_seq = continues.unwrap_or(after_seq.saturating_add(1));
            return Ok(SegmentScan {
                segment,
                valid_len: 0,
                file_len,
                records: 0,
                remove: true,
            });
        }
        Err(HeaderFault::Torn) => {
            return Err(corrupt(
                0,
                "segment header missing or zeroed, but later segments exist".into(),
            ));
        }
        Err(HeaderFault::Bad { offset, reason }) => return Err(corrupt(offset, reason)),
    };
    let first_seq = segment.first_seq;
    if let Some(expected) = continues
        && first_seq != expected
    {
        return Err(if first_seq > expected {
            WalError::Gap {
                file: file.clone(),
                expected,
                found: first_seq,
            }
        } else {
            corrupt(
                12,
                format!(
                    "segment starts at sequence number {first_seq}, but the previous segment already reaches {}",
                    expected - 1
                ),
            )
        });
    }

    let mut pos = SEGMENT_HEADER_LEN;
    let mut seq = first_seq;
    while pos < bytes.len() {
        let damage = match parse_record(bytes, pos, seq) {
            Ok((payload, end)) => {
                if seq > after_seq {
                    records.push((seq, bytes[payload].to_vec()));
                }
                pos = end;
                seq += 1;
                continue;
            }
            Err(damage) => damage,
        };
        // Rules 1-3: is this a torn tail or corruption?
        if !is_last {
            return Err(corrupt(
                pos,
                format!(
                    "{}; later segments exist, so this is not a torn tail",
                    damage.reason
                ),
            ));
        }
        if damage.checksummed {
            return Err(corrupt(pos, damage.reason));
        }
        if let Some((at, found)) = find_valid_record_after(bytes, pos, first_seq, seq - 1) {
            return Err(corrupt(
                pos,
                format!(
                    "{}; a valid record (sequence number {found}) follows at offset {at}, so this is not a torn tail",
                    damage.reason
                ),
            ));
        }
        break;
    }
    Ok(SegmentScan {
        segment,
        valid_len: pos as u64,
        file_len,
        records: seq - first_seq,
        remove: false,
    })
}

/// Rule 5: the log must hold every record after the checkpoint, starting right after it.
fn check_coverage(fs: &dyn LogFs, scans: &[SegmentScan], after_seq: u64) -> Result<(), WalError> {
    let wanted = after_seq.saturating_add(1);
    let mut kept = scans.iter().filter(|s| !s.remove);
    let Some(first) = kept.next() else {
        return Ok(()); // An empty log: numbering starts at `wanted`.
    };
    let last = kept.next_back().unwrap_or(first);
    if first.segment.first_seq > wanted {
        return Err(WalError::Gap {
            file: fs.display_path(&first.segment.name),
            expected: wanted,
            found: first.segment.first_seq,
        });
    }
    let log_next = last.segment.first_seq + last.records;
    if log_next < wanted {
        return Err(WalError::Gap {
            file: fs.display_path(&last.segment.name),
            expected: wanted,
            found: log_next,
        });
    }
    Ok(())
}

/// Cuts the torn tail of the last segment, or removes it if it was torn at creation.
fn repair_torn_tail(
    fs: &dyn LogFs,
    last: Option<&SegmentScan>,
) -> Result<Option<TornTail>, WalError> {
    let Some(last) = last.filter(|s| s.remove || s.valid_len < s.file_len) else {
        return Ok(None);
    };
    let file = fs.display_path(&last.segment.name);
    let (op, result) = if last.remove {
        ("remove torn segment", fs.remove(&last.segment.name))
    } else {
        (
            "truncate torn tail",
            fs.truncate(&last.segment.name, last.valid_len),
        )
    };
    result.map_err(|source| WalError::Io {
        file: file.clone(),
        op,
        source,
    })?;
    let torn = TornTail {
        file,
        offset: last.valid_len,
        bytes_dropped: last.file_len - last.valid_len,
    };
    tracing::warn!(
        file = %torn.file,
        offset = torn.offset,
        bytes_dropped = torn.bytes_dropped,
        "transaction log: dropped a torn tail left by a crash (unsynced writes)"
    );
    Ok(Some(torn))
}

/// Creates segment `number` starting at `first_seq` and writes its header (not yet synced).
fn create_segment(
    fs: &dyn LogFs,
    number: u64,
    first_seq: u64,
) -> Result<(Segment, Box<dyn LogFile>), WalError> {
    let name = segment_name(number);
    let io_err = |op: &'static str| {
        let file = fs.display_path(&name);
        move |source| WalError::Io { file, op, source }
    };
    let mut handle = fs.create(&name).map_err(io_err("create segment"))?;
    handle
        .append(&encode_segment_header(first_seq))
        .map_err(io_err("write segment header"))?;
    Ok((
        Segment {
            number,
            name,
            first_seq,
        },
        handle,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::logfs::{DiskFs, MemFs};
    use proptest::prelude::*;

    /// Small segments so a few records already span several of them.
    fn small(segment_max_bytes: u64) -> WalOptions {
        WalOptions { segment_max_bytes }
    }

    fn open(fs: &MemFs, after_seq: u64, opts: &WalOptions) -> Result<(Wal, Recovery), WalError> {
        Wal::open_with(Arc::new(fs.clone()), after_seq, opts.clone())
    }

    fn segment_files(fs: &MemFs) -> Vec<String> {
        fs.names()
            .into_iter()
            .filter(|n| parse_segment_name(n).is_some())
            .collect()
    }

    fn last_segment(fs: &MemFs) -> String {
        segment_files(fs).pop().expect("a segment")
    }

    fn payload(i: usize, len: usize) -> Vec<u8> {
        (0..len).map(|j| (i * 31 + j) as u8).collect()
    }

    fn numbered(payloads: &[Vec<u8>], first: u64) -> Vec<(u64, Vec<u8>)> {
        payloads
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, p)| (first + i as u64, p))
            .collect()
    }

    /// Where a record landed: segment file name and its byte range.
    #[derive(Debug, Clone)]
    struct Placed {
        file: String,
        start: usize,
        end: usize,
    }

    /// Appends every payload (syncing at the end) and reports where each record landed.
    fn write_log(fs: &MemFs, payloads: &[Vec<u8>], opts: &WalOptions) -> Vec<Placed> {
        let (mut wal, rec) = open(fs, 0, opts).unwrap();
        assert!(rec.records.is_empty());
        let mut placed = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            assert_eq!(wal.append(p).unwrap(), i as u64 + 1);
            let file = last_segment(fs);
            let end = fs.bytes(&file).unwrap().len();
            placed.push(Placed {
                file,
                start: end - RECORD_HEADER_LEN - p.len(),
                end,
            });
        }
        wal.sync().unwrap();
        placed
    }

    fn payloads_strategy() -> impl Strategy<Value = Vec<Vec<u8>>> {
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..80), 0..24)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any garbage after the last record is a torn tail: recovery returns exactly the
        /// written records and appending continues with the next seq.
        #[test]
        fn garbage_tail_recovers_longest_valid_prefix(
            payloads in payloads_strategy(),
            garbage in prop::collection::vec(any::<u8>(), 0..64),
            segment_max in 64u64..400,
        ) {
            let opts = small(segment_max);
            let fs = MemFs::new();
            write_log(&fs, &payloads, &opts);
            let last = last_segment(&fs);
            let mut bytes = fs.bytes(&last).unwrap();
            let clean_len = bytes.len() as u64;
            bytes.extend_from_slice(&garbage);
            fs.set_bytes(&last, bytes);

            let (mut wal, rec) = open(&fs, 0, &opts).unwrap();
            prop_assert_eq!(&rec.records, &numbered(&payloads, 1));
            if garbage.is_empty() {
                prop_assert_eq!(rec.torn_tail, None);
            } else {
                prop_assert_eq!(rec.torn_tail, Some(TornTail {
                    file: fs.display_path(&last),
                    offset: clean_len,
                    bytes_dropped: garbage.len() as u64,
                }));
            }
            prop_assert_eq!(fs.bytes(&last).unwrap().len() as u64, clean_len);
            let next = payloads.len() as u64 + 1;
            prop_assert_eq!(wal.append_sync(b"after").unwrap(), next);
            drop(wal);
            let (wal, rec) = open(&fs, 0, &opts).unwrap();
            prop_assert_eq!(rec.records.len() as u64, next);
            prop_assert_eq!(rec.records.last().unwrap(), &(next, b"after".to_vec()));
            prop_assert_eq!(rec.torn_tail, None);
            prop_assert_eq!(wal.last_seq(), next);
        }

        /// Cutting the log (all segments as one byte stream) anywhere recovers exactly the
        /// records wholly before the cut.
        #[test]
        fn truncation_anywhere_recovers_records_before_the_cut(
            payloads in payloads_strategy(),
            segment_max in 64u64..400,
            cut in any::<prop::sample::Index>(),
        ) {
            let opts = small(segment_max);
            let fs = MemFs::new();
            let placed = write_log(&fs, &payloads, &opts);
            let files = segment_files(&fs);
            let mut starts = Vec::new();
            let mut total = 0usize;
            for f in &files {
                starts.push(total);
                total += fs.bytes(f).unwrap().len();
            }
            let cut = cut.index(total + 1);
            for (f, &start) in files.iter().zip(&starts) {
                if start > cut {
                    fs.remove(f).unwrap();
                } else {
                    fs.truncate(f, (cut - start) as u64).unwrap();
                }
            }
            let expected: Vec<(u64, Vec<u8>)> = numbered(&payloads, 1)
                .into_iter()
                .zip(&placed)
                .filter(|(_, p)| {
                    let file_start = starts[files.iter().position(|f| *f == p.file).unwrap()];
                    file_start + p.end <= cut
                })
                .map(|(r, _)| r)
                .collect();

            let (mut wal, rec) = open(&fs, 0, &opts).unwrap();
            prop_assert_eq!(&rec.records, &expected);
            let next = expected.len() as u64 + 1;
            prop_assert_eq!(wal.append_sync(b"x").unwrap(), next);
            drop(wal);
            let (_, rec) = open(&fs, 0, &opts).unwrap();
            prop_assert_eq!(rec.records.len() as u64, next);
            prop_assert_eq!(rec.torn_tail, None);
        }

        /// After a crash every synced record is there, in order, and nothing that was not
        /// written.
        #[test]
        fn crash_keeps_every_synced_record(
            ops in prop::collection::vec((prop::collection::vec(any::<u8>(), 0..60), any::<bool>()), 0..40),
            segment_max in 64u64..300,
        ) {
            let opts = small(segment_max);
            let fs = MemFs::new();
            let (mut wal, _) = open(&fs, 0, &opts).unwrap();
            let mut written = Vec::new();
            let mut synced = 0usize;
            for (p, sync) in &ops {
                let seq = wal.append(p).unwrap();
                written.push((seq, p.clone()));
                if *sync {
                    wal.sync().unwrap();
                    synced = written.len();
                    prop_assert_eq!(wal.durable_seq(), seq);
                }
            }
            drop(wal);
            fs.crash();
            let (mut wal, rec) = open(&fs, 0, &opts).unwrap();
            prop_assert!(rec.records.len() >= synced);
            prop_assert!(rec.records.len() <= written.len());
            prop_assert_eq!(&rec.records[..], &written[..rec.records.len()]);
            let next = rec.records.len() as u64 + 1;
            prop_assert_eq!(wal.append_sync(b"more").unwrap(), next);
        }

        /// One flipped byte in a record that another valid record follows is corruption,
        /// reported at the damaged record's offset.
        #[test]
        fn flipped_byte_before_a_valid_record_is_corrupt(
            payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..80), 2..16),
            segment_max in 64u64..400,
            which in any::<prop::sample::Index>(),
            at in any::<prop::sample::Index>(),
            mask in 1u8..=255,
        ) {
            let opts = small(segment_max);
            let fs = MemFs::new();
            let placed = write_log(&fs, &payloads, &opts);
            let victim = &placed[which.index(placed.len() - 1)];
            let mut bytes = fs.bytes(&victim.file).unwrap();
            bytes[victim.start + at.index(victim.end - victim.start)] ^= mask;
            fs.set_bytes(&victim.file, bytes.clone());

            match open(&fs, 0, &opts) {
                Err(WalError::Corrupt { file, offset, .. }) => {
                    prop_assert_eq!(file, fs.display_path(&victim.file));
                    prop_assert_eq!(offset, victim.start as u64);
                }
                other => prop_assert!(false, "expected Corrupt, got {:?}", other.map(|(_, r)| r)),
            }
            // Nothing was changed on disk.
            prop_assert_eq!(fs.bytes(&victim.file).unwrap(), bytes);
        }
    }

    #[test]
    fn rotation_and_release_keep_numbering_across_reopen() {
        // 24-byte header + three 46-byte records = 162; a fourth would pass 200.
        let opts = small(200);
        let fs = MemFs::new();
        let payloads: Vec<Vec<u8>> = (0..20).map(|i| payload(i, 30)).collect();
        write_log(&fs, &payloads, &opts);
        assert_eq!(segment_files(&fs).len(), 7);
        assert_eq!(segment_files(&fs)[6], "sol00007.log");

        let (mut wal, rec) = open(&fs, 0, &opts).unwrap();
        assert_eq!(rec.records, numbered(&payloads, 1));
        assert!(wal.bytes_since_release() > 0);
        wal.release_through(10).unwrap();
        assert_eq!(wal.bytes_since_release(), 0);
        // Segments 1-3 hold 1..=9 and go; segment 4 holds 10..=12 and must stay.
        assert_eq!(
            segment_files(&fs),
            [
                "sol00004.log",
                "sol00005.log",
                "sol00006.log",
                "sol00007.log",
                "sol00008.log"
            ]
        );
        assert_eq!(wal.segment_count(), 5);
        // Releasing again with an empty active segment does not rotate.
        wal.release_through(10).unwrap();
        assert_eq!(segment_files(&fs).len(), 5);
        assert!(matches!(
            wal.release_through(21),
            Err(WalError::BeyondEnd {
                seq: 21,
                last_seq: 20
            })
        ));
        drop(wal);

        let (mut wal, rec) = open(&fs, 10, &opts).unwrap();
        assert_eq!(rec.records, numbered(&payloads[10..], 11));
        let on_disk: u64 = segment_files(&fs)
            .iter()
            .map(|f| fs.bytes(f).unwrap().len() as u64)
            .sum();
        assert_eq!(wal.bytes_since_release(), on_disk);
        assert_eq!(wal.append_sync(b"21").unwrap(), 21);
        assert_eq!(
            wal.bytes_since_release(),
            on_disk + RECORD_HEADER_LEN as u64 + 2
        );
        wal.release_through(21).unwrap();
        assert_eq!(segment_files(&fs), ["sol00009.log"]);
        drop(wal);

        let (mut wal, rec) = open(&fs, 21, &opts).unwrap();
        assert!(rec.records.is_empty());
        assert_eq!(wal.last_seq(), 21);
        assert_eq!(wal.append_sync(b"22").unwrap(), 22);
        assert_eq!(segment_files(&fs), ["sol00009.log"]);
    }

    #[test]
    fn empty_log_starts_after_the_checkpoint() {
        let fs = MemFs::new();
        let (mut wal, rec) = open(&fs, 41, &WalOptions::default()).unwrap();
        assert_eq!(rec, Recovery::default());
        assert_eq!((wal.last_seq(), wal.durable_seq()), (41, 41));
        assert_eq!(wal.append_sync(b"a").unwrap(), 42);
        drop(wal);
        let (_, rec) = open(&fs, 41, &WalOptions::default()).unwrap();
        assert_eq!(rec.records, vec![(42, b"a".to_vec())]);
        assert!(log_exists(&fs).unwrap());
        assert!(!log_exists(&MemFs::new()).unwrap());
    }

    #[test]
    fn missing_records_are_a_gap() {
        let opts = small(200);
        let fs = MemFs::new();
        let payloads: Vec<Vec<u8>> = (0..9).map(|i| payload(i, 30)).collect();
        write_log(&fs, &payloads, &opts);
        assert_eq!(segment_files(&fs).len(), 3);

        // The first record after the checkpoint (seq 1) is gone with segment 1.
        let seg1 = fs.bytes("sol00001.log").unwrap();
        fs.remove("sol00001.log").unwrap();
        match open(&fs, 0, &opts) {
            Err(WalError::Gap {
                file,
                expected,
                found,
            }) => {
                assert_eq!(file, fs.display_path("sol00002.log"));
                assert_eq!((expected, found), (1, 4));
            }
            other => panic!("expected Gap, got {other:?}"),
        }
        // With a checkpoint at 3 nothing needed is missing.
        assert_eq!(
            open(&fs, 3, &opts).unwrap().1.records,
            numbered(&payloads[3..], 4)
        );
        fs.set_bytes("sol00001.log", seg1);

        // A segment missing in the middle.
        let seg2 = fs.bytes("sol00002.log").unwrap();
        fs.remove("sol00002.log").unwrap();
        assert!(matches!(
            open(&fs, 0, &opts),
            Err(WalError::Gap {
                expected: 4,
                found: 7,
                ..
            })
        ));
        fs.set_bytes("sol00002.log", seg2);

        // The checkpoint is past the end of the log.
        match open(&fs, 12, &opts) {
            Err(
                e @ WalError::Gap {
                    expected: 13,
                    found: 10,
                    ..
                },
            ) => {
                assert!(e.to_string().contains("sol00003.log"), "{e}");
            }
            other => panic!("expected Gap, got {other:?}"),
        }
        assert_eq!(open(&fs, 9, &opts).unwrap().1.records, vec![]);
    }

    #[test]
    fn failed_sync_poisons_the_log() {
        let fs = MemFs::new();
        let (mut wal, _) = open(&fs, 0, &WalOptions::default()).unwrap();
        wal.append_sync(b"one").unwrap();
        wal.append(b"two").unwrap();
        fs.fail_next_sync();
        assert!(matches!(wal.sync(), Err(WalError::Io { op: "sync", .. })));
        assert!(wal.is_poisoned());
        assert_eq!((wal.last_seq(), wal.durable_seq()), (2, 1));
        // A retry must not pretend the bytes reached the disk.
        assert!(matches!(
            wal.sync(),
            Err(WalError::Poisoned { op: "sync", .. })
        ));
        assert!(matches!(
            wal.append(b"three"),
            Err(WalError::Poisoned { .. })
        ));
        assert!(matches!(
            wal.append_sync(b"three"),
            Err(WalError::Poisoned { .. })
        ));
        assert!(matches!(
            wal.release_through(1),
            Err(WalError::Poisoned { .. })
        ));
        assert_eq!(wal.durable_seq(), 1);
        let msg = wal.sync().unwrap_err().to_string();
        assert!(
            msg.contains("memfs:/sol00001.log") && msg.contains("restart"),
            "{msg}"
        );
        drop(wal);
        fs.crash();
        let (_, rec) = open(&fs, 0, &WalOptions::default()).unwrap();
        assert_eq!(rec.records, vec![(1, b"one".to_vec())]);
    }

    #[test]
    fn failed_append_poisons_the_log() {
        let fs = MemFs::new();
        let (mut wal, _) = open(&fs, 0, &WalOptions::default()).unwrap();
        fs.fail_next_append();
        assert!(matches!(
            wal.append(b"x"),
            Err(WalError::Io { op: "append", .. })
        ));
        assert!(matches!(
            wal.sync(),
            Err(WalError::Poisoned { op: "append", .. })
        ));
        assert_eq!(wal.last_seq(), 0);
    }

    #[test]
    fn failed_sync_during_rotation_poisons_the_log() {
        let opts = small(100);
        let fs = MemFs::new();
        let (mut wal, _) = open(&fs, 0, &opts).unwrap();
        wal.append(&payload(0, 40)).unwrap();
        fs.fail_next_sync();
        assert!(wal.append(&payload(1, 40)).is_err());
        assert!(wal.is_poisoned());
        assert_eq!(segment_files(&fs), ["sol00001.log"]);
    }

    #[test]
    fn oversized_records_are_refused() {
        let fs = MemFs::new();
        let (mut wal, _) = open(&fs, 0, &WalOptions::default()).unwrap();
        let big = vec![0u8; MAX_RECORD_LEN + 1];
        assert!(matches!(
            wal.append(&big),
            Err(WalError::TooLarge { len, max: MAX_RECORD_LEN }) if len == MAX_RECORD_LEN + 1
        ));
        // Not fatal.
        assert_eq!(wal.append_sync(b"small").unwrap(), 1);
    }

    /// A record header as the writer would lay it out, with a chosen length field.
    fn raw_record(len_field: u32, seq: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&len_field.to_le_bytes());
        out.extend_from_slice(&record_crc(seq, payload).to_le_bytes());
        out.extend_from_slice(&seq.to_le_bytes());
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn a_length_beyond_the_limit_is_damage() {
        let fs = MemFs::new();
        write_log(&fs, &[b"a".to_vec()], &WalOptions::default());
        let clean = fs.bytes("sol00001.log").unwrap();
        let huge = raw_record(MAX_RECORD_LEN as u32 + 1, 2, b"");

        // At the tail, with nothing valid after it: torn.
        let mut bytes = clean.clone();
        bytes.extend_from_slice(&huge[..RECORD_HEADER_LEN]);
        fs.set_bytes("sol00001.log", bytes);
        let (_, rec) = open(&fs, 0, &WalOptions::default()).unwrap();
        assert_eq!(rec.torn_tail.unwrap().offset, clean.len() as u64);

        // Followed by a valid record: corrupt.
        let mut bytes = clean.clone();
        bytes.extend_from_slice(&huge[..RECORD_HEADER_LEN]);
        bytes.extend_from_slice(&raw_record(1, 2, b"b"));
        fs.set_bytes("sol00001.log", bytes);
        match open(&fs, 0, &WalOptions::default()) {
            Err(e @ WalError::Corrupt { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("memfs:/sol00001.log"), "{msg}");
                assert!(msg.contains(&format!("offset {}", clean.len())), "{msg}");
                assert!(msg.contains("exceeds the limit"), "{msg}");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn a_checksummed_record_with_the_wrong_seq_is_corrupt_even_at_the_tail() {
        let fs = MemFs::new();
        write_log(&fs, &[b"a".to_vec()], &WalOptions::default());
        let mut bytes = fs.bytes("sol00001.log").unwrap();
        let at = bytes.len() as u64;
        bytes.extend_from_slice(&raw_record(1, 5, b"e"));
        fs.set_bytes("sol00001.log", bytes);
        assert!(matches!(
            open(&fs, 0, &WalOptions::default()),
            Err(WalError::Corrupt { offset, .. }) if offset == at
        ));
    }

    #[test]
    fn damage_in_an_earlier_segment_is_corrupt() {
        let opts = small(200);
        let fs = MemFs::new();
        let payloads: Vec<Vec<u8>> = (0..6).map(|i| payload(i, 30)).collect();
        write_log(&fs, &payloads, &opts);
        let mut seg1 = fs.bytes("sol00001.log").unwrap();
        seg1.truncate(seg1.len() - 5);
        let offset = (SEGMENT_HEADER_LEN + 2 * 46) as u64;
        fs.set_bytes("sol00001.log", seg1);
        match open(&fs, 0, &opts) {
            Err(WalError::Corrupt {
                file,
                offset: at,
                reason,
            }) => {
                assert_eq!(file, "memfs:/sol00001.log");
                assert_eq!(at, offset);
                assert!(reason.contains("later segments exist"), "{reason}");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn a_segment_torn_at_creation_is_removed() {
        let opts = small(100);
        let fs = MemFs::new();
        let (mut wal, _) = open(&fs, 0, &opts).unwrap();
        wal.append_sync(&payload(0, 40)).unwrap();
        // The second append rotates (syncing segment 1) and creates segment 2; crash before
        // anything in segment 2 is synced.
        wal.append(&payload(1, 40)).unwrap();
        drop(wal);
        fs.crash();
        assert_eq!(fs.bytes("sol00002.log").unwrap(), b"");
        let (mut wal, rec) = open(&fs, 0, &opts).unwrap();
        assert_eq!(rec.records, vec![(1, payload(0, 40))]);
        assert_eq!(
            rec.torn_tail,
            Some(TornTail {
                file: "memfs:/sol00002.log".into(),
                offset: 0,
                bytes_dropped: 0
            })
        );
        assert_eq!(segment_files(&fs), ["sol00001.log"]);
        // Segment 1 has room for this one; numbering continues.
        assert_eq!(wal.append_sync(b"2").unwrap(), 2);
        assert_eq!(segment_files(&fs), ["sol00001.log"]);
        drop(wal);

        // A half-written header, and an all-zero one, are torn creations too.
        fs.set_bytes("sol00002.log", encode_segment_header(3)[..10].to_vec());
        let (_, rec) = open(&fs, 0, &opts).unwrap();
        assert_eq!(rec.torn_tail.unwrap().bytes_dropped, 10);
        assert_eq!(rec.records.len(), 2);
        fs.set_bytes("sol00002.log", vec![0; 40]);
        let (mut wal, rec) = open(&fs, 0, &opts).unwrap();
        assert_eq!(rec.torn_tail.unwrap().bytes_dropped, 40);
        assert_eq!(rec.records.len(), 2);
        assert_eq!(segment_files(&fs), ["sol00001.log"]);
        // The next rotation reuses the number.
        assert_eq!(wal.append_sync(&payload(3, 60)).unwrap(), 3);
        assert_eq!(segment_files(&fs), ["sol00001.log", "sol00002.log"]);
        drop(wal);

        // But not when a later segment exists.
        fs.set_bytes("sol00002.log", SEGMENT_MAGIC[..5].to_vec());
        fs.set_bytes("sol00003.log", encode_segment_header(3).to_vec());
        // (Segment 2 is torn but is not the last.)
        assert!(matches!(
            open(&fs, 0, &opts),
            Err(WalError::Corrupt { offset: 0, .. })
        ));
    }

    #[test]
    fn a_torn_unsynced_append_is_cut_and_synced_records_survive() {
        let fs = MemFs::new();
        let (mut wal, _) = open(&fs, 0, &WalOptions::default()).unwrap();
        wal.append_sync(b"acknowledged").unwrap();
        let cut_at = fs.bytes("sol00001.log").unwrap().len() as u64;
        wal.append(b"in flight when the power went").unwrap();
        fs.tear_last_write("sol00001.log", 21);
        drop(wal);
        fs.crash();
        let (mut wal, rec) = open(&fs, 0, &WalOptions::default()).unwrap();
        assert_eq!(rec.records, vec![(1, b"acknowledged".to_vec())]);
        assert_eq!(rec.torn_tail, None, "the torn bytes were never durable");
        assert_eq!(wal.append(b"2").unwrap(), 2);

        // Torn but already in the page cache when the process (not the machine) died.
        wal.append(b"three").unwrap();
        fs.tear_last_write("sol00001.log", 9);
        drop(wal);
        let (_, rec) = open(&fs, 0, &WalOptions::default()).unwrap();
        assert_eq!(rec.records.len(), 2);
        let torn = rec.torn_tail.unwrap();
        assert_eq!((torn.offset, torn.bytes_dropped), (cut_at + 17, 9));
    }

    #[test]
    fn only_an_empty_torn_segment_resets_the_log() {
        let fs = MemFs::new();
        fs.set_bytes("sol00003.log", b"SOLI".to_vec());
        let (mut wal, rec) = open(&fs, 7, &WalOptions::default()).unwrap();
        assert_eq!(rec.torn_tail.unwrap().offset, 0);
        assert_eq!(wal.append_sync(b"x").unwrap(), 8);
        assert_eq!(segment_files(&fs), ["sol00003.log"]);
    }

    #[test]
    fn foreign_files_are_ignored_but_a_bad_segment_is_rejected() {
        let fs = MemFs::new();
        for name in [
            "solid.ini",
            "solmsg.out",
            "sol1.log",
            "sol000001.log",
            "sol0000a.log",
            "x.log",
        ] {
            fs.set_bytes(name, b"not a log".to_vec());
        }
        write_log(&fs, &[b"a".to_vec(), b"b".to_vec()], &WalOptions::default());
        let (_, rec) = open(&fs, 0, &WalOptions::default()).unwrap();
        assert_eq!(rec.records.len(), 2);
        assert_eq!(fs.bytes("sol1.log").unwrap(), b"not a log");
        assert_eq!(segment_files(&fs), ["sol00001.log"]);

        // A file with a segment's name is ours: a wrong one stops recovery, untouched.
        let foreign = b"[Com]\nListen = tcp 1315\n; a config file under the wrong name\n".to_vec();
        fs.set_bytes("sol00002.log", foreign.clone());
        match open(&fs, 0, &WalOptions::default()) {
            Err(WalError::Corrupt {
                file,
                offset: 0,
                reason,
            }) => {
                assert_eq!(file, "memfs:/sol00002.log");
                assert!(reason.contains("magic"), "{reason}");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        assert_eq!(fs.bytes("sol00002.log").unwrap(), foreign);

        // A damaged header checksum, or a future format version, are rejected too.
        let mut header = encode_segment_header(3);
        header[13] ^= 1;
        fs.set_bytes("sol00002.log", header.to_vec());
        assert!(matches!(
            open(&fs, 0, &WalOptions::default()),
            Err(WalError::Corrupt { offset: 0, .. })
        ));
        let mut header = encode_segment_header(3);
        header[8] = 2;
        let crc = crc32fast::hash(&header[..20]);
        header[20..].copy_from_slice(&crc.to_le_bytes());
        fs.set_bytes("sol00002.log", header.to_vec());
        assert!(matches!(
            open(&fs, 0, &WalOptions::default()),
            Err(WalError::Corrupt { offset: 8, .. })
        ));
        // An overlapping segment.
        fs.set_bytes("sol00002.log", encode_segment_header(2).to_vec());
        assert!(matches!(
            open(&fs, 0, &WalOptions::default()),
            Err(WalError::Corrupt { offset: 12, .. })
        ));
    }

    #[test]
    fn segment_names() {
        assert_eq!(segment_name(1), "sol00001.log");
        assert_eq!(segment_name(123_456), "sol123456.log");
        assert_eq!(parse_segment_name("sol00001.log"), Some(1));
        assert_eq!(parse_segment_name("sol123456.log"), Some(123_456));
        for bad in [
            "sol1.log",
            "sol000001.log",
            "sol00001.log.tmp",
            "SOL00001.log",
            "sol+0001.log",
            "sol00001",
        ] {
            assert_eq!(parse_segment_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn disk_log_recovers_and_cuts_a_torn_tail() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("log");
        let fs: Arc<dyn LogFs> = Arc::new(DiskFs::new(&dir).unwrap());
        let opts = small(300);
        let (mut wal, _) = Wal::open_with(fs.clone(), 0, opts.clone()).unwrap();
        for i in 0..10 {
            wal.append(&payload(i, 50)).unwrap();
        }
        wal.sync().unwrap();
        assert_eq!(wal.durable_seq(), 10);
        drop(wal);
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        // 24-byte header + four 66-byte records = 288; a fifth would pass 300.
        assert_eq!(names.len(), 3);
        let last = dir.join(names.last().unwrap());
        let clean_len = std::fs::metadata(&last).unwrap().len();
        let mut bytes = std::fs::read(&last).unwrap();
        bytes.extend_from_slice(&[0xAB; 7]);
        std::fs::write(&last, &bytes).unwrap();

        let (mut wal, rec) = Wal::open_with(fs.clone(), 4, opts.clone()).unwrap();
        assert_eq!(rec.records.len(), 6);
        assert_eq!(rec.records[0], (5, payload(4, 50)));
        let torn = rec.torn_tail.unwrap();
        assert_eq!(torn.file, last.display().to_string());
        assert_eq!((torn.offset, torn.bytes_dropped), (clean_len, 7));
        assert_eq!(std::fs::metadata(&last).unwrap().len(), clean_len);
        assert_eq!(wal.append_sync(b"eleven").unwrap(), 11);
        wal.release_through(8).unwrap();
        drop(wal);
        let (_, rec) = Wal::open_with(fs, 8, opts).unwrap();
        assert_eq!(
            rec.records.iter().map(|r| r.0).collect::<Vec<_>>(),
            [9, 10, 11]
        );
    }
}
