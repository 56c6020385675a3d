//! The decoders' output, collected at 16 kHz: each decoded piece is resampled as it arrives and
//! only the 16 kHz frames are kept, in blocks of whole frames. What a decode holds is therefore
//! bounded by the output's duration (`max_seconds` at 16 kHz, per channel) and not by the rate
//! or size a file declares: a 1 Hz header cannot make the resampler's buffers huge (rates below
//! 4 kHz are refused), and 384 kHz audio costs what 16 kHz audio does.

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

pub(crate) struct Pcm {
    /// The source's rate and channels.
    pub rate: u32,
    pub channels: usize,
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
    pub fn new(rate: u32, channels: usize, max_seconds: f64) -> Result<Pcm> {
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
        Ok(Pcm {
            rate,
            channels,
            frames: 0,
            limit_frames: (max_seconds * rate as f64).ceil() as usize,
            over_limit: false,
            declared_frames: None,
            to16k: To16k::new(rate, channels)?,
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

    /// Append interleaved samples; returns false (and keeps only what fits) once the limit is hit.
    pub fn push(&mut self, interleaved: &[f32]) -> Result<bool> {
        let room = (self.limit_frames - self.frames.min(self.limit_frames)) * self.channels;
        let fits = interleaved.len() <= room;
        let take = interleaved.len().min(room) / self.channels * self.channels;
        self.frames += take / self.channels;
        let (blocks, channels) = (&mut self.blocks, self.channels);
        self.to16k
            .push(&interleaved[..take], &mut |s| append(blocks, s, channels))?;
        if !fits {
            self.over_limit = true;
        }
        Ok(fits)
    }

    /// The audio at 16 kHz, still interleaved as the source's channels.
    pub fn finish(self) -> Result<Vec<Vec<f32>>> {
        let Pcm {
            to16k,
            mut blocks,
            channels,
            ..
        } = self;
        to16k.finish(&mut |s| append(&mut blocks, s, channels))?;
        Ok(blocks)
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
        let mut pcm = Pcm::new(16_000, 2, 0.001).unwrap();
        assert!(pcm.push(&[0.0; 24]).unwrap());
        assert!(!pcm.push(&[0.0; 24]).unwrap());
        assert_eq!(pcm.frames(), 16);
        assert!(pcm.over_limit);
    }

    #[test]
    fn implausible_rates_and_channel_counts_are_corrupt_audio() {
        for (rate, ch) in [(1, 1), (3_999, 1), (384_001, 1), (16_000, 0), (16_000, 9)] {
            let e = Pcm::new(rate, ch, 10.0).err().expect("refused");
            assert_eq!(e.code(), "corrupt_audio", "{rate} Hz × {ch}");
        }
        assert!(Pcm::new(MIN_RATE, MAX_CHANNELS, 10.0).is_ok());
    }

    #[test]
    fn blocks_hold_whole_frames_at_16k() {
        // Three channels do not divide the block size: frames must still not straddle blocks.
        let mut pcm = Pcm::new(48_000, 3, 60.0).unwrap();
        let interleaved: Vec<f32> = (0..3 * 600_000)
            .map(|i| ((i % 977) as f32) / 977.0)
            .collect();
        for piece in interleaved.chunks(3 * 1024) {
            assert!(pcm.push(piece).unwrap());
        }
        assert_eq!(pcm.frames(), 600_000);
        let blocks = pcm.finish().unwrap();
        assert!(blocks.len() > 1);
        assert!(blocks.iter().all(|b| b.len() % 3 == 0));
        let total: usize = blocks.iter().map(Vec::len).sum();
        assert_eq!(total, 3 * frames_at_16k(600_000, 48_000));
    }

    /// Held memory follows the output's duration, not the source's rate: a minute at 384 kHz
    /// keeps what a minute at 16 kHz keeps.
    #[test]
    fn memory_follows_the_output_duration() {
        let held = |rate: u32| {
            let mut pcm = Pcm::new(rate, 2, 120.0).unwrap();
            let piece = vec![0.25f32; 2 * 4096];
            while pcm.frames() < rate as usize * 60 {
                pcm.push(&piece).unwrap();
            }
            pcm.finish()
                .unwrap()
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
}
