//! [`LlmClient`]: one chat completion per call, no retries.

use std::fmt;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use switchboard_domain::ChatEntry;

use crate::wire::{WireRequest, WireResponse};
use crate::LlmError;

/// Largest response body read (a chat completion is a few KiB; anything bigger is not one).
const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;
/// Upper bound of the TCP/TLS connect phase (the overall timeout still applies).
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What to ask the model.
#[derive(Clone, Copy)]
pub struct ChatRequest<'a> {
    pub model: &'a str,
    /// Sent first, with role `system`.
    pub system_prompt: &'a str,
    /// The conversation, oldest first (user/assistant).
    pub history: &'a [ChatEntry],
    /// Upper bound of the completion's length, when set.
    pub max_tokens: Option<u32>,
}

impl fmt::Debug for ChatRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatRequest")
            .field("model", &self.model)
            .field("system_prompt_chars", &self.system_prompt.chars().count())
            .field("history", &self.history)
            .field("max_tokens", &self.max_tokens)
            .finish()
    }
}

/// The model's answer.
#[derive(Clone)]
pub struct Completion {
    /// The text of the first choice, trimmed, never blank.
    pub content: String,
    /// The model that answered (as reported by the server, else the one requested).
    pub model: String,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
}

impl fmt::Debug for Completion {
    // The content is user-facing text: show its size only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Completion")
            .field("content_chars", &self.content.chars().count())
            .field("model", &self.model)
            .field("prompt_tokens", &self.prompt_tokens)
            .field("completion_tokens", &self.completion_tokens)
            .finish()
    }
}

/// A client of one OpenAI-compatible API. Cheap to clone (shares its connection pool).
#[derive(Clone)]
pub struct LlmClient {
    http: reqwest::Client,
    endpoint: Url,
    /// `Bearer <key>`, marked sensitive; `None` for servers without authentication.
    auth: Option<HeaderValue>,
    timeout: Duration,
}

