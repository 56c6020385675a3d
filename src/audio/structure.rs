//! Structural checks run before untrusted bytes reach a third-party demuxer.
//!
//! symphonia's MP4, Matroska and WAV readers allocate buffers from sizes and counts written in
//! the file (an `hdlr` box claiming 4 GB, an `stsz` table of 2^32 entries, an EBML lace of 2^56
//! bytes). An allocation that fails aborts the whole process — it cannot be caught like a panic
//! — so a single damaged upload would take the service down. These walkers read only the
//! structure and refuse any file where a size or count the demuxer would allocate from is
//! larger than the file itself. A well-formed file always passes; every allocation the demuxer
//! then makes is bounded by the upload size.

type Check = std::result::Result<(), String>;

fn be_u16(b: &[u8], at: usize) -> Option<u64> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?) as u64)
}

fn be_u32(b: &[u8], at: usize) -> Option<u64> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?) as u64)
}

fn be_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn le_u32(b: &[u8], at: usize) -> Option<u64> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?) as u64)
}

/// Deepest nesting the walkers follow; real files stay far below it.
const MAX_DEPTH: usize = 16;

// ---------------------------------------------------------------------------------------------
// ISO base media (MP4, M4A, 3GP, MOV)

/// Boxes symphonia descends into, whose children are boxes.
const MP4_CONTAINERS: &[&[u8; 4]] = &[
    b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"mvex", b"moof", b"traf", b"udta",
    b"dinf", b"wave", b"ilst",
];

/// Audio sample entries symphonia reads (their payload starts with a fixed header, then boxes).
const MP4_AUDIO_ENTRIES: &[&[u8; 4]] = &[
    b"mp4a", b"alac", b"fLaC", b"Opus", b".mp3", b"lpcm", b"alaw", b"ulaw", b"raw ", b"sowt",
    b"twos", b"in24", b"in32", b"fl32", b"fl64",
];

pub(crate) fn check_mp4(bytes: &[u8]) -> Check {
    Mp4 {
        file_len: bytes.len() as u64,
    }
    .boxes(bytes, 0, None)
}

struct Mp4 {
    file_len: u64,
}

impl Mp4 {
    /// Walk the boxes in `buf`. `parent` is the enclosing box type (None at top level).
    fn boxes(&self, buf: &[u8], depth: usize, parent: Option<&[u8; 4]>) -> Check {
        if depth > MAX_DEPTH {
            return Err("boxes nested too deeply".into());
        }
        let mut pos = 0usize;
        while buf.len() - pos >= 8 {
            let size32 = be_u32(buf, pos).unwrap_or(0);
            let kind: &[u8; 4] = buf[pos + 4..pos + 8].try_into().expect("4 bytes");
            let (header, size) = match size32 {
                1 => {
                    let Some(large) = be_u64(buf, pos + 8) else {
                        return Err(format!("{} box header is cut off", show(kind)));
                    };
                    (16u64, large)
                }
                // Size 0: the box runs to the end of its parent and has no payload of its own
                // as far as the demuxer is concerned; QuickTime also uses it as a terminator.
                0 => (8, 0),
                n => (8, n),
            };
            if size != 0 && size < header {
                return Err(format!("{} box has an impossible size {size}", show(kind)));
            }
            let remaining = (buf.len() - pos) as u64;
            let overruns = size > remaining;
            if overruns {
                // Only the media data of a cut-off recording may run past the end of the file:
                // its packets are read one by one and the demuxer stops at the end.
                let tolerated = parent.is_none() && matches!(kind, b"mdat" | b"free" | b"skip");
                if !tolerated {
                    return Err(format!(
                        "{} box claims {size} bytes but only {remaining} remain",
                        show(kind)
                    ));
                }
            }
            let end = if size == 0 || overruns {
                buf.len()
            } else {
                pos + size as usize
            };
            let payload = if size == 0 {
                &buf[0..0]
            } else {
                &buf[(pos + header as usize).min(end)..end]
            };
            if parent == Some(b"ilst") {
                // A metadata item (©nam, trkn, ----, …) of any name: its payload is boxes
                // (data, mean, name) that symphonia reads into buffers of their stated size.
                self.boxes(payload, depth + 1, Some(kind))?;
            } else {
                self.one(kind, payload, depth)?;
            }
            if size == 0 {
                break;
            }
            pos = end;
        }
        Ok(())
    }

