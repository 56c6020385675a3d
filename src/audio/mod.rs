//! Audio ingest: sniff the container from the bytes, decode to f32 PCM, mix to mono, resample to
//! 16 kHz, enforce the size and duration limits, and find the speech in it (VAD).
//!
//! Nothing here knows about whisper or HTTP: the output is 16 kHz mono samples plus facts about
//! the source, and the speech regions for the next stage.

mod amr;
mod container;
mod opus_dec;
mod pcm;
mod resample;
mod sniff;
mod structure;
pub mod vad;

use bytes::Bytes;
use serde::Serialize;

pub(crate) use pcm::Pcm;
pub use pcm::{MAX_CHANNELS, MIN_RATE};
pub use sniff::{sniff, Container};
pub use vad::{SpeechMap, Timeline, Vad};

use crate::config::{AudioConfig, LongAudio};
use crate::error::{Error, Result};

/// The sample rate every later stage works at.
pub const SAMPLE_RATE: u32 = 16_000;

/// Decoded audio, 16 kHz mono, with what we learned about the source.
#[derive(Debug, Clone)]
pub struct DecodedAudio {
    pub samples: Vec<f32>,
    pub info: AudioInfo,
}

impl DecodedAudio {
    pub fn duration_s(&self) -> f64 {
        self.samples.len() as f64 / SAMPLE_RATE as f64
    }
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct AudioInfo {
    /// Container found in the bytes (`wav`, `mp4`, `amr`, `ogg`, …), whatever the file was called.
    pub container: String,
    /// Codec inside it (`pcm_s16le`, `aac`, `amr_nb`, `opus`, …).
    pub codec: String,
    pub source_sample_rate: u32,
    pub source_channels: u16,
    /// Length of the decoded audio in seconds (after any truncation).
    pub duration_s: f64,
    /// True when the audio was longer than the limit and only its start was kept.
    pub truncated: bool,
}

/// An upload's bytes, given to [`decode`] by value or by reference. Owned bytes (`Bytes`,
/// `Vec<u8>`) are decoded without a copy and freed as soon as the audio is out of them;
/// borrowed ones are copied once, since the demuxers need to own what they read.
pub trait AudioBytes: AsRef<[u8]> {
    fn into_bytes(self) -> Bytes;
}

impl AudioBytes for Bytes {
    fn into_bytes(self) -> Bytes {
        self
    }
}

impl AudioBytes for Vec<u8> {
    fn into_bytes(self) -> Bytes {
        Bytes::from(self)
    }
}

impl<T: AsRef<[u8]> + ?Sized> AudioBytes for &T {
    fn into_bytes(self) -> Bytes {
        Bytes::copy_from_slice(self.as_ref())
    }
}

/// Decode any supported upload to 16 kHz mono, enforcing the limits in `cfg`.
pub fn decode(bytes: impl AudioBytes, cfg: &AudioConfig) -> Result<DecodedAudio> {
    let raw = bytes.as_ref();
    if raw.is_empty() {
        return Err(Error::EmptyAudio);
    }
    if raw.len() > cfg.max_bytes {
        return Err(Error::PayloadTooLarge {
            bytes: raw.len(),
            limit: cfg.max_bytes,
        });
    }
    let container = sniff(raw)?;
    // Decode a little past the limit so "exactly at the limit" is not mistaken for "over it".
    let decode_limit = cfg.max_seconds + 0.05;
    // Each arm consumes the upload: its bytes are freed once the PCM is out of them.
    let (pcm, codec) = match container {
        Container::AmrNb | Container::AmrWb => {
            let decoded = amr::decode_file(raw, container, decode_limit);
            drop(bytes);
            decoded?
        }
        // The demuxers are third-party parsers fed untrusted bytes. Sizes they would allocate
        // from are checked first (a failed allocation aborts the process and cannot be caught);
        // an internal assertion in one of them (symphonia's Matroska reader has one that damaged
        // files reach) must become a clean error for this upload, not take the worker down.
        _ => {
            let checked = match container {
                Container::Mp4 => structure::check_mp4(raw),
                Container::Matroska => structure::check_matroska(raw),
                Container::Wav => structure::check_wav(raw),
                Container::Flac => structure::check_flac(raw),
                Container::Ogg => structure::check_ogg(raw),
                _ => Ok(()),
            };
            checked.map_err(|why| {
                Error::CorruptAudio(format!("{} file is damaged: {why}", container.name()))
            })?;
            let owned = bytes.into_bytes();
            let demux = |owned: Bytes, mix: Option<&[bool]>| {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                    container::decode(owned, container, decode_limit, mix)
                }))
                .unwrap_or_else(|_| {
                    Err(Error::CorruptAudio(format!(
                        "{} file is damaged (its structure is inconsistent)",
                        container.name()
                    )))
                })
            };
            let first = demux(owned.clone(), None)?;
            match first.0.measured() {
                // More than two channels: that pass only measured them; mix the active ones.
                Some(energy) if !(first.0.over_limit && cfg.long_audio == LongAudio::Reject) => {
                    let active = active_channels(energy);
                    drop(first);
                    demux(owned, Some(&active))?
                }
                _ => first,
            }
        }
    };
    let source_rate = pcm.rate;
    let source_channels = pcm.channels as u16;
    let over_limit = pcm.over_limit;
    // Decoding stops at the limit, so it never measures a longer file; the header may say.
    let declared_s = pcm.declared_seconds();
    let too_long = || Error::AudioTooLong {
        seconds: declared_s.filter(|&s| s > cfg.max_seconds),
        limit: cfg.max_seconds,
    };
    if pcm.frames() == 0 {
        return Err(Error::CorruptAudio(format!(
            "no audio could be decoded from this {}",
            container.name()
        )));
    }
    if over_limit && cfg.long_audio == LongAudio::Reject {
        return Err(too_long());
    }
    let (at_16k, channels) = pcm.finish()?;
    let mut samples = mixdown_blocks(&at_16k, channels);
    drop(at_16k);
    let max_samples = (cfg.max_seconds * SAMPLE_RATE as f64) as usize;
    let truncated = over_limit || samples.len() > max_samples;
    if truncated && cfg.long_audio == LongAudio::Reject {
        return Err(too_long());
    }
    samples.truncate(max_samples);
    condition(&mut samples);
    let duration_s = samples.len() as f64 / SAMPLE_RATE as f64;
    if duration_s < cfg.min_seconds {
        return Err(Error::AudioTooShort {
            seconds: duration_s,
            limit: cfg.min_seconds,
        });
    }
    Ok(DecodedAudio {
        samples,
        info: AudioInfo {
            container: container.name().to_string(),
            codec,
            source_sample_rate: source_rate,
            source_channels,
            duration_s,
            truncated,
        },
    })
}

