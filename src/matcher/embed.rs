//! Sentence embeddings through ONNX Runtime: Universal Sentence Encoder multilingual (CNN, int8),
//! tokenised in Rust ([`super::pieces`]) with the SentencePiece model rebuilt as JSON. Vectors are
//! L2-normalised, so a dot product is the cosine.

use std::path::Path;

use ort::value::Tensor;

use crate::error::{Error, Result};
use crate::onnx::SessionPool;

use super::pieces::Pieces;

pub const DIM: usize = 512;
const BOS: i32 = 1;
const EOS: i32 = 2;
/// Texts longer than this many tokens are cut (memo clauses are far shorter).
const MAX_TOKENS: usize = 256;

pub struct Embedder {
    pool: SessionPool,
    tokenizer: Pieces,
    name: String,
}

impl Embedder {
    pub fn load(
        model: &Path,
        tokenizer: &Path,
        threads: usize,
        sessions: usize,
    ) -> Result<Embedder> {
        let tok = Pieces::from_file(tokenizer)?;
        let pool = SessionPool::load(model, sessions, threads)?;
        let name = model
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Embedder {
            pool,
            tokenizer: tok,
            name,
        })
    }

    /// The embedding model and tokenizer named in the configuration, with ONNX Runtime loaded.
    pub fn from_config(cfg: &crate::Config) -> Result<Embedder> {
        crate::onnx::init(&cfg.models.path(&cfg.models.onnxruntime))?;
        Embedder::load(
            &cfg.models.path(&cfg.models.embedding),
            &cfg.models.path(&cfg.models.tokenizer),
            cfg.matcher.embedding_threads,
            cfg.matcher.embedding_sessions,
        )
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// One normalised vector per text, computed in one call.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let err = |e: &dyn std::fmt::Display| Error::Embedding(e.to_string());
        let mut ids: Vec<i32> = Vec::new();
        let mut splits: Vec<i64> = vec![0];
        for text in texts {
            ids.push(BOS);
            ids.extend(
                self.tokenizer
                    .encode(text)
                    .into_iter()
                    .take(MAX_TOKENS)
                    .map(|i| i as i32),
            );
            ids.push(EOS);
            splits.push(ids.len() as i64);
        }
        let n_ids = ids.len();
        let n_splits = splits.len();
        let mut session = self.pool.get();
        let outputs = session
            .run(ort::inputs![
                "token_ids" => Tensor::from_array(([n_ids], ids)).map_err(|e| err(&e))?,
                "row_splits" => Tensor::from_array(([n_splits], splits)).map_err(|e| err(&e))?,
            ])
            .map_err(|e| err(&e))?;
        let (shape, data) = outputs[0]
            .try_extract_tensor::<f32>()
            .map_err(|e| err(&e))?;
        if shape.len() != 2 || shape[1] as usize != DIM || shape[0] as usize != texts.len() {
            return Err(Error::Embedding(format!(
                "unexpected output shape {shape:?}"
            )));
        }
        Ok(data
            .chunks_exact(DIM)
            .map(|v| {
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
                v.iter().map(|x| x / norm).collect()
            })
            .collect())
    }
}

pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