    fn one(&self, kind: &[u8; 4], p: &[u8], depth: usize) -> Check {
        let len = p.len() as u64;
        let bad = |what: &str| Err(format!("{} box: {what}", show(kind)));
        let table = |head: u64, count_at: usize, entry: u64| -> Check {
            let Some(n) = be_u32(p, count_at) else {
                return bad("too short for its entry count");
            };
            if head + n.saturating_mul(entry) > len {
                return bad(&format!("{n} entries do not fit in {len} bytes"));
            }
            Ok(())
        };
        if MP4_CONTAINERS.contains(&kind) {
            return self.boxes(p, depth + 1, Some(kind));
        }
        match kind {
            b"meta" => {
                // Full box: version and flags, then boxes.
                if len < 4 {
                    return bad("too short");
                }
                self.boxes(&p[4..], depth + 1, Some(kind))
            }
            b"hdlr" if len < 24 => bad("too short"),
            b"data" if len < 8 => bad("too short"),
            b"mean" | b"name" if len < 4 => bad("too short"),
            b"stco" | b"stss" => table(8, 4, 4),
            b"co64" | b"stts" | b"ctts" => table(8, 4, 8),
            b"stsc" => table(8, 4, 12),
            b"elst" => table(8, 4, if p.first() == Some(&1) { 20 } else { 12 }),
            b"stsz" => {
                let (Some(fixed), Some(n)) = (be_u32(p, 4), be_u32(p, 8)) else {
                    return bad("too short");
                };
                if fixed > self.file_len {
                    return bad(&format!("sample size {fixed} is larger than the file"));
                }
                if fixed == 0 {
                    table(12, 8, 4)?;
                    for i in 0..n as usize {
                        if be_u32(p, 12 + 4 * i).unwrap_or(0) > self.file_len {
                            return bad("a sample is larger than the file");
                        }
                    }
                }
                Ok(())
            }
            b"trex" => self.sample_size(kind, be_u32(p, 16)),
            b"tfhd" => {
                let flags = be_u32(p, 0).unwrap_or(0) & 0xff_ffff;
                let mut at = 8 + if flags & 0x01 != 0 { 8 } else { 0 };
                at += if flags & 0x02 != 0 { 4 } else { 0 };
                at += if flags & 0x08 != 0 { 4 } else { 0 };
                if flags & 0x10 != 0 {
                    self.sample_size(kind, be_u32(p, at))?;
                }
                Ok(())
            }
            b"trun" => {
                let flags = be_u32(p, 0).unwrap_or(0) & 0xff_ffff;
                let Some(n) = be_u32(p, 4) else {
                    return bad("too short");
                };
                let head = 8 + 4 * ((flags & 0x01 != 0) as u64 + (flags & 0x04 != 0) as u64);
                let fields = [0x100, 0x200, 0x400, 0x800].map(|f| flags & f != 0);
                let per = 4 * fields.iter().filter(|&&f| f).count() as u64;
                if head + n.saturating_mul(per) > len {
                    return bad(&format!("{n} samples do not fit in {len} bytes"));
                }
                if fields[1] {
                    let size_at = 4 * fields[0] as u64;
                    for i in 0..n {
                        let at = (head + i * per + size_at) as usize;
                        self.sample_size(kind, be_u32(p, at))?;
                    }
                }
                Ok(())
            }
            b"stsd" => {
                if len < 8 {
                    return bad("too short");
                }
                self.sample_entries(&p[8..], depth + 1)
            }
            b"esds" => {
                if len < 4 {
                    return bad("too short");
                }
                descriptors(&p[4..], 0).map_err(|e| format!("esds box: {e}"))
            }
            _ => Ok(()),
        }
    }

    fn sample_size(&self, kind: &[u8; 4], size: Option<u64>) -> Check {
        match size {
            Some(s) if s > self.file_len => Err(format!(
                "{} box: sample size {s} is larger than the file",
                show(kind)
            )),
            _ => Ok(()),
        }
    }