/// Split audio longer than `max_s` seconds into nearly equal chunks, cutting at the quietest
/// 32 ms frame within two seconds of each ideal cut (a pause between words, not mid-syllable).
#[allow(clippy::single_range_in_vec_init)] // one chunk covering everything
pub fn chunks(samples: &[f32], max_s: f64) -> Vec<std::ops::Range<usize>> {
    let max = (max_s * SAMPLE_RATE as f64) as usize;
    if max == 0 || samples.len() <= max {
        return vec![0..samples.len()];
    }
    split(samples, samples.len().div_ceil(max))
}

/// Split audio into `n` nearly equal chunks cut at the quietest frame near each ideal cut.
#[allow(clippy::single_range_in_vec_init)]
pub fn split(samples: &[f32], n: usize) -> Vec<std::ops::Range<usize>> {
    if n <= 1 || samples.len() < n * SAMPLE_RATE as usize {
        return vec![0..samples.len()];
    }
    let frame = SAMPLE_RATE as usize * 32 / 1000;
    let window = 2 * SAMPLE_RATE as usize;
    let mut cuts = vec![0];
    for k in 1..n {
        let ideal = samples.len() * k / n;
        let lo = ideal
            .saturating_sub(window)
            .max(cuts[cuts.len() - 1] + frame);
        let hi = (ideal + window).min(samples.len() - frame);
        let quietest = (lo..hi.max(lo + 1))
            .step_by(frame / 2)
            .min_by(|&x, &y| {
                let e = |s: usize| {
                    samples[s..(s + frame).min(samples.len())]
                        .iter()
                        .map(|v| v * v)
                        .sum::<f32>()
                };
                e(x).total_cmp(&e(y))
            })
            .unwrap_or(ideal);
        cuts.push(quietest + frame / 2);
    }
    cuts.push(samples.len());
    cuts.windows(2)
        .map(|w| w[0]..w[1])
        .filter(|r| !r.is_empty())
        .collect()
}

/// Mix interleaved channels to mono. Channels that are far quieter than the loudest (a memo
/// recorded on one side of a stereo pair, the other side silent) are left out, so the speech
/// keeps its level instead of being halved by a silent partner.
pub fn mixdown(interleaved: &[f32], channels: usize) -> Vec<f32> {
    mixdown_blocks(&[interleaved], channels)
}

