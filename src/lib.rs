//! needtag: a sales rep's Mandarin voice memo in; the customer needs, sales actions, next steps
//! and contacts a manager acts on out.
//!
//! The stages, in the order data flows through them (see ARCHITECTURE.md):
//! [`audio`] → [`asr`] → [`text`] → [`matcher`] (against the [`library`]) → [`actions`], wired
//! together by [`pipeline`] into one [`result`] shape.

pub mod actions;
pub mod api;
pub mod asr;
pub mod audio;
pub mod config;
pub mod error;
pub mod eval;
pub mod library;
pub mod matcher;
pub mod onnx;
pub mod pipeline;
pub mod result;
pub mod text;
pub mod zh;

pub use config::Config;
pub use error::{Error, Result};
