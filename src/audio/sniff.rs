//! Container detection from the first bytes. File names and content types lie (an MP3 called
//! `.wav`, `application/octet-stream` from a phone); magic numbers do not.

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    Wav,
    Mp3,
    /// ISO base media: M4A, MP4, 3GP (AAC, or AMR inside 3GP).
    Mp4,
    /// Raw AAC in ADTS frames.
    Adts,
    Flac,
    Ogg,
    /// Matroska / WebM (what browsers' MediaRecorder produces).
    Matroska,
    AmrNb,
    AmrWb,
}

impl Container {
    pub fn name(self) -> &'static str {
        match self {
            Container::Wav => "wav",
            Container::Mp3 => "mp3",
            Container::Mp4 => "mp4",
            Container::Adts => "aac",
            Container::Flac => "flac",
            Container::Ogg => "ogg",
            Container::Matroska => "webm",
            Container::AmrNb => "amr",
            Container::AmrWb => "amr-wb",
        }
    }
}

/// Identify the container, or say what the bytes look like when they are not audio we take.
pub fn sniff(b: &[u8]) -> Result<Container> {
    let starts = |m: &[u8]| b.starts_with(m);
    if b.len() >= 12 && starts(b"RIFF") && &b[8..12] == b"WAVE" {
        return Ok(Container::Wav);
    }
    if starts(b"RF64") || starts(b"BW64") {
        return Err(Error::UnsupportedFormat(
            "RF64/BW64 WAV is not supported; send a plain WAV".into(),
        ));
    }
    if b.len() >= 12 && &b[4..8] == b"ftyp" {
        return Ok(Container::Mp4);
    }
    if starts(b"#!AMR-WB\n") {
        return Ok(Container::AmrWb);
    }
    if starts(b"#!AMR\n") {
        return Ok(Container::AmrNb);
    }
    if starts(b"#!AMR_MC1.0\n") || starts(b"#!AMR-WB_MC1.0\n") {
        return Err(Error::UnsupportedFormat(
            "multi-channel AMR is not supported".into(),
        ));
    }
    if starts(b"fLaC") {
        return Ok(Container::Flac);
    }
    if starts(b"OggS") {
        return Ok(Container::Ogg);
    }
    if starts(&[0x1A, 0x45, 0xDF, 0xA3]) {
        return Ok(Container::Matroska);
    }
    if starts(b"ID3") {
        // ID3v2 tag in front of MPEG audio (MP3) or, rarely, ADTS.
        return Ok(after_id3(b).unwrap_or(Container::Mp3));
    }
    if let Some(c) = mpeg_sync(b, 0) {
        return Ok(c);
    }
    Err(Error::UnsupportedFormat(format!(
        "{} (supported: WAV, MP3, M4A/AAC, AMR, 3GP, Ogg/WebM Opus, FLAC)",
        describe(b)
    )))
}

/// The frame type behind an ID3v2 tag.
fn after_id3(b: &[u8]) -> Option<Container> {
    if b.len() < 10 {
        return None;
    }
    let size = b[6..10]
        .iter()
        .fold(0usize, |acc, &x| (acc << 7) | (x & 0x7F) as usize);
    mpeg_sync(b, 10 + size)
}

/// MPEG audio (layer I–III) or ADTS frame sync at `at`.
fn mpeg_sync(b: &[u8], at: usize) -> Option<Container> {
    let h = b.get(at..at + 4)?;
    if h[0] != 0xFF || h[1] & 0xE0 != 0xE0 {
        return None;
    }
    let layer = (h[1] >> 1) & 0x3;
    if h[1] & 0xF6 == 0xF0 {
        // 12-bit sync, layer 00: ADTS.
        return Some(Container::Adts);
    }
    let version = (h[1] >> 3) & 0x3;
    let bitrate = h[2] >> 4;
    let rate = (h[2] >> 2) & 0x3;
    (layer != 0 && version != 1 && bitrate != 0xF && rate != 3).then_some(Container::Mp3)
}

/// A short human description of bytes that are not supported audio.
fn describe(b: &[u8]) -> String {
    let starts = |m: &[u8]| b.starts_with(m);
    let what = if starts(b"\x89PNG") {
        "a PNG image"
    } else if starts(&[0xFF, 0xD8, 0xFF]) {
        "a JPEG image"
    } else if starts(b"%PDF") {
        "a PDF document"
    } else if starts(b"PK\x03\x04") {
        "a ZIP archive"
    } else if starts(b"GIF8") {
        "a GIF image"
    } else if starts(b"RIFF") {
        "a RIFF file that is not WAVE"
    } else if starts(b"FORM") {
        "an AIFF file"
    } else if starts(b"#!SILK") || starts(b"\x02#!SILK") {
        "a SILK voice note"
    } else if std::str::from_utf8(&b[..b.len().min(256)]).is_ok() {
        "text, not audio"
    } else {
        "not a recognised audio format"
    };
    what.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_numbers() {
        assert_eq!(sniff(b"RIFF\0\0\0\0WAVEfmt ").unwrap(), Container::Wav);
        assert_eq!(sniff(b"\0\0\0\x18ftypM4A \0\0").unwrap(), Container::Mp4);
        assert_eq!(sniff(b"#!AMR\n\x3c").unwrap(), Container::AmrNb);
        assert_eq!(sniff(b"#!AMR-WB\n\x3c").unwrap(), Container::AmrWb);
        assert_eq!(sniff(b"OggS\0\x02").unwrap(), Container::Ogg);
        assert_eq!(
            sniff(&[0x1A, 0x45, 0xDF, 0xA3, 0x01]).unwrap(),
            Container::Matroska
        );
        assert_eq!(sniff(b"fLaC\0\0\0\x22").unwrap(), Container::Flac);
        assert_eq!(sniff(&[0xFF, 0xFB, 0x90, 0x64]).unwrap(), Container::Mp3);
        assert_eq!(sniff(&[0xFF, 0xF1, 0x50, 0x80]).unwrap(), Container::Adts);
        assert_eq!(
            sniff(b"ID3\x04\0\0\0\0\0\0\xFF\xFB\x90\x64").unwrap(),
            Container::Mp3
        );
    }

    #[test]
    fn non_audio_is_named() {
        let e = sniff(b"\x89PNG\r\n\x1a\n").unwrap_err();
        assert_eq!(e.code(), "unsupported_format");
        assert!(e.to_string().contains("PNG"));
        assert!(sniff(b"hello world")
            .unwrap_err()
            .to_string()
            .contains("text"));
        assert!(sniff(&[0xFF, 0xFF, 0xFF, 0xFF]).is_err());
    }
}
