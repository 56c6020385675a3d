//! WAV joining shared by the integration tests and the benchmarks (`benches/common.rs` includes
//! this file by path).

use std::path::Path;

/// WAV files (all 16-bit PCM with the same format) joined into one WAV, with `gap_samples` of
/// silence after each part.
pub fn join_wav_files<P: AsRef<Path>>(parts: &[P], gap_samples: usize) -> Vec<u8> {
    let read = |part: &Path| {
        let reader =
            hound::WavReader::open(part).unwrap_or_else(|e| panic!("{}: {e}", part.display()));
        let spec = reader.spec();
        let samples: Vec<i16> = reader.into_samples().map(|s| s.unwrap()).collect();
        (spec, samples)
    };
    let decoded: Vec<_> = parts.iter().map(|p| read(p.as_ref())).collect();
    let spec = decoded[0].0;
    let mut out = std::io::Cursor::new(Vec::new());
    let mut w = hound::WavWriter::new(&mut out, spec).unwrap();
    for (part, (part_spec, samples)) in parts.iter().zip(decoded) {
        assert_eq!(
            part_spec,
            spec,
            "{} has another format",
            part.as_ref().display()
        );
        for s in samples {
            w.write_sample(s).unwrap();
        }
        for _ in 0..gap_samples * spec.channels as usize {
            w.write_sample(0i16).unwrap();
        }
    }
    w.finalize().unwrap();
    out.into_inner()
}
