//! The file-system seam under the transaction log.
//!
//! The log ([`crate::storage::wal`]) never touches `std::fs` directly: it sees its directory
//! through [`LogFs`] and each open segment through [`LogFile`]. Production uses [`DiskFs`];
//! tests use [`MemFs`], an in-memory directory that models what a real disk does to a log
//! across a power loss, so crash and fault tests are deterministic and need no real crashes.
//!
//! Durability contract of every implementation:
//! * [`LogFile::append`] only reaches the "page cache": readable at once, lost on a crash.
//! * [`LogFile::sync`] makes every byte appended to that file durable, or fails.
//! * [`LogFs::create`], [`LogFs::truncate`] and [`LogFs::remove`] are durable when they
//!   return (on disk: the file and its directory are fsynced). The *contents* of a created
//!   file are not durable until its first successful `sync`.
//!
//! [`MemFs`] follows Linux semantics after a failed `fsync` (the "fsyncgate" lesson): the pages
//! that failed to reach the disk are marked clean, so they stay readable but a *later*
//! successful sync does not bring them back — a crash still loses them. Callers must
//! therefore treat a failed sync as fatal for the file, which the log does by poisoning itself.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

/// A log directory: a flat set of named files.
///
/// Object-safe so the log can hold an `Arc<dyn LogFs>`.
pub trait LogFs: Send + Sync + fmt::Debug {
    /// Names of the regular files in the directory (not sorted, subdirectories left out).
    fn list(&self) -> io::Result<Vec<String>>;
    /// The whole current contents of a file, including bytes not yet synced.
    fn read(&self, name: &str) -> io::Result<Vec<u8>>;
    /// Creates a new, empty file (failing if it exists) and makes its directory entry
    /// durable. Returns a handle that appends to it.
    fn create(&self, name: &str) -> io::Result<Box<dyn LogFile>>;
    /// Opens an existing file for appending at its end.
    fn open_append(&self, name: &str) -> io::Result<Box<dyn LogFile>>;
    /// Cuts a file to `len` bytes, durably.
    fn truncate(&self, name: &str, len: u64) -> io::Result<()>;
    /// Removes a file, durably. A missing file is an error of kind `NotFound`.
    fn remove(&self, name: &str) -> io::Result<()>;
    /// How to name the file in an error message: its full path on disk.
    fn display_path(&self, name: &str) -> String;
}

/// A file open for appending.
pub trait LogFile: Send + fmt::Debug {
    /// Appends all of `bytes` at the end of the file (not yet durable).
    fn append(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Makes every byte appended so far durable (`fdatasync`).
    fn sync(&mut self) -> io::Result<()>;
}

// ---------------------------------------------------------------------------------------------
// On disk
// ---------------------------------------------------------------------------------------------

/// The log directory on the real file system.
#[derive(Debug, Clone)]
pub struct DiskFs {
    dir: PathBuf,
}

impl DiskFs {
    /// Uses `dir` as the log directory, creating it (durably) if it is missing.
    pub fn new(dir: impl Into<PathBuf>) -> io::Result<Self> {
        let dir = dir.into();
        if !dir.is_dir() {
            fs::create_dir_all(&dir)?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent)?;
            }
        }
        Ok(DiskFs { dir })
    }

    /// The directory this log lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// Makes a directory's entries (created, removed files) durable.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Directories cannot be opened for fsync here; their metadata is journaled by the OS.
#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

impl LogFs for DiskFs {
    fn list(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            if !entry.file_type()?.is_file() {
                continue;
            }
            // A name that is not UTF-8 cannot be one of ours; leave it alone.
            if let Ok(name) = entry.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        fs::read(self.path(name))
    }

    fn create(&self, name: &str) -> io::Result<Box<dyn LogFile>> {
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(self.path(name))?;
        sync_dir(&self.dir)?;
        Ok(Box::new(DiskFile { file }))
    }

    fn open_append(&self, name: &str) -> io::Result<Box<dyn LogFile>> {
        let file = OpenOptions::new().append(true).open(self.path(name))?;
        Ok(Box::new(DiskFile { file }))
    }

    fn truncate(&self, name: &str, len: u64) -> io::Result<()> {
        let file = OpenOptions::new().write(true).open(self.path(name))?;
        file.set_len(len)?;
        file.sync_all()
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        fs::remove_file(self.path(name))?;
        sync_dir(&self.dir)
    }

    fn display_path(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }
}

/// A segment file open for appending on disk.
#[derive(Debug)]
struct DiskFile {
    file: File,
}

impl LogFile for DiskFile {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)
    }

    fn sync(&mut self) -> io::Result<()> {
        // The file grew, so fdatasync also persists the new size.
        self.file.sync_data()
    }
}

// ---------------------------------------------------------------------------------------------
// In memory, with faults
// ---------------------------------------------------------------------------------------------