impl fmt::Debug for LlmClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut endpoint = self.endpoint.clone();
        // Credentials in the URL are as secret as the key.
        let _ = endpoint.set_username("");
        let _ = endpoint.set_password(None);
        f.debug_struct("LlmClient")
            .field("endpoint", &endpoint.as_str())
            .field("api_key", &self.auth.as_ref().map(|_| "[redacted]"))
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl LlmClient {
    /// A client for the API at `base_url` (e.g. `https://api.openai.com/v1`; a trailing slash
    /// is fine). A `None` or blank `api_key` sends no `Authorization` header. `timeout` bounds
    /// each whole request, connect to last byte.
    pub fn new(base_url: &str, api_key: Option<&str>, timeout: Duration) -> Result<Self, LlmError> {
        if timeout.is_zero() {
            return Err(LlmError::Config("timeout must be positive".to_owned()));
        }
        // The URL is not quoted in errors: it may carry credentials.
        let base = base_url.trim().trim_end_matches('/');
        let endpoint = Url::parse(&format!("{base}/chat/completions"))
            .map_err(|e| LlmError::Config(format!("invalid base url ({e})")))?;
        if !matches!(endpoint.scheme(), "http" | "https") {
            return Err(LlmError::Config("base url must be http or https".to_owned()));
        }
        let auth = match api_key.map(str::trim).filter(|k| !k.is_empty()) {
            None => None,
            Some(key) => {
                let mut value = HeaderValue::from_str(&format!("Bearer {key}"))
                    .map_err(|_| LlmError::Config("api key is not a valid header value".to_owned()))?;
                value.set_sensitive(true);
                Some(value)
            }
        };
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(MAX_CONNECT_TIMEOUT))
            .default_headers(headers)
            .user_agent(concat!("switchboard/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| LlmError::Config(format!("cannot build http client: {e}")))?;
        Ok(Self { http, endpoint, auth, timeout })
    }

    /// Asks for one completion: `POST {base}/chat/completions` with the system prompt and the
    /// history, `stream: false`. No retries here; see [`LlmError::is_retryable`].
    #[tracing::instrument(
        name = "llm.complete",
        skip_all,
        fields(
            gen_ai.operation.name = "chat",
            gen_ai.request.model = req.model,
            messages = req.history.len() + 1,
            http.response.status_code = tracing::field::Empty,
            gen_ai.usage.input_tokens = tracing::field::Empty,
            gen_ai.usage.output_tokens = tracing::field::Empty,
        )
    )]
    pub async fn complete(&self, req: &ChatRequest<'_>) -> Result<Completion, LlmError> {
        let started = Instant::now();
        let result = self.send(req).await;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        match &result {
            Ok(c) => {
                let span = tracing::Span::current();
                if let Some(n) = c.prompt_tokens {
                    span.record("gen_ai.usage.input_tokens", n);
                }
                if let Some(n) = c.completion_tokens {
                    span.record("gen_ai.usage.output_tokens", n);
                }
                tracing::debug!(elapsed_ms, "completion received");
            }
            Err(e) => tracing::debug!(elapsed_ms, error = %e.label(), "completion failed"),
        }
        result
    }

    async fn send(&self, req: &ChatRequest<'_>) -> Result<Completion, LlmError> {
        let body = WireRequest::new(req.model, req.system_prompt, req.history, req.max_tokens);
        let mut request = self.http.post(self.endpoint.clone()).json(&body);
        if let Some(auth) = &self.auth {
            request = request.header(AUTHORIZATION, auth.clone());
        }
        let mut response = request.send().await.map_err(LlmError::from_reqwest)?;

        let status = response.status();
        tracing::Span::current().record("http.response.status_code", status.as_u16());
        if !status.is_success() {
            return Err(LlmError::Status { status: status.as_u16(), retry_after: retry_after(&response, status) });
        }

        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(LlmError::from_reqwest)? {
            if bytes.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(LlmError::Decode("response too large".to_owned()));
            }
            bytes.extend_from_slice(&chunk);
        }
        let parsed: WireResponse = serde_json::from_slice(&bytes).map_err(|e| LlmError::from_json(&e))?;

        if parsed.finish_reason() == Some("length") {
            tracing::debug!("completion cut at max_tokens");
        }
        let content = parsed.text().ok_or(LlmError::Empty)?;
        let usage = parsed.usage.as_ref();
        Ok(Completion {
            content,
            model: parsed.model.clone().filter(|m| !m.is_empty()).unwrap_or_else(|| req.model.to_owned()),
            prompt_tokens: usage.and_then(|u| u.prompt_tokens),
            completion_tokens: usage.and_then(|u| u.completion_tokens),
        })
    }
}

/// `Retry-After` in seconds, read on 429 and 503 (HTTP dates are not supported: `None`).
fn retry_after(response: &reqwest::Response, status: StatusCode) -> Option<Duration> {
    if !matches!(status, StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE) {
        return None;
    }
    let value = response.headers().get(RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_errors() {
        let t = Duration::from_secs(1);
        assert!(matches!(LlmClient::new("not a url", None, t), Err(LlmError::Config(_))));
        assert!(matches!(LlmClient::new("ftp://x/v1", None, t), Err(LlmError::Config(_))));
        assert!(matches!(LlmClient::new("http://x/v1", None, Duration::ZERO), Err(LlmError::Config(_))));
        let err = LlmClient::new("http://x/v1", Some("bad\nkey"), t).unwrap_err();
        assert!(!err.to_string().contains("bad"), "{err}");
    }

    #[test]
    fn endpoint_and_debug() {
        let t = Duration::from_secs(1);
        let c = LlmClient::new("https://api.example.com/v1/", Some("sk-secret"), t).unwrap();
        assert_eq!(c.endpoint.as_str(), "https://api.example.com/v1/chat/completions");
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("sk-secret"), "{dbg}");
        assert!(dbg.contains("[redacted]"), "{dbg}");

        let c = LlmClient::new("http://user:pw@localhost:8080/v1", None, t).unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("pw"), "{dbg}");
        assert!(c.auth.is_none());
        assert!(LlmClient::new("http://h/v1", Some("  "), t).unwrap().auth.is_none());
    }
}
