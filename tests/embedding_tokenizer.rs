//! The embedding tokenizer (`needtag::matcher::pieces`) gives the same ids as the reference
//! `tokenizers` implementation reading the same `tokenizer.json`, on every text the product
//! embeds (library examples, names, keywords, the evaluation memos) and on awkward input.

mod common;

use needtag::library::Library;
use needtag::matcher::pieces::Pieces;

#[test]
fn ids_match_the_reference_tokenizer() {
    let path = common::root().join("models/prepared/use-multilingual-tokenizer.json");
    let ours = Pieces::from_file(&path).expect("prepared tokenizer");
    let reference = tokenizers::Tokenizer::from_file(&path).expect("reference tokenizer");

    let lib = Library::embedded().unwrap();
    let mut texts: Vec<String> = Vec::new();
    for n in &lib.needs {
        texts.push(n.name.clone());
        texts.push(n.description.clone());
        texts.extend(n.keywords.iter().cloned());
        texts.extend(n.synonyms.iter().cloned());
        texts.extend(n.examples.iter().cloned());
        texts.extend(n.exclusions.iter().cloned());
    }
    for a in &lib.actions {
        texts.push(a.name.clone());
        texts.extend(a.examples.iter().cloned());
    }
    for p in &lib.packs {
        texts.push(p.title.clone());
    }
    for set in ["dev", "dev2", "test"] {
        let file = common::root().join(format!("need-library/eval/{set}.jsonl"));
        for line in std::fs::read_to_string(file).unwrap().lines() {
            if line.trim().is_empty() {
                continue;
            }
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            texts.push(v["text"].as_str().unwrap().to_string());
        }
    }
    let awkward = [
        "",
        " ",
        "   ",
        "张主任  说，  下周   再谈",
        " 前后有空格 ",
        "ＰＣＡ泵１２３台，ＡＢＣ",
        "PCA pump 3 units, iPhone 15 Pro Max",
        "醫院採購審批單已經拿到了",
        "😀👍 客户很满意 🎉",
        "\t制表符\n换行\r\n回车",
        "①②③ Ⅷ ㈱ ﬁ ㎏ ℃",
        "e\u{301} combining accent, 한국어, русский, العربية",
        "\u{200b}零宽\u{feff}字符\u{00a0}不换行空格",
        "<unk><s></s>",
        "𠀀𪚥 rare CJK",
        "a\u{2581}b already marked",
    ];
    texts.extend(awkward.iter().map(|s| s.to_string()));
    assert!(texts.len() > 1000, "only {} texts", texts.len());

    let mut differ = Vec::new();
    for t in &texts {
        let want = reference
            .encode(t.as_str(), false)
            .unwrap()
            .get_ids()
            .to_vec();
        let got = ours.encode(t);
        if got != want {
            differ.push(format!("{t:?}: ours {got:?}, reference {want:?}"));
        }
    }
    assert!(
        differ.is_empty(),
        "{} of {} texts differ:\n{}",
        differ.len(),
        texts.len(),
        differ.join("\n")
    );
}
