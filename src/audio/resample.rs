//! Resampling to 16 kHz with rubato's FFT resampler, as the decoded audio arrives: only the
//! 16 kHz output is kept, never the source at its own rate, so the memory a decode holds is
//! bounded by the output's duration whatever rate the file declares.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Indexing, Resampler};

use super::SAMPLE_RATE;
use crate::error::{Error, Result};

/// Input frames per resampler call.
const CHUNK: usize = 1024;

/// Interleaved audio of some channels at `rate` in, the same channels at 16 kHz out. The output
/// is aligned with the input (the resampler's delay is trimmed) and has
/// `ceil(frames × 16000 / rate)` frames, exactly as rubato's `process_all` gives for the whole
/// clip at once.
pub(crate) struct To16k {
    channels: usize,
    rate: u32,
    resampler: Option<Fft<f32>>,
    /// Input frames waiting for a whole chunk (interleaved).
    pending: Vec<f32>,
    /// One call's output (interleaved).
    scratch: Vec<f32>,
    /// Output frames still to drop for the resampler's delay.
    to_trim: usize,
    frames_in: usize,
    frames_out: usize,
}

impl To16k {
    pub fn new(rate: u32, channels: usize) -> Result<To16k> {
        let err = |e: &dyn std::fmt::Display| {
            Error::CorruptAudio(format!("cannot resample from {rate} Hz: {e}"))
        };
        let resampler = if rate == SAMPLE_RATE {
            None
        } else {
            Some(
                Fft::<f32>::new(
                    rate as usize,
                    SAMPLE_RATE as usize,
                    CHUNK,
                    channels,
                    FixedSync::Input,
                )
                .map_err(|e| err(&e))?,
            )
        };
        let (to_trim, scratch) = match &resampler {
            Some(r) => (
                r.output_delay(),
                vec![0.0; r.output_frames_max() * channels],
            ),
            None => (0, Vec::new()),
        };
        Ok(To16k {
            channels,
            rate,
            resampler,
            pending: Vec::new(),
            scratch,
            to_trim,
            frames_in: 0,
            frames_out: 0,
        })
    }

    /// Resample whole interleaved frames; the 16 kHz frames made so far go to `out`.
    pub fn push(&mut self, mut input: &[f32], out: &mut dyn FnMut(&[f32])) -> Result<()> {
        self.frames_in += input.len() / self.channels;
        if self.resampler.is_none() {
            self.frames_out += input.len() / self.channels;
            out(input);
            return Ok(());
        }
        let whole = CHUNK * self.channels;
        if !self.pending.is_empty() {
            let take = (whole - self.pending.len()).min(input.len());
            self.pending.extend_from_slice(&input[..take]);
            input = &input[take..];
            if self.pending.len() < whole {
                return Ok(());
            }
            let pending = std::mem::take(&mut self.pending);
            self.process(&pending, None, out)?;
            self.pending = pending;
            self.pending.clear();
        }
        while input.len() >= whole {
            self.process(&input[..whole], None, out)?;
            input = &input[whole..];
        }
        self.pending.extend_from_slice(input);
        Ok(())
    }

    /// Resample what is left and the resampler's tail; the last frames go to `out`.
    pub fn finish(mut self, out: &mut dyn FnMut(&[f32])) -> Result<()> {
        if self.resampler.is_none() {
            return Ok(());
        }
        let expected =
            (self.frames_in as f64 * SAMPLE_RATE as f64 / self.rate as f64).ceil() as usize;
        let pending = std::mem::take(&mut self.pending);
        if !pending.is_empty() {
            self.process(&pending, Some(pending.len() / self.channels), out)?;
        }
        // The resampler's delay: feed silence until every expected frame has come out.
        while self.frames_out < expected {
            self.process(&[], Some(0), out)?;
        }
        Ok(())
    }

    fn process(
        &mut self,
        input: &[f32],
        partial: Option<usize>,
        out: &mut dyn FnMut(&[f32]),
    ) -> Result<()> {
        let rate = self.rate;
        let err = |e: &dyn std::fmt::Display| {
            Error::CorruptAudio(format!("cannot resample from {rate} Hz: {e}"))
        };
        let Some(resampler) = self.resampler.as_mut() else {
            return Ok(());
        };
        let ch = self.channels;
        let in_frames = input.len() / ch;
        let out_frames = self.scratch.len() / ch;
        let buf_in = InterleavedSlice::new(input, ch, in_frames).map_err(|e| err(&e))?;
        let mut buf_out =
            InterleavedSlice::new_mut(&mut self.scratch, ch, out_frames).map_err(|e| err(&e))?;
        let indexing = Indexing {
            input_offset: 0,
            output_offset: 0,
            active_channels_mask: None,
            partial_len: partial,
        };
        let (_, made) = resampler
            .process_into_buffer(&buf_in, &mut buf_out, Some(&indexing))
            .map_err(|e| err(&e))?;
        let drop = self.to_trim.min(made);
        self.to_trim -= drop;
        let expected = if partial.is_some() {
            (self.frames_in as f64 * SAMPLE_RATE as f64 / rate as f64).ceil() as usize
        } else {
            usize::MAX
        };
        let keep = (made - drop).min(expected.saturating_sub(self.frames_out));
        if keep > 0 {
            out(&self.scratch[drop * ch..(drop + keep) * ch]);
            self.frames_out += keep;
        }
        Ok(())
    }
}