/// [`mixdown`] over interleaved audio kept in blocks of whole frames.
fn mixdown_blocks<B: AsRef<[f32]>>(blocks: &[B], channels: usize) -> Vec<f32> {
    let frames_of = || {
        blocks
            .iter()
            .flat_map(move |b| b.as_ref().chunks_exact(channels.max(1)))
    };
    if channels <= 1 {
        return blocks
            .iter()
            .flat_map(|b| b.as_ref().iter().copied())
            .collect();
    }
    let frames = blocks.iter().map(|b| b.as_ref().len()).sum::<usize>() / channels;
    let mut energy = vec![0f64; channels];
    for frame in frames_of() {
        for (e, &s) in energy.iter_mut().zip(frame) {
            *e += (s as f64) * (s as f64);
        }
    }
    let active = active_channels(&energy);
    let n_active = active.iter().filter(|&&a| a).count().max(1) as f32;
    let mut mono = Vec::with_capacity(frames);
    for frame in frames_of() {
        let sum: f32 = frame
            .iter()
            .zip(&active)
            .filter(|(_, &a)| a)
            .map(|(&s, _)| s)
            .sum();
        mono.push(sum / n_active);
    }
    mono
}

/// Channels within 20 dB of the loudest (by energy over the whole audio).
fn active_channels(energy: &[f64]) -> Vec<bool> {
    let loudest = energy.iter().cloned().fold(0.0, f64::max);
    energy
        .iter()
        .map(|&e| loudest > 0.0 && e >= loudest * 0.01)
        .collect()
}

