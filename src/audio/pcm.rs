//! The decoders' output, collected at 16 kHz: each decoded piece is resampled as it arrives and
//! only the 16 kHz frames are kept, in blocks of whole frames. What a decode holds is therefore
//! bounded by the output's duration and not by the rate or size a file declares: a 1 Hz header
//! cannot make the resampler's buffers huge (rates below 4 kHz are refused), and 384 kHz audio
//! costs what 16 kHz audio does.
//!
//! Mono and stereo are kept per channel (the mixdown weighs the channels by their energy over
//! the whole file). More channels are decoded twice instead: a first pass only measures each
//! channel's energy ([`Pcm::measured`]), the second mixes the active channels into mono as it
//! goes, so eight channels hold what one does.

use super::resample::To16k;
use crate::error::{Error, Result};

/// Lowest source rate read: below it a file is not speech audio (telephone audio is 8 kHz)
/// but a header made to inflate the resampler (16 000 output samples per input one at 1 Hz).
pub const MIN_RATE: u32 = 4_000;
pub const MAX_RATE: u32 = 384_000;
/// Most channels read (7.1 surround); memos have one or two.
pub const MAX_CHANNELS: usize = 8;

/// Samples per block (1 MB of f32), rounded down to whole frames.
const BLOCK_SAMPLES: usize = 1 << 18;

/// What a [`Pcm`] keeps of the channels.
enum Keep {
    /// Every channel, at 16 kHz.
    Channels,
    /// Nothing: only each channel's energy, for a second pass.
    Measure(Vec<f64>),
    /// The mean of the active channels, as mono at 16 kHz.
    Mix { active: Vec<bool>, mono: Vec<f32> },
}

pub(crate) struct Pcm {
    /// The source's rate and channels.
    pub rate: u32,
    pub channels: usize,
    keep: Keep,
    /// Source frames accepted so far.
    frames: usize,
    limit_frames: usize,
    pub over_limit: bool,
    /// The length the container's header declares, in source frames, where it declares one.
    pub declared_frames: Option<u64>,
    to16k: To16k,
    /// 16 kHz audio, interleaved as the source is, in blocks of whole frames: a vector that
    /// doubles as it grows would hold up to three times the audio while it moves.
    blocks: Vec<Vec<f32>>,
}

impl Pcm {
    /// A collector for `channels` channels at `rate`; with `mix` (one flag per channel), the
    /// second pass of a many-channel file.
    pub fn new(rate: u32, channels: usize, max_seconds: f64, mix: Option<&[bool]>) -> Result<Pcm> {
        if !(MIN_RATE..=MAX_RATE).contains(&rate) {
            return Err(Error::CorruptAudio(format!(
                "implausible sample rate {rate} Hz (needtag reads {MIN_RATE}–{MAX_RATE} Hz)"
            )));
        }
        if channels == 0 || channels > MAX_CHANNELS {
            return Err(Error::CorruptAudio(format!(
                "implausible channel count {channels} (needtag reads 1–{MAX_CHANNELS})"
            )));
        }
        let keep = match mix {
            Some(active) if active.len() == channels => Keep::Mix {
                active: active.to_vec(),
                mono: Vec::new(),
            },
            Some(_) => {
                return Err(Error::CorruptAudio(
                    "the channel count changed between two decodes of the file".into(),
                ))
            }
            None if channels > 2 => Keep::Measure(vec![0.0; channels]),
            None => Keep::Channels,
        };
        let kept = if matches!(keep, Keep::Channels) {
            channels
        } else {
            1
        };
        Ok(Pcm {
            rate,
            channels,
            keep,
            frames: 0,
            limit_frames: (max_seconds * rate as f64).ceil() as usize,
            over_limit: false,
            declared_frames: None,
            to16k: To16k::new(rate, kept)?,
            blocks: Vec::new(),
        })
    }

    /// Source frames accepted so far.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// The declared length in seconds, where the header declares one.
    pub fn declared_seconds(&self) -> Option<f64> {
        self.declared_frames.map(|f| f as f64 / self.rate as f64)
    }

    /// Each channel's energy, when this was a first pass that only measured them.
    pub fn measured(&self) -> Option<&[f64]> {
        match &self.keep {
            Keep::Measure(energy) => Some(energy),
            _ => None,
        }
    }

    /// Append interleaved samples; returns false (and keeps only what fits) once the limit is hit.
    pub fn push(&mut self, interleaved: &[f32]) -> Result<bool> {
        let room = (self.limit_frames - self.frames.min(self.limit_frames)) * self.channels;
        let fits = interleaved.len() <= room;
        let take = interleaved.len().min(room) / self.channels * self.channels;
        self.frames += take / self.channels;
        let frames = interleaved[..take].chunks_exact(self.channels);
        let blocks = &mut self.blocks;
        match &mut self.keep {
            Keep::Channels => {
                let channels = self.channels;
                self.to16k
                    .push(&interleaved[..take], &mut |s| append(blocks, s, channels))?;
            }
            Keep::Measure(energy) => {
                for frame in frames {
                    for (e, &s) in energy.iter_mut().zip(frame) {
                        *e += (s as f64) * (s as f64);
                    }
                }
            }
            Keep::Mix { active, mono } => {
                let n = active.iter().filter(|&&a| a).count().max(1) as f32;
                mono.clear();
                mono.extend(frames.map(|frame| {
                    frame
                        .iter()
                        .zip(active.iter())
                        .filter(|(_, &a)| a)
                        .map(|(&s, _)| s)
                        .sum::<f32>()
                        / n
                }));
                self.to16k.push(mono, &mut |s| append(blocks, s, 1))?;
            }
        }
        if !fits {
            self.over_limit = true;
        }
        Ok(fits)
    }

