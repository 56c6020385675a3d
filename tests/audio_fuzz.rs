//! Random and mutated bytes never panic or hang the decoder: every input either decodes or
//! fails with one of the documented error codes, within a time bound.

mod common;

use std::time::{Duration, Instant};

use needtag::audio;
use needtag::config::AudioConfig;
use proptest::prelude::*;

const CODES: &[&str] = &[
    "empty_audio",
    "unsupported_format",
    "corrupt_audio",
    "audio_too_long",
    "audio_too_short",
    "payload_too_large",
];

/// Cap this test process's address space so that a demuxer trying to allocate from a forged
/// size fails here on every machine, not only on small ones: such an allocation aborts the
/// process instead of returning an error, so it must never be attempted.
fn cap_address_space() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let cap = 3 << 30;
        let limit = libc::rlimit {
            rlim_cur: cap,
            rlim_max: cap,
        };
        // SAFETY: setrlimit reads a valid struct; lowering our own limit needs no privilege.
        let rc = unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) };
        assert_eq!(rc, 0, "setrlimit failed");
    });
}

fn decode_checked(bytes: &[u8]) {
    cap_address_space();
    let cfg = AudioConfig {
        max_seconds: 30.0,
        ..AudioConfig::default()
    };
    let t = Instant::now();
    let result = std::panic::catch_unwind(|| audio::decode(bytes, &cfg));
    let elapsed = t.elapsed();
    match result {
        Ok(Ok(a)) => assert!(a.samples.len() <= 30 * audio::SAMPLE_RATE as usize),
        Ok(Err(e)) => assert!(
            CODES.contains(&e.code()),
            "undocumented error {}: {e}",
            e.code()
        ),
        Err(_) => panic!(
            "decoder panicked on {} bytes starting {:02x?}",
            bytes.len(),
            &bytes[..bytes.len().min(16)]
        ),
    }
    assert!(
        elapsed < Duration::from_secs(5),
        "decoding {} bytes took {elapsed:?}",
        bytes.len()
    );
}

/// Seeds: one small file of every container.
fn seeds() -> Vec<Vec<u8>> {
    [
        "s0764_aac44k.m4a",
        "s0764_mp3_22k.mp3",
        "s0764_opus.webm",
        "s0764_opus.ogg",
        "s0764.flac",
        "s0764_amrnb_4k75_dtx.amr",
        "s0764_amrnb.3gp",
        "s0764_amrwb_12k65.awb",
        "s0764_adts.aac",
        "s0764_mulaw8k.wav",
    ]
    .iter()
    .map(|f| common::fixture_bytes(&format!("audio/{f}")))
    .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        decode_checked(&bytes);
    }

    #[test]
    fn random_bytes_behind_real_magic(magic in 0usize..8, tail in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let heads: [&[u8]; 8] = [b"RIFF\x24\0\0\0WAVEfmt ", b"\0\0\0\x20ftypM4A ", b"#!AMR\n", b"#!AMR-WB\n", b"OggS\0\x02", b"fLaC\0\0\0\x22", &[0x1A, 0x45, 0xDF, 0xA3], &[0xFF, 0xF1, 0x50, 0x80]];
        let mut bytes = heads[magic].to_vec();
        bytes.extend(tail);
        decode_checked(&bytes);
    }

    #[test]
    fn mutated_real_files(seed in 0usize..10, flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..24), cut in any::<prop::sample::Index>()) {
        let mut bytes = seeds().swap_remove(seed);
        for (at, v) in flips {
            let i = at.index(bytes.len());
            bytes[i] = v;
        }
        // Sometimes also truncate.
        if bytes.len() > 64 && cut.index(4) == 0 {
            let keep = cut.index(bytes.len());
            bytes.truncate(keep);
        }
        decode_checked(&bytes);
    }
}
