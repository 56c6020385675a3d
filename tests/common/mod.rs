//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod postgres;
pub mod receiver;
pub mod server;
pub mod wav;

use std::path::{Path, PathBuf};

use needtag::Config;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(name: &str) -> PathBuf {
    root().join("fixtures").join(name)
}

pub fn fixture_bytes(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// `../shared` beside the checkout, when this machine has it. Tests that need it print why they
/// skip and return.
pub fn shared(sub: &str) -> Option<PathBuf> {
    let dir = root().join("..").join("shared").join(sub);
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "SKIP: {} is absent; this test only runs where ../shared exists",
            dir.display()
        );
        None
    }
}

/// The default configuration with the prepared models of this checkout, and no archive or
/// jobs (a test server gets its own file for both, see `server::config`).
pub fn config() -> Config {
    let mut cfg = Config::default();
    cfg.models.dir = root().join("models/prepared");
    cfg.archive.enabled = false;
    cfg.jobs.enabled = false;
    cfg
}

/// Tab-separated file with a header row, as a list of column→value maps.
pub fn read_tsv(path: &Path) -> Vec<std::collections::HashMap<String, String>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            header
                .iter()
                .map(|h| h.to_string())
                .zip(l.split('\t').map(String::from))
                .collect()
        })
        .collect()
}

/// Fixture WAVs (all 16-bit PCM with the same format) joined into one WAV, with `gap_samples` of
/// silence after each part.
pub fn concat_wav(parts: &[&str], gap_samples: usize) -> Vec<u8> {
    let paths: Vec<PathBuf> = parts.iter().map(|p| fixture(p)).collect();
    wav::join_wav_files(&paths, gap_samples)
}

/// What a rep should not read in a text: a character outside what `needtag::asr::chars`
/// allows, half-width and full-width commas mixed, an unmatched bracket, marks in a row, or a
/// clause written twice back to back; one line naming them, or None.
pub fn unreadable(what: &str, text: &str) -> Option<String> {
    let problems = needtag::asr::chars::problems(text);
    (!problems.is_empty()).then(|| {
        format!(
            "{what}: {}\n  in {text:?}",
            problems
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        )
    })
}

/// [`unreadable`] over a transcript's text and each of its segments.
pub fn unreadable_transcript(what: &str, t: &needtag::asr::Transcript) -> Vec<String> {
    std::iter::once(unreadable(what, &t.text))
        .chain(
            t.segments
                .iter()
                .map(|s| unreadable(&format!("{what}, segment at {:.2} s", s.start), &s.text)),
        )
        .flatten()
        .collect()
}

/// Fails on anything [`unreadable`] finds. Every transcript a test produces goes through this.
pub fn assert_readable(what: &str, text: &str) {
    if let Some(p) = unreadable(what, text) {
        panic!("{p}");
    }
}

/// [`assert_readable`] over a transcript's text and each of its segments.
pub fn assert_transcript_readable(what: &str, t: &needtag::asr::Transcript) {
    let p = unreadable_transcript(what, t);
    assert!(p.is_empty(), "{}", p.join("\n"));
}
