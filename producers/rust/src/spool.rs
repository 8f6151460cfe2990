//! Crash-safe local disk spool for events the broker can not take right now.
//!
//! The spool stores opaque byte payloads in order, each under a [`SeqNo`], in length + CRC32
//! framed segment files under one directory. It knows nothing about Kafka or the event model:
//! the SDK puts one serialized record in each payload, drains the spool with
//! [`Spool::read_after`], and calls [`Spool::ack`] with the highest sequence number of the
//! contiguous prefix the broker confirmed. Fully acknowledged segments are deleted.
//!
//! # Guarantees
//! - **Appended means stored.** Every record is handed to the kernel in one `write` before
//!   [`Spool::append`] returns, so a killed process (`kill -9`, panic, abort) loses nothing it
//!   was told was appended. Surviving an operating system crash or power loss depends on
//!   [`FsyncPolicy`]: `Always` loses nothing, `EveryN`/`Interval` lose at most the records
//!   appended since the last sync, `Never` whatever the kernel had not written back.
//! - **At-least-once replay.** The ack cursor lives in a small `ack` file replaced atomically
//!   (temp file + rename, fsynced with the directory under `FsyncPolicy::Always`). After a crash
//!   the records acknowledged since the last persisted cursor are delivered again; consumers
//!   dedupe by `event_id`.
//! - **Bounded.** The total size of the segment files never exceeds `max_bytes`; an append that
//!   would exceed it fails with [`SpoolError::Full`], is counted in `dropped_full_total`, and
//!   harms nothing already stored. Space comes back when a whole segment is acknowledged (or
//!   everything is), so keep `max_bytes` several times `segment_bytes`.
//! - **Corruption is counted, never a crash.** On open every segment is scanned. A record whose
//!   header is cut short, whose payload is short, or whose CRC does not match starts an invalid
//!   stretch. If a valid record (right magic, CRC and a larger sequence number) follows later in
//!   the same segment, the stretch is skipped and the sequence numbers it swallowed are added to
//!   `corrupt_records_total`; otherwise it is a torn tail: the file is truncated there and
//!   `torn_tails_total` is bumped. Appending continues after the last valid record. Corruption
//!   that appears while the spool is open (the disk changed under us) is found on read and
//!   handled the same way, except that a tail is skipped and the segment sealed rather than
//!   truncated.
//!
//! # Concurrency
//! Every method takes `&self`; one internal mutex serializes operations, so a `Spool` can be
//! shared through an `Arc` between the thread that appends and the one that drains. Operations
//! block on disk I/O (and fsync): call them from a dedicated thread or `spawn_blocking`.
//! [`Spool::stats`], [`Spool::len`] and [`Spool::disk_bytes`] read atomics and never wait for
//! the lock. A directory can be opened by one `Spool` at a time (an advisory lock on `LOCK`).

mod frame;

use std::collections::VecDeque;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use frame::{HEADER_LEN, Skip};

/// Bytes of framing every record adds on disk in front of its payload.
pub const RECORD_OVERHEAD_BYTES: u64 = HEADER_LEN as u64;

const LOCK_FILE: &str = "LOCK";
const ACK_FILE: &str = "ack";
const ACK_TMP_FILE: &str = "ack.tmp";
const SEGMENT_SUFFIX: &str = ".seg";
const SEGMENT_NAME_DIGITS: usize = 20;
const ACK_MAGIC: &[u8; 4] = b"VACK";
const ACK_VERSION: u8 = 1;
const ACK_FILE_LEN: usize = 20;
const READ_BUFFER_BYTES: usize = 64 * 1024;
/// Smallest accepted `segment_bytes`, so that every segment holds at least a few records.
const MIN_SEGMENT_BYTES: u64 = 64;
/// Largest accepted `segment_bytes`: recovery reads one whole segment into memory.
const MAX_SEGMENT_BYTES: u64 = 1 << 30;

/// Position of a record in the spool; strictly increasing in append order, starting at 1.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeqNo(u64);

impl SeqNo {
    /// The position before the first record: `read_after(SeqNo::ZERO, ..)` reads from the oldest.
    pub const ZERO: SeqNo = SeqNo(0);

    /// Wraps a raw sequence number.
    pub const fn new(raw: u64) -> Self {
        SeqNo(raw)
    }

    /// Returns the raw sequence number.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for SeqNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<SeqNo> for u64 {
    fn from(seq: SeqNo) -> u64 {
        seq.0
    }
}

/// When appended records are forced to stable storage with `fdatasync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// After every append (and batch): nothing appended is lost on power failure. Slowest.
    Always,
    /// After every N appended records; a power failure loses at most N - 1 records.
    EveryN(u32),
    /// On the first append at least this long after the previous sync; call [`Spool::sync`]
    /// from a timer if appends may pause, so the last records do not wait for the next append.
    Interval(Duration),
    /// Never: the kernel writes back when it likes. Survives process crashes, not power loss.
    Never,
}

/// Settings of a spool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolConfig {
    /// Directory holding the segment files, created if missing; one spool per directory.
    pub dir: PathBuf,
    /// Upper bound of the total size of all segment files, framing included.
    pub max_bytes: u64,
    /// Size at which the current segment is closed and a new one started.
    pub segment_bytes: u64,
    /// Largest accepted payload; larger ones fail with [`SpoolError::RecordTooLarge`].
    pub max_record_bytes: u32,
    /// When appended records are forced to disk.
    pub fsync: FsyncPolicy,
}

