//! `solmsg.out`: the human-readable message log of a node.
//!
//! One timestamped line per event (start, stop, recovery, every error), appended and
//! flushed immediately so the file is useful after a crash. The same line also goes to
//! `tracing`. Never pass secrets or passwords here.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use crate::sql::value::format_timestamp;

pub const MESSAGE_LOG_FILE_NAME: &str = "solmsg.out";

/// Severity shown in each line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warning,
    Error,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Info => "INFO",
            Level::Warning => "WARNING",
            Level::Error => "ERROR",
        }
    }
}

/// The message log. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct MessageLog {
    path: PathBuf,
    file: Mutex<Option<File>>,
}

impl MessageLog {
    /// Opens (appending) `DIR/solmsg.out`.
    pub fn open(dir: &Path) -> std::io::Result<MessageLog> {
        let path = dir.join(MESSAGE_LOG_FILE_NAME);
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(MessageLog {
            path,
            file: Mutex::new(Some(file)),
        })
    }

    /// A log that only forwards to `tracing` (tests of in-process components).
    pub fn discard() -> MessageLog {
        MessageLog {
            path: PathBuf::new(),
            file: Mutex::new(None),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn info(&self, msg: impl AsRef<str>) {
        self.write(Level::Info, msg.as_ref());
    }

    pub fn warning(&self, msg: impl AsRef<str>) {
        self.write(Level::Warning, msg.as_ref());
    }

    pub fn error(&self, msg: impl AsRef<str>) {
        self.write(Level::Error, msg.as_ref());
    }

    pub fn write(&self, level: Level, msg: &str) {
        match level {
            Level::Info => tracing::info!(target: "solmsg", "{msg}"),
            Level::Warning => tracing::warn!(target: "solmsg", "{msg}"),
            Level::Error => tracing::error!(target: "solmsg", "{msg}"),
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0);
        let stamp = format_timestamp(now - now % 1000);
        let line = format!("{stamp} {:<7} {msg}\n", level.as_str());
        if let Some(file) = self.file.lock().as_mut() {
            // The message log must never take the node down: a failed write is reported
            // through tracing only.
            if let Err(e) = file.write_all(line.as_bytes()) {
                tracing::error!("cannot write {}: {e}", self.path.display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_timestamped_and_appended() {
        let dir = tempfile::tempdir().unwrap();
        let log = MessageLog::open(dir.path()).unwrap();
        log.info("node started");
        log.error("something broke");
        drop(log);
        let log = MessageLog::open(dir.path()).unwrap();
        log.warning("again");
        let text = std::fs::read_to_string(dir.path().join(MESSAGE_LOG_FILE_NAME)).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].ends_with("INFO    node started"), "{}", lines[0]);
        assert!(lines[1].contains("ERROR   something broke"));
        assert!(lines[2].contains("WARNING again"));
        // "YYYY-MM-DD HH:MM:SS" prefix
        assert_eq!(&lines[0][4..5], "-");
        assert_eq!(&lines[0][10..11], " ");
    }
}
