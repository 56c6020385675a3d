//! Opus packets (from Ogg or WebM, as browsers' MediaRecorder and VoIP apps write them), decoded
//! with libopus at 48 kHz. The encoder's pre-skip is dropped so the audio starts where the
//! speaker started.

use symphonia::core::codecs::CodecParameters;

use super::Pcm;
use crate::error::{Error, Result};

/// The longest Opus packet is 120 ms: 5760 samples per channel at 48 kHz.
const MAX_FRAME: usize = 5760;

pub(crate) struct OpusStream {
    decoder: opus::Decoder,
    channels: usize,
    skip: usize,
    buf: Vec<f32>,
    bad: usize,
}

impl OpusStream {
    pub fn new(params: &CodecParameters) -> Result<Self> {
        let head = params
            .extra_data
            .as_deref()
            .filter(|h| h.starts_with(b"OpusHead") && h.len() >= 19);
        let stream_channels = head
            .map(|h| h[9] as usize)
            .or(params.channels.map(|c| c.count()))
            .unwrap_or(1);
        // Pre-skip: from the Ogg mapping (`delay`) or the OpusHead in WebM's CodecPrivate.
        let skip = params
            .delay
            .map(|d| d as usize)
            .or(head.map(|h| u16::from_le_bytes([h[10], h[11]]) as usize))
            .unwrap_or(0);
        let (channels, layout) = match stream_channels {
            1 => (1, opus::Channels::Mono),
            2 => (2, opus::Channels::Stereo),
            n => return Err(Error::UnsupportedFormat(format!("Opus with {n} channels"))),
        };
        let decoder = opus::Decoder::new(48_000, layout)
            .map_err(|e| Error::CorruptAudio(format!("opus decoder: {e}")))?;
        Ok(OpusStream {
            decoder,
            channels,
            skip,
            buf: vec![0.0; MAX_FRAME * channels],
            bad: 0,
        })
    }

    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Decode one packet into `pcm`; returns false when the duration limit is hit.
    pub fn decode(&mut self, packet: &[u8], pcm: &mut Pcm) -> Result<bool> {
        let frames = match self.decoder.decode_float(packet, &mut self.buf, false) {
            Ok(n) => {
                self.bad = 0;
                n
            }
            Err(e) => {
                self.bad += 1;
                if self.bad > 20 {
                    return Err(Error::CorruptAudio(format!("opus: {e}")));
                }
                return Ok(true);
            }
        };
        let mut samples = &self.buf[..frames * self.channels];
        if self.skip > 0 {
            let drop = self.skip.min(frames);
            self.skip -= drop;
            samples = &samples[drop * self.channels..];
        }
        pcm.push(samples)
    }
}