impl SpoolConfig {
    /// Default `max_bytes`: 256 MiB.
    pub const DEFAULT_MAX_BYTES: u64 = 256 * 1024 * 1024;
    /// Default `segment_bytes`: 16 MiB.
    pub const DEFAULT_SEGMENT_BYTES: u64 = 16 * 1024 * 1024;
    /// Default `max_record_bytes`: 1 MiB, Kafka's default `message.max.bytes`.
    pub const DEFAULT_MAX_RECORD_BYTES: u32 = 1024 * 1024;
    /// Default fsync policy: every 1000 records.
    pub const DEFAULT_FSYNC: FsyncPolicy = FsyncPolicy::EveryN(1000);

    /// Returns the default settings for a spool in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        SpoolConfig {
            dir: dir.into(),
            max_bytes: Self::DEFAULT_MAX_BYTES,
            segment_bytes: Self::DEFAULT_SEGMENT_BYTES,
            max_record_bytes: Self::DEFAULT_MAX_RECORD_BYTES,
            fsync: Self::DEFAULT_FSYNC,
        }
    }

    /// Checks the settings and names the first offending key.
    pub fn validate(&self) -> Result<(), SpoolError> {
        let invalid =
            |key: &'static str, reason: String| Err(SpoolError::InvalidConfig { key, reason });
        if self.dir.as_os_str().is_empty() {
            return invalid("dir", "must not be empty".into());
        }
        if !(MIN_SEGMENT_BYTES..=MAX_SEGMENT_BYTES).contains(&self.segment_bytes) {
            return invalid(
                "segment_bytes",
                format!(
                    "{} is outside {MIN_SEGMENT_BYTES}..={MAX_SEGMENT_BYTES}",
                    self.segment_bytes
                ),
            );
        }
        if self.max_record_bytes == 0 {
            return invalid("max_record_bytes", "must be at least 1".into());
        }
        if u64::from(self.max_record_bytes) + RECORD_OVERHEAD_BYTES > self.segment_bytes {
            return invalid(
                "max_record_bytes",
                format!(
                    "{} plus {RECORD_OVERHEAD_BYTES} bytes of framing exceeds segment_bytes {}",
                    self.max_record_bytes, self.segment_bytes
                ),
            );
        }
        if self.max_bytes < self.segment_bytes {
            return invalid(
                "max_bytes",
                format!(
                    "{} is smaller than segment_bytes {}",
                    self.max_bytes, self.segment_bytes
                ),
            );
        }
        match self.fsync {
            FsyncPolicy::EveryN(0) => invalid("fsync", "every_n must be at least 1".into()),
            FsyncPolicy::Interval(d) if d.is_zero() => {
                invalid("fsync", "interval must be positive".into())
            }
            _ => Ok(()),
        }
    }
}

/// Errors of the spool.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// A filesystem operation failed (transient or an operator problem: disk, permissions).
    #[error("spool i/o failed on {}", path.display())]
    Io {
        /// File or directory the operation was on.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The append would push the spool past its bound; the caller counts the record as dropped.
    #[error("spool full: the {max_bytes} byte bound would be exceeded")]
    Full {
        /// The configured bound.
        max_bytes: u64,
    },
    /// The payload is larger than `max_record_bytes`; nothing was written.
    #[error("record of {len} bytes exceeds max_record_bytes {max}")]
    RecordTooLarge {
        /// Payload length.
        len: usize,
        /// The configured maximum.
        max: u32,
    },
    /// A setting is invalid.
    #[error("invalid spool config {key}: {reason}")]
    InvalidConfig {
        /// The offending key.
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Another spool (in this or another process) has the directory open.
    #[error("spool directory {} is locked by another spool", path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// `ack` named a sequence number that was never appended.
    #[error("cannot ack {seq}: the last appended record is {last}")]
    AckOutOfRange {
        /// The requested sequence number.
        seq: SeqNo,
        /// The last appended sequence number.
        last: SeqNo,
    },
}

/// One stored record as returned by [`Spool::read_after`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolRecord {
    /// Its sequence number, to pass to [`Spool::ack`] once delivered.
    pub seq: SeqNo,
    /// The payload exactly as appended.
    pub payload: Vec<u8>,
}

/// Gauges and counters of a spool, for metrics. Counters start at zero when the spool is opened
/// (recovery findings included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpoolStats {
    /// Records appended and not yet acknowledged (approximate after corruption was skipped).
    pub pending_records: u64,
    /// Total size of the segment files; the bound applies to this.
    pub disk_bytes: u64,
    /// The configured bound, to show how full the spool is.
    pub max_bytes: u64,
    /// Number of segment files.
    pub segments: u64,
    /// Last sequence number handed out (0 if none ever).
    pub last_seq: u64,
    /// Ack cursor: every record up to here is acknowledged.
    pub acked_seq: u64,
    /// Records appended since open.
    pub appended_total: u64,
    /// Sequence numbers acknowledged since open.
    pub acked_total: u64,
    /// Records refused because the spool was full.
    pub dropped_full_total: u64,
    /// Torn or corrupt segment tails cut off (on open) or skipped (while open).
    pub torn_tails_total: u64,
    /// Bytes in those tails.
    pub torn_bytes_total: u64,
    /// Unacknowledged records lost inside corrupt stretches (counted by missing sequence numbers).
    pub corrupt_records_total: u64,
    /// Bytes skipped inside corrupt stretches.
    pub corrupt_bytes_total: u64,
}

