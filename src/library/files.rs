//! Reading a library directory: only regular files, each at most [`MAX_FILE_BYTES`], each UTF-8
//! text. Anything else on disk (a directory or FIFO named `*.toml`, a huge file, bytes that are
//! not UTF-8) is a problem that names the file, as an invalid entry would be: it is never an I/O
//! error without a name, and never a read that waits for a writer.

use std::io::Read;
use std::path::Path;

use crate::error::{Error, LibraryProblem, LibraryProblems, Result};

/// Largest library file read (the biggest in the default library is about 60 KB).
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Largest learned verifier file read (the default library's is about 3 MB).
pub const MAX_VERIFIER_BYTES: u64 = 32 * 1024 * 1024;

fn problem(file: String, line: Option<usize>, message: String) -> LibraryProblem {
    LibraryProblem {
        file,
        line,
        field: None,
        message,
    }
}

/// The library files of a directory: `*.toml` and the learned verifier at its top, `*.toml` in
/// `needs/` and in `packs/`, as (path relative to `dir`, text).
pub(super) fn read_dir(dir: &Path) -> Result<Vec<(String, String)>> {
    if !dir.is_dir() {
        return Err(Error::Library(LibraryProblems(vec![problem(
            dir.display().to_string(),
            None,
            "not a directory".into(),
        )])));
    }
    let mut files = Vec::new();
    let mut problems = Vec::new();
    for sub in ["", "needs", "packs"] {
        let d = dir.join(sub);
        if !sub.is_empty() && !d.is_dir() {
            continue;
        }
        let shown = if sub.is_empty() {
            dir.display().to_string()
        } else {
            sub.to_string()
        };
        let entries = match std::fs::read_dir(&d) {
            Ok(entries) => entries,
            Err(e) => {
                problems.push(problem(
                    shown,
                    None,
                    format!("cannot list the directory: {e}"),
                ));
                continue;
            }
        };
        let mut names = Vec::new();
        for entry in entries {
            match entry {
                Ok(entry) => names.push(entry.file_name()),
                Err(e) => {
                    problems.push(problem(
                        shown.clone(),
                        None,
                        format!("cannot list the directory: {e}"),
                    ));
                }
            }
        }
        names.sort();
        for name in names {
            let path = d.join(&name);
            let verifier = sub.is_empty() && name == crate::verifier::FILE;
            if !verifier && path.extension().is_none_or(|e| e != "toml") {
                continue;
            }
            let max = if verifier {
                MAX_VERIFIER_BYTES
            } else {
                MAX_FILE_BYTES
            };
            let name = name.to_string_lossy();
            let rel = if sub.is_empty() {
                name.into_owned()
            } else {
                format!("{sub}/{name}")
            };
            match read_file(&path, max) {
                Ok(text) => files.push((rel, text)),
                Err((line, message)) => problems.push(problem(rel, line, message)),
            }
        }
    }
    if problems.is_empty() {
        Ok(files)
    } else {
        Err(Error::Library(LibraryProblems(problems)))
    }
}

/// One library file's text, or why it cannot be one (with the line, for bytes that are not
/// UTF-8).
fn read_file(path: &Path, max: u64) -> std::result::Result<String, (Option<usize>, String)> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    // Opening a FIFO for reading waits for a writer; without blocking it returns at once, and
    // the type check below refuses it. The flag changes nothing for a regular file.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    let file = options
        .open(path)
        .map_err(|e| (None, format!("cannot be opened: {e}")))?;
    let meta = file
        .metadata()
        .map_err(|e| (None, format!("cannot be read: {e}")))?;
    if meta.is_dir() {
        return Err((None, "is a directory, not a library file".into()));
    }
    if !meta.is_file() {
        return Err((
            None,
            "is not a regular file (a FIFO, socket or device); only regular files are read".into(),
        ));
    }
    let too_big = || {
        (
            None,
            format!("is larger than {max} bytes, the most this library file may have"),
        )
    };
    if meta.len() > max {
        return Err(too_big());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| (None, format!("cannot be read: {e}")))?;
    if bytes.len() as u64 > max {
        return Err(too_big());
    }
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        let line = bytes[..at].iter().filter(|&&b| b == b'\n').count() + 1;
        (
            Some(line),
            format!(
                "is not UTF-8 text: byte 0x{:02x} at line {line} (save the file as UTF-8)",
                bytes[at]
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_library(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("needtag-files-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("needs")).unwrap();
        std::fs::write(dir.join("library.toml"), "name = \"x\"\n").unwrap();
        dir
    }

    fn problems_of(dir: &Path) -> Vec<LibraryProblem> {
        match read_dir(dir) {
            Err(Error::Library(p)) => p.0,
            other => panic!("expected library problems, got {other:?}"),
        }
    }

    #[test]
    fn bytes_that_are_not_utf8_are_named_with_their_line() {
        let dir = temp_library("utf8");
        std::fs::write(dir.join("needs/bad.toml"), b"# ok\nname=\"\xff\"\n").unwrap();
        let p = problems_of(&dir);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].file, "needs/bad.toml");
        assert_eq!(p[0].line, Some(2));
        assert!(p[0].message.contains("UTF-8"), "{}", p[0].message);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn directories_fifos_and_huge_files_are_problems_not_errors_or_hangs() {
        let dir = temp_library("kinds");
        std::fs::create_dir(dir.join("needs/x.toml")).unwrap();
        let fifo = dir.join("needs/pipe.toml");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo only creates a file system entry from a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let big = std::fs::File::create(dir.join("big.toml")).unwrap();
        big.set_len(MAX_FILE_BYTES + 1).unwrap();
        let started = std::time::Instant::now();
        let p = problems_of(&dir);
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        let files: Vec<&str> = p.iter().map(|p| p.file.as_str()).collect();
        assert_eq!(
            files,
            ["big.toml", "needs/pipe.toml", "needs/x.toml"],
            "{p:?}"
        );
        assert!(p[0].message.contains("larger than"));
        assert!(p[1].message.contains("not a regular file"));
        assert!(p[2].message.contains("directory"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn regular_files_are_read() {
        let dir = temp_library("ok");
        std::fs::write(dir.join("needs/a.toml"), "x = 1\n").unwrap();
        std::fs::write(dir.join("needs/readme.md"), "not toml").unwrap();
        let files = read_dir(&dir).unwrap();
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["library.toml", "needs/a.toml"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
