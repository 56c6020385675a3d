//! The one entry point: audio bytes or text in, one result out. Owns the loaded models and the
//! current needs library; parses no flags and speaks no HTTP.

use std::time::Instant;

use serde::Serialize;

use crate::asr::{Asr, AsrWorker, Transcript};
use crate::audio::{self, AudioInfo, Vad};
use crate::config::Config;
use crate::error::Result;

/// Milliseconds spent in each stage.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct Timings {
    pub decode_ms: f64,
    pub vad_ms: f64,
    pub asr_ms: f64,
    pub tag_ms: f64,
    pub total_ms: f64,
}

fn ms(since: Instant) -> f64 {
    (since.elapsed().as_secs_f64() * 1e5).round() / 100.0
}

/// What the speech half produces for one upload.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Transcription {
    pub duration_s: f64,
    pub speech_detected: bool,
    /// Seconds of audio whisper was given after silence was cut.
    pub speech_s: f64,
    pub transcript: Transcript,
    pub audio: AudioInfo,
    pub model: String,
    pub timings: Timings,
}

/// Whisper and the VAD, loaded once.
pub struct Speech {
    asr: Asr,
    vad: Option<Vad>,
    cfg: Config,
}

impl Speech {
    pub fn load(cfg: &Config) -> Result<Speech> {
        let asr = Asr::load(&cfg.models.path(&cfg.models.whisper), &cfg.asr)?;
        let vad = if cfg.audio.vad {
            crate::onnx::init(&cfg.models.path(&cfg.models.onnxruntime))?;
            Some(Vad::load(
                &cfg.models.path(&cfg.models.vad),
                cfg.audio.vad_threshold,
                cfg.server.workers.max(1),
            )?)
        } else {
            None
        };
        Ok(Speech {
            asr,
            vad,
            cfg: cfg.clone(),
        })
    }

    pub fn asr(&self) -> &Asr {
        &self.asr
    }

    pub fn worker(&self) -> Result<AsrWorker> {
        self.asr.worker()
    }

    /// Decode, gate with the VAD, and transcribe one upload.
    pub fn transcribe(
        &self,
        worker: &mut AsrWorker,
        bytes: &[u8],
        prompt: Option<&str>,
    ) -> Result<Transcription> {
        let total = Instant::now();
        let mut timings = Timings::default();
        let t = Instant::now();
        let decoded = audio::decode(bytes, &self.cfg.audio)?;
        timings.decode_ms = ms(t);

        let t = Instant::now();
        let (speech, to_original): (Vec<f32>, Box<dyn Fn(f64) -> f64>) = match &self.vad {
            Some(vad) => {
                let map = vad.detect(&decoded.samples)?;
                let (samples, timeline) =
                    map.compact(&decoded.samples, 0.2, self.cfg.audio.max_pause_s);
                (samples, Box::new(move |t| timeline.original_time(t)))
            }
            None => (decoded.samples.clone(), Box::new(|t| t)),
        };
        timings.vad_ms = ms(t);

        let speech_detected = !speech.is_empty();
        let t = Instant::now();
        let transcript = if speech_detected {
            worker.transcribe(&self.asr, &speech, prompt, &*to_original)?
        } else {
            Transcript {
                language: "zh".into(),
                ..Default::default()
            }
        };
        timings.asr_ms = ms(t);
        timings.total_ms = ms(total);
        Ok(Transcription {
            duration_s: decoded.duration_s(),
            speech_detected: speech_detected && !transcript.text.is_empty(),
            speech_s: speech.len() as f64 / audio::SAMPLE_RATE as f64,
            transcript,
            audio: decoded.info,
            model: self.asr.model_name().to_string(),
            timings,
        })
    }
}
