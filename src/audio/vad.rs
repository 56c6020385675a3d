//! Voice-activity detection with Silero VAD (the batched 16 kHz sequence model), so whisper only
//! ever sees audio that contains speech, without leading and trailing silence and with long
//! pauses shortened. Silence, room tone and noise never reach whisper, which is what keeps it
//! from inventing text for them.

use std::ops::Range;
use std::path::Path;

use ort::value::Tensor;

use super::SAMPLE_RATE;
use crate::error::{Error, Result};
use crate::onnx::SessionPool;

/// Samples per VAD frame (32 ms) and the context the model sees before each frame.
const FRAME: usize = 512;
const CONTEXT: usize = 64;
/// Frames per model call (about 16 s).
const BLOCK: usize = 512;

pub struct Vad {
    pool: SessionPool,
    threshold: f32,
}

/// Where the speech is, in samples of the 16 kHz audio.
#[derive(Debug, Clone, PartialEq)]
pub struct SpeechMap {
    pub regions: Vec<Range<usize>>,
    pub total: usize,
}

/// How audio with silence cut out maps back to the uploaded audio's time.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    /// (start in compacted audio, start in original audio, length), in samples.
    pieces: Vec<(usize, usize, usize)>,
}

impl Vad {
    pub fn load(model: &Path, threshold: f32, sessions: usize) -> Result<Vad> {
        Ok(Vad {
            pool: SessionPool::load(model, sessions, 1)?,
            threshold,
        })
    }

    /// Speech probability of every 32 ms frame.
    pub fn probabilities(&self, samples: &[f32]) -> Result<Vec<f32>> {
        let n_frames = samples.len().div_ceil(FRAME);
        let mut probs = Vec::with_capacity(n_frames);
        let mut h = vec![0f32; 128];
        let mut c = vec![0f32; 128];
        let mut context = [0f32; CONTEXT];
        let mut session = self.pool.get();
        let err = |e: ort::Error| Error::Asr(format!("voice activity detection: {e}"));
        for first in (0..n_frames).step_by(BLOCK) {
            let count = BLOCK.min(n_frames - first);
            let mut input = vec![0f32; count * (CONTEXT + FRAME)];
            for f in 0..count {
                let row = &mut input[f * (CONTEXT + FRAME)..(f + 1) * (CONTEXT + FRAME)];
                row[..CONTEXT].copy_from_slice(&context);
                let start = (first + f) * FRAME;
                let end = (start + FRAME).min(samples.len());
                row[CONTEXT..CONTEXT + (end - start)].copy_from_slice(&samples[start..end]);
                context.copy_from_slice(&row[FRAME..]);
            }
            let outputs = session
                .run(ort::inputs![
                    "input" => Tensor::from_array(([count, CONTEXT + FRAME], input)).map_err(err)?,
                    "h" => Tensor::from_array(([1usize, 1, 128], h.clone())).map_err(err)?,
                    "c" => Tensor::from_array(([1usize, 1, 128], c.clone())).map_err(err)?,
                ])
                .map_err(err)?;
            let (_, p) = outputs["speech_probs"]
                .try_extract_tensor::<f32>()
                .map_err(err)?;
            probs.extend_from_slice(p);
            h.copy_from_slice(outputs["hn"].try_extract_tensor::<f32>().map_err(err)?.1);
            c.copy_from_slice(outputs["cn"].try_extract_tensor::<f32>().map_err(err)?.1);
        }
        Ok(probs)
    }

    /// Speech regions: frames above the threshold, held through short dips, each region at
    /// least 250 ms long.
    pub fn detect(&self, samples: &[f32]) -> Result<SpeechMap> {
        let probs = self.probabilities(&normalized(samples))?;
        Ok(regions_from_probs(&probs, self.threshold, samples.len()))
    }
}

/// The VAD works on level-normalised audio so a memo spoken far from the phone (−40 dB) is
/// found as well as a loud one; the gain is capped so room tone stays quiet.
fn normalized(samples: &[f32]) -> Vec<f32> {
    let mut mags: Vec<f32> = samples.iter().step_by(4).map(|s| s.abs()).collect();
    if mags.is_empty() {
        return Vec::new();
    }
    let k = ((mags.len() as f64 * 0.999) as usize).min(mags.len() - 1);
    let (_, peak, _) = mags.select_nth_unstable_by(k, |a, b| a.total_cmp(b));
    let peak = *peak;
    let gain = if peak > 0.0 {
        (0.5 / peak).clamp(1.0, 30.0)
    } else {
        1.0
    };
    samples
        .iter()
        .map(|s| (s * gain).clamp(-1.0, 1.0))
        .collect()
}

