//! Following a log file safely across rotation and restarts.
//!
//! - rename + create (logrotate's default): the old file is read to its end
//!   through the still-open handle, then the new file from its start;
//! - copytruncate: a file shorter than the read offset is read again from
//!   its start;
//! - restarts: `(inode, offset)` is saved in the state directory after the
//!   caller has handed the lines on ([`Tailer::save`]), so lines are neither
//!   lost nor read twice;
//! - only complete lines are returned; a line longer than [`MAX_LINE`]
//!   bytes is cut and flagged.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Longest line kept; the rest is dropped and the line marked truncated.
pub const MAX_LINE: usize = 16 * 1024;
const READ_CHUNK: usize = 1 << 20;

/// One complete line and where it started.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub text: String,
    pub inode: u64,
    pub offset: u64,
    pub truncated: bool,
}

#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize, PartialEq)]
struct Position {
    inode: u64,
    offset: u64,
}

pub struct Tailer {
    path: PathBuf,
    state_file: Option<PathBuf>,
    file: Option<File>,
    pos: Position,
    /// Saved position from a previous run, used when its inode reopens.
    saved: Option<Position>,
    from_start: bool,
    opened_before: bool,
    /// Bytes of the pending (incomplete) line, capped at MAX_LINE.
    partial: Vec<u8>,
    /// Its true length in the file.
    partial_len: u64,
}

impl Tailer {
    /// Follows `path`. With no saved position the file is read from its
    /// start if `from_start`, else from its current end.
    pub fn new(path: PathBuf, state_file: Option<PathBuf>, from_start: bool) -> Self {
        let saved =
            state_file.as_ref().and_then(|f| std::fs::read_to_string(f).ok()).and_then(|t| serde_json::from_str::<Position>(&t).ok());
        Tailer {
            path,
            state_file,
            file: None,
            pos: Position::default(),
            saved,
            from_start,
            opened_before: false,
            partial: Vec::new(),
            partial_len: 0,
        }
    }

    pub fn path(&self) -> &PathBuf {
        &self.path
    }

    /// Persists the position reached by the last [`poll`](Self::poll).
    pub fn save(&self) -> io::Result<()> {
        self.save_before(None)
    }

