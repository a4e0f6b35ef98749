//! The on-disk spool: every message the agent ships is appended here first
//! and sent to Kafka from here (see [`super::producer`]), so nothing is lost
//! while the broker is unreachable or the agent restarts.
//!
//! Layout, under `<state_dir>/spool/`:
//! - `NNNNNNNNNNNNNNNNNNNN.seg`: segments, appended in order; a new segment
//!   starts when the current one reaches `segment_bytes` and at every start
//!   (an old segment is never appended to again, so a record cut short by a
//!   crash stays at the end of a closed segment);
//! - `acked`: `segment offset`, the position up to which every record was
//!   delivered; rewritten (write, then rename) by the sender.
//!
//! A record is `len: u32 LE | crc32(body): u32 LE | body`, the body being
//! `stream: u8 | key_len: u16 LE | key | payload` (the encoded message).
//!
//! Invariants: records are read in the order they were appended; a
//! position only moves forward; the spool never holds more than
//! `max_bytes` plus one segment: when it would, its oldest segment is
//! deleted and its undelivered records counted as dropped. A corrupt or
//! truncated record ends its segment's reading (counted, logged); reading
//! goes on with the next segment.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use driftwatch_schemas::Stream;

/// Bytes before the body: length and checksum.
const HEADER: u64 = 8;
/// A record longer than this is corruption (messages are far smaller).
const MAX_RECORD: u32 = 64 << 20;

/// A place in the spool; positions order as the records do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    pub segment: u64,
    pub offset: u64,
}

/// One spooled message, encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub stream: Stream,
    pub key: String,
    pub payload: Vec<u8>,
}

/// Figures the agent reports about its delivery (in its heartbeat).
#[derive(Debug, Default)]
pub struct Stats {
    /// Records not yet delivered.
    pub depth: AtomicU64,
    /// Bytes on disk.
    pub bytes: AtomicU64,
    /// Records dropped since the agent started: spool full, corrupt, or
    /// refused by the broker for good.
    pub dropped: AtomicU64,
    /// When the last delivery succeeded (Unix ms; 0: never since start).
    pub last_sent_ms: AtomicU64,
}

/// Errors opening or writing the spool.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("spool record too large: {0} bytes")]
    TooLarge(usize),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io { path: path.to_path_buf(), source }
}

/// The spool of one agent. Not shared between processes.
pub struct Spool {
    dir: PathBuf,
    segment_bytes: u64,
    max_bytes: u64,
    /// Segment number → size in bytes, for every segment on disk.
    segments: BTreeMap<u64, u64>,
    writer: Option<(u64, BufWriter<File>)>,
    reader: Option<(Pos, BufReader<File>)>,
    /// Segment → offset of its first unreadable record (counted once).
    corrupt: BTreeMap<u64, u64>,
    acked: Pos,
    stats: Arc<Stats>,
}

