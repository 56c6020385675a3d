//! Demuxing and decoding with symphonia (WAV, MP3, MP4/M4A/3GP, ADTS, FLAC, Ogg, Matroska/WebM).
//! Opus packets go to libopus and AMR packets inside 3GP to the AMR decoder, since symphonia has
//! decoders for neither.

use std::io::Cursor;

use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{CodecParameters, DecoderOptions, CODEC_TYPE_NULL, CODEC_TYPE_OPUS};
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::{FormatOptions, FormatReader};
use symphonia::core::io::{MediaSourceStream, MediaSourceStreamOptions};

use super::{amr, opus_dec, Container, Pcm};
use crate::error::{Error, Result};

/// Consecutive undecodable packets after which the stream counts as corrupt.
const MAX_BAD_PACKETS: usize = 20;

/// Decode with symphonia. The demuxer reads from the upload's own buffer (no copy); it is
/// dropped with the reader when this returns.
pub(crate) fn decode(
    bytes: bytes::Bytes,
    container: Container,
    max_seconds: f64,
    mix: Option<&[bool]>,
) -> Result<(Pcm, String)> {
    let amr_in_mp4 = if container == Container::Mp4 {
        amr::sample_entry_in_mp4(&bytes)
    } else {
        None
    };
    let file_len = bytes.len() as u64;
    let mss = MediaSourceStream::new(
        Box::new(Cursor::new(bytes)),
        MediaSourceStreamOptions::default(),
    );
    let opts = FormatOptions {
        enable_gapless: true,
        ..Default::default()
    };
    let reader: Box<dyn FormatReader> =
        open(container, mss, &opts).map_err(|e| open_error(container, e))?;
    let mut decoded = decode_reader(reader, container, amr_in_mp4, max_seconds, mix)?;
    if container == Container::Wav {
        // A WAV's length is its data chunk's size, which streaming writers set to 0xFFFFFFFF
        // (unknown): believe it only when the file holds that many bytes.
        let pcm = &mut decoded.0;
        let bytes_per_frame = decoded_bits(&decoded.1) / 8 * pcm.channels as u64;
        if pcm
            .declared_frames
            .is_some_and(|f| f.saturating_mul(bytes_per_frame.max(1)) > file_len)
        {
            pcm.declared_frames = None;
        }
    }
    Ok(decoded)
}

/// Bits per sample of a PCM codec name (`pcm_s16le` → 16); 8 for the companded and unknown ones.
fn decoded_bits(codec: &str) -> u64 {
    codec
        .trim_start_matches("pcm_")
        .trim_start_matches(|c: char| c.is_ascii_alphabetic())
        .trim_end_matches(|c: char| c.is_ascii_alphabetic())
        .parse()
        .unwrap_or(8)
}

fn open(
    container: Container,
    mss: MediaSourceStream,
    opts: &FormatOptions,
) -> symphonia::core::errors::Result<Box<dyn FormatReader>> {
    use symphonia::default::formats::*;
    Ok(match container {
        Container::Wav => Box::new(WavReader::try_new(mss, opts)?),
        Container::Mp3 => Box::new(MpaReader::try_new(mss, opts)?),
        Container::Mp4 => Box::new(IsoMp4Reader::try_new(mss, opts)?),
        Container::Adts => Box::new(AdtsReader::try_new(mss, opts)?),
        Container::Flac => Box::new(FlacReader::try_new(mss, opts)?),
        Container::Ogg => Box::new(OggReader::try_new(mss, opts)?),
        Container::Matroska => Box::new(MkvReader::try_new(mss, opts)?),
        Container::AmrNb | Container::AmrWb => unreachable!("AMR files are parsed by audio::amr"),
    })
}

fn open_error(container: Container, e: SymError) -> Error {
    match e {
        SymError::Unsupported(what) => {
            Error::UnsupportedFormat(format!("{}: {what}", container.name()))
        }
        SymError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            Error::CorruptAudio(format!(
                "{} file is truncated (ends before its header is complete)",
                container.name()
            ))
        }
        other => Error::CorruptAudio(format!("{}: {other}", container.name())),
    }
}