    /// The entries of an `stsd` box: boxes whose audio payloads hold a fixed header and then
    /// codec configuration boxes.
    fn sample_entries(&self, buf: &[u8], depth: usize) -> Check {
        let mut pos = 0usize;
        while buf.len() - pos >= 8 {
            let size = be_u32(buf, pos).unwrap_or(0);
            let kind: &[u8; 4] = buf[pos + 4..pos + 8].try_into().expect("4 bytes");
            let remaining = (buf.len() - pos) as u64;
            if size < 8 || size > remaining {
                return Err(format!(
                    "sample entry {} has size {size} with {remaining} bytes left",
                    show(kind)
                ));
            }
            let entry = &buf[pos + 8..pos + size as usize];
            if MP4_AUDIO_ENTRIES.contains(&kind) {
                let version = be_u16(entry, 8).unwrap_or(0);
                let fixed = 28
                    + match version {
                        1 => 16,
                        2 => 36,
                        _ => 0,
                    };
                if entry.len() > fixed {
                    self.boxes(&entry[fixed..], depth + 1, Some(kind))?;
                }
            }
            pos += size as usize;
        }
        Ok(())
    }
}

/// MPEG-4 object descriptors inside `esds`: each length must fit in what encloses it.
fn descriptors(buf: &[u8], depth: usize) -> Check {
    if depth > MAX_DEPTH {
        return Err("descriptors nested too deeply".into());
    }
    let mut pos = 0usize;
    while pos < buf.len() {
        let tag = buf[pos];
        pos += 1;
        let mut len = 0u64;
        for _ in 0..4 {
            let Some(&b) = buf.get(pos) else {
                return Err("descriptor header is cut off".into());
            };
            pos += 1;
            len = (len << 7) | (b & 0x7f) as u64;
            if b & 0x80 == 0 {
                break;
            }
        }
        let remaining = (buf.len() - pos) as u64;
        if len > remaining {
            return Err(format!(
                "descriptor {tag:#x} claims {len} bytes but only {remaining} remain"
            ));
        }
        let body = &buf[pos..pos + len as usize];
        match tag {
            // ES_Descriptor: ES_ID, flags and optional fields, then nested descriptors.
            0x03 => {
                let flags = body.get(2).copied().unwrap_or(0);
                let mut at = 3usize;
                if flags & 0x80 != 0 {
                    at += 2;
                }
                if flags & 0x40 != 0 {
                    at += 1 + *body.get(at).unwrap_or(&0) as usize;
                }
                if flags & 0x20 != 0 {
                    at += 2;
                }
                if at < body.len() {
                    descriptors(&body[at..], depth + 1)?;
                }
            }
            // DecoderConfigDescriptor: 13 fixed bytes, then nested descriptors.
            0x04 if body.len() > 13 => descriptors(&body[13..], depth + 1)?,
            _ => {}
        }
        pos += len as usize;
    }
    Ok(())
}

fn show(kind: &[u8; 4]) -> String {
    kind.iter()
        .map(|&c| {
            if c.is_ascii_graphic() || c == b' ' {
                c as char
            } else {
                '?'
            }
        })
        .collect::<String>()
        .trim_end()
        .to_string()
}

// ---------------------------------------------------------------------------------------------
// Matroska / WebM (EBML)

/// Master elements: their payload is a sequence of elements.
const EBML_MASTERS: &[u64] = &[
    0x1A45_DFA3, // EBML header
    0x1853_8067, // Segment
    0x114D_9B74, // SeekHead
    0x4DBB,      // Seek
    0x1549_A966, // Info
    0x1654_AE6B, // Tracks
    0xAE,        // TrackEntry
    0xE0,        // Video
    0xE1,        // Audio
    0x6D80,      // ContentEncodings
    0x6240,      // ContentEncoding
    0x1F43_B675, // Cluster
    0xA0,        // BlockGroup
    0x1C53_BB6B, // Cues
    0xBB,        // CuePoint
    0xB7,        // CueTrackPositions
    0x1254_C367, // Tags
    0x7373,      // Tag
    0x63C0,      // Targets
    0x67C8,      // SimpleTag
    0x1043_A770, // Chapters
    0x1941_A469, // Attachments
];
const EBML_SIMPLE_BLOCK: u64 = 0xA3;
const EBML_BLOCK: u64 = 0xA1;
const EBML_CODEC_ID: u64 = 0x86;
const EBML_CODEC_PRIVATE: u64 = 0x63A2;
const EBML_TRACK_ENTRY: u64 = 0xAE;

