//! Putting outputs in place atomically, and cleaning up after writers that were killed.
//!
//! Temporary names carry the writer's process id: `.{name}.tmp-{pid}-{nanos}` and `.{name}.old-{pid}-{nanos}`
//! for directories (`vocab::write_dir_atomically`), `{stem}.tmp-{pid}` for files (token shards and manifests). The
//! next run removes the ones whose process is gone, and puts back a directory that a run killed between its two
//! renames left only under its `.old-` name. Where liveness cannot be checked (not Linux) nothing is removed.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Whether process `pid` may still be running (always true where we cannot tell).
pub fn pid_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    #[cfg(target_os = "linux")]
    {
        Path::new("/proc").join(pid.to_string()).exists()
    }
    #[cfg(not(target_os = "linux"))]
    {
        true
    }
}

/// The process id at the start of `tail` (`PID` or `PID-NANOS`).
fn pid_of(tail: &str) -> Option<u32> {
    tail.split('-').next()?.parse().ok()
}

/// Entries of `dir` whose name `tail_of` maps to `PID...` of a process that is gone, with that tail.
fn stale_by(dir: &Path, tail_of: impl Fn(&str) -> Option<&str>) -> Vec<(PathBuf, String)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let tail = tail_of(&name)?.to_string();
            let pid = pid_of(&tail)?;
            (!pid_alive(pid)).then(|| (e.path(), tail))
        })
        .collect()
}

fn stale(dir: &Path, prefix: &str) -> Vec<(PathBuf, String)> {
    stale_by(dir, |n| n.strip_prefix(prefix))
}

/// Remove what `stale_by` finds.
pub fn clean_stale_by(dir: &Path, tail_of: impl Fn(&str) -> Option<&str>) {
    for (p, _) in stale_by(dir, tail_of) {
        let _ = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
    }
}

/// Remove the files and directories in `dir` named `{prefix}{pid}...` left by processes that are gone.
pub fn clean_stale(dir: &Path, prefix: &str) {
    clean_stale_by(dir, |n| n.strip_prefix(prefix));
}

/// Before writing the directory `dir`: if a killed writer left it only as `.{name}.old-*`, put the newest such copy
/// back; then remove temporary and old copies of writers that are gone.
pub fn recover_dir(dir: &Path) -> Result<()> {
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else { return Ok(()) };
    let parent = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
    let name = name.to_string_lossy();
    let old_prefix = format!(".{name}.old-");
    if !dir.exists() {
        // Newest first: the stamp is `pid-nanos`, so compare the nanos.
        let nanos = |tail: &str| tail.split('-').nth(1).and_then(|n| n.parse::<u128>().ok()).unwrap_or(0);
        if let Some((p, _)) = stale(parent, &old_prefix).into_iter().max_by_key(|(_, t)| nanos(t)) {
            std::fs::rename(&p, dir).map_err(|e| Error::io(&p, e))?;
        }
    }
    clean_stale(parent, &old_prefix);
    clean_stale(parent, &format!(".{name}.tmp-"));
    Ok(())
}

/// Put the directory `tmp` in the place of the existing directory `dir`. On Linux the two are exchanged in one
/// step (`renameat2(RENAME_EXCHANGE)`), so no moment exists without `dir`; elsewhere, or on a filesystem that
/// cannot exchange, `dir` moves to `old` and `tmp` to `dir` (a kill in between is repaired by `recover_dir`).
/// The previous contents are removed either way.
pub fn replace_dir(tmp: &Path, dir: &Path, old: &Path) -> Result<()> {
    #[cfg(target_os = "linux")]
    if exchange(tmp, dir) {
        let _ = std::fs::remove_dir_all(tmp);
        return Ok(());
    }
    std::fs::rename(dir, old).map_err(|e| Error::io(dir, e))?;
    if let Err(e) = std::fs::rename(tmp, dir) {
        let _ = std::fs::rename(old, dir);
        return Err(Error::io(dir, e));
    }
    let _ = std::fs::remove_dir_all(old);
    Ok(())
}

/// Swap two paths atomically; false when the system or filesystem cannot (the caller falls back).
#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> bool {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let (Ok(ca), Ok(cb)) = (CString::new(a.as_os_str().as_bytes()), CString::new(b.as_os_str().as_bytes())) else {
        return false;
    };
    // SAFETY: both are valid NUL-terminated paths; renameat2 reads them and touches no memory of ours.
    let rc =
        unsafe { libc::renameat2(libc::AT_FDCWD, ca.as_ptr(), libc::AT_FDCWD, cb.as_ptr(), libc::RENAME_EXCHANGE) };
    rc == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Above Linux's largest pid (2^22), so never alive.
    const DEAD: u32 = 99_999_999;

    #[test]
    fn a_directory_left_only_as_old_is_put_back() {
        let t = tempfile::tempdir().unwrap();
        let old = t.path().join(format!(".tok.old-{DEAD}-5"));
        std::fs::create_dir(&old).unwrap();
        std::fs::write(old.join("nanobpe.json"), "old").unwrap();
        let older = t.path().join(format!(".tok.old-{DEAD}-3"));
        std::fs::create_dir(&older).unwrap();
        let tmp = t.path().join(format!(".tok.tmp-{DEAD}-5"));
        std::fs::create_dir(&tmp).unwrap();
        let dir = t.path().join("tok");
        recover_dir(&dir).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("nanobpe.json")).unwrap(), "old");
        let left: Vec<_> = std::fs::read_dir(t.path()).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(left, vec![std::ffi::OsString::from("tok")]);
    }

    #[test]
    fn live_writers_are_left_alone() {
        let t = tempfile::tempdir().unwrap();
        let mine = t.path().join(format!(".tok.tmp-{}-1", std::process::id()));
        std::fs::create_dir(&mine).unwrap();
        let theirs = t.path().join(format!("manifest.tmp-{DEAD}"));
        std::fs::write(&theirs, "x").unwrap();
        let unrelated = t.path().join("manifest.tmp-notapid");
        std::fs::write(&unrelated, "x").unwrap();
        recover_dir(&t.path().join("tok")).unwrap();
        clean_stale(t.path(), "manifest.tmp-");
        assert!(mine.exists() && unrelated.exists() && !theirs.exists());
        assert!(!t.path().join("tok").exists());
    }

    #[test]
    fn replace_swaps_contents() {
        let t = tempfile::tempdir().unwrap();
        let (dir, tmp, old) = (t.path().join("d"), t.path().join(".d.tmp"), t.path().join(".d.old"));
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("f"), "old").unwrap();
        std::fs::create_dir(&tmp).unwrap();
        std::fs::write(tmp.join("f"), "new").unwrap();
        replace_dir(&tmp, &dir, &old).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("f")).unwrap(), "new");
        assert!(!tmp.exists() && !old.exists());
    }
}