    /// The audio at 16 kHz, interleaved, and its channel count (1 after a mixing pass).
    pub fn finish(self) -> Result<(Vec<Vec<f32>>, usize)> {
        let kept = match self.keep {
            Keep::Channels => self.channels,
            _ => 1,
        };
        let Pcm {
            to16k, mut blocks, ..
        } = self;
        to16k.finish(&mut |s| append(&mut blocks, s, kept))?;
        Ok((blocks, kept))
    }
}

/// Append interleaved frames to blocks that each hold whole frames.
fn append(blocks: &mut Vec<Vec<f32>>, mut rest: &[f32], channels: usize) {
    let block = (BLOCK_SAMPLES / channels).max(1) * channels;
    while !rest.is_empty() {
        let last = match blocks.last_mut() {
            Some(b) if b.len() < b.capacity() => b,
            _ => {
                blocks.push(Vec::with_capacity(block));
                blocks.last_mut().expect("just pushed")
            }
        };
        let n = (last.capacity() - last.len()).min(rest.len());
        last.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
    }
}

/// Frames of 16 kHz audio a source of `frames` at `rate` becomes.
#[cfg(test)]
fn frames_at_16k(frames: usize, rate: u32) -> usize {
    (frames as f64 * super::SAMPLE_RATE as f64 / rate as f64).ceil() as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_stops_at_the_boundary() {
        let mut pcm = Pcm::new(16_000, 2, 0.001, None).unwrap();
        assert!(pcm.push(&[0.0; 24]).unwrap());
        assert!(!pcm.push(&[0.0; 24]).unwrap());
        assert_eq!(pcm.frames(), 16);
        assert!(pcm.over_limit);
    }

    #[test]
    fn implausible_rates_and_channel_counts_are_corrupt_audio() {
        for (rate, ch) in [(1, 1), (3_999, 1), (384_001, 1), (16_000, 0), (16_000, 9)] {
            let e = Pcm::new(rate, ch, 10.0, None).err().expect("refused");
            assert_eq!(e.code(), "corrupt_audio", "{rate} Hz × {ch}");
        }
        assert!(Pcm::new(MIN_RATE, MAX_CHANNELS, 10.0, None).is_ok());
    }

    #[test]
    fn blocks_hold_whole_frames_at_16k() {
        // Three channels do not divide the block size: frames must still not straddle blocks.
        let mut pcm = Pcm::new(48_000, 2, 60.0, None).unwrap();
        let interleaved: Vec<f32> = (0..2 * 600_000 + 2)
            .map(|i| ((i % 977) as f32) / 977.0)
            .collect();
        for piece in interleaved.chunks(2 * 1023) {
            assert!(pcm.push(piece).unwrap());
        }
        assert_eq!(pcm.frames(), 600_001);
        let (blocks, channels) = pcm.finish().unwrap();
        assert_eq!(channels, 2);
        assert!(blocks.len() > 1);
        assert!(blocks.iter().all(|b| b.len() % 2 == 0));
        let total: usize = blocks.iter().map(Vec::len).sum();
        assert_eq!(total, 2 * frames_at_16k(600_001, 48_000));
    }

    /// Held memory follows the output's duration, not the source's rate: a minute at 384 kHz
    /// keeps what a minute at 16 kHz keeps.
    #[test]
    fn memory_follows_the_output_duration() {
        let held = |rate: u32| {
            let mut pcm = Pcm::new(rate, 2, 120.0, None).unwrap();
            let piece = vec![0.25f32; 2 * 4096];
            while pcm.frames() < rate as usize * 60 {
                pcm.push(&piece).unwrap();
            }
            pcm.finish()
                .unwrap()
                .0
                .iter()
                .map(|b| b.capacity())
                .sum::<usize>()
        };
        let at_16k = held(16_000);
        let at_384k = held(384_000);
        assert!(
            at_384k <= at_16k + BLOCK_SAMPLES,
            "{at_384k} samples held at 384 kHz vs {at_16k} at 16 kHz"
        );
    }

    /// Eight channels are measured in a first pass and mixed into mono in the second: they hold
    /// what one channel holds, and give the mean of the channels the first pass found active.
    #[test]
    fn many_channels_are_mixed_in_a_second_pass() {
        let frames = 16_000 * 3;
        let interleaved: Vec<f32> = (0..frames * 8)
            .map(|i| {
                let (t, ch) = (i / 8, i % 8);
                // Channels 0 and 3 carry the signal; the others are silent.
                if ch == 0 || ch == 3 {
                    ((t as f32) * 0.05).sin() * 0.5
                } else {
                    0.0
                }
            })
            .collect();
        let mut first = Pcm::new(16_000, 8, 60.0, None).unwrap();
        first.push(&interleaved).unwrap();
        let energy = first.measured().expect("a first pass measures").to_vec();
        assert_eq!(
            first.finish().unwrap().0.len(),
            0,
            "the first pass keeps no audio"
        );
        let active: Vec<bool> = energy.iter().map(|&e| e > 0.0).collect();
        assert_eq!(
            active,
            [true, false, false, true, false, false, false, false]
        );
        let mut second = Pcm::new(16_000, 8, 60.0, Some(&active)).unwrap();
        second.push(&interleaved).unwrap();
        let (blocks, channels) = second.finish().unwrap();
        assert_eq!(channels, 1);
        let mono: Vec<f32> = blocks.concat();
        assert_eq!(mono.len(), frames);
        assert!((mono[100] - (100f32 * 0.05).sin() * 0.5).abs() < 1e-6);
    }
}