#[derive(Default)]
struct Counters {
    pending_records: AtomicU64,
    disk_bytes: AtomicU64,
    segments: AtomicU64,
    last_seq: AtomicU64,
    acked_seq: AtomicU64,
    appended: AtomicU64,
    acked: AtomicU64,
    dropped_full: AtomicU64,
    torn_tails: AtomicU64,
    torn_bytes: AtomicU64,
    corrupt_records: AtomicU64,
    corrupt_bytes: AtomicU64,
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

/// One segment file and what is known about its contents.
#[derive(Debug)]
struct Segment {
    /// Sequence number in the file name: the next sequence number when it was created.
    base: u64,
    path: PathBuf,
    /// Size of the file.
    len: u64,
    /// Reads stop here; smaller than `len` only after corruption was found while open.
    valid_end: u64,
    records: u64,
    first_seq: Option<u64>,
    last_seq: Option<u64>,
    /// Invalid stretches followed by valid records, jumped over when reading.
    skips: Vec<Skip>,
    /// No more appends go here (a failed write could not be rolled back, or a corrupt tail).
    sealed: bool,
}

/// Where the record after the last one returned by `read_after` starts.
#[derive(Debug, Clone, Copy)]
struct ReadHint {
    next_seq: u64,
    base: u64,
    offset: u64,
}

struct Inner {
    segments: VecDeque<Segment>,
    /// Append handle of the last segment, when it takes appends.
    writer: Option<File>,
    next_seq: u64,
    acked: u64,
    disk_bytes: u64,
    hint: Option<ReadHint>,
    /// Records written since the last fdatasync.
    unsynced: u64,
    last_sync: Instant,
    scratch: Vec<u8>,
}

/// A crash-safe, bounded, ordered disk queue of opaque records; see the module docs.
pub struct Spool {
    config: SpoolConfig,
    inner: Mutex<Inner>,
    counters: Counters,
    /// Holds the advisory directory lock for the spool's lifetime.
    _lock: File,
}

impl fmt::Debug for Spool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Spool")
            .field("config", &self.config)
            .field("stats", &self.stats())
            .finish()
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!(
        "{base:0width$}{SEGMENT_SUFFIX}",
        width = SEGMENT_NAME_DIGITS
    ))
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != SEGMENT_NAME_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

fn encode_ack(seq: u64) -> [u8; ACK_FILE_LEN] {
    let mut out = [0u8; ACK_FILE_LEN];
    out[..4].copy_from_slice(ACK_MAGIC);
    out[4] = ACK_VERSION;
    out[8..16].copy_from_slice(&seq.to_le_bytes());
    let crc = crc32fast::hash(&out[..16]);
    out[16..].copy_from_slice(&crc.to_le_bytes());
    out
}

fn decode_ack(bytes: &[u8]) -> Option<u64> {
    let bytes: &[u8; ACK_FILE_LEN] = bytes.try_into().ok()?;
    if &bytes[..4] != ACK_MAGIC || bytes[4] != ACK_VERSION {
        return None;
    }
    let crc = u32::from_le_bytes([bytes[16], bytes[17], bytes[18], bytes[19]]);
    if crc32fast::hash(&bytes[..16]) != crc {
        return None;
    }
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&bytes[8..16]);
    Some(u64::from_le_bytes(seq))
}

