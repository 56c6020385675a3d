//! Decoding + resampling to 16 kHz mono, per format. Each fixture is the same 4.2 s utterance,
//! so time per file ÷ 4.2 is the cost per second of audio.

mod common;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use needtag::config::AudioConfig;

fn decode(c: &mut Criterion) {
    let cfg = AudioConfig::default();
    let mut g = c.benchmark_group("decode_resample_4.2s");
    g.throughput(Throughput::Elements(4200)); // milliseconds of audio: elem/s = audio ms per second
    for (name, file) in [
        ("wav_16k", "aishell_S0764W0121.wav"),
        ("wav_44k_stereo", "s0764_stereo44k_left_only.wav"),
        ("m4a_aac_44k", "s0764_aac44k.m4a"),
        ("mp3_22k", "s0764_mp3_22k.mp3"),
        ("amr_nb", "s0764_amrnb_12k2.amr"),
        ("amr_wb", "s0764_amrwb_12k65.awb"),
        ("webm_opus", "s0764_opus.webm"),
        ("ogg_opus", "s0764_opus.ogg"),
        ("flac", "s0764.flac"),
    ] {
        let bytes = common::fixture(file);
        g.bench_function(name, |b| {
            b.iter(|| needtag::audio::decode(&bytes, &cfg).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