impl Spool {
    /// Opens (or creates) the spool in `dir`, counting what is left to send.
    pub fn open(dir: &Path, max_bytes: u64, segment_bytes: u64) -> Result<Spool, SpoolError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut segments = BTreeMap::new();
        for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
            let entry = entry.map_err(io_err(dir))?;
            let name = entry.file_name();
            let Some(n) = name.to_str().and_then(|n| n.strip_suffix(".seg")).and_then(|n| n.parse::<u64>().ok()) else { continue };
            let len = entry.metadata().map_err(io_err(&entry.path()))?.len();
            segments.insert(n, len);
        }
        let acked = read_acked(&dir.join("acked"));
        let mut spool = Spool {
            dir: dir.to_path_buf(),
            segment_bytes: segment_bytes.max(HEADER + 1),
            max_bytes,
            segments,
            writer: None,
            reader: None,
            corrupt: BTreeMap::new(),
            acked,
            stats: Arc::new(Stats::default()),
        };
        spool.remove_delivered();
        let depth = spool.count_undelivered();
        spool.stats.depth.store(depth, Ordering::Relaxed);
        spool.stats.bytes.store(spool.segments.values().sum(), Ordering::Relaxed);
        Ok(spool)
    }

    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// Everything before this position was delivered.
    pub fn acked(&self) -> Pos {
        self.acked
    }

    fn seg_path(&self, n: u64) -> PathBuf {
        self.dir.join(format!("{n:020}.seg"))
    }

    /// Appends a record (buffered: call [`Spool::flush`] before reading it).
    /// Returns how many undelivered records were dropped to stay within the
    /// size bound.
    pub fn append(&mut self, rec: &Record) -> Result<u64, SpoolError> {
        let body_len = 1 + 2 + rec.key.len() + rec.payload.len();
        if body_len > MAX_RECORD as usize || rec.key.len() > u16::MAX as usize {
            return Err(SpoolError::TooLarge(body_len));
        }
        let mut body = Vec::with_capacity(body_len);
        body.push(stream_code(rec.stream));
        body.extend_from_slice(&(rec.key.len() as u16).to_le_bytes());
        body.extend_from_slice(rec.key.as_bytes());
        body.extend_from_slice(&rec.payload);

        let roll = match &self.writer {
            None => true,
            Some((n, _)) => self.segments.get(n).copied().unwrap_or(0) >= self.segment_bytes,
        };
        if roll {
            self.flush()?;
            // After every segment and never before the acknowledged position.
            let floor = if self.acked.offset > 0 { self.acked.segment + 1 } else { self.acked.segment };
            let n = self.segments.keys().next_back().map_or(1, |n| n + 1).max(floor);
            let path = self.seg_path(n);
            let f = OpenOptions::new().create(true).append(true).open(&path).map_err(io_err(&path))?;
            self.segments.insert(n, 0);
            self.writer = Some((n, BufWriter::with_capacity(64 << 10, f)));
            self.remove_delivered();
        }
        let (n, w) = self.writer.as_mut().expect("a segment is open for writing");
        let n = *n;
        let written = w
            .write_all(&(body.len() as u32).to_le_bytes())
            .and_then(|()| w.write_all(&crc32fast::hash(&body).to_le_bytes()))
            .and_then(|()| w.write_all(&body));
        if let Err(e) = written {
            // The segment may end in a partial record: never append to it again.
            self.writer = None;
            return Err(SpoolError::Io { path: self.seg_path(n), source: e });
        }
        let size = HEADER + body.len() as u64;
        *self.segments.entry(n).or_default() += size;
        self.stats.depth.fetch_add(1, Ordering::Relaxed);
        self.stats.bytes.fetch_add(size, Ordering::Relaxed);
        Ok(self.enforce_bound())
    }

    /// Makes appended records readable (and durable across a crash of the
    /// agent, though not of the host).
    pub fn flush(&mut self) -> Result<(), SpoolError> {
        if let Some((n, w)) = self.writer.as_mut() {
            let n = *n;
            w.flush().map_err(|e| SpoolError::Io { path: self.seg_path(n), source: e })?;
        }
        Ok(())
    }

    /// The record at `from` (or the first one after it, when its segment
    /// is gone) and the position after it; `None` when all was read.
    pub fn read(&mut self, from: Pos) -> Option<(Record, Pos)> {
        let mut pos = from.max(self.acked);
        loop {
            // Move to an existing segment at or after `pos`.
            let (&n, &size) = self.segments.range(pos.segment..).next()?;
            if n != pos.segment {
                pos = Pos { segment: n, offset: 0 };
            }
            if pos.offset >= size || self.corrupt.get(&n).is_some_and(|&bad| pos.offset >= bad) {
                if self.is_writing(n) {
                    return None;
                }
                pos = Pos { segment: n + 1, offset: 0 };
                continue;
            }
            match self.read_at(pos) {
                Ok(Some((rec, next))) => return Some((rec, next)),
                Ok(None) if self.is_writing(n) => return None,
                Ok(None) | Err(_) => {
                    // Corrupt or cut short: where the next record starts is
                    // unknown, so the rest of this segment is lost (at least
                    // this record; how many more cannot be told).
                    let lost = 1;
                    tracing::error!(segment = %self.seg_path(n).display(), offset = pos.offset, "spool record corrupt or truncated; skipping the rest of the segment");
                    self.stats.dropped.fetch_add(lost, Ordering::Relaxed);
                    sub(&self.stats.depth, lost);
                    self.corrupt.insert(n, pos.offset);
                    self.reader = None;
                    if self.acked.segment == n {
                        self.acked = Pos { segment: n + 1, offset: 0 };
                    }
                    pos = Pos { segment: n + 1, offset: 0 };
                }
            }
        }
    }

    fn is_writing(&self, n: u64) -> bool {
        self.writer.as_ref().is_some_and(|(w, _)| *w == n)
    }

    /// Reads one record at `pos`: `Ok(None)` when it is incomplete or fails
    /// its checksum.
    fn read_at(&mut self, pos: Pos) -> io::Result<Option<(Record, Pos)>> {
        let reader = match self.reader.take() {
            Some((p, r)) if p == pos => r,
            _ => {
                let mut f = File::open(self.seg_path(pos.segment))?;
                f.seek(SeekFrom::Start(pos.offset))?;
                BufReader::with_capacity(64 << 10, f)
            }
        };
        let mut reader = reader;
        let mut header = [0u8; HEADER as usize];
        if !read_full(&mut reader, &mut header)? {
            return Ok(None);
        }
        let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes"));
        let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
        if !(3..=MAX_RECORD).contains(&len) {
            return Ok(None);
        }
        let mut body = vec![0u8; len as usize];
        if !read_full(&mut reader, &mut body)? || crc32fast::hash(&body) != crc {
            return Ok(None);
        }
        let Some(rec) = decode_body(&body) else { return Ok(None) };
        let next = Pos { segment: pos.segment, offset: pos.offset + HEADER + u64::from(len) };
        self.reader = Some((next, reader));
        Ok(Some((rec, next)))
    }

    /// Records from `pos` to the end of segment `n` that read cleanly.
    fn count_in(&mut self, n: u64, pos: Pos) -> u64 {
        let mut count = 0;
        let mut p = pos;
        while let Ok(Some((_, next))) = self.read_at(p) {
            if next.segment != n {
                break;
            }
            count += 1;
            p = next;
        }
        self.reader = None;
        count
    }

    /// Records not yet delivered (corrupt ones are counted as dropped).
    fn count_undelivered(&mut self) -> u64 {
        let mut count = 0;
        let mut pos = self.acked;
        while let Some((_, next)) = self.read(pos) {
            count += 1;
            pos = next;
        }
        self.reader = None;
        count
    }

    /// Records delivery of everything before `next`.
    pub fn ack(&mut self, next: Pos) {
        if next <= self.acked {
            return; // already delivered, or dropped while in flight
        }
        self.acked = next;
        sub(&self.stats.depth, 1);
        self.stats.last_sent_ms.store(chrono::Utc::now().timestamp_millis().max(0) as u64, Ordering::Relaxed);
        self.remove_delivered();
    }

    /// Counts a record the broker refused for good as dropped, and moves past it.
    pub fn skip(&mut self, next: Pos) {
        if next > self.acked {
            self.acked = next;
            sub(&self.stats.depth, 1);
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            self.remove_delivered();
        }
    }

    /// Writes the acknowledged position (write, then rename).
    pub fn persist_ack(&self) -> Result<(), SpoolError> {
        let path = self.dir.join("acked");
        let tmp = self.dir.join("acked.tmp");
        std::fs::write(&tmp, format!("{} {}\n", self.acked.segment, self.acked.offset)).map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io_err(&path))
    }

    /// Deletes segments wholly before the acknowledged position.
    fn remove_delivered(&mut self) {
        let done: Vec<u64> = self
            .segments
            .iter()
            .filter(|(&n, &size)| !self.is_writing(n) && (n < self.acked.segment || (n == self.acked.segment && self.acked.offset >= size)))
            .map(|(&n, _)| n)
            .collect();
        for n in done {
            self.delete_segment(n);
        }
    }

    fn delete_segment(&mut self, n: u64) {
        let path = self.seg_path(n);
        if let Err(e) = std::fs::remove_file(&path) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(segment = %path.display(), error = %e, "cannot delete spool segment");
            }
        }
        self.corrupt.remove(&n);
        if let Some(size) = self.segments.remove(&n) {
            sub(&self.stats.bytes, size);
        }
        if self.reader.as_ref().is_some_and(|(p, _)| p.segment == n) {
            self.reader = None;
        }
    }

    /// Deletes the oldest segments while the spool is over its bound;
    /// returns how many undelivered records went with them.
    fn enforce_bound(&mut self) -> u64 {
        let mut dropped = 0;
        while self.segments.values().sum::<u64>() > self.max_bytes {
            let Some(&oldest) = self.segments.keys().next() else { break };
            if self.is_writing(oldest) {
                break;
            }
            let from = if self.acked.segment == oldest { self.acked } else { Pos { segment: oldest, offset: 0 } };
            let lost = if self.acked.segment > oldest { 0 } else { self.count_in(oldest, from) };
            self.delete_segment(oldest);
            if self.acked.segment <= oldest {
                self.acked = Pos { segment: oldest + 1, offset: 0 };
            }
            dropped += lost;
        }
        if dropped > 0 {
            self.stats.dropped.fetch_add(dropped, Ordering::Relaxed);
            sub(&self.stats.depth, dropped);
        }
        dropped
    }
}