/// Remove DC offset (a one-pole high-pass at ~10 Hz) and replace non-finite samples.
fn condition(samples: &mut [f32]) {
    if samples.is_empty() {
        return;
    }
    // Start the filter at the signal's mean so a constant offset does not ring at the start.
    let head = &samples[..samples.len().min(SAMPLE_RATE as usize / 10)];
    let mean = head
        .iter()
        .filter(|s| s.is_finite())
        .map(|&s| s as f64)
        .sum::<f64>()
        / head.len() as f64;
    let r = 1.0 - (2.0 * std::f64::consts::PI * 10.0 / SAMPLE_RATE as f64);
    let (mut prev_x, mut prev_y) = (mean, 0.0f64);
    for s in samples.iter_mut() {
        let x = if s.is_finite() { *s as f64 } else { prev_x };
        let y = x - prev_x + r * prev_y;
        prev_x = x;
        prev_y = y;
        *s = y.clamp(-4.0, 4.0) as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixdown_keeps_level_of_one_sided_stereo() {
        let left: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.05).sin() * 0.5).collect();
        let interleaved: Vec<f32> = left.iter().flat_map(|&l| [l, 0.0]).collect();
        let mono = mixdown(&interleaved, 2);
        assert_eq!(mono, left);
        let both: Vec<f32> = left.iter().flat_map(|&l| [l, l * 0.9]).collect();
        let mono = mixdown(&both, 2);
        assert!((mono[10] - left[10] * 0.95).abs() < 1e-6);
    }

    #[test]
    fn long_audio_is_cut_at_pauses() {
        let sr = SAMPLE_RATE as usize;
        // 40 s of tone with a silent gap at 19.5–20.5 s.
        let samples: Vec<f32> = (0..40 * sr)
            .map(|i| {
                if (19 * sr + sr / 2..20 * sr + sr / 2).contains(&i) {
                    0.0
                } else {
                    ((i as f32) * 0.1).sin()
                }
            })
            .collect();
        let parts = chunks(&samples, 30.0);
        assert_eq!(parts.len(), 2);
        let cut = parts[0].end;
        assert!(
            (19 * sr + sr / 2..20 * sr + sr / 2).contains(&cut),
            "cut at {} s",
            cut as f64 / sr as f64
        );
        assert_eq!(parts[1].end, samples.len());
        assert_eq!(chunks(&samples[..10 * sr], 30.0), vec![0..10 * sr]);
    }

    #[test]
    fn condition_removes_dc_offset() {
        let mut s: Vec<f32> = (0..16000)
            .map(|i| 0.3 + 0.1 * (i as f32 * 0.3).sin())
            .collect();
        condition(&mut s);
        let mean = s[8000..].iter().sum::<f32>() / 8000.0;
        assert!(mean.abs() < 0.01, "mean after high-pass {mean}");
    }

    #[test]
    fn empty_and_oversized_uploads_are_refused_before_decoding() {
        let cfg = AudioConfig {
            max_bytes: 10,
            ..AudioConfig::default()
        };
        assert_eq!(decode(&[], &cfg).unwrap_err().code(), "empty_audio");
        assert_eq!(
            decode(&[0u8; 11], &cfg).unwrap_err().code(),
            "payload_too_large"
        );
    }

    fn wav_8bit(rate: u32, seconds: f64) -> Vec<u8> {
        let mut wav = std::io::Cursor::new(Vec::new());
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: rate,
            bits_per_sample: 8,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::new(&mut wav, spec).unwrap();
        for i in 0..(rate as f64 * seconds) as usize {
            w.write_sample(((i as f32 * 0.3).sin() * 60.0) as i8)
                .unwrap();
        }
        w.finalize().unwrap();
        wav.into_inner()
    }

    #[test]
    fn implausible_source_rates_are_corrupt_audio() {
        for rate in [1, 100, 3_999] {
            let wav = wav_8bit(rate, 10.0);
            let e = decode(&wav, &AudioConfig::default()).unwrap_err();
            assert_eq!(e.code(), "corrupt_audio", "{rate} Hz: {e}");
        }
        assert!(decode(wav_8bit(4_000, 2.0), &AudioConfig::default()).is_ok());
    }

    #[test]
    fn too_long_says_longer_than_the_limit_with_the_length_the_header_declares() {
        let cfg = AudioConfig {
            max_seconds: 10.0,
            ..AudioConfig::default()
        };
        for (seconds, said) in [(10.5, "10.5"), (30.0, "30.0")] {
            let e = decode(wav_8bit(8_000, seconds), &cfg)
                .unwrap_err()
                .to_string();
            assert_eq!(
                e,
                format!("audio is longer than 10 s (it is {said} s long)"),
                "{seconds} s"
            );
        }
        // A stream that declares no length is only known to be longer.
        let mut wav = wav_8bit(8_000, 12.0);
        wav[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        wav[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
        let e = decode(&wav, &cfg).unwrap_err();
        assert_eq!(e.code(), "audio_too_long");
        assert_eq!(e.to_string(), "audio is longer than 10 s");
    }

    /// Eight channels decode as the mean of the active ones, like two do.
    #[test]
    fn many_channel_files_decode_like_their_active_channels() {
        let mut wav = std::io::Cursor::new(Vec::new());
        let spec = hound::WavSpec {
            channels: 8,
            sample_rate: 16_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::new(&mut wav, spec).unwrap();
        let tone = |i: usize| ((i as f32 * 0.05).sin() * 8000.0) as i16;
        for i in 0..16_000 * 2 {
            for ch in 0..8 {
                w.write_sample(if ch == 2 || ch == 5 { tone(i) } else { 0 })
                    .unwrap();
            }
        }
        w.finalize().unwrap();
        let eight = decode(wav.into_inner(), &AudioConfig::default()).unwrap();
        assert_eq!(eight.info.source_channels, 8);
        let mut mono = std::io::Cursor::new(Vec::new());
        let mut w = hound::WavWriter::new(
            &mut mono,
            hound::WavSpec {
                channels: 1,
                ..spec
            },
        )
        .unwrap();
        for i in 0..16_000 * 2 {
            w.write_sample(tone(i)).unwrap();
        }
        w.finalize().unwrap();
        let one = decode(mono.into_inner(), &AudioConfig::default()).unwrap();
        assert_eq!(eight.samples.len(), one.samples.len());
        let worst = eight
            .samples
            .iter()
            .zip(&one.samples)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(worst < 1e-4, "{worst}");
    }

    #[test]
    fn owned_and_borrowed_uploads_decode_alike() {
        let mut wav = std::io::Cursor::new(Vec::new());
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 44_100,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::new(&mut wav, spec).unwrap();
        for i in 0..2 * 44_100 * 2 {
            w.write_sample(((i as f32 * 0.01).sin() * 8000.0) as i16)
                .unwrap();
        }
        w.finalize().unwrap();
        let wav = wav.into_inner();
        let cfg = AudioConfig::default();
        let borrowed = decode(&wav, &cfg).unwrap();
        let owned = decode(Bytes::from(wav.clone()), &cfg).unwrap();
        let vec = decode(wav, &cfg).unwrap();
        assert_eq!(borrowed.samples, owned.samples);
        assert_eq!(borrowed.samples, vec.samples);
        assert_eq!(owned.info.source_channels, 2);
        assert!((owned.duration_s() - 2.0).abs() < 0.01);
    }
}
