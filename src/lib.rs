//! needtag: a sales rep's Mandarin voice memo in; the customer needs, sales actions, next steps
//! and contacts a manager acts on out.
//!
//! The stages, in the order data flows through them (see ARCHITECTURE.md):
//! [`audio`] → [`asr`] → [`text`] → [`matcher`] (against the [`library`]) → [`actions`], wired
//! together by [`pipeline`] and served by [`api`] and the CLI.

pub mod asr;
pub mod audio;
pub mod config;
pub mod error;
pub mod onnx;
pub mod pipeline;
pub mod zh;

pub use config::Config;
pub use error::{Error, Result};