fn decode_reader(
    mut reader: Box<dyn FormatReader>,
    container: Container,
    amr_in_mp4: Option<amr::Band>,
    max_seconds: f64,
    mix: Option<&[bool]>,
) -> Result<(Pcm, String)> {
    let track = reader
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL || amr_in_mp4.is_some())
        .ok_or_else(|| {
            Error::UnsupportedFormat(format!(
                "{} file has no audio track we can decode",
                container.name()
            ))
        })?
        .clone();
    let params = track.codec_params.clone();
    let track_id = track.id;

    if let Some(band) = amr_in_mp4 {
        let mut dec = amr::StreamDecoder::for_mp4(band)?;
        let mut pcm = Pcm::new(dec.rate(), 1, max_seconds, None)?;
        pcm.declared_frames = declared(&params, dec.rate());
        let codec = dec.codec_name().to_string();
        for_each_packet(&mut *reader, track_id, |data| {
            dec.decode_frames(data, &mut pcm)
        })?;
        return Ok((pcm, codec));
    }
    if params.codec == CODEC_TYPE_OPUS {
        let mut dec = opus_dec::OpusStream::new(&params)?;
        let mut pcm = Pcm::new(48_000, dec.channels(), max_seconds, None)?;
        pcm.declared_frames = declared(&params, 48_000);
        for_each_packet(&mut *reader, track_id, |data| dec.decode(data, &mut pcm))?;
        return Ok((pcm, "opus".into()));
    }

    let codec = codec_name(&params);
    let mut decoder = symphonia::default::get_codecs()
        .make(&params, &DecoderOptions::default())
        .map_err(|e| match e {
            SymError::Unsupported(what) => {
                Error::UnsupportedFormat(format!("{} codec {codec}: {what}", container.name()))
            }
            other => Error::CorruptAudio(format!("{codec}: {other}")),
        })?;
    let mut pcm: Option<Pcm> = None;
    let mut buf: Option<SampleBuffer<f32>> = None;
    let mut bad = 0usize;
    loop {
        let packet = match reader.next_packet() {
            Ok(p) => p,
            Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(SymError::ResetRequired) => break,
            Err(SymError::DecodeError(msg)) => {
                bad += 1;
                if bad > MAX_BAD_PACKETS {
                    return Err(Error::CorruptAudio(format!("{}: {msg}", container.name())));
                }
                continue;
            }
            Err(e) => {
                // A damaged tail after good audio is kept; damage before any audio is an error.
                if pcm.as_ref().is_some_and(|p| p.frames() > 0) {
                    break;
                }
                return Err(Error::CorruptAudio(format!("{}: {e}", container.name())));
            }
        };
        if packet.track_id() != track_id {
            continue;
        }
        let decoded = match decoder.decode(&packet) {
            Ok(d) => {
                bad = 0;
                d
            }
            Err(SymError::DecodeError(msg)) => {
                bad += 1;
                if bad > MAX_BAD_PACKETS {
                    return Err(Error::CorruptAudio(format!("{codec}: {msg}")));
                }
                continue;
            }
            Err(SymError::IoError(_)) => break,
            Err(e) => return Err(Error::CorruptAudio(format!("{codec}: {e}"))),
        };
        let spec = *decoded.spec();
        let frames = decoded.frames();
        if frames == 0 {
            continue;
        }
        let out = match &mut pcm {
            Some(p) => p,
            None => {
                let mut p = Pcm::new(spec.rate, spec.channels.count(), max_seconds, mix)?;
                p.declared_frames = declared(&params, spec.rate);
                pcm.insert(p)
            }
        };
        if out.channels != spec.channels.count() || out.rate != spec.rate {
            // Mid-stream format changes do not happen in memos; keep what we have.
            break;
        }
        let sb = match &mut buf {
            Some(b) if b.capacity() >= frames => b,
            _ => buf.insert(SampleBuffer::<f32>::new(frames as u64, spec)),
        };
        sb.copy_interleaved_ref(decoded);
        if !out.push(sb.samples())? {
            break;
        }
    }
    let pcm = pcm.ok_or_else(|| {
        Error::CorruptAudio(format!("no audio frames in this {} file", container.name()))
    })?;
    Ok((pcm, codec))
}

/// The track's length in frames at `rate`, as its header declares it (WAV, FLAC, MP4 and Ogg
/// say; raw streams do not).
fn declared(params: &CodecParameters, rate: u32) -> Option<u64> {
    let frames = params.n_frames?;
    match (params.time_base, params.sample_rate) {
        // Ogg counts in granules of its time base; convert to the decoder's rate.
        (Some(tb), _) if tb.denom != rate => {
            let t = tb.calc_time(frames);
            Some(((t.seconds as f64 + t.frac) * rate as f64) as u64)
        }
        (_, Some(r)) if r != rate => Some(frames * rate as u64 / r.max(1) as u64),
        _ => Some(frames),
    }
}

/// Feed each packet of `track_id` to `f` until the stream ends or `f` says stop.
fn for_each_packet(
    reader: &mut dyn FormatReader,
    track_id: u32,
    mut f: impl FnMut(&[u8]) -> Result<bool>,
) -> Result<()> {
    let mut seen = false;
    loop {
        match reader.next_packet() {
            Ok(packet) => {
                if packet.track_id() != track_id {
                    continue;
                }
                seen = true;
                if !f(&packet.data)? {
                    return Ok(());
                }
            }
            Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Ok(())
            }
            Err(SymError::ResetRequired) => return Ok(()),
            Err(e) if seen => {
                tracing::debug!("stopping at damaged packet: {e}");
                return Ok(());
            }
            Err(e) => return Err(Error::CorruptAudio(e.to_string())),
        }
    }
}

fn codec_name(params: &CodecParameters) -> String {
    use symphonia::core::codecs::*;
    let name = match params.codec {
        CODEC_TYPE_PCM_S16LE => "pcm_s16le",
        CODEC_TYPE_PCM_S24LE => "pcm_s24le",
        CODEC_TYPE_PCM_S32LE => "pcm_s32le",
        CODEC_TYPE_PCM_U8 => "pcm_u8",
        CODEC_TYPE_PCM_F32LE => "pcm_f32le",
        CODEC_TYPE_PCM_F64LE => "pcm_f64le",
        CODEC_TYPE_PCM_MULAW => "pcm_mulaw",
        CODEC_TYPE_PCM_ALAW => "pcm_alaw",
        CODEC_TYPE_ADPCM_IMA_WAV => "adpcm_ima",
        CODEC_TYPE_ADPCM_MS => "adpcm_ms",
        CODEC_TYPE_MP3 => "mp3",
        CODEC_TYPE_MP2 => "mp2",
        CODEC_TYPE_AAC => "aac",
        CODEC_TYPE_FLAC => "flac",
        CODEC_TYPE_VORBIS => "vorbis",
        CODEC_TYPE_OPUS => "opus",
        _ => {
            return symphonia::default::get_codecs()
                .get_codec(params.codec)
                .map(|d| d.short_name.to_string())
                .unwrap_or_else(|| "unknown".into())
        }
    };
    name.into()
}
