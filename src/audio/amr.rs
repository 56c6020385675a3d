//! AMR-NB and AMR-WB, as phones and WeChat-style voice notes write them: `.amr`/`.awb` files
//! (RFC 4867 storage format) and AMR tracks inside 3GP/MP4.
//!
//! Decoding uses the 3GPP reference decoders packaged by Debian as `libopencore-amrnb0` and
//! `libopencore-amrwb0` (this file is their thin FFI). Unlike ffmpeg's built-in AMR-NB decoder
//! they decode DTX comfort-noise (SID) and NO_DATA frames, which phones emit during pauses.

use std::os::raw::{c_int, c_void};

use super::{Container, Pcm};
use crate::error::{Error, Result};

#[link(name = "opencore-amrnb")]
extern "C" {
    fn Decoder_Interface_init() -> *mut c_void;
    fn Decoder_Interface_exit(state: *mut c_void);
    fn Decoder_Interface_Decode(state: *mut c_void, input: *const u8, out: *mut i16, bfi: c_int);
}

#[link(name = "opencore-amrwb")]
extern "C" {
    fn D_IF_init() -> *mut c_void;
    fn D_IF_decode(state: *mut c_void, bits: *const u8, synth: *mut i16, bfi: c_int);
    fn D_IF_exit(state: *mut c_void);
}

/// Payload bytes after the one-byte frame header, by frame type; `None` for reserved types.
const NB_SIZES: [Option<usize>; 16] = [
    Some(12),
    Some(13),
    Some(15),
    Some(17),
    Some(19),
    Some(20),
    Some(26),
    Some(31), // 4.75–12.2 kbit/s
    Some(5),  // SID (DTX comfort noise)
    Some(6),
    Some(5),
    Some(5), // GSM-EFR, TDMA, PDC SID
    None,
    None,
    None,    // reserved
    Some(0), // NO_DATA
];
const WB_SIZES: [Option<usize>; 16] = [
    Some(17),
    Some(23),
    Some(32),
    Some(36),
    Some(40),
    Some(46),
    Some(50),
    Some(58),
    Some(60), // 6.6–23.85 kbit/s
    Some(5),  // SID
    None,
    None,
    None,
    None,    // reserved
    Some(0), // SPEECH_LOST
    Some(0), // NO_DATA
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Band {
    Narrow,
    Wide,
}

/// An opencore decoder instance.
pub(crate) struct StreamDecoder {
    band: Band,
    state: *mut c_void,
    frame: [u8; 64],
    out: [i16; 320],
    samples: [f32; 320],
}

// The decoder state is plain memory owned by this value and used from one thread at a time.
unsafe impl Send for StreamDecoder {}

impl StreamDecoder {
    fn new(band: Band) -> Result<Self> {
        // SAFETY: the init functions allocate and return a fresh state or null.
        let state = unsafe {
            match band {
                Band::Narrow => Decoder_Interface_init(),
                Band::Wide => D_IF_init(),
            }
        };
        if state.is_null() {
            return Err(Error::CorruptAudio(
                "the AMR decoder could not be initialised".into(),
            ));
        }
        Ok(StreamDecoder {
            band,
            state,
            frame: [0; 64],
            out: [0; 320],
            samples: [0.0; 320],
        })
    }

    /// The decoder for the AMR track of an MP4/3GP file.
    pub fn for_mp4(band: Band) -> Result<Self> {
        Self::new(band)
    }

    pub fn rate(&self) -> u32 {
        match self.band {
            Band::Narrow => 8_000,
            Band::Wide => 16_000,
        }
    }

    pub fn codec_name(&self) -> &'static str {
        match self.band {
            Band::Narrow => "amr_nb",
            Band::Wide => "amr_wb",
        }
    }

    fn sizes(&self) -> &'static [Option<usize>; 16] {
        match self.band {
            Band::Narrow => &NB_SIZES,
            Band::Wide => &WB_SIZES,
        }
    }

    /// Decode consecutive storage-format frames; returns false when the duration limit is hit.
    /// A frame cut short at the end of the data is dropped; a reserved frame type is corruption.
    pub fn decode_frames(&mut self, data: &[u8], pcm: &mut Pcm) -> Result<bool> {
        let mut pos = 0;
        while pos < data.len() {
            let header = data[pos];
            let ft = ((header >> 3) & 0x0F) as usize;
            let Some(size) = self.sizes()[ft] else {
                return Err(Error::CorruptAudio(format!(
                    "{}: reserved frame type {ft} at byte {pos}",
                    self.codec_name()
                )));
            };
            if pos + 1 + size > data.len() {
                break; // truncated last frame
            }
            self.frame.fill(0);
            self.frame[..1 + size].copy_from_slice(&data[pos..pos + 1 + size]);
            let n = match self.band {
                Band::Narrow => 160,
                Band::Wide => 320,
            };
            // SAFETY: `frame` holds the whole frame (64 bytes ≥ the largest frame, 61) and `out`
            // has room for the 160/320 samples the decoders write per frame.
            unsafe {
                match self.band {
                    Band::Narrow => Decoder_Interface_Decode(
                        self.state,
                        self.frame.as_ptr(),
                        self.out.as_mut_ptr(),
                        0,
                    ),
                    Band::Wide => {
                        D_IF_decode(self.state, self.frame.as_ptr(), self.out.as_mut_ptr(), 0)
                    }
                }
            }
            for (f, &s) in self.samples.iter_mut().zip(&self.out[..n]) {
                *f = s as f32 / 32768.0;
            }
            if !pcm.push(&self.samples[..n])? {
                return Ok(false);
            }
            pos += 1 + size;
        }
        Ok(true)
    }
}

