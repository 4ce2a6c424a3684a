//! kafka-scheduler's hot path in compiled code.
//!
//! The pure-Rust core (no Python types) lives in its own modules and is tested with `cargo test`; `py` wraps it
//! for Python as `scheduler._native` (built by maturin with the `python` feature).

pub mod client;
pub mod codec;
pub mod index;
pub mod murmur2;

#[cfg(feature = "python")]
mod py;
