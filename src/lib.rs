//! needtag: a sales rep's Mandarin voice memo in; the customer needs, sales actions, next steps
//! and contacts a manager acts on out.
//!
//! The stages, in the order data flows through them (see ARCHITECTURE.md):
//! [`audio`] → [`asr`] → [`text`] → [`matcher`] (against the [`library`]) → [`actions`], wired
//! together by [`pipeline`] into one [`result`] shape.

pub mod actions;
pub mod api;
pub mod archive;
pub mod asr;
pub mod audio;
pub mod config;
pub mod error;
pub mod eval;
pub mod jobs;
pub mod library;
pub mod matcher;
pub mod onnx;
pub mod pipeline;
pub mod result;
pub mod text;
pub mod verifier;
pub mod worker;
pub mod zh;

pub use config::Config;
pub use error::{Error, Result};

/// Keep glibc's allocator to `n` arenas. By default it adds one per thread that allocates, up to
/// eight per core, and each keeps the memory its thread freed: with tokio's and whisper's threads
/// that held about 50 MB more at peak under load. Call before any thread starts.
pub fn limit_allocator_arenas(n: i32) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; it is called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, n);
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = n;
}

/// Serve allocations of at least `bytes` with their own mappings, returned to the system as soon
/// as they are freed. glibc otherwise raises this threshold each time such a block is freed (up to
/// 32 MB), after which uploads, decoded audio and whisper's buffers come from the heap and their
/// memory stays with the process after the request. Call before any thread starts.
pub fn map_large_allocations(bytes: i32) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; it is called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, bytes);
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = bytes;
}

/// Give memory the allocator holds free back to the system (after loading models, whose
/// temporary buffers would otherwise stay resident).
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages; it is safe to call at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}