pub(crate) fn regions_from_probs(probs: &[f32], threshold: f32, total: usize) -> SpeechMap {
    let neg = (threshold - 0.15).max(0.01);
    let min_speech = 8; // frames (256 ms)
    let min_silence = 4; // frames (128 ms) of low probability end a region
    let mut regions = Vec::new();
    let mut start: Option<usize> = None;
    let mut low_since: Option<usize> = None;
    for (i, &p) in probs.iter().enumerate() {
        if p >= threshold {
            low_since = None;
            start.get_or_insert(i);
        } else if p < neg {
            if let Some(s) = start {
                let since = *low_since.get_or_insert(i);
                if i - since >= min_silence {
                    if since - s >= min_speech {
                        regions.push(s * FRAME..(since * FRAME).min(total));
                    }
                    start = None;
                    low_since = None;
                }
            }
        }
    }
    if let Some(s) = start {
        let end = low_since.unwrap_or(probs.len());
        if end - s >= min_speech {
            regions.push(s * FRAME..(end * FRAME).min(total));
        }
    }
    SpeechMap { regions, total }
}

impl SpeechMap {
    pub fn has_speech(&self) -> bool {
        !self.regions.is_empty()
    }

    pub fn speech_seconds(&self) -> f64 {
        self.regions.iter().map(|r| r.len()).sum::<usize>() as f64 / SAMPLE_RATE as f64
    }

    /// The audio from the first speech to the last, each region padded by `pad_s`, with pauses
    /// longer than `max_pause_s` cut down to that length; and how to map its time back.
    pub fn compact(&self, samples: &[f32], pad_s: f64, max_pause_s: f64) -> (Vec<f32>, Timeline) {
        let pad = (pad_s * SAMPLE_RATE as f64) as usize;
        let max_pause = (max_pause_s * SAMPLE_RATE as f64) as usize;
        let mut padded: Vec<Range<usize>> = Vec::new();
        for r in &self.regions {
            let r = r.start.saturating_sub(pad)..(r.end + pad).min(samples.len());
            match padded.last_mut() {
                Some(last) if r.start <= last.end + max_pause => last.end = r.end.max(last.end),
                _ => padded.push(r),
            }
        }
        let mut out = Vec::new();
        let mut pieces = Vec::new();
        for (i, r) in padded.iter().enumerate() {
            if i > 0 {
                // A pause longer than max_pause: keep max_pause of it, from its middle.
                let gap = padded[i - 1].end..r.start;
                let mid = gap.start + (gap.len() - max_pause) / 2;
                pieces.push((out.len(), mid, max_pause));
                out.extend_from_slice(&samples[mid..mid + max_pause]);
            }
            pieces.push((out.len(), r.start, r.len()));
            out.extend_from_slice(&samples[r.clone()]);
        }
        (out, Timeline { pieces })
    }
}

impl Timeline {
    /// Time in the original audio (seconds) of a time in the compacted audio.
    pub fn original_time(&self, t: f64) -> f64 {
        let pos = (t.max(0.0) * SAMPLE_RATE as f64) as usize;
        let piece = self
            .pieces
            .iter()
            .rev()
            .find(|(c, _, _)| *c <= pos)
            .or(self.pieces.first());
        match piece {
            Some(&(c, o, len)) => (o + (pos - c.min(pos)).min(len)) as f64 / SAMPLE_RATE as f64,
            None => t,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_follow_probabilities_with_hysteresis() {
        let mut probs = vec![0.0f32; 100];
        probs[10..40].fill(0.9);
        probs[25] = 0.4; // a dip above the lower threshold does not split
        probs[60..62].fill(0.9); // 64 ms blip: too short to be speech
        let map = regions_from_probs(&probs, 0.5, 100 * FRAME);
        assert_eq!(map.regions, vec![10 * FRAME..40 * FRAME]);
        assert!(regions_from_probs(&[0.1; 50], 0.5, 50 * FRAME)
            .regions
            .is_empty());
    }

    #[test]
    fn compaction_trims_edges_and_shortens_pauses_and_maps_time_back() {
        let sr = SAMPLE_RATE as usize;
        let samples: Vec<f32> = (0..20 * sr).map(|i| i as f32).collect();
        // Speech at 2–4 s and 10–12 s: a 6 s pause between them.
        let map = SpeechMap {
            regions: vec![2 * sr..4 * sr, 10 * sr..12 * sr],
            total: 20 * sr,
        };
        let (out, c) = map.compact(&samples, 0.25, 1.0);
        // 2.5 s + 1 s pause + 2.5 s
        assert_eq!(out.len(), 6 * sr);
        assert_eq!(out[0], (2 * sr - sr / 4) as f32);
        assert!((c.original_time(0.0) - 1.75).abs() < 1e-3);
        assert!((c.original_time(3.5 + 0.25) - 10.0).abs() < 1e-3);
        assert!((c.original_time(5.99) - 12.24).abs() < 1e-2);
    }
}
