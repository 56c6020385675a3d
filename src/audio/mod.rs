//! Audio ingest: sniff the container from the bytes, decode to f32 PCM, mix to mono, resample to
//! 16 kHz, enforce the size and duration limits, and find the speech in it (VAD).
//!
//! Nothing here knows about whisper or HTTP: the output is 16 kHz mono samples plus facts about
//! the source, and the speech regions for the next stage.

mod amr;
mod container;
mod opus_dec;
mod resample;
mod sniff;
mod structure;
pub mod vad;

use bytes::Bytes;
use serde::Serialize;

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

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AudioInfo {
    /// Container found in the bytes (`wav`, `mp4`, `amr`, `ogg`, …), whatever the file was called.
    pub container: &'static str,
    /// Codec inside it (`pcm_s16le`, `aac`, `amr_nb`, `opus`, …).
    pub codec: String,
    pub source_sample_rate: u32,
    pub source_channels: u16,
    /// Length of the decoded audio in seconds (after any truncation).
    pub duration_s: f64,
    /// True when the audio was longer than the limit and only its start was kept.
    pub truncated: bool,
}

/// Interleaved PCM as a decoder produces it, with the duration limit enforced while it grows.
/// It is kept in blocks of whole frames, not one vector: a vector that doubles as it grows holds
/// up to three times the audio while it moves (two minutes of 48 kHz stereo is 46 MB), for every
/// memo being decoded at once.
pub(crate) struct Pcm {
    pub rate: u32,
    pub channels: usize,
    pub blocks: Vec<Vec<f32>>,
    len: usize,
    limit_frames: usize,
    pub over_limit: bool,
}

/// Samples per block (1 MB of f32), rounded down to whole frames.
const BLOCK_SAMPLES: usize = 1 << 18;

impl Pcm {
    fn new(rate: u32, channels: usize, max_seconds: f64) -> Result<Pcm> {
        if rate == 0 || rate > 384_000 {
            return Err(Error::CorruptAudio(format!(
                "implausible sample rate {rate} Hz"
            )));
        }
        if channels == 0 || channels > 16 {
            return Err(Error::CorruptAudio(format!(
                "implausible channel count {channels}"
            )));
        }
        Ok(Pcm {
            rate,
            channels,
            blocks: Vec::new(),
            len: 0,
            limit_frames: (max_seconds * rate as f64).ceil() as usize,
            over_limit: false,
        })
    }

    pub fn frames(&self) -> usize {
        self.len / self.channels
    }

    /// Append interleaved samples; returns false (and keeps only what fits) once the limit is hit.
    pub fn push(&mut self, interleaved: &[f32]) -> bool {
        let room = (self.limit_frames - self.frames().min(self.limit_frames)) * self.channels;
        let fits = interleaved.len() <= room;
        let mut rest = &interleaved[..interleaved.len().min(room)];
        let block = (BLOCK_SAMPLES / self.channels).max(1) * self.channels;
        while !rest.is_empty() {
            let last = match self.blocks.last_mut() {
                Some(b) if b.len() < b.capacity() => b,
                _ => {
                    self.blocks.push(Vec::with_capacity(block));
                    self.blocks.last_mut().expect("just pushed")
                }
            };
            let n = (last.capacity() - last.len()).min(rest.len());
            last.extend_from_slice(&rest[..n]);
            self.len += n;
            rest = &rest[n..];
        }
        if !fits {
            self.over_limit = true;
        }
        fits
    }
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
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                container::decode(owned, container, decode_limit)
            }))
            .unwrap_or_else(|_| {
                Err(Error::CorruptAudio(format!(
                    "{} file is damaged (its structure is inconsistent)",
                    container.name()
                )))
            })?
        }
    };
    let source_rate = pcm.rate;
    let source_channels = pcm.channels as u16;
    let over_limit = pcm.over_limit;
    let decoded_s = pcm.frames() as f64 / pcm.rate as f64;
    if pcm.frames() == 0 {
        return Err(Error::CorruptAudio(format!(
            "no audio could be decoded from this {}",
            container.name()
        )));
    }
    if over_limit && cfg.long_audio == LongAudio::Reject {
        return Err(Error::AudioTooLong {
            seconds: decoded_s,
            limit: cfg.max_seconds,
        });
    }
    let mono = mixdown_blocks(&pcm.blocks, pcm.channels);
    drop(pcm);
    let mut samples = resample::to_16k(&mono, source_rate)?;
    drop(mono);
    let max_samples = (cfg.max_seconds * SAMPLE_RATE as f64) as usize;
    let truncated = over_limit || samples.len() > max_samples;
    if truncated && cfg.long_audio == LongAudio::Reject {
        return Err(Error::AudioTooLong {
            seconds: decoded_s,
            limit: cfg.max_seconds,
        });
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
            container: container.name(),
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
    let loudest = energy.iter().cloned().fold(0.0, f64::max);
    // -20 dB in energy terms.
    let active: Vec<bool> = energy
        .iter()
        .map(|&e| loudest > 0.0 && e >= loudest * 0.01)
        .collect();
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
    fn pcm_limit_stops_at_the_boundary() {
        let mut pcm = Pcm::new(10, 2, 1.0).unwrap();
        assert!(pcm.push(&[0.0; 16]));
        assert!(!pcm.push(&[0.0; 16]));
        assert_eq!(pcm.frames(), 10);
        assert!(pcm.over_limit);
    }

    #[test]
    fn blocks_hold_whole_frames_and_mix_down_like_one_vector() {
        // Three channels do not divide the block size: frames must still not straddle blocks.
        let mut pcm = Pcm::new(48_000, 3, 60.0).unwrap();
        let interleaved: Vec<f32> = (0..3 * 200_000)
            .map(|i| ((i % 977) as f32) / 977.0)
            .collect();
        for piece in interleaved.chunks(3 * 1024) {
            assert!(pcm.push(piece));
        }
        assert!(pcm.blocks.len() > 1);
        assert!(pcm.blocks.iter().all(|b| b.len() % 3 == 0));
        assert_eq!(pcm.frames(), 200_000);
        assert_eq!(mixdown_blocks(&pcm.blocks, 3), mixdown(&interleaved, 3));
        let flat: Vec<f32> = pcm.blocks.concat();
        assert_eq!(flat, interleaved);
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