impl Drop for StreamDecoder {
    fn drop(&mut self) {
        // SAFETY: `state` came from the matching init function and is released once.
        unsafe {
            match self.band {
                Band::Narrow => Decoder_Interface_exit(self.state),
                Band::Wide => D_IF_exit(self.state),
            }
        }
    }
}

/// Decode a whole `.amr` / `.awb` file.
pub(crate) fn decode_file(
    bytes: &[u8],
    container: Container,
    max_seconds: f64,
) -> Result<(Pcm, String)> {
    let (band, magic): (Band, &[u8]) = match container {
        Container::AmrWb => (Band::Wide, b"#!AMR-WB\n"),
        _ => (Band::Narrow, b"#!AMR\n"),
    };
    let body = &bytes[magic.len()..];
    if body.is_empty() {
        return Err(Error::CorruptAudio(
            "AMR file has a header but no frames".into(),
        ));
    }
    let mut dec = StreamDecoder::new(band)?;
    let mut pcm = Pcm::new(dec.rate(), 1, max_seconds, None)?;
    match dec.decode_frames(body, &mut pcm) {
        Ok(_) => {}
        // Damage after real audio: keep the audio before it.
        Err(e) if pcm.frames() >= dec.rate() as usize / 2 => {
            tracing::debug!("AMR tail dropped: {e}")
        }
        Err(e) => return Err(e),
    }
    Ok((pcm, dec.codec_name().to_string()))
}

/// The AMR flavour of an MP4/3GP file whose sample description is `samr` or `sawb`.
pub(crate) fn sample_entry_in_mp4(bytes: &[u8]) -> Option<Band> {
    // stsd box: size(4) "stsd" version+flags(4) entry count(4), then the entry: size(4) type(4).
    bytes.windows(4).enumerate().find_map(|(i, w)| {
        if w != b"stsd" {
            return None;
        }
        match bytes.get(i + 16..i + 20) {
            Some(b"samr") => Some(Band::Narrow),
            Some(b"sawb") => Some(Band::Wide),
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_data_frames_decode_to_silence_frames() {
        // Three NO_DATA frames (type 15): header byte 0x7C.
        let bytes = b"#!AMR\n\x7C\x7C\x7C";
        let (pcm, codec) = decode_file(bytes, Container::AmrNb, 10.0).unwrap();
        assert_eq!(codec, "amr_nb");
        assert_eq!(pcm.frames(), 480);
    }

    #[test]
    fn reserved_frame_type_is_corruption() {
        // Frame type 13 is reserved.
        let err = decode_file(b"#!AMR\n\x68", Container::AmrNb, 10.0)
            .err()
            .unwrap();
        assert_eq!(err.code(), "corrupt_audio");
        assert_eq!(
            decode_file(b"#!AMR\n", Container::AmrNb, 10.0)
                .err()
                .unwrap()
                .code(),
            "corrupt_audio"
        );
    }

    #[test]
    fn truncated_last_frame_is_dropped() {
        // One complete 12.2 kbit/s frame (type 7, 31 payload bytes) and a cut one.
        let mut bytes = b"#!AMR\n".to_vec();
        bytes.push(0x3C);
        bytes.extend([0u8; 31]);
        bytes.push(0x3C);
        bytes.extend([0u8; 10]);
        let (pcm, _) = decode_file(&bytes, Container::AmrNb, 10.0).unwrap();
        assert_eq!(pcm.frames(), 160);
    }
}