/// Resample mono audio from `rate` to 16 kHz in one call.
#[cfg(test)]
pub(crate) fn to_16k(mono: &[f32], rate: u32) -> Result<Vec<f32>> {
    let mut out = Vec::new();
    let mut r = To16k::new(rate, 1)?;
    r.push(mono, &mut |s| out.extend_from_slice(s))?;
    r.finish(&mut |s| out.extend_from_slice(s))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32, seconds: f64, hz: f64) -> Vec<f32> {
        (0..(rate as f64 * seconds) as usize)
            .map(|i| (2.0 * std::f64::consts::PI * hz * i as f64 / rate as f64).sin() as f32 * 0.5)
            .collect()
    }

    /// A 200→3000 Hz chirp: not periodic, so its alignment is unambiguous.
    fn chirp(rate: u32, seconds: f64) -> Vec<f32> {
        (0..(rate as f64 * seconds) as usize)
            .map(|i| {
                let t = i as f64 / rate as f64;
                (2.0 * std::f64::consts::PI * (200.0 * t + 700.0 * t * t)).sin() as f32 * 0.5
            })
            .collect()
    }

    /// The shift of `a` against `b` (in samples, within ±`max`) with the highest correlation.
    fn best_lag(a: &[f32], b: &[f32], max: i64) -> i64 {
        let n = a.len() as i64;
        (-max..=max)
            .max_by(|&x, &y| {
                let corr = |lag: i64| -> f64 {
                    (max..n - max)
                        .map(|i| a[i as usize] as f64 * b[(i + lag) as usize] as f64)
                        .sum()
                };
                corr(x).total_cmp(&corr(y))
            })
            .unwrap()
    }

    #[test]
    fn common_phone_rates_keep_length_and_tone() {
        for rate in [8_000, 22_050, 24_000, 44_100, 48_000] {
            let out = to_16k(&tone(rate, 2.0, 440.0), rate).unwrap();
            assert!(
                (out.len() as i64 - 32_000).abs() <= 1,
                "{rate}: {} samples",
                out.len()
            );
            // The 440 Hz tone survives at the same level (RMS of a 0.5 sine is 0.354).
            let rms = (out[4000..28000].iter().map(|s| s * s).sum::<f32>() / 24000.0).sqrt();
            assert!((rms - 0.3536).abs() < 0.01, "{rate}: rms {rms}");
            // And it stays aligned: a chirp resampled lines up with the chirp generated at 16 kHz.
            let out = to_16k(&chirp(rate, 2.0), rate).unwrap();
            let lag = best_lag(&out[4000..28000], &chirp(16_000, 2.0)[4000..28000], 40);
            assert!(lag.abs() <= 1, "{rate}: output shifted by {lag} samples");
        }
    }

    #[test]
    fn frequencies_above_8k_are_removed() {
        let out = to_16k(&tone(48_000, 1.0, 12_000.0), 48_000).unwrap();
        let rms = (out[2000..14000].iter().map(|s| s * s).sum::<f32>() / 12000.0).sqrt();
        assert!(rms < 0.01, "aliasing: rms {rms}");
    }

    /// Pushed in pieces of any size, the stream gives what rubato's whole-clip call gives.
    #[test]
    fn streaming_equals_the_whole_clip_at_once() {
        for (rate, channels, frames) in [
            (44_100, 2, 44_100 + 17),
            (48_000, 1, 3 * 1024),
            (8_000, 3, 999),
            (22_050, 1, 10),
        ] {
            let input: Vec<f32> = (0..frames * channels)
                .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
                .collect();
            let mut whole = Fft::<f32>::new(rate, 16_000, CHUNK, channels, FixedSync::Input)
                .unwrap()
                .process_all(
                    &InterleavedSlice::new(&input, channels, frames).unwrap(),
                    frames,
                    None,
                )
                .unwrap()
                .take_data();
            whole.truncate(whole.len() / channels * channels);
            for piece in [1, 333, 1024, 5000] {
                let mut got = Vec::new();
                let mut r = To16k::new(rate as u32, channels).unwrap();
                for p in input.chunks(piece * channels) {
                    r.push(p, &mut |s| got.extend_from_slice(s)).unwrap();
                }
                r.finish(&mut |s| got.extend_from_slice(s)).unwrap();
                assert_eq!(
                    got.len(),
                    whole.len(),
                    "{rate} Hz × {channels}, pieces of {piece}"
                );
                let worst = got
                    .iter()
                    .zip(&whole)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f32::max);
                assert!(
                    worst < 1e-5,
                    "{rate} Hz × {channels}, pieces of {piece}: {worst}"
                );
            }
        }
    }
}