/// An EBML variable-length integer at `at`: (value with the marker bit removed, its length,
/// whether every value bit is set — "unknown size").
fn vint(b: &[u8], at: usize) -> Option<(u64, usize, bool)> {
    let first = *b.get(at)?;
    if first == 0 {
        return None;
    }
    let len = first.leading_zeros() as usize + 1;
    let mut value = (first as u64) & (0xff >> len);
    for i in 1..len {
        value = (value << 8) | *b.get(at + i)? as u64;
    }
    let all_ones = value == (1u64 << (7 * len)) - 1;
    Some((value, len, all_ones))
}

/// An element id keeps its marker bits.
fn element_id(b: &[u8], at: usize) -> Option<(u64, usize)> {
    let first = *b.get(at)?;
    if first == 0 {
        return None;
    }
    let len = first.leading_zeros() as usize + 1;
    if len > 4 {
        return None;
    }
    let mut id = 0u64;
    for i in 0..len {
        id = (id << 8) | *b.get(at + i)? as u64;
    }
    Some((id, len))
}

pub(crate) fn check_matroska(bytes: &[u8]) -> Check {
    Ebml {
        file_len: bytes.len() as u64,
    }
    .elements(bytes, 0, 0)
}

struct Ebml {
    file_len: u64,
}

impl Ebml {
    fn elements(&self, buf: &[u8], depth: usize, parent: u64) -> Check {
        if depth > MAX_DEPTH {
            return Err("elements nested too deeply".into());
        }
        let mut pos = 0usize;
        let mut codec_id: &[u8] = &[];
        let mut codec_private: &[u8] = &[];
        while pos < buf.len() {
            let Some((id, id_len)) = element_id(buf, pos) else {
                // Damaged or padding bytes: the demuxer stops or resynchronises here.
                break;
            };
            let Some((size, size_len, unknown)) = vint(buf, pos + id_len) else {
                break;
            };
            let start = pos + id_len + size_len;
            let master = EBML_MASTERS.contains(&id);
            if unknown && !master {
                return Err(format!("element {id:#x} has an unknown size"));
            }
            if !unknown && size > self.file_len {
                return Err(format!(
                    "element {id:#x} claims {size} bytes, more than the whole file"
                ));
            }
            let end = if unknown {
                buf.len()
            } else {
                (start as u64 + size).min(buf.len() as u64) as usize
            };
            let body = &buf[start.min(end)..end];
            if master {
                self.elements(body, depth + 1, id)?;
            } else if id == EBML_SIMPLE_BLOCK || id == EBML_BLOCK {
                // A block cut off by the end of the file is read as far as it goes.
                lacing(body).map_err(|e| format!("block: {e}"))?;
            } else if parent == EBML_TRACK_ENTRY && id == EBML_CODEC_ID {
                codec_id = body;
            } else if parent == EBML_TRACK_ENTRY && id == EBML_CODEC_PRIVATE {
                codec_private = body;
            }
            if unknown {
                break;
            }
            pos = end;
        }
        if codec_id == b"A_VORBIS" && !codec_private.is_empty() {
            // Vorbis headers are Xiph-laced inside CodecPrivate.
            let count = codec_private[0] as usize;
            xiph_sizes(codec_private, 1, count)
                .map_err(|e| format!("Vorbis codec private data: {e}"))?;
        }
        Ok(())
    }
}

