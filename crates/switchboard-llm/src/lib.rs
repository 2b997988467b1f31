//! Client for OpenAI-compatible chat completion APIs (OpenAI, vLLM, Ollama, llama.cpp server).
//! The only crate that talks to the LLM over HTTP.
//!
//! * `client`: [`LlmClient`], one `POST {base}/chat/completions` per [`LlmClient::complete`],
//!   no retries (the caller owns the schedule, guided by [`LlmError::is_retryable`] and
//!   [`LlmError::retry_after`]);
//! * `wire`: the request and response JSON shapes, lenient about extra or missing fields;
//! * `error`: [`LlmError`].
//!
//! Privacy: prompts, history and completions are user data. They never appear in errors,
//! logs or `Debug` output (which shows sizes instead), and neither does the API key.

mod client;
mod error;
mod wire;

pub use client::{ChatRequest, Completion, LlmClient};
pub use error::LlmError;
