//! Why a store file cannot be opened for writing, in words: SQLite says only "unable to open
//! database file" or "attempt to write a readonly database", and opens a file it may not write
//! read-only without a word, so a `serve` would start and then refuse every event.
//!
//! [`problem`] looks at the file system the way SQLite will use it: the directory must exist
//! and be writable (SQLite creates the file and its `-wal` and `-shm` files there), and the
//! files that exist must be writable. It asks the kernel with `access(2)` (Unix), so what it
//! says holds for this process: root may write a file of mode 0444, while a read-only mount
//! or an immutable file (`chattr +i`) stops root too. It creates nothing.

use std::path::Path;

/// Why the store at `db` cannot be opened for writing, or `None` when nothing on the file
/// system stands in the way.
pub(in crate::store) fn problem(db: &Path) -> Option<String> {
    let dir = match db.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Some(format!("the directory {} does not exist", dir.display()))
        }
        Err(e) => return Some(format!("cannot reach the directory {}: {e}", dir.display())),
        Ok(m) if !m.is_dir() => return Some(format!("{} is not a directory", dir.display())),
        Ok(_) => {}
    }
    match std::fs::metadata(db) {
        Ok(m) if m.is_dir() => return Some("it is a directory, not a file".into()),
        Ok(m) => {
            if let Some(why) = not_writable(db) {
                return Some(file_reason("the file", &m, &why));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Some(format!("cannot read it: {e}")),
    }
    let dir_writable = not_writable(dir);
    for suffix in ["-wal", "-shm"] {
        let mut name = db.as_os_str().to_os_string();
        name.push(suffix);
        let side = Path::new(&name);
        match std::fs::metadata(side) {
            Ok(m) => {
                if let Some(why) = not_writable(side) {
                    return Some(file_reason(&side.display().to_string(), &m, &why));
                }
            }
            Err(_) => {
                if let Some(why) = &dir_writable {
                    return Some(format!(
                        "the directory {} is not writable ({why}), and SQLite creates the \
                         database's files there",
                        dir.display()
                    ));
                }
            }
        }
    }
    None
}

/// `what` (a file that exists) is not writable because of `why`: "read-only" when its mode
/// or its file system says so.
fn file_reason(what: &str, meta: &std::fs::Metadata, why: &str) -> String {
    if meta.permissions().readonly() {
        format!("{what} is read-only ({})", mode(meta))
    } else {
        format!("{what} is read-only for this process ({why})")
    }
}

#[cfg(unix)]
fn mode(meta: &std::fs::Metadata) -> String {
    use std::os::unix::fs::PermissionsExt;
    format!("mode {:04o}", meta.permissions().mode() & 0o7777)
}

#[cfg(not(unix))]
fn mode(_meta: &std::fs::Metadata) -> String {
    "its read-only attribute is set".into()
}

/// Why this process may not write `path` (a directory: create files in it), if it may not.
#[cfg(unix)]
fn not_writable(path: &Path) -> Option<String> {
    use rustix::fs::{access, Access};
    use rustix::io::Errno;
    let wanted = if path.is_dir() {
        Access::WRITE_OK | Access::EXEC_OK
    } else {
        Access::WRITE_OK
    };
    match access(path, wanted) {
        Ok(()) => None,
        Err(Errno::ACCESS) => Some("permission denied".into()),
        Err(Errno::ROFS) => Some("a read-only file system".into()),
        Err(Errno::PERM) => Some("not permitted: immutable? see lsattr".into()),
        Err(e) => Some(e.to_string()),
    }
}

#[cfg(not(unix))]
fn not_writable(path: &Path) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    (!meta.is_dir() && meta.permissions().readonly()).then(|| "read-only".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_directory_is_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("nowhere").join("p.db");
        let why = problem(&db).expect("a problem");
        assert!(why.contains("does not exist"), "{why}");
        assert!(why.contains("nowhere"), "{why}");
    }

    #[test]
    fn a_writable_directory_and_file_are_fine() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("p.db");
        assert_eq!(problem(&db), None);
        std::fs::write(&db, b"").expect("file");
        assert_eq!(problem(&db), None);
    }

    #[test]
    fn a_directory_in_place_of_the_file_is_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        let why = problem(dir.path()).expect("a problem");
        assert!(why.contains("is a directory"), "{why}");
    }
}
