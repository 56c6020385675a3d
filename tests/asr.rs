//! Transcription with the real whisper base model on real Mandarin recordings (AISHELL-1 and
//! THCHS-30 clips bundled in fixtures/, Apache-2.0).

mod common;

use needtag::asr::cer;
use needtag::pipeline::Speech;
use needtag::zh;

/// (fixture, reference, CER bound). Measured with the default settings (Q8_0 base, VAD,
/// adaptive encoder window, domain prompt): 0.077, 0.167 and 0.094; the bounds leave room for
/// one or two more character errors, not for a regression to garbage.
const CLIPS: &[(&str, &str, f64)] = &[
    (
        "audio/aishell_S0764W0121.wav",
        "甚至出现交易几乎停滞的情况",
        0.16,
    ),
    (
        "audio/aishell_S0724W0121.wav",
        "广州市房地产中介协会分析",
        0.26,
    ),
    (
        "audio/thchs30_test.wav",
        "近几年不但我用书给女儿压岁也劝说亲朋不要给女儿压岁钱而改送压岁书",
        0.15,
    ),
];

#[test]
fn real_recordings_transcribe_in_simplified_chinese_within_cer_bounds() {
    let cfg = common::config();
    let speech = Speech::load(&cfg).expect("models are prepared by .ci/setup");
    let mut worker = speech.worker().unwrap();
    let prompt = speech.asr().build_prompt(
        &needtag::library::Library::embedded()
            .unwrap()
            .prompt_words(None),
    );
    for (file, reference, bound) in CLIPS {
        let out = speech
            .transcribe(&mut worker, common::fixture_bytes(file), Some(&prompt))
            .unwrap();
        let text = &out.transcript.text;
        let c = cer(text, reference);
        eprintln!("{file}: CER {c:.3} {text}");
        common::assert_transcript_readable(file, &out.transcript);
        assert!(out.speech_detected, "{file}: no speech detected");
        assert!(c <= *bound, "{file}: CER {c:.3} above {bound} for {text:?}");
        assert_eq!(
            &zh::to_simplified(text),
            text,
            "{file}: Traditional characters in {text:?}"
        );
        assert!(!out.transcript.segments.is_empty());
        // Ordinary speech is never taken for skipped speech.
        assert!(
            out.transcript.dropped.is_empty(),
            "{file}: {:?}",
            out.transcript.dropped
        );
        let last = out.transcript.segments.last().unwrap();
        assert!(
            last.end <= out.duration_s + 0.05,
            "{file}: segment ends after the audio"
        );
        assert!(out
            .transcript
            .segments
            .windows(2)
            .all(|w| w[0].start <= w[1].start));
    }
}

/// Whisper prompted with the library's words under a written head ("以下是…备忘录，内容涉及：",
/// the default until the spoken one) skips most of this 12 s meeting recording; the
/// sparse-text check must notice, decode it again without the prompt, keep the fuller text and
/// list the skipped one as dropped. Any configured head may do this, so the check stays.
#[test]
fn a_prompted_decode_that_skips_speech_is_replaced() {
    let Some(dir) = common::shared("audio/real") else {
        return;
    };
    let file = dir.join("04_fr_wenetspeech_testmeeting.wav");
    let reference = "好首先说一下刚才这个经理说完的这个销售问题咱再说一下咱们的商场问题首先咱们商场上半年业这个先各部门儿汇报一下就是业绩";
    let mut cfg = common::config();
    cfg.asr.prompt_head = "以下是销售代表拜访客户后的普通话语音备忘录，内容涉及：".into();
    cfg.asr.prompt_tail = "。".into();
    let speech = Speech::load(&cfg).unwrap();
    let mut worker = speech.worker().unwrap();
    let prompt = speech.asr().build_prompt(
        &needtag::library::Library::embedded()
            .unwrap()
            .prompt_words(None),
    );
    let bytes = std::fs::read(&file).unwrap();
    let out = speech
        .transcribe(&mut worker, &bytes, Some(&prompt))
        .unwrap();
    let text = &out.transcript.text;
    let chars = needtag::asr::guard::content_chars(text);
    eprintln!(
        "{chars} characters, CER {:.3}: {text}",
        cer(text, reference)
    );
    assert!(
        chars as f64 >= 2.5 * 12.0,
        "still sparse ({chars} characters): {text}"
    );
    assert!(cer(text, reference) < 0.5, "{text}");
    common::assert_transcript_readable("meeting clip, written head", &out.transcript);
    assert!(
        out.transcript
            .dropped
            .iter()
            .any(|d| d.reason == "sparse_with_prompt"),
        "{:?}",
        out.transcript.dropped
    );
}