/// An in-memory log directory that models a disk with a page cache, for tests.
///
/// Cloning gives another handle on the same directory, so a test keeps one after handing one
/// to the log. Faults are injected on command: [`MemFs::crash`] drops every byte not yet
/// synced, [`MemFs::tear_last_write`] keeps only part of a file's last append,
/// [`MemFs::fail_next_sync`] / [`MemFs::fail_next_append`] make the next call fail.
#[derive(Debug, Clone, Default)]
pub struct MemFs {
    state: Arc<Mutex<MemState>>,
}

#[derive(Debug, Default)]
struct MemState {
    files: BTreeMap<String, MemFileState>,
    fail_next_sync: bool,
    fail_next_append: bool,
}

#[derive(Debug, Default)]
struct MemFileState {
    /// What a reader sees: the durable bytes followed by the page-cache bytes.
    data: Vec<u8>,
    /// `data[..durable_len]` survives a crash.
    durable_len: usize,
    /// Set by a failed sync: bytes from here on are lost on a crash even if a later sync
    /// succeeds (Linux marks the failed pages clean).
    lost_from: Option<usize>,
    /// Where the last append started, for [`MemFs::tear_last_write`].
    last_append_at: Option<usize>,
}

impl MemFs {
    /// An empty directory.
    pub fn new() -> Self {
        Self::default()
    }

    /// Simulates a power loss: every file keeps only its durable bytes.
    pub fn crash(&self) {
        let mut state = self.state.lock();
        for file in state.files.values_mut() {
            let keep = file.durable_len.min(file.lost_from.unwrap_or(usize::MAX));
            file.data.truncate(keep);
            file.durable_len = keep;
            file.lost_from = None;
            file.last_append_at = None;
        }
    }

    /// Keeps only the first `keep` bytes of the last append to `name` (synced or not), as if
    /// the write had been torn. Does nothing if the file is missing, has no recorded append,
    /// or the append was not longer than `keep`.
    pub fn tear_last_write(&self, name: &str, keep: usize) {
        let mut state = self.state.lock();
        let Some(file) = state.files.get_mut(name) else {
            return;
        };
        let Some(start) = file.last_append_at.take() else {
            return;
        };
        let len = start.saturating_add(keep).min(file.data.len());
        file.data.truncate(len);
        file.durable_len = file.durable_len.min(len);
    }

    /// Makes the next [`LogFile::sync`] on any file fail; its bytes stay non-durable.
    pub fn fail_next_sync(&self) {
        self.state.lock().fail_next_sync = true;
    }

    /// Makes the next [`LogFile::append`] on any file fail without writing anything.
    pub fn fail_next_append(&self) {
        self.state.lock().fail_next_append = true;
    }

    /// Creates or replaces a file with these bytes, all durable.
    pub fn set_bytes(&self, name: &str, bytes: Vec<u8>) {
        let durable_len = bytes.len();
        self.state.lock().files.insert(
            name.to_owned(),
            MemFileState {
                data: bytes,
                durable_len,
                lost_from: None,
                last_append_at: None,
            },
        );
    }

    /// The current contents of a file (what a reader sees, synced or not).
    pub fn bytes(&self, name: &str) -> Option<Vec<u8>> {
        self.state.lock().files.get(name).map(|f| f.data.clone())
    }

    /// The bytes of a file that would survive a crash now.
    pub fn durable_bytes(&self, name: &str) -> Option<Vec<u8>> {
        self.state.lock().files.get(name).map(|f| {
            let keep = f.durable_len.min(f.lost_from.unwrap_or(usize::MAX));
            f.data[..keep].to_vec()
        })
    }

    /// Names of all files, sorted.
    pub fn names(&self) -> Vec<String> {
        self.state.lock().files.keys().cloned().collect()
    }
}

fn not_found(name: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("no file {name}"))
}

impl LogFs for MemFs {
    fn list(&self) -> io::Result<Vec<String>> {
        Ok(self.names())
    }

    fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        self.bytes(name).ok_or_else(|| not_found(name))
    }

    fn create(&self, name: &str) -> io::Result<Box<dyn LogFile>> {
        let mut state = self.state.lock();
        if state.files.contains_key(name) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("file {name} exists"),
            ));
        }
        state.files.insert(name.to_owned(), MemFileState::default());
        Ok(Box::new(MemFile {
            fs: self.clone(),
            name: name.to_owned(),
        }))
    }

    fn open_append(&self, name: &str) -> io::Result<Box<dyn LogFile>> {
        if !self.state.lock().files.contains_key(name) {
            return Err(not_found(name));
        }
        Ok(Box::new(MemFile {
            fs: self.clone(),
            name: name.to_owned(),
        }))
    }

    fn truncate(&self, name: &str, len: u64) -> io::Result<()> {
        let mut state = self.state.lock();
        let file = state.files.get_mut(name).ok_or_else(|| not_found(name))?;
        let len = usize::try_from(len)
            .unwrap_or(usize::MAX)
            .min(file.data.len());
        file.data.truncate(len);
        // Truncation is followed by a full fsync of the file: all that is left is durable.
        file.durable_len = len;
        file.lost_from = file.lost_from.filter(|&at| at < len);
        file.last_append_at = None;
        Ok(())
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        self.state
            .lock()
            .files
            .remove(name)
            .map(|_| ())
            .ok_or_else(|| not_found(name))
    }

    fn display_path(&self, name: &str) -> String {
        format!("memfs:/{name}")
    }
}