    /// Persists a position that stops before `line` (when it is in the
    /// current file), so a caller still holding it reads it again after a
    /// restart; otherwise like [`save`](Self::save).
    pub fn save_before(&self, line: Option<&Line>) -> io::Result<()> {
        let Some(f) = &self.state_file else { return Ok(()) };
        let pos = match line {
            Some(l) if l.inode == self.pos.inode && l.offset < self.pos.offset => Position { inode: l.inode, offset: l.offset },
            _ => self.pos,
        };
        let tmp = f.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec(&pos).unwrap_or_default())?;
        std::fs::rename(tmp, f)
    }

    fn open(&mut self) -> io::Result<bool> {
        let file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        let meta = file.metadata()?;
        let inode = meta.ino();
        let offset = match self.saved.take() {
            Some(s) if s.inode == inode && s.offset <= meta.len() => s.offset,
            // The saved file was rotated away while we were down: the new
            // file is wholly new.
            Some(_) => 0,
            None if self.opened_before || self.from_start => 0,
            None => meta.len(),
        };
        self.opened_before = true;
        self.pos = Position { inode, offset };
        self.file = Some(file);
        self.partial.clear();
        self.partial_len = 0;
        Ok(true)
    }

    /// Returns the complete lines written since the last poll.
    pub fn poll(&mut self) -> io::Result<Vec<Line>> {
        if self.file.is_none() && !self.open()? {
            return Ok(Vec::new());
        }
        let mut lines = self.read_available()?;
        // Rotation checks, after draining what the open handle still sees.
        match std::fs::metadata(&self.path) {
            Ok(m) if m.ino() != self.pos.inode => {
                // Renamed away; a complete trailing line without newline is
                // still a line.
                self.flush_partial(&mut lines);
                self.file = None;
                if self.open()? {
                    lines.extend(self.read_available()?);
                }
            }
            Ok(m) if m.len() < self.pos.offset => {
                // Truncated in place (copytruncate).
                self.pos.offset = 0;
                self.partial.clear();
                self.partial_len = 0;
                lines.extend(self.read_available()?);
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.flush_partial(&mut lines);
                self.file = None;
            }
            Err(e) => return Err(e),
        }
        Ok(lines)
    }

    /// A trailing line without newline, at rotation: still a line.
    fn flush_partial(&mut self, lines: &mut Vec<Line>) {
        if self.partial_len > 0 {
            lines.push(self.take_line());
        }
    }

    /// Ends the pending line; `newline` bytes follow it in the file.
    fn finish_line(&mut self, newline: u64) -> Line {
        let line = self.take_line();
        self.pos.offset += newline;
        line
    }

    fn take_line(&mut self) -> Line {
        let bytes = std::mem::take(&mut self.partial);
        let truncated = self.partial_len > MAX_LINE as u64;
        let text = String::from_utf8_lossy(&bytes).trim_end_matches('\r').to_string();
        let line = Line { text, inode: self.pos.inode, offset: self.pos.offset, truncated };
        self.pos.offset += self.partial_len;
        self.partial_len = 0;
        line
    }

    fn push_partial(&mut self, bytes: &[u8]) {
        let room = MAX_LINE.saturating_sub(self.partial.len());
        self.partial.extend_from_slice(&bytes[..bytes.len().min(room)]);
        self.partial_len += bytes.len() as u64;
    }

    fn read_available(&mut self) -> io::Result<Vec<Line>> {
        let mut out = Vec::new();
        let read_from = self.pos.offset + self.partial_len;
        let Some(file) = self.file.as_mut() else { return Ok(out) };
        file.seek(SeekFrom::Start(read_from))?;
        let mut buf = vec![0u8; READ_CHUNK];
        while let Some(file) = self.file.as_mut() {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            let mut start = 0;
            for i in 0..n {
                if buf[i] == b'\n' {
                    self.push_partial(&buf[start..i]);
                    out.push(self.finish_line(1));
                    start = i + 1;
                }
            }
            self.push_partial(&buf[start..n]);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn append(p: &std::path::Path, s: &str) {
        std::fs::OpenOptions::new().create(true).append(true).open(p).unwrap().write_all(s.as_bytes()).unwrap();
    }

    fn texts(lines: Vec<Line>) -> Vec<String> {
        lines.into_iter().map(|l| l.text).collect()
    }

    #[test]
    fn follows_appends_and_holds_partial_lines() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("auth.log");
        append(&log, "old\n");
        let mut t = Tailer::new(log.clone(), None, false);
        assert!(t.poll().unwrap().is_empty(), "starts at the end");
        append(&log, "a\nb");
        assert_eq!(texts(t.poll().unwrap()), vec!["a"]);
        append(&log, "c\r\n");
        assert_eq!(texts(t.poll().unwrap()), vec!["bc"]);
    }

    #[test]
    fn rename_and_create_rotation_loses_nothing() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("auth.log");
        append(&log, "");
        let mut t = Tailer::new(log.clone(), None, true);
        append(&log, "1\n");
        assert_eq!(texts(t.poll().unwrap()), vec!["1"]);
        append(&log, "2\n");
        std::fs::rename(&log, d.path().join("auth.log.1")).unwrap();
        append(&log, "3\n");
        assert_eq!(texts(t.poll().unwrap()), vec!["2", "3"]);
    }

    #[test]
    fn copytruncate_rereads_from_start() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("auth.log");
        append(&log, "");
        let mut t = Tailer::new(log.clone(), None, true);
        append(&log, "first line\n");
        assert_eq!(texts(t.poll().unwrap()), vec!["first line"]);
        std::fs::write(&log, "x\n").unwrap();
        assert_eq!(texts(t.poll().unwrap()), vec!["x"]);
    }

    #[test]
    fn restart_resumes_at_saved_offset() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("auth.log");
        let state = d.path().join("auth.pos");
        append(&log, "1\n2\n");
        let mut t = Tailer::new(log.clone(), Some(state.clone()), true);
        assert_eq!(texts(t.poll().unwrap()), vec!["1", "2"]);
        t.save().unwrap();
        append(&log, "3\n");
        let mut t2 = Tailer::new(log.clone(), Some(state), false);
        let lines = t2.poll().unwrap();
        assert_eq!(lines[0].offset, 4);
        assert_eq!(texts(lines), vec!["3"]);
    }

    #[test]
    fn long_lines_are_cut_and_flagged() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("auth.log");
        append(&log, "");
        let mut t = Tailer::new(log.clone(), None, true);
        append(&log, &format!("{}\nshort\n", "x".repeat(MAX_LINE + 10)));
        let lines = t.poll().unwrap();
        assert_eq!(lines[0].text.len(), MAX_LINE);
        assert!(lines[0].truncated);
        assert_eq!((lines[1].text.as_str(), lines[1].offset, lines[1].truncated), ("short", (MAX_LINE + 11) as u64, false));
    }
}