/// The vocabulary needtag reads from the model file (for the tokens the decoder may write) is
/// whisper.cpp's, token for token.
#[test]
fn the_model_files_vocabulary_is_whispers() {
    let cfg = common::config();
    let path = cfg.models.path(&cfg.models.whisper);
    let tokens = needtag::asr::text_tokens(&path).unwrap();
    let ctx = whisper_rs::WhisperContext::new_with_params(
        &path,
        whisper_rs::WhisperContextParameters::default(),
    )
    .unwrap();
    let eot = ctx.token_eot() as usize;
    assert_eq!(tokens.len(), eot, "one entry per text token");
    for (id, bytes) in tokens.iter().enumerate() {
        if bytes.contains(&0) {
            continue; // whisper-rs reads a token as a C string: the NUL byte token reads empty
        }
        assert_eq!(
            ctx.token_to_bytes(id as i32).unwrap(),
            bytes.as_slice(),
            "token {id}"
        );
    }
    let writable = needtag::asr::bytes::ByteRules::from_text_tokens(tokens.clone());
    let writable = writable.writable();
    let text = |id: &i32| String::from_utf8_lossy(&tokens[*id as usize]).into_owned();
    let written: Vec<String> = writable.iter().map(text).collect();
    let all: Vec<String> = (0..tokens.len() as i32).map(|id| text(&id)).collect();
    for must in ["的", "。", "5", "CT", " KP", "ing"] {
        assert!(written.iter().any(|w| w == must), "{must:?} may be written");
    }
    for never in [" there", " hello", "и"] {
        assert!(all.iter().any(|w| w == never), "{never:?} is a token");
        assert!(
            !written.iter().any(|w| w == never),
            "{never:?} is never written"
        );
    }
    assert!(
        writable.len() < tokens.len() / 3,
        "{} tokens",
        writable.len()
    );
}

/// The decoder computes its output only for the tokens a transcript may hold; the fixtures give
/// the transcript of a decoder over the whole vocabulary, word for word.
#[test]
fn the_restricted_output_changes_no_transcript() {
    let mut cfg = common::config();
    let restricted = Speech::load(&cfg).unwrap();
    cfg.asr.restrict_output = false;
    let full = Speech::load(&cfg).unwrap();
    let prompt = restricted.asr().build_prompt(
        &needtag::library::Library::embedded()
            .unwrap()
            .prompt_words(None),
    );
    let (mut r, mut f) = (restricted.worker().unwrap(), full.worker().unwrap());
    for (file, _, _) in CLIPS {
        let a = restricted
            .transcribe(&mut r, common::fixture_bytes(file), Some(&prompt))
            .unwrap();
        let b = full
            .transcribe(&mut f, common::fixture_bytes(file), Some(&prompt))
            .unwrap();
        assert!(!a.transcript.text.is_empty(), "{file}");
        assert_eq!(a.transcript.text, b.transcript.text, "{file}");
    }
}

#[test]
fn without_a_prompt_output_is_still_simplified() {
    let cfg = common::config();
    let speech = Speech::load(&cfg).unwrap();
    let mut worker = speech.worker().unwrap();
    let out = speech
        .transcribe(
            &mut worker,
            common::fixture_bytes("audio/thchs30_test.wav"),
            None,
        )
        .unwrap();
    let text = &out.transcript.text;
    assert!(!text.is_empty());
    assert_eq!(&zh::to_simplified(text), text);
    common::assert_transcript_readable("thchs30 clip, no prompt", &out.transcript);
}

#[test]
fn a_missing_model_is_a_clear_error_not_a_panic() {
    let mut cfg = common::config();
    cfg.models.whisper = "/nonexistent/ggml-large.bin".into();
    let err = Speech::load(&cfg).err().expect("loading must fail");
    assert_eq!(err.code(), "model_unavailable");
    assert!(err.to_string().contains("models/prepare.py"), "{err}");
}