/// A handle appending to a [`MemFs`] file.
#[derive(Debug)]
struct MemFile {
    fs: MemFs,
    name: String,
}

impl LogFile for MemFile {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut state = self.fs.state.lock();
        if std::mem::take(&mut state.fail_next_append) {
            return Err(io::Error::other("injected append failure"));
        }
        let file = state
            .files
            .get_mut(&self.name)
            .ok_or_else(|| not_found(&self.name))?;
        file.last_append_at = Some(file.data.len());
        file.data.extend_from_slice(bytes);
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        let mut state = self.fs.state.lock();
        let fail = std::mem::take(&mut state.fail_next_sync);
        let file = state
            .files
            .get_mut(&self.name)
            .ok_or_else(|| not_found(&self.name))?;
        if fail {
            if file.data.len() > file.durable_len {
                let from = file
                    .lost_from
                    .unwrap_or(file.durable_len)
                    .min(file.durable_len);
                file.lost_from = Some(from);
            }
            return Err(io::Error::other("injected sync failure"));
        }
        file.durable_len = file.data.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memfs_crash_keeps_only_synced_bytes() {
        let fs = MemFs::new();
        let mut f = fs.create("a").unwrap();
        f.append(b"hello ").unwrap();
        f.sync().unwrap();
        f.append(b"world").unwrap();
        assert_eq!(fs.bytes("a").unwrap(), b"hello world");
        fs.crash();
        assert_eq!(fs.bytes("a").unwrap(), b"hello ");
        // The directory entry of a created file is durable even with no synced content.
        fs.create("b").unwrap().append(b"lost").unwrap();
        fs.crash();
        assert_eq!(fs.bytes("b").unwrap(), b"");
    }

    #[test]
    fn memfs_failed_sync_loses_bytes_even_after_a_later_sync() {
        let fs = MemFs::new();
        let mut f = fs.create("a").unwrap();
        f.append(b"one").unwrap();
        f.sync().unwrap();
        f.append(b"two").unwrap();
        fs.fail_next_sync();
        assert!(f.sync().is_err());
        // Still readable (the page cache has it) but not durable.
        assert_eq!(fs.bytes("a").unwrap(), b"onetwo");
        assert_eq!(fs.durable_bytes("a").unwrap(), b"one");
        f.append(b"three").unwrap();
        f.sync().unwrap();
        fs.crash();
        assert_eq!(fs.bytes("a").unwrap(), b"one");
    }

    #[test]
    fn memfs_tear_and_truncate() {
        let fs = MemFs::new();
        let mut f = fs.create("a").unwrap();
        f.append(b"abc").unwrap();
        f.append(b"defgh").unwrap();
        f.sync().unwrap();
        fs.tear_last_write("a", 2);
        assert_eq!(fs.bytes("a").unwrap(), b"abcde");
        // Only one tear per recorded append.
        fs.tear_last_write("a", 0);
        assert_eq!(fs.bytes("a").unwrap(), b"abcde");
        fs.truncate("a", 1).unwrap();
        fs.crash();
        assert_eq!(fs.bytes("a").unwrap(), b"a");
        fs.fail_next_append();
        assert!(f.append(b"x").is_err());
        assert_eq!(fs.bytes("a").unwrap(), b"a");
        fs.remove("a").unwrap();
        assert_eq!(fs.remove("a").unwrap_err().kind(), io::ErrorKind::NotFound);
        assert!(f.append(b"x").is_err());
        assert!(fs.create("b").is_ok());
        assert_eq!(
            fs.create("b").unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
    }

    #[test]
    fn diskfs_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let fs = DiskFs::new(tmp.path().join("log")).unwrap();
        std::fs::create_dir(fs.dir().join("subdir")).unwrap();
        let mut f = fs.create("x.log").unwrap();
        f.append(b"12345").unwrap();
        f.sync().unwrap();
        drop(f);
        assert!(fs.create("x.log").is_err());
        let mut f = fs.open_append("x.log").unwrap();
        f.append(b"678").unwrap();
        assert_eq!(fs.read("x.log").unwrap(), b"12345678");
        fs.truncate("x.log", 3).unwrap();
        assert_eq!(fs.read("x.log").unwrap(), b"123");
        assert_eq!(fs.list().unwrap(), vec!["x.log".to_owned()]);
        assert!(fs.display_path("x.log").ends_with("x.log"));
        fs.remove("x.log").unwrap();
        assert!(fs.list().unwrap().is_empty());
        assert_eq!(
            fs.remove("x.log").unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }
}
