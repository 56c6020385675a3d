//! Every format a phone or browser sends: each file decodes to the expected duration at 16 kHz
//! mono, or fails with the expected error code. Inputs without speech give no transcript.

mod common;

use needtag::audio::{self, SAMPLE_RATE};
use needtag::config::{AudioConfig, LongAudio};
use needtag::pipeline::Speech;

enum Expect {
    Seconds(f64),
    Error(&'static str),
}
use Expect::*;

/// Bundled fixtures (fixtures/make_audio.sh): the AISHELL-1 clip BAC009S0764W0121 (4.20 s) in
/// every container and codec, plus inputs without speech.
const FIXTURES: &[(&str, Expect)] = &[
    ("aishell_S0764W0121.wav", Seconds(4.20)),
    ("s0764_aac44k.m4a", Seconds(4.20)),
    ("s0764_aac44k_stereo.m4a", Seconds(4.20)),
    ("s0764_adts.aac", Seconds(4.25)),
    ("s0764_mp3_22k.mp3", Seconds(4.20)),
    ("s0764_mp3_misnamed.wav", Seconds(4.20)),
    ("s0764_opus.webm", Seconds(4.20)),
    ("s0764_opus.ogg", Seconds(4.20)),
    ("s0764.flac", Seconds(4.20)),
    ("s0764_mulaw8k.wav", Seconds(4.20)),
    ("s0764_alaw8k.wav", Seconds(4.20)),
    ("s0764_48k_24bit.wav", Seconds(4.20)),
    ("s0764_44k_float.wav", Seconds(4.20)),
    ("s0764_amrnb_12k2.amr", Seconds(4.22)),
    ("s0764_amrnb_4k75_dtx.amr", Seconds(4.22)),
    ("s0764_amrnb.3gp", Seconds(4.22)),
    ("s0764_amrwb_12k65.awb", Seconds(4.22)),
    ("s0764_stereo44k_left_only.wav", Seconds(4.20)),
    ("s0764_clipped.wav", Seconds(4.20)),
    ("s0764_dc_offset.wav", Seconds(4.20)),
    ("s0764_too_short_0.4s.wav", Error("audio_too_short")),
    ("s0764_truncated.m4a", Error("corrupt_audio")),
    ("empty_0_bytes.wav", Error("empty_audio")),
    ("silence_10s.wav", Seconds(10.0)),
    ("silence_10s.m4a", Seconds(10.0)),
    ("roomtone_10s.wav", Seconds(10.0)),
    ("white_noise_8s.wav", Seconds(8.0)),
    ("pink_noise_8s.wav", Seconds(8.0)),
    ("hum_8s.wav", Seconds(8.0)),
];

fn check(name: &str, bytes: &[u8], expect: &Expect, cfg: &AudioConfig) -> Result<(), String> {
    let t = std::time::Instant::now();
    let result = audio::decode(bytes, cfg);
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    match (expect, result) {
        (Seconds(s), Ok(a)) => {
            let got = a.samples.len() as f64 / SAMPLE_RATE as f64;
            eprintln!(
                "{name:40} {:6} {:10} {got:7.3} s  {:5.2} ms/s",
                a.info.container,
                a.info.codec,
                ms / got
            );
            if (got - s).abs() > 0.1 {
                return Err(format!("{name}: decoded {got:.3} s, expected {s:.2} s"));
            }
            if (a.info.duration_s - got).abs() > 1e-6 {
                return Err(format!(
                    "{name}: reported duration {} differs from samples",
                    a.info.duration_s
                ));
            }
            Ok(())
        }
        (Error(code), Err(e)) if e.code() == *code => {
            eprintln!("{name:40} error {code}: {e}");
            Ok(())
        }
        (Seconds(_), Err(e)) => Err(format!("{name}: expected audio, got {}: {e}", e.code())),
        (Error(code), Ok(_)) => Err(format!("{name}: expected {code}, but it decoded")),
        (Error(code), Err(e)) => Err(format!("{name}: expected {code}, got {}: {e}", e.code())),
    }
}

#[test]
fn bundled_fixtures_decode_or_fail_as_expected() {
    let cfg = AudioConfig::default();
    let failures: Vec<String> = FIXTURES
        .iter()
        .filter_map(|(name, expect)| {
            check(
                name,
                &common::fixture_bytes(&format!("audio/{name}")),
                expect,
                &cfg,
            )
            .err()
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn shared_format_corpus_decodes_or_fails_as_expected() {
    let Some(dir) = common::shared("audio/formats") else {
        return;
    };
    let cfg = AudioConfig::default();
    let mut failures = Vec::new();
    let rows = common::read_tsv(&dir.join("manifest.tsv"));
    assert!(rows.len() >= 40, "manifest lists {} files", rows.len());
    for row in rows {
        let name = &row["file"];
        let expect = match (name.as_str(), row["seconds"].as_str()) {
            (n, _) if n.starts_with("empty") => Error("empty_audio"),
            (n, _) if n.contains("too_short") => Error("audio_too_short"),
            (_, "-") => Error("corrupt_audio"),
            (_, s) => Seconds(s.parse().unwrap()),
        };
        let bytes = std::fs::read(dir.join(name)).unwrap();
        if let Err(e) = check(name, &bytes, &expect, &cfg) {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn long_audio_is_rejected_or_cut_deliberately() {
    // Three copies of the 8.39 s THCHS-30 clip make 25 s.
    let long = common::concat_wav(&["audio/thchs30_test.wav"; 3], 0);

    let reject = AudioConfig {
        max_seconds: 20.0,
        ..AudioConfig::default()
    };
    let e = audio::decode(&long, &reject).unwrap_err();
    assert_eq!(e.code(), "audio_too_long", "{e}");

    let cut = AudioConfig {
        max_seconds: 20.0,
        long_audio: LongAudio::Truncate,
        ..AudioConfig::default()
    };
    let a = audio::decode(&long, &cut).unwrap();
    assert!(a.info.truncated);
    assert_eq!(a.samples.len(), 20 * SAMPLE_RATE as usize);

    let small = AudioConfig {
        max_bytes: 1000,
        ..AudioConfig::default()
    };
    assert_eq!(
        audio::decode(&long, &small).unwrap_err().code(),
        "payload_too_large"
    );
}

#[test]
fn inputs_without_speech_give_no_text() {
    let speech = Speech::load(&common::config()).unwrap();
    let mut worker = speech.worker().unwrap();
    let prompt = speech.asr().build_prompt(&[]);
    let mut files: Vec<std::path::PathBuf> = [
        "silence_10s.wav",
        "silence_10s.m4a",
        "roomtone_10s.wav",
        "white_noise_8s.wav",
        "pink_noise_8s.wav",
        "hum_8s.wav",
    ]
    .iter()
    .map(|f| common::fixture(&format!("audio/{f}")))
    .collect();
    if let Some(dir) = common::shared("audio/formats") {
        for f in [
            "silence_30s.m4a",
            "silence_30s_digital_zero.wav",
            "roomtone_10s_-60dBFS.wav",
        ] {
            files.push(dir.join(f));
        }
    }
    for f in files {
        let out = speech
            .transcribe(&mut worker, std::fs::read(&f).unwrap(), Some(&prompt))
            .unwrap();
        assert!(!out.speech_detected, "{}: speech detected", f.display());
        assert_eq!(
            out.transcript.text,
            "",
            "{}: invented {:?}",
            f.display(),
            out.transcript.text
        );
        assert!(out.transcript.segments.is_empty());
    }
}
