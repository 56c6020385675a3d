//! BM25 retrieval over the library with tantivy: one document per need and per action, its
//! name, keywords, synonyms and example sentences tokenised with the shared jieba dictionary.
//! A clause's words, OR-ed together with per-field boosts, rank the needs it talks about.

use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, BoostQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, NumericOptions, Schema, TextFieldIndexing, TextOptions, Value,
};
use tantivy::{doc, Index, IndexReader, TantivyDocument, Term};

use crate::error::{Error, Result};
use crate::library::Library;
use crate::text::Segmenter;

/// Which library entry a document or term belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Owner {
    Need(usize),
    Action(usize),
}

pub struct LibraryIndex {
    reader: IndexReader,
    ord: Field,
    /// (field, boost) searched for every query word.
    fields: Vec<(Field, f32)>,
}

fn err(e: impl std::fmt::Display) -> Error {
    Error::Index(e.to_string())
}

const TOKENIZER: &str = "needtag_jieba";

impl LibraryIndex {
    pub fn build(lib: &Library, seg: &Segmenter) -> Result<LibraryIndex> {
        let mut sb = Schema::builder();
        let text = TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(TOKENIZER)
                .set_index_option(IndexRecordOption::WithFreqs),
        );
        let ord = sb.add_u64_field("ord", NumericOptions::default().set_stored());
        let name = sb.add_text_field("name", text.clone());
        let keywords = sb.add_text_field("keywords", text.clone());
        let synonyms = sb.add_text_field("synonyms", text.clone());
        let examples = sb.add_text_field("examples", text);
        let index = Index::create_in_ram(sb.build());
        index.tokenizers().register(TOKENIZER, seg.tokenizer());
        let mut writer = index
            .writer_with_num_threads::<TantivyDocument>(1, 15_000_000)
            .map_err(err)?;
        // ord: needs first, then actions (n_needs + action index).
        for (i, n) in lib.needs.iter().enumerate() {
            writer
                .add_document(doc!(
                    ord => i as u64,
                    name => n.name.clone(),
                    keywords => n.keywords.join(" "),
                    synonyms => n.synonyms.join(" "),
                    examples => n.examples.join("\n"),
                ))
                .map_err(err)?;
        }
        for (i, a) in lib.actions.iter().enumerate() {
            writer
                .add_document(doc!(
                    ord => (lib.needs.len() + i) as u64,
                    name => a.name.clone(),
                    keywords => a.keywords.join(" "),
                    examples => a.examples.join("\n"),
                ))
                .map_err(err)?;
        }
        writer.commit().map_err(err)?;
        let reader = index.reader().map_err(err)?;
        Ok(LibraryIndex {
            reader,
            ord,
            fields: vec![
                (name, 2.0),
                (keywords, 3.0),
                (synonyms, 2.0),
                (examples, 1.0),
            ],
        })
    }

    /// Library entries ranked by BM25 for the given query words.
    pub fn search(
        &self,
        words: &[String],
        n_needs: usize,
        limit: usize,
    ) -> Result<Vec<(Owner, f32)>> {
        if words.is_empty() {
            return Ok(Vec::new());
        }
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for w in words {
            for &(field, boost) in &self.fields {
                let q = TermQuery::new(
                    Term::from_field_text(field, &w.to_lowercase()),
                    IndexRecordOption::WithFreqs,
                );
                clauses.push((Occur::Should, Box::new(BoostQuery::new(Box::new(q), boost))));
            }
        }
        let query = BooleanQuery::new(clauses);
        let searcher = self.reader.searcher();
        let hits = searcher
            .search(&query, &TopDocs::with_limit(limit).order_by_score())
            .map_err(err)?;
        let mut out = Vec::with_capacity(hits.len());
        for (score, addr) in hits {
            let d: TantivyDocument = searcher.doc(addr).map_err(err)?;
            let Some(o) = d.get_first(self.ord).and_then(|v| v.as_u64()) else {
                continue;
            };
            let o = o as usize;
            out.push((
                if o < n_needs {
                    Owner::Need(o)
                } else {
                    Owner::Action(o - n_needs)
                },
                score,
            ));
        }
        Ok(out)
    }
}