/// A model file cut short anywhere (inside its header, its vocabulary, or right after it) is a
/// clear error, not a model without weights that crashes at the first token.
#[test]
fn a_truncated_model_is_a_clear_error_not_a_crash() {
    let cfg = common::config();
    let whole = std::fs::read(cfg.models.path(&cfg.models.whisper)).unwrap();
    let dir = std::env::temp_dir().join(format!("needtag-cut-model-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let tokens = needtag::asr::text_tokens(&cfg.models.path(&cfg.models.whisper)).unwrap();
    // Where the vocabulary ends: header, mel filters, count, then length and bytes per token.
    let n_mel = i32::from_le_bytes(whole[48..52].try_into().unwrap()) as usize;
    let n_fft = i32::from_le_bytes(whole[52..56].try_into().unwrap()) as usize;
    let vocab_end = 56 + n_mel * n_fft * 4 + 4 + tokens.iter().map(|t| 4 + t.len()).sum::<usize>();
    for cut in [2, 30, 2000, vocab_end] {
        let path = dir.join(format!("cut-{cut}.bin"));
        std::fs::write(&path, &whole[..cut]).unwrap();
        let mut c = cfg.clone();
        c.models.whisper = path;
        let err = Speech::load(&c).err().expect("loading must fail");
        assert_eq!(err.code(), "model_unavailable", "cut at {cut}");
        assert!(err.to_string().contains("truncated"), "cut at {cut}: {err}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// Long speech split into chunks that run in parallel (threads = 2) comes back in order, with
/// times on the uploaded audio's timeline.
#[test]
fn parallel_chunks_keep_order_and_timeline() {
    let mut cfg = common::config();
    cfg.asr.threads = 2;
    let speech = Speech::load(&cfg).unwrap();
    let mut worker = speech.worker().unwrap();
    let parts = [
        "audio/thchs30_test.wav",
        "audio/aishell_S0764W0121.wav",
        "audio/thchs30_test.wav",
    ];
    // One second of silence after each clip.
    let memo = common::concat_wav(&parts, 16000);
    let reference = format!("{}{}{}", CLIPS[2].1, CLIPS[0].1, CLIPS[2].1);
    let prompt = speech.asr().build_prompt(
        &needtag::library::Library::embedded()
            .unwrap()
            .prompt_words(None),
    );
    let t = speech
        .transcribe(&mut worker, &memo, Some(&prompt))
        .unwrap();
    let c = cer(&t.transcript.text, &reference);
    assert!(c <= 0.2, "CER {c:.3}: {}", t.transcript.text);
    common::assert_transcript_readable("three clips in parallel chunks", &t.transcript);
    let segs = &t.transcript.segments;
    assert!(segs.len() >= 2);
    assert!(
        segs.windows(2).all(|w| w[0].start <= w[1].start),
        "{segs:?}"
    );
    assert!(segs.last().unwrap().end <= t.duration_s + 0.05);
    // Whisper may write the first two clips as one segment, but the one holding the middle
    // clip ends after it begins (8.4 s + 1 s of silence), and the last chunk's segment starts
    // after that too (the chunk is cut in the pause before the third clip), not at 0.
    let middle = segs
        .iter()
        .find(|s| s.text.contains("交易"))
        .expect("middle clip transcribed");
    assert!(middle.end > 9.4, "{middle:?}");
    let last = segs.last().unwrap();
    assert!(last.start > 9.4, "{segs:?}");
}

#[test]
fn shared_states_are_lent_and_always_returned() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    let cfg = common::config();
    let speech = Speech::load(&cfg).unwrap();
    let queued = Arc::new(AtomicUsize::new(0));
    let pool = speech.state_pool(2, queued.clone()).unwrap();
    assert_eq!(pool.idle(), 2);
    let mut a = speech.shared_worker(pool.clone());
    let mut b = speech.shared_worker(pool.clone());
    let clip = common::fixture_bytes(CLIPS[0].0);

    // Alone, and then with another memo queued: the same text, and both states come back.
    let alone = speech.transcribe(&mut a, &clip, None).unwrap();
    assert_eq!(pool.idle(), 2);
    queued.store(1, Ordering::SeqCst);
    let busy = speech.transcribe(&mut b, &clip, None).unwrap();
    assert_eq!(pool.idle(), 2);
    assert_eq!(alone.transcript.text, busy.transcript.text);
    assert!(cer(&alone.transcript.text, CLIPS[0].1) <= 0.2);
    common::assert_transcript_readable(CLIPS[0].0, &alone.transcript);

    // Two workers at once on two threads: both finish and every state is back.
    queued.store(0, Ordering::SeqCst);
    std::thread::scope(|s| {
        let ha = s.spawn(|| speech.transcribe(&mut a, &clip, None).unwrap());
        let hb = s.spawn(|| speech.transcribe(&mut b, &clip, None).unwrap());
        assert_eq!(ha.join().unwrap().transcript.text, alone.transcript.text);
        assert_eq!(hb.join().unwrap().transcript.text, alone.transcript.text);
    });
    assert_eq!(pool.idle(), 2);
}

/// Every recording in `../shared/audio` (the synthetic sales memos, their phone-degraded copies,
/// the real clips and the odd and degraded formats), transcribed as the service does by default:
/// no transcript may hold a character outside what `asr::chars` allows, mixed comma widths, an
/// unmatched bracket or a clause written twice. All problems are listed before failing. Files
/// that cannot be decoded are tested in audio_formats.rs and skipped here.
#[test]
fn shared_recordings_give_transcripts_a_rep_can_read() {
    let mut files = Vec::new();
    for (sub, keep) in [
        (
            "audio/synth",
            (|n: &str| n.ends_with("_16k.wav")) as fn(&str) -> bool,
        ),
        ("audio/synth/phone", |n: &str| !n.ends_with(".tsv")),
        ("audio/real", |n: &str| n.ends_with(".wav")),
        ("audio/formats", |n: &str| !n.ends_with(".tsv")),
    ] {
        let Some(dir) = common::shared(sub) else {
            continue;
        };
        let mut here: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && keep(&p.file_name().unwrap().to_string_lossy()))
            .collect();
        here.sort();
        files.extend(here);
    }
    if files.is_empty() {
        return;
    }
    let cfg = common::config();
    let speech = Speech::load(&cfg).unwrap();
    let mut worker = speech.worker().unwrap();
    let library = needtag::library::Library::embedded().unwrap();
    let prompts = needtag::pipeline::Prompts::build(&library, speech.asr());
    let mut failures = Vec::new();
    for f in &files {
        let Ok(out) = speech.transcribe(&mut worker, std::fs::read(f).unwrap(), prompts.get(None))
        else {
            continue;
        };
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        failures.extend(common::unreadable_transcript(&name, &out.transcript));
    }
    eprintln!(
        "{} transcripts checked, {} with problems",
        files.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