/// Reads the persisted ack cursor; a missing or damaged file means "unknown".
fn read_ack(path: &Path) -> Result<Option<u64>, SpoolError> {
    match fs::read(path) {
        Ok(bytes) => {
            let seq = decode_ack(&bytes);
            if seq.is_none() {
                tracing::warn!(path = %path.display(), "spool ack file is damaged, replaying from the oldest segment");
            }
            Ok(seq)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// Lists segment files sorted by base sequence number.
fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, SpoolError> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        if let Some(base) = entry.file_name().to_str().and_then(parse_segment_name) {
            found.push((base, entry.path()));
        }
    }
    found.sort_unstable_by_key(|(base, _)| *base);
    Ok(found)
}

/// Outcome of reading one segment for `read_after`.
struct SegmentRead {
    /// Offset after the last record examined.
    offset: u64,
    /// Sequence number of the last valid record seen.
    floor: u64,
}

/// Batch limits and output of one `read_after` call.
struct Batch {
    start: u64,
    max_records: usize,
    max_bytes: usize,
    bytes: usize,
    out: Vec<SpoolRecord>,
}

impl Batch {
    fn is_full(&self) -> bool {
        self.out.len() >= self.max_records || (self.bytes >= self.max_bytes && !self.out.is_empty())
    }
}

impl Spool {
    /// Opens (or creates) the spool in `config.dir`, recovering its state from the segment files.
    ///
    /// Torn tails are truncated and corrupt stretches skipped and counted (see the module docs);
    /// fully acknowledged segments left over from a crash are deleted.
    pub fn open(config: SpoolConfig) -> Result<Self, SpoolError> {
        config.validate()?;
        let dir = config.dir.clone();
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(SpoolError::Locked { path: lock_path });
            }
            Err(fs::TryLockError::Error(source)) => {
                return Err(SpoolError::Io {
                    path: lock_path,
                    source,
                });
            }
        }
        let durable = config.fsync != FsyncPolicy::Never;
        let counters = Counters::default();
        let persisted_ack = read_ack(&dir.join(ACK_FILE))?;
        let ack_floor = persisted_ack.unwrap_or(0);
        let mut dir_changed = false;

        let mut segments = VecDeque::new();
        let mut prev: Option<u64> = None;
        for (base, path) in list_segments(&dir)? {
            let bytes = fs::read(&path).map_err(io_err(&path))?;
            let scan = frame::scan(&bytes, base, prev, ack_floor);
            bump(&counters.corrupt_records, scan.lost_records);
            bump(&counters.corrupt_bytes, scan.corrupt_bytes);
            if !scan.skips.is_empty() {
                tracing::warn!(
                    segment = %path.display(),
                    stretches = scan.skips.len(),
                    lost_records = scan.lost_records,
                    "spool segment has corrupt records, skipping them"
                );
            }
            let valid_end = scan.valid_end as u64;
            let file_len = bytes.len() as u64;
            if valid_end < file_len {
                tracing::warn!(
                    segment = %path.display(),
                    offset = valid_end,
                    bytes = file_len - valid_end,
                    "spool segment has a torn tail, truncating it"
                );
                bump(&counters.torn_tails, 1);
                bump(&counters.torn_bytes, file_len - valid_end);
                let file = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io_err(&path))?;
                file.set_len(valid_end).map_err(io_err(&path))?;
                if durable {
                    file.sync_all().map_err(io_err(&path))?;
                }
            }
            if scan.records == 0 {
                fs::remove_file(&path).map_err(io_err(&path))?;
                dir_changed = true;
                continue;
            }
            prev = scan.last_seq.or(prev);
            segments.push_back(Segment {
                base,
                path,
                len: valid_end,
                valid_end,
                records: scan.records,
                first_seq: scan.first_seq,
                last_seq: scan.last_seq,
                skips: scan.skips,
                sealed: false,
            });
        }

        // Segments are deleted only after the ack that covers them is written, so the oldest
        // remaining record bounds the cursor from below even if the ack file is stale or lost.
        let oldest = segments.front().and_then(|s| s.first_seq).unwrap_or(1);
        let acked = ack_floor.max(oldest - 1);
        let next_seq = prev.unwrap_or(0).max(acked).saturating_add(1);
        let mut disk_bytes = segments.iter().map(|s| s.len).sum();
        while segments
            .front()
            .is_some_and(|s| s.last_seq.is_some_and(|l| l <= acked))
        {
            if let Some(seg) = segments.pop_front() {
                fs::remove_file(&seg.path).map_err(io_err(&seg.path))?;
                disk_bytes -= seg.len;
                dir_changed = true;
            }
        }
        let writer = match segments.back() {
            Some(seg) => Some(
                OpenOptions::new()
                    .append(true)
                    .open(&seg.path)
                    .map_err(io_err(&seg.path))?,
            ),
            None => None,
        };
        match fs::remove_file(dir.join(ACK_TMP_FILE)) {
            Ok(()) => dir_changed = true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&dir.join(ACK_TMP_FILE))(e)),
        }
        if dir_changed && durable {
            sync_dir(&dir)?;
        }

        let inner = Inner {
            segments,
            writer,
            next_seq,
            acked,
            disk_bytes,
            hint: None,
            unsynced: 0,
            last_sync: Instant::now(),
            scratch: Vec::new(),
        };
        let spool = Spool {
            config,
            inner: Mutex::new(inner),
            counters,
            _lock: lock,
        };
        {
            let inner = spool.lock();
            spool.refresh_gauges(&inner);
        }
        let stats = spool.stats();
        tracing::info!(
            dir = %dir.display(),
            pending_records = stats.pending_records,
            disk_bytes = stats.disk_bytes,
            acked_seq = stats.acked_seq,
            torn_tails = stats.torn_tails_total,
            corrupt_records = stats.corrupt_records_total,
            "spool opened"
        );
        Ok(spool)
    }

    /// Returns the settings the spool was opened with.
    pub fn config(&self) -> &SpoolConfig {
        &self.config
    }

    /// Appends one record and returns its sequence number.
    ///
    /// On success the record survives a process crash, and an OS crash as far as the fsync
    /// policy says. Fails with [`SpoolError::Full`] (counted) or [`SpoolError::RecordTooLarge`]
    /// without writing anything. On [`SpoolError::Io`] from the fsync the record may still be
    /// stored and delivered later.
    pub fn append(&self, payload: &[u8]) -> Result<SeqNo, SpoolError> {
        let mut inner = self.lock();
        let result = self.append_one(&mut inner, payload);
        let result = match result {
            Ok(seq) => self.sync_per_policy(&mut inner).map(|()| SeqNo(seq)),
            Err(e) => Err(e),
        };
        self.refresh_gauges(&inner);
        result
    }

    /// Appends records in order with one fsync at the end, returning their sequence numbers.
    ///
    /// All or nothing for `Full` and `RecordTooLarge` (checked before writing; a `Full` counts
    /// every record as dropped). On [`SpoolError::Io`] a prefix of the batch may be stored.
    pub fn append_batch<P: AsRef<[u8]>>(&self, payloads: &[P]) -> Result<Vec<SeqNo>, SpoolError> {
        let mut inner = self.lock();
        let max = self.config.max_record_bytes;
        let mut total = 0u64;
        for payload in payloads {
            let len = payload.as_ref().len();
            if len > max as usize {
                return Err(SpoolError::RecordTooLarge { len, max });
            }
            total += len as u64 + RECORD_OVERHEAD_BYTES;
        }
        if inner.disk_bytes + total > self.config.max_bytes {
            bump(&self.counters.dropped_full, payloads.len() as u64);
            return Err(SpoolError::Full {
                max_bytes: self.config.max_bytes,
            });
        }
        let mut seqs = Vec::with_capacity(payloads.len());
        let mut result = Ok(());
        for payload in payloads {
            match self.append_one(&mut inner, payload.as_ref()) {
                Ok(seq) => seqs.push(SeqNo(seq)),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        let result = result.and_then(|()| self.sync_per_policy(&mut inner));
        self.refresh_gauges(&inner);
        result.map(|()| seqs)
    }

    /// Returns up to `max_records` unacknowledged records with sequence numbers above `after`,
    /// in order, without removing them.
    ///
    /// Stops once the payloads reach `max_bytes`, but always returns at least one record when
    /// one is available. Pass the last sequence number already in flight to pipeline batches,
    /// or [`SeqNo::ZERO`] (same as [`Spool::peek_batch`]) to start again from the ack cursor.
    pub fn read_after(
        &self,
        after: SeqNo,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<SpoolRecord>, SpoolError> {
        let mut inner = self.lock();
        let start = after.0.max(inner.acked).saturating_add(1);
        let mut batch = Batch {
            start,
            max_records,
            max_bytes,
            bytes: 0,
            out: Vec::new(),
        };
        if max_records == 0 || start >= inner.next_seq {
            return Ok(batch.out);
        }
        let hinted = inner.hint.filter(|h| h.next_seq == start).and_then(|h| {
            let idx = inner.segments.iter().position(|s| s.base == h.base)?;
            (h.offset <= inner.segments[idx].valid_end).then_some((idx, h.offset, start - 1))
        });
        let located = hinted.or_else(|| {
            let idx = inner
                .segments
                .iter()
                .position(|s| s.last_seq.is_some_and(|l| l >= start))?;
            Some((idx, 0, Self::floor_before(&inner.segments, idx)))
        });
        let Some((mut idx, mut offset, mut floor)) = located else {
            return Ok(batch.out);
        };
        let mut hint = None;
        while idx < inner.segments.len() {
            let last = idx + 1 == inner.segments.len();
            let seg = &mut inner.segments[idx];
            let read = self.read_segment(seg, offset, floor, &mut batch)?;
            if seg.sealed && last {
                inner.writer = None;
            }
            if batch.is_full() {
                hint = batch.out.last().map(|r| ReadHint {
                    next_seq: r.seq.0.saturating_add(1),
                    base: inner.segments[idx].base,
                    offset: read.offset,
                });
                break;
            }
            floor = read.floor;
            idx += 1;
            offset = 0;
            if let Some(next) = inner.segments.get(idx) {
                floor = floor.max(next.base.saturating_sub(1));
            }
        }
        if hint.is_none() {
            // The batch ended at the end of the spool: the next record will be appended at the
            // end of the last segment, or start a new one.
            hint = batch
                .out
                .last()
                .zip(inner.segments.back())
                .map(|(r, seg)| ReadHint {
                    next_seq: r.seq.0.saturating_add(1),
                    base: seg.base,
                    offset: seg.valid_end,
                });
        }
        inner.hint = hint;
        self.refresh_gauges(&inner);
        Ok(batch.out)
    }

    /// Returns up to `max_records` records after the ack cursor (see [`Spool::read_after`]).
    pub fn peek_batch(
        &self,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<SpoolRecord>, SpoolError> {
        self.read_after(SeqNo::ZERO, max_records, max_bytes)
    }

    /// Marks every record up to and including `up_to` as delivered.
    ///
    /// Persists the cursor, then deletes segments that hold only acknowledged records. Acks at
    /// or below the cursor are no-ops; beyond the last appended record they fail with
    /// [`SpoolError::AckOutOfRange`]. Ack per batch, not per record: each call rewrites the ack
    /// file (and fsyncs it under `FsyncPolicy::Always`).
    pub fn ack(&self, up_to: SeqNo) -> Result<(), SpoolError> {
        let mut inner = self.lock();
        let last = inner.next_seq - 1;
        if up_to.0 > last {
            return Err(SpoolError::AckOutOfRange {
                seq: up_to,
                last: SeqNo(last),
            });
        }
        if up_to.0 <= inner.acked {
            return Ok(());
        }
        self.write_ack_file(up_to.0)?;
        bump(&self.counters.acked, up_to.0 - inner.acked);
        inner.acked = up_to.0;
        let result = self.delete_acked_segments(&mut inner);
        self.refresh_gauges(&inner);
        result
    }

    /// Forces every appended record to stable storage now, whatever the fsync policy.
    pub fn sync(&self) -> Result<(), SpoolError> {
        let mut inner = self.lock();
        self.sync_writer(&mut inner)
    }

    /// Returns gauges and counters without waiting for running operations.
    pub fn stats(&self) -> SpoolStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SpoolStats {
            pending_records: get(&c.pending_records),
            disk_bytes: get(&c.disk_bytes),
            max_bytes: self.config.max_bytes,
            segments: get(&c.segments),
            last_seq: get(&c.last_seq),
            acked_seq: get(&c.acked_seq),
            appended_total: get(&c.appended),
            acked_total: get(&c.acked),
            dropped_full_total: get(&c.dropped_full),
            torn_tails_total: get(&c.torn_tails),
            torn_bytes_total: get(&c.torn_bytes),
            corrupt_records_total: get(&c.corrupt_records),
            corrupt_bytes_total: get(&c.corrupt_bytes),
        }
    }

    /// Returns the number of unacknowledged records (a cheap gauge).
    pub fn len(&self) -> u64 {
        self.counters.pending_records.load(Ordering::Relaxed)
    }

    /// Returns true when every appended record is acknowledged.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Returns the total size of the segment files (a cheap gauge; the bound applies to it).
    pub fn disk_bytes(&self) -> u64 {
        self.counters.disk_bytes.load(Ordering::Relaxed)
    }

    /// Returns the ack cursor.
    pub fn acked_seq(&self) -> SeqNo {
        SeqNo(self.counters.acked_seq.load(Ordering::Relaxed))
    }

    /// Returns the last sequence number handed out ([`SeqNo::ZERO`] if none ever).
    pub fn last_seq(&self) -> SeqNo {
        SeqNo(self.counters.last_seq.load(Ordering::Relaxed))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Operations never panic while holding the lock, and the on-disk state is the truth.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn append_one(&self, inner: &mut Inner, payload: &[u8]) -> Result<u64, SpoolError> {
        let max = self.config.max_record_bytes;
        if payload.len() > max as usize {
            return Err(SpoolError::RecordTooLarge {
                len: payload.len(),
                max,
            });
        }
        let frame_len = payload.len() as u64 + RECORD_OVERHEAD_BYTES;
        if inner.disk_bytes + frame_len > self.config.max_bytes {
            bump(&self.counters.dropped_full, 1);
            return Err(SpoolError::Full {
                max_bytes: self.config.max_bytes,
            });
        }
        self.ensure_room(inner, frame_len)?;
        let seq = inner.next_seq;
        inner.scratch.clear();
        frame::encode(&mut inner.scratch, seq, payload);
        let Inner {
            segments,
            writer,
            scratch,
            ..
        } = inner;
        let (Some(seg), Some(file)) = (segments.back_mut(), writer.as_mut()) else {
            return Err(SpoolError::Io {
                path: self.config.dir.clone(),
                source: io::Error::other("no writable segment after rotation"),
            });
        };
        // One write per record: once it returns, a process crash can not lose the record.
        if let Err(source) = file.write_all(scratch) {
            // Cut a partial record off so the segment stays appendable; if even that fails,
            // stop appending to it and let recovery treat the rest as a torn tail.
            if file.set_len(seg.len).is_err() {
                seg.sealed = true;
                *writer = None;
            }
            return Err(SpoolError::Io {
                path: seg.path.clone(),
                source,
            });
        }
        seg.len += frame_len;
        seg.valid_end = seg.len;
        seg.records += 1;
        seg.first_seq.get_or_insert(seq);
        seg.last_seq = Some(seq);
        inner.disk_bytes += frame_len;
        inner.next_seq = inner.next_seq.saturating_add(1);
        inner.unsynced += 1;
        bump(&self.counters.appended, 1);
        Ok(seq)
    }

    /// Makes sure the last segment is open for appends and has room for `frame_len` bytes.
    fn ensure_room(&self, inner: &mut Inner, frame_len: u64) -> Result<(), SpoolError> {
        let fits = match (inner.segments.back(), &inner.writer) {
            (Some(seg), Some(_)) if !seg.sealed => {
                seg.len == 0 || seg.len + frame_len <= self.config.segment_bytes
            }
            _ => false,
        };
        if fits {
            return Ok(());
        }
        if self.config.fsync != FsyncPolicy::Never {
            self.sync_writer(inner)?;
        }
        inner.writer = None;
        // A last segment without records would collide with the new file's name.
        if inner.segments.back().is_some_and(|s| s.records == 0)
            && let Some(seg) = inner.segments.pop_back()
        {
            fs::remove_file(&seg.path).map_err(io_err(&seg.path))?;
            inner.disk_bytes -= seg.len;
        }
        let base = inner.next_seq;
        let path = segment_path(&self.config.dir, base);
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        if self.config.fsync != FsyncPolicy::Never {
            sync_dir(&self.config.dir)?;
        }
        inner.segments.push_back(Segment {
            base,
            path,
            len: 0,
            valid_end: 0,
            records: 0,
            first_seq: None,
            last_seq: None,
            skips: Vec::new(),
            sealed: false,
        });
        inner.writer = Some(file);
        Ok(())
    }

    fn sync_per_policy(&self, inner: &mut Inner) -> Result<(), SpoolError> {
        let due = match self.config.fsync {
            FsyncPolicy::Always => true,
            FsyncPolicy::EveryN(n) => inner.unsynced >= u64::from(n),
            FsyncPolicy::Interval(every) => inner.last_sync.elapsed() >= every,
            FsyncPolicy::Never => false,
        };
        if due { self.sync_writer(inner) } else { Ok(()) }
    }

    fn sync_writer(&self, inner: &mut Inner) -> Result<(), SpoolError> {
        if inner.unsynced > 0
            && let (Some(file), Some(seg)) = (&inner.writer, inner.segments.back())
        {
            file.sync_data().map_err(io_err(&seg.path))?;
        }
        inner.unsynced = 0;
        inner.last_sync = Instant::now();
        Ok(())
    }

    fn write_ack_file(&self, seq: u64) -> Result<(), SpoolError> {
        let durable = self.config.fsync == FsyncPolicy::Always;
        let tmp = self.config.dir.join(ACK_TMP_FILE);
        let path = self.config.dir.join(ACK_FILE);
        let mut file = File::create(&tmp).map_err(io_err(&tmp))?;
        file.write_all(&encode_ack(seq)).map_err(io_err(&tmp))?;
        if durable {
            file.sync_data().map_err(io_err(&tmp))?;
        }
        drop(file);
        fs::rename(&tmp, &path).map_err(io_err(&path))?;
        if durable {
            sync_dir(&self.config.dir)?;
        }
        Ok(())
    }

    fn delete_acked_segments(&self, inner: &mut Inner) -> Result<(), SpoolError> {
        let mut removed = false;
        loop {
            let count = inner.segments.len();
            let Some(front) = inner.segments.front() else {
                break;
            };
            let done = match front.last_seq {
                Some(last) => last <= inner.acked,
                // Records lost to corruption, or a sealed empty file: nothing left to deliver.
                None => count > 1 || front.sealed,
            };
            if !done {
                break;
            }
            if count == 1 {
                inner.writer = None;
                inner.unsynced = 0;
            }
            if let Some(seg) = inner.segments.pop_front() {
                match fs::remove_file(&seg.path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err(&seg.path)(e)),
                }
                inner.disk_bytes -= seg.len;
                removed = true;
            }
        }
        if removed && self.config.fsync != FsyncPolicy::Never {
            sync_dir(&self.config.dir)?;
        }
        Ok(())
    }

    /// The sequence number below every record of segment `idx`, as recovery saw it.
    fn floor_before(segments: &VecDeque<Segment>, idx: usize) -> u64 {
        let prev = idx
            .checked_sub(1)
            .and_then(|i| segments.get(i))
            .and_then(|s| s.last_seq)
            .unwrap_or(0);
        let base = segments.get(idx).map_or(0, |s| s.base.saturating_sub(1));
        prev.max(base)
    }

    /// Reads records of one segment from `offset` into `batch`, handling corruption found on the way.
    fn read_segment(
        &self,
        seg: &mut Segment,
        mut offset: u64,
        mut floor: u64,
        batch: &mut Batch,
    ) -> Result<SegmentRead, SpoolError> {
        if offset >= seg.valid_end && seg.skips.iter().all(|s| s.start != offset) {
            return Ok(SegmentRead { offset, floor });
        }
        let file = File::open(&seg.path).map_err(io_err(&seg.path))?;
        let mut reader = BufReader::with_capacity(READ_BUFFER_BYTES, file);
        reader
            .seek(SeekFrom::Start(offset))
            .map_err(io_err(&seg.path))?;
        loop {
            if batch.is_full() {
                return Ok(SegmentRead { offset, floor });
            }
            if let Some(skip) = seg.skips.iter().find(|s| s.start == offset) {
                offset = skip.resume;
                reader
                    .seek(SeekFrom::Start(offset))
                    .map_err(io_err(&seg.path))?;
                continue;
            }
            if offset >= seg.valid_end {
                return Ok(SegmentRead { offset, floor });
            }
            match read_frame(&mut reader, offset, seg.valid_end, floor) {
                Ok((seq, payload)) => {
                    offset += RECORD_OVERHEAD_BYTES + payload.len() as u64;
                    floor = seq;
                    if seq >= batch.start {
                        batch.bytes += payload.len();
                        batch.out.push(SpoolRecord {
                            seq: SeqNo(seq),
                            payload,
                        });
                    }
                }
                Err(ReadFrameError::Io(source)) => {
                    return Err(SpoolError::Io {
                        path: seg.path.clone(),
                        source,
                    });
                }
                Err(ReadFrameError::Invalid) => {
                    match self.recover_while_open(seg, offset, floor)? {
                        Some(resume) => {
                            offset = resume;
                            reader
                                .seek(SeekFrom::Start(offset))
                                .map_err(io_err(&seg.path))?;
                        }
                        None => return Ok(SegmentRead { offset, floor }),
                    }
                }
            }
        }
    }

    /// Handles an invalid record found at `offset` while the spool is open: skips to the next
    /// valid record of the segment (returning its offset), or cuts the segment off there.
    fn recover_while_open(
        &self,
        seg: &mut Segment,
        offset: u64,
        floor: u64,
    ) -> Result<Option<u64>, SpoolError> {
        let bytes = fs::read(&seg.path).map_err(io_err(&seg.path))?;
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        let end = usize::try_from(seg.valid_end)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        let region = bytes.get(start..end).unwrap_or_default();
        let acked = self.counters.acked_seq.load(Ordering::Relaxed);
        if let Some(rel) = frame::resync(region, 1, floor) {
            let resume = offset + rel as u64;
            let next_seq = frame::decode_at(region, rel).map_or(floor.saturating_add(1), |f| f.seq);
            let lost = frame::missing_between(Some(floor), next_seq, acked);
            tracing::error!(segment = %seg.path.display(), offset, lost_records = lost, "spool record corrupted on disk, skipping it");
            bump(&self.counters.corrupt_records, lost);
            bump(&self.counters.corrupt_bytes, rel as u64);
            seg.skips.push(Skip {
                start: offset,
                resume,
            });
            return Ok(Some(resume));
        }
        let lost = seg
            .last_seq
            .map_or(0, |last| last.saturating_sub(floor.max(acked)));
        tracing::error!(segment = %seg.path.display(), offset, lost_records = lost, "spool segment tail corrupted on disk, skipping it");
        bump(&self.counters.torn_tails, 1);
        bump(&self.counters.torn_bytes, seg.valid_end - offset);
        bump(&self.counters.corrupt_records, lost);
        seg.valid_end = offset;
        seg.sealed = true;
        if seg.first_seq.is_some_and(|first| first > floor) {
            seg.first_seq = None;
            seg.last_seq = None;
            seg.records = 0;
        } else if seg.last_seq.is_some_and(|last| last > floor) {
            seg.records = seg.records.saturating_sub(lost);
            seg.last_seq = Some(floor);
        }
        Ok(None)
    }

    fn refresh_gauges(&self, inner: &Inner) {
        let acked = inner.acked;
        let pending: u64 = inner
            .segments
            .iter()
            .map(|s| match (s.first_seq, s.last_seq) {
                (Some(first), _) if first > acked => s.records,
                (_, Some(last)) if last > acked => (last - acked).min(s.records),
                _ => 0,
            })
            .sum();
        let c = &self.counters;
        c.pending_records.store(pending, Ordering::Relaxed);
        c.disk_bytes.store(inner.disk_bytes, Ordering::Relaxed);
        c.segments
            .store(inner.segments.len() as u64, Ordering::Relaxed);
        c.last_seq.store(inner.next_seq - 1, Ordering::Relaxed);
        c.acked_seq.store(acked, Ordering::Relaxed);
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        if self.config.fsync == FsyncPolicy::Never {
            return;
        }
        let inner = self.inner.get_mut().unwrap_or_else(PoisonError::into_inner);
        if inner.unsynced > 0
            && let Some(file) = &inner.writer
            && let Err(error) = file.sync_data()
        {
            tracing::warn!(%error, "spool sync on close failed");
        }
    }
}

enum ReadFrameError {
    /// The file could not be read (not a content problem).
    Io(io::Error),
    /// The bytes at the offset are not a valid record.
    Invalid,
}

/// Reads and verifies one record at `offset`, which must end by `valid_end` and carry a
/// sequence number above `floor`.
fn read_frame(
    reader: &mut impl Read,
    offset: u64,
    valid_end: u64,
    floor: u64,
) -> Result<(u64, Vec<u8>), ReadFrameError> {
    let eof_is_invalid = |e: io::Error| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            ReadFrameError::Invalid
        } else {
            ReadFrameError::Io(e)
        }
    };
    let mut header_bytes = [0u8; HEADER_LEN];
    reader
        .read_exact(&mut header_bytes)
        .map_err(eof_is_invalid)?;
    let header = frame::parse_header(&header_bytes).map_err(|_| ReadFrameError::Invalid)?;
    let available = valid_end
        .saturating_sub(offset)
        .saturating_sub(RECORD_OVERHEAD_BYTES);
    if header.seq <= floor || u64::from(header.len) > available {
        return Err(ReadFrameError::Invalid);
    }
    let len = usize::try_from(header.len).map_err(|_| ReadFrameError::Invalid)?;
    let mut payload = vec![0u8; len];
    reader.read_exact(&mut payload).map_err(eof_is_invalid)?;
    if frame::checksum(&header_bytes[..16], &payload) != header.crc {
        return Err(ReadFrameError::Invalid);
    }
    Ok((header.seq, payload))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ack_file_round_trip_and_damage() {
        let bytes = encode_ack(123_456);
        assert_eq!(decode_ack(&bytes), Some(123_456));
        for i in 0..bytes.len() {
            let mut bad = bytes;
            bad[i] ^= 0x01;
            assert_eq!(decode_ack(&bad), None, "flip at {i}");
        }
        assert_eq!(decode_ack(&bytes[..19]), None);
    }

    #[test]
    fn segment_names_round_trip() {
        let path = segment_path(Path::new("/x"), 42);
        let name = path.file_name().and_then(|n| n.to_str()).unwrap();
        assert_eq!(name, "00000000000000000042.seg");
        assert_eq!(parse_segment_name(name), Some(42));
        assert_eq!(parse_segment_name("42.seg"), None);
        assert_eq!(parse_segment_name("0000000000000000004x.seg"), None);
        assert_eq!(parse_segment_name("00000000000000000042.tmp"), None);
    }

    #[test]
    fn validate_names_the_offending_key() {
        let key_of = |c: &SpoolConfig| match c.validate() {
            Err(SpoolError::InvalidConfig { key, .. }) => Some(key),
            _ => None,
        };
        let ok = SpoolConfig::new("/tmp/spool");
        assert_eq!(key_of(&ok), None);
        assert_eq!(
            key_of(&SpoolConfig {
                segment_bytes: 10,
                ..ok.clone()
            }),
            Some("segment_bytes")
        );
        assert_eq!(
            key_of(&SpoolConfig {
                max_record_bytes: 0,
                ..ok.clone()
            }),
            Some("max_record_bytes")
        );
        assert_eq!(
            key_of(&SpoolConfig {
                max_record_bytes: 16 * 1024 * 1024,
                ..ok.clone()
            }),
            Some("max_record_bytes")
        );
        assert_eq!(
            key_of(&SpoolConfig {
                max_bytes: 1024,
                ..ok.clone()
            }),
            Some("max_bytes")
        );
        assert_eq!(
            key_of(&SpoolConfig {
                fsync: FsyncPolicy::EveryN(0),
                ..ok.clone()
            }),
            Some("fsync")
        );
        assert_eq!(
            key_of(&SpoolConfig {
                fsync: FsyncPolicy::Interval(Duration::ZERO),
                ..ok.clone()
            }),
            Some("fsync")
        );
        assert_eq!(
            key_of(&SpoolConfig {
                dir: PathBuf::new(),
                ..ok
            }),
            Some("dir")
        );
    }
}