fn sub(a: &AtomicU64, n: u64) {
    let _ = a.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| Some(v.saturating_sub(n)));
}

/// Reads exactly `buf.len()` bytes; `false` at a clean or partial end.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => return Ok(false),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

fn read_acked(path: &Path) -> Pos {
    let Ok(text) = std::fs::read_to_string(path) else { return Pos::default() };
    let mut parts = text.split_whitespace().map(str::parse::<u64>);
    match (parts.next(), parts.next()) {
        (Some(Ok(segment)), Some(Ok(offset))) => Pos { segment, offset },
        _ => {
            tracing::error!(file = %path.display(), "spool position unreadable; sending the whole spool again");
            Pos::default()
        }
    }
}

fn stream_code(s: Stream) -> u8 {
    match s {
        Stream::Snapshots => 0,
        Stream::Audit => 1,
        Stream::Sla => 2,
    }
}

fn decode_body(body: &[u8]) -> Option<Record> {
    let stream = match body.first()? {
        0 => Stream::Snapshots,
        1 => Stream::Audit,
        2 => Stream::Sla,
        _ => return None,
    };
    let key_len = u16::from_le_bytes(body.get(1..3)?.try_into().ok()?) as usize;
    let key = std::str::from_utf8(body.get(3..3 + key_len)?).ok()?.to_string();
    Some(Record { stream, key, payload: body[3 + key_len..].to_vec() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: u32) -> Record {
        Record { stream: Stream::Audit, key: format!("asset-{}", i % 3), payload: format!("message {i}").into_bytes() }
    }

    fn drain(s: &mut Spool) -> Vec<(Record, Pos)> {
        let mut out = Vec::new();
        let mut pos = s.acked();
        while let Some((r, next)) = s.read(pos) {
            out.push((r, next));
            pos = next;
        }
        out
    }

    fn depth(s: &Spool) -> u64 {
        s.stats().depth.load(Ordering::Relaxed)
    }

    #[test]
    fn records_come_back_in_order_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20, 100).unwrap();
        for i in 0..10 {
            s.append(&rec(i)).unwrap();
        }
        s.flush().unwrap();
        let read = drain(&mut s);
        assert_eq!(read.iter().map(|(r, _)| r.clone()).collect::<Vec<_>>(), (0..10).map(rec).collect::<Vec<_>>());
        assert!(s.segments.len() > 2, "small segments roll: {:?}", s.segments);
        // Four delivered; the agent restarts.
        for (_, next) in &read[..4] {
            s.ack(*next);
        }
        assert_eq!(depth(&s), 6);
        s.persist_ack().unwrap();
        drop(s);
        let mut s = Spool::open(dir.path(), 1 << 20, 100).unwrap();
        assert_eq!(depth(&s), 6);
        let again: Vec<Record> = drain(&mut s).into_iter().map(|(r, _)| r).collect();
        assert_eq!(again, (4..10).map(rec).collect::<Vec<_>>());
        // New records go to a new segment, after the old ones.
        s.append(&rec(10)).unwrap();
        s.flush().unwrap();
        assert_eq!(drain(&mut s).last().unwrap().0, rec(10));
    }

    #[test]
    fn delivered_segments_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20, 60).unwrap();
        for i in 0..20 {
            s.append(&rec(i)).unwrap();
        }
        s.flush().unwrap();
        for (_, next) in drain(&mut s) {
            s.ack(next);
        }
        assert_eq!(depth(&s), 0);
        let files = std::fs::read_dir(dir.path()).unwrap().filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "seg"));
        assert_eq!(files.count(), 1, "only the segment being written remains");
    }

    #[test]
    fn a_full_spool_drops_the_oldest_and_counts_them() {
        let dir = tempfile::tempdir().unwrap();
        // Records are 8 + 3 + 7 + ~10 bytes; segments hold about 2; the spool about 6.
        let mut s = Spool::open(dir.path(), 180, 50).unwrap();
        let mut dropped = 0;
        for i in 0..40 {
            dropped += s.append(&rec(i)).unwrap();
        }
        s.flush().unwrap();
        let left: Vec<Record> = drain(&mut s).into_iter().map(|(r, _)| r).collect();
        assert!(dropped > 0 && s.stats().dropped.load(Ordering::Relaxed) == dropped);
        assert_eq!(left.len() as u64 + dropped, 40, "every record is either kept or counted");
        assert_eq!(left, (40 - left.len() as u32..40).map(rec).collect::<Vec<_>>(), "the newest are kept, in order");
        assert_eq!(depth(&s), left.len() as u64);
        assert!(s.segments.values().sum::<u64>() <= 180 + 50);
    }

    #[test]
    fn a_corrupt_segment_is_skipped_and_counted_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20, 60).unwrap();
        for i in 0..6 {
            s.append(&rec(i)).unwrap();
        }
        s.flush().unwrap();
        drop(s);
        // Flip a byte in the first segment's last record, cut the last segment short.
        let mut segs: Vec<PathBuf> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path()).collect();
        segs.sort();
        let mut first = std::fs::read(&segs[0]).unwrap();
        let at = first.len() - 2;
        first[at] ^= 0xff;
        std::fs::write(&segs[0], first).unwrap();
        let last = segs.last().unwrap();
        let len = std::fs::metadata(last).unwrap().len();
        OpenOptions::new().write(true).open(last).unwrap().set_len(len - 3).unwrap();
        std::fs::write(dir.path().join("acked"), "garbage").unwrap();

        let mut s = Spool::open(dir.path(), 1 << 20, 60).unwrap();
        let got: Vec<Record> = drain(&mut s).into_iter().map(|(r, _)| r).collect();
        // Segments of three records: the third is corrupt, the sixth cut short.
        assert_eq!(got, [0, 1, 3, 4].map(rec).to_vec());
        assert_eq!(s.stats().dropped.load(Ordering::Relaxed), 2);
        assert_eq!(depth(&s), 4);
        s.append(&rec(6)).unwrap();
        s.flush().unwrap();
        assert_eq!(drain(&mut s).last().unwrap().0, rec(6), "the spool keeps working");
    }
}
