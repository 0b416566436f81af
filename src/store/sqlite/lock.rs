//! One `serve` per store file: an exclusive lock on `FILE.lock` beside the database.
//!
//! The lock is an OS advisory lock (`flock` on Unix, `LockFileEx` on Windows) on an open file,
//! so the kernel releases it when the process ends however it ends: a `kill -9` or a crash
//! leaves no stale lock, only the file with the pid of the process that held it. The holder
//! writes its pid into the file so that a refused `serve` can name it; it empties the file
//! when it lets go cleanly. The file itself is never deleted: deleting it would let two
//! processes lock two different files of the same name.
//!
//! Only `serve` takes it. The CLI (`deliveries list/retry/…`) opens the database without it,
//! which SQLite's own locking makes safe while `serve` runs.

use super::super::StoreError;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The lock file of the database at `db`: `printbell.db` → `printbell.db.lock`.
pub(in crate::store) fn path_of(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_os_string();
    name.push(".lock");
    PathBuf::from(name)
}

/// Held while `serve` runs; dropping it releases the lock.
#[derive(Debug)]
pub(in crate::store) struct FileLock {
    file: File,
}

impl FileLock {
    /// Takes the lock of the store at `db`, or says which process holds it.
    pub(in crate::store) fn acquire(db: &Path) -> Result<FileLock, StoreError> {
        let path = path_of(db);
        let location = db.display().to_string();
        let failed = |e: std::io::Error| StoreError::Open {
            location: location.clone(),
            source: match super::access::problem(db) {
                Some(why) => Arc::new(super::migrations::Unwritable(why)),
                None => Arc::new(LockFileError {
                    path: path.clone(),
                    source: e,
                }),
            },
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(failed)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let holder = match file.read_to_string(&mut text) {
                    Ok(_) => Holder::parse(&text),
                    Err(_) => Holder::Unknown,
                };
                return Err(StoreError::InUse {
                    location,
                    holder: holder.describe(&path),
                });
            }
            Err(TryLockError::Error(e)) => return Err(failed(e)),
        }
        let mine = format!("{}\n", std::process::id());
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(mine.as_bytes()))
            .and_then(|()| file.sync_data())
            .map_err(failed)?;
        Ok(FileLock { file })
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // A clean exit leaves no pid behind; the lock goes with the file handle anyway.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

/// Who holds a lock, as its file says.
#[derive(Debug, PartialEq, Eq)]
enum Holder {
    Pid(u32),
    Unknown,
}

impl Holder {
    fn parse(text: &str) -> Holder {
        text.lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .map_or(Holder::Unknown, Holder::Pid)
    }

    fn describe(&self, path: &Path) -> String {
        match self {
            Holder::Pid(pid) => format!("pid {pid}"),
            // Between its lock and its write, or a file of another program.
            Holder::Unknown => format!("pid not recorded in {}", path.display()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot lock {}: {source}", path.display())]
struct LockFileError {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_store_is_refused_naming_the_holder() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("p.db");
        let first = FileLock::acquire(&db).expect("first lock");
        let err = FileLock::acquire(&db).expect_err("second lock");
        let pid = std::process::id();
        assert!(err.to_string().contains(&format!("pid {pid}")), "{err}");
        drop(first);
        let again = FileLock::acquire(&db).expect("lock after release");
        drop(again);
        let left = std::fs::read_to_string(path_of(&db)).expect("lock file");
        assert_eq!(left, "", "a clean release leaves no pid");
    }

    #[test]
    fn holders_are_read_from_the_file() {
        assert_eq!(Holder::parse("123\n"), Holder::Pid(123));
        assert_eq!(Holder::parse(""), Holder::Unknown);
        assert_eq!(Holder::parse("x"), Holder::Unknown);
    }
}