/// The frame sizes of a laced block must fit inside the block.
fn lacing(block: &[u8]) -> Check {
    let Some((_, track_len, _)) = vint(block, 0) else {
        return Ok(()); // too short: the demuxer reports it
    };
    let flags_at = track_len + 2;
    let Some(&flags) = block.get(flags_at) else {
        return Ok(());
    };
    let count_at = flags_at + 1;
    let Some(&count) = block.get(count_at) else {
        return Ok(());
    };
    match (flags >> 1) & 3 {
        0b01 => xiph_sizes(block, count_at + 1, count as usize),
        0b11 => {
            let mut at = count_at + 1;
            let mut total = 0u64;
            let mut size = 0i64;
            for i in 0..count as usize {
                let Some((raw, len, _)) = vint(block, at) else {
                    return Err("lace size is cut off".into());
                };
                size = if i == 0 {
                    raw as i64
                } else {
                    // Signed difference to the previous size.
                    let bias = (1i64 << (7 * len - 1)) - 1;
                    size + (raw as i64 - bias)
                };
                if size < 0 {
                    return Err("negative lace size".into());
                }
                total += size as u64;
                at += len;
                if total > (block.len() - at.min(block.len())) as u64 {
                    return Err(format!(
                        "laced frames claim {total} bytes, more than the block"
                    ));
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Xiph lacing: each size is a run of 255s ended by a smaller byte.
fn xiph_sizes(buf: &[u8], mut at: usize, count: usize) -> Check {
    let mut total = 0u64;
    for _ in 0..count {
        loop {
            let Some(&b) = buf.get(at) else {
                return Err("lace size is cut off".into());
            };
            at += 1;
            total += b as u64;
            if b != 255 {
                break;
            }
        }
    }
    let room = (buf.len() - at.min(buf.len())) as u64;
    if total > room {
        return Err(format!(
            "laced frames claim {total} bytes, more than the {room} present"
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// WAV (RIFF)

pub(crate) fn check_wav(bytes: &[u8]) -> Check {
    if bytes.len() < 12 {
        return Ok(());
    }
    riff_chunks(&bytes[12..], 0)
}

fn riff_chunks(buf: &[u8], depth: usize) -> Check {
    if depth > MAX_DEPTH {
        return Err("chunks nested too deeply".into());
    }
    let mut pos = 0usize;
    while buf.len() - pos >= 8 {
        let id: &[u8; 4] = buf[pos..pos + 4].try_into().expect("4 bytes");
        let size = le_u32(buf, pos + 4).unwrap_or(0);
        let remaining = (buf.len() - pos - 8) as u64;
        if id == b"data" {
            // Audio data is streamed in packets; recorders that never finalise the header write
            // 0 or 0xFFFFFFFF here, and a cut-off file simply ends early.
            break;
        }
        if size > remaining {
            return Err(format!(
                "{} chunk claims {size} bytes but only {remaining} remain",
                show(id)
            ));
        }
        let body = &buf[pos + 8..pos + 8 + size as usize];
        if id == b"LIST" && body.len() >= 4 {
            riff_chunks(&body[4..], depth + 1)?;
        }
        // Chunks are padded to an even length.
        pos += 8 + size as usize + (size as usize & 1);
        if pos > buf.len() {
            break;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// FLAC and Ogg (Vorbis comments, pictures, FLAC metadata blocks)

pub(crate) fn check_flac(bytes: &[u8]) -> Check {
    let Some(mut rest) = bytes.strip_prefix(b"fLaC") else {
        return Ok(());
    };
    while rest.len() >= 4 {
        let last = rest[0] & 0x80 != 0;
        let kind = rest[0] & 0x7f;
        let len = u32::from_be_bytes([0, rest[1], rest[2], rest[3]]) as usize;
        let body = &rest[4..(4 + len).min(rest.len())];
        flac_block(kind, len, body)?;
        if last || 4 + len > rest.len() {
            break;
        }
        rest = &rest[4 + len..];
    }
    Ok(())
}

/// One FLAC metadata block of declared length `len` whose bytes present are `body`.
fn flac_block(kind: u8, len: usize, body: &[u8]) -> Check {
    match kind {
        2 if len < 4 => Err("FLAC application block is shorter than its identifier".into()),
        4 => vorbis_comment(body),
        6 => picture(body),
        _ => Ok(()),
    }
}

/// A Vorbis comment header (little-endian lengths): every length must fit in what is present.
fn vorbis_comment(buf: &[u8]) -> Check {
    let Some(vendor) = le_u32(buf, 0) else {
        return Ok(());
    };
    let mut at = 4usize;
    let fits = |n: u64, at: usize, what: &str| -> Check {
        let room = (buf.len() - at.min(buf.len())) as u64;
        if n > room {
            return Err(format!("{what} claims {n} bytes but only {room} remain"));
        }
        Ok(())
    };
    fits(vendor, at, "comment vendor string")?;
    at += vendor as usize;
    let Some(count) = le_u32(buf, at) else {
        return Ok(());
    };
    at += 4;
    for _ in 0..count {
        let Some(n) = le_u32(buf, at) else {
            return Ok(());
        };
        at += 4;
        fits(n, at, "a comment")?;
        at += n as usize;
    }
    Ok(())
}

/// A FLAC picture block (big-endian lengths).
fn picture(buf: &[u8]) -> Check {
    let mut at = 4usize; // picture type
    for (what, skip_after) in [("MIME type", 0usize), ("description", 16), ("picture", 0)] {
        let Some(n) = be_u32(buf, at) else {
            return Ok(());
        };
        at += 4;
        let room = (buf.len() - at.min(buf.len())) as u64;
        if n > room {
            return Err(format!("{what} claims {n} bytes but only {room} remain"));
        }
        at += n as usize + skip_after;
    }
    Ok(())
}

/// Ogg: reassemble the first packets of each logical stream and check the header packets the
/// demuxer parses (OpusTags, Vorbis comments, FLAC metadata blocks).
pub(crate) fn check_ogg(bytes: &[u8]) -> Check {
    use std::collections::HashMap;
    /// Header packets examined per stream; metadata always comes first.
    const HEADER_PACKETS: usize = 8;
    let mut streams: HashMap<u32, (Vec<u8>, usize)> = HashMap::new();
    let mut pos = 0usize;
    while let Some(page) = bytes.get(pos..).filter(|p| p.len() >= 27) {
        if &page[..4] != b"OggS" {
            break;
        }
        let serial = le_u32(page, 14).unwrap_or(0) as u32;
        let segments = page[26] as usize;
        let Some(table) = page.get(27..27 + segments) else {
            break;
        };
        let mut data_at = 27 + segments;
        let (partial, done) = streams.entry(serial).or_default();
        for &lace in table {
            let Some(chunk) = page.get(data_at..data_at + lace as usize) else {
                break;
            };
            data_at += lace as usize;
            if *done < HEADER_PACKETS {
                partial.extend_from_slice(chunk);
                if lace < 255 {
                    ogg_header_packet(partial)?;
                    partial.clear();
                    *done += 1;
                }
            }
        }
        pos += data_at;
        if streams.values().all(|(_, done)| *done >= HEADER_PACKETS) {
            break;
        }
    }
    Ok(())
}

fn ogg_header_packet(packet: &[u8]) -> Check {
    if let Some(rest) = packet.strip_prefix(b"OpusTags") {
        return vorbis_comment(rest);
    }
    if let Some(rest) = packet.strip_prefix(b"\x03vorbis") {
        return vorbis_comment(rest);
    }
    // FLAC in Ogg: header packets after the first are bare metadata blocks; the first one
    // carries the mapping header and STREAMINFO.
    if packet.starts_with(b"\x7fFLAC") {
        return Ok(());
    }
    if packet.len() >= 4 {
        let kind = packet[0] & 0x7f;
        let len = u32::from_be_bytes([0, packet[1], packet[2], packet[3]]) as usize;
        if matches!(kind, 4 | 6) && len + 4 == packet.len() {
            return flac_block(kind, len, &packet[4..]);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mp4_box(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
        let mut b = ((payload.len() + 8) as u32).to_be_bytes().to_vec();
        b.extend_from_slice(kind);
        b.extend_from_slice(payload);
        b
    }

    #[test]
    fn mp4_rejects_sizes_larger_than_the_file() {
        let hdlr = mp4_box(b"hdlr", &[0; 8]);
        let file = mp4_box(b"moov", &mp4_box(b"trak", &mp4_box(b"mdia", &hdlr)));
        assert!(check_mp4(&file).unwrap_err().contains("hdlr"));

        let mut stsz = vec![0u8; 12];
        stsz[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
        let file = mp4_box(b"moov", &mp4_box(b"stbl", &mp4_box(b"stsz", &stsz)));
        assert!(check_mp4(&file).unwrap_err().contains("entries"));

        let mut nested = mp4_box(b"trak", &[]);
        nested[0..4].copy_from_slice(&1000u32.to_be_bytes());
        assert!(check_mp4(&mp4_box(b"moov", &nested)).is_err());
    }

    #[test]
    fn mp4_metadata_items_are_walked_too() {
        // moov/udta/meta/ilst/©nam/data, the data box claiming 3 GB (found by the fuzz test:
        // symphonia allocated the claimed size and the process aborted).
        let mut data = mp4_box(b"data", &[0, 0, 0, 1, 0, 0, 0, 0, b'x']);
        data[0..4].copy_from_slice(&0xC000_001Du32.to_be_bytes());
        let item = mp4_box(b"\xa9nam", &data);
        let mut meta = vec![0u8; 4];
        meta.extend(mp4_box(b"ilst", &item));
        let file = mp4_box(b"moov", &mp4_box(b"udta", &mp4_box(b"meta", &meta)));
        assert!(check_mp4(&file).unwrap_err().contains("data"));

        // The same item with an honest size passes.
        let data = mp4_box(b"data", &[0, 0, 0, 1, 0, 0, 0, 0, b'x']);
        let mut meta = vec![0u8; 4];
        meta.extend(mp4_box(b"ilst", &mp4_box(b"\xa9nam", &data)));
        let file = mp4_box(b"moov", &mp4_box(b"udta", &mp4_box(b"meta", &meta)));
        assert_eq!(check_mp4(&file), Ok(()));
    }

    #[test]
    fn mp4_tolerates_cut_off_media_data() {
        let mut file = mp4_box(b"ftyp", b"M4A \0\0\0\0");
        file.extend(mp4_box(b"moov", &mp4_box(b"trak", &[])));
        let mut mdat = mp4_box(b"mdat", &[1, 2, 3]);
        mdat[0..4].copy_from_slice(&5000u32.to_be_bytes());
        file.extend(mdat);
        assert_eq!(check_mp4(&file), Ok(()));
    }

    #[test]
    fn esds_descriptor_lengths_must_fit() {
        // ES_Descriptor claiming 0x0fffffff bytes.
        let esds = [0, 0, 0, 0, 0x03, 0xff, 0xff, 0xff, 0x7f, 0, 1, 0];
        let file = mp4_box(b"esds", &esds);
        assert!(check_mp4(&file).is_err());
    }

    #[test]
    fn matroska_rejects_huge_elements_and_laces() {
        // EBML header element claiming 2^48 bytes.
        let file = [
            0x1A, 0x45, 0xDF, 0xA3, 0x01, 0x00, 0x01, 0, 0, 0, 0, 0, 0x42,
        ];
        assert!(check_matroska(&file).is_err());
        // A SimpleBlock with EBML lacing whose first frame claims 2^40 bytes.
        let block = [0x81, 0, 0, 0b0000_0110, 1, 0x02, 0, 0, 0, 0x10, 0, 0, 0, 0];
        let mut file = vec![0xA3, 0x80 | block.len() as u8];
        file.extend_from_slice(&block);
        assert!(check_matroska(&file).unwrap_err().contains("block"));
    }

    #[test]
    fn flac_and_ogg_comment_lengths_must_fit() {
        let mut comment = 3u32.to_le_bytes().to_vec();
        comment.extend_from_slice(b"abc");
        comment.extend_from_slice(&1u32.to_le_bytes());
        comment.extend_from_slice(&0xffff_0000u32.to_le_bytes());
        let mut flac = b"fLaC".to_vec();
        flac.push(0x84);
        flac.extend_from_slice(&(comment.len() as u32).to_be_bytes()[1..]);
        flac.extend_from_slice(&comment);
        assert!(check_flac(&flac).unwrap_err().contains("comment"));

        let mut packet = b"OpusTags".to_vec();
        packet.extend_from_slice(&comment);
        let mut page = b"OggS\0\x02".to_vec();
        page.extend_from_slice(&[0; 20]);
        page.push(1);
        page.push(packet.len() as u8);
        page.extend_from_slice(&packet);
        assert!(check_ogg(&page).is_err());
    }

    #[test]
    fn wav_rejects_oversized_chunks() {
        let mut file = b"RIFF\0\0\0\0WAVELIST".to_vec();
        file.extend_from_slice(&0xffff_fff0u32.to_le_bytes());
        file.extend_from_slice(b"INFO");
        assert!(check_wav(&file).is_err());
    }
}
