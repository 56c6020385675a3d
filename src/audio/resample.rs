//! Resampling to 16 kHz with rubato's FFT resampler (fixed ratio, whole clip in memory).

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};

use super::SAMPLE_RATE;
use crate::error::{Error, Result};

/// Resample mono audio from `rate` to 16 kHz. The output has `len × 16000 / rate` samples
/// (rounded up), aligned with the input (the resampler's delay is trimmed).
pub(crate) fn to_16k(mono: &[f32], rate: u32) -> Result<Vec<f32>> {
    if rate == SAMPLE_RATE || mono.is_empty() {
        return Ok(mono.to_vec());
    }
    let err = |e: &dyn std::fmt::Display| {
        Error::CorruptAudio(format!("cannot resample from {rate} Hz: {e}"))
    };
    let mut resampler = Fft::<f32>::new(
        rate as usize,
        SAMPLE_RATE as usize,
        1024,
        1,
        FixedSync::Input,
    )
    .map_err(|e| err(&e))?;
    let input = InterleavedSlice::new(mono, 1, mono.len()).map_err(|e| err(&e))?;
    let out = resampler
        .process_all(&input, mono.len(), None)
        .map_err(|e| err(&e))?;
    Ok(out.take_data())
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
}
