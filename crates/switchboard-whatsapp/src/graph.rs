//! Graph API client: sending text messages and read receipts / typing indicators (REFERENCE §5).
//!
//! Nothing this module logs or puts in an error ever contains the access token, the recipient
//! or the message text: only HTTP statuses, Graph error codes and `fbtrace_id`s.

use std::time::Duration;

use reqwest::header::{HeaderValue, AUTHORIZATION, RETRY_AFTER};
use reqwest::{redirect, Url};
use serde::Serialize;
use serde_json::Value;
use switchboard_domain::UserRef;
use tracing::field::Empty;

use crate::errors::{classify, ErrorClass};
use crate::lenient::value_as_i64;
use crate::webhook::json_error_summary;
use wire::{MarkReadBody, SendResponse, SendTextBody, SuccessResponse};

mod wire;

/// Connect timeout (capped by the overall timeout).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A Graph API client for the Cloud API messaging endpoints. Cheap to clone: one connection
/// pool is shared by all clones.
#[derive(Clone)]
pub struct GraphClient {
    http: reqwest::Client,
    /// Includes the version, e.g. `https://graph.facebook.com/v25.0`.
    base: Url,
}

impl std::fmt::Debug for GraphClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphClient").field("base", &self.base.as_str()).finish_non_exhaustive()
    }
}

/// A text message to send.
#[derive(Clone, Copy)]
pub struct TextMessage<'a> {
    /// Sent to `wa_id` when known, else to the BSUID (`recipient`).
    pub to: &'a UserRef,
    /// At most 4096 characters (see `switchboard_domain::split_message`).
    pub body: &'a str,
    /// The wamid to quote (`context.message_id`).
    pub reply_to: Option<&'a str>,
    /// Echoed back in status webhooks (we put our reply id there).
    pub biz_opaque_callback_data: Option<&'a str>,
}

impl std::fmt::Debug for TextMessage<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextMessage")
            .field("body_chars", &self.body.chars().count())
            .field("reply_to", &self.reply_to)
            .field("biz_opaque_callback_data", &self.biz_opaque_callback_data)
            .finish_non_exhaustive()
    }
}

/// A message accepted by the Graph API (accepted, not yet delivered: see status webhooks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendOk {
    /// The wamid of the sent message; status webhooks refer to it.
    pub wamid: String,
}

/// A failed Graph API call.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// No response was received: the request may or may not have been processed.
    #[error("graph request got no response (timeout: {timeout}): {detail}")]
    Network { timeout: bool, detail: String },
    /// The Graph API answered with an error.
    #[error("graph api error: http {http_status}, code {}, fbtrace_id {}", show(code), show(fbtrace_id))]
    Api {
        http_status: u16,
        code: Option<i64>,
        subcode: Option<i64>,
        fbtrace_id: Option<String>,
        /// From a `Retry-After` header (in seconds), when present.
        retry_after: Option<Duration>,
    },
    /// A response (success or error) whose body could not be read.
    #[error("graph response could not be decoded: http {http_status}: {detail}")]
    Decode { http_status: u16, detail: String },
    /// The client or the call is misconfigured (bad base URL, bad token or id).
    #[error("graph client misconfigured: {0}")]
    Config(String),
}

fn show<T: std::fmt::Display>(value: &Option<T>) -> String {
    value.as_ref().map_or_else(|| "none".to_owned(), ToString::to_string)
}

impl GraphError {
    /// What the caller should do about it (see [`classify`]). A network error is transient, a
    /// configuration error permanent, an undecodable response is classified by its status.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Network { .. } => classify(None, None),
            Self::Api { http_status, code, .. } => classify(Some(*http_status), *code),
            Self::Decode { http_status, .. } => classify(Some(*http_status), None),
            Self::Config(_) => ErrorClass::Permanent,
        }
    }

    /// The Graph error code, when the API returned one.
    pub fn code(&self) -> Option<i64> {
        match self {
            Self::Api { code, .. } => *code,
            _ => None,
        }
    }

    /// The HTTP status, when a response was received.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            Self::Api { http_status, .. } | Self::Decode { http_status, .. } => Some(*http_status),
            _ => None,
        }
    }
}

impl GraphClient {
    /// A client for `base_url` (including the version, e.g.
    /// `https://graph.facebook.com/v25.0`; a trailing slash is fine). `timeout` bounds each
    /// whole request; connecting is bounded by 5 s. Redirects are not followed.
    pub fn new(base_url: &str, timeout: Duration) -> Result<Self, GraphError> {
        let base =
            Url::parse(base_url.trim()).map_err(|e| GraphError::Config(format!("invalid Graph API base URL: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(GraphError::Config("Graph API base URL must be http(s)".into()));
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(CONNECT_TIMEOUT.min(timeout))
            .redirect(redirect::Policy::none())
            .build()
            .map_err(|e| GraphError::Config(format!("cannot build HTTP client: {e}")))?;
        Ok(Self { http, base })
    }

    /// Sends a text message from `phone_number_id`; returns the new message's wamid.
    #[tracing::instrument(
        name = "graph.send_text",
        skip_all,
        fields(phone_number_id = %phone_number_id, http_status = Empty, error_code = Empty)
    )]
    pub async fn send_text(
        &self,
        access_token: &str,
        phone_number_id: &str,
        msg: &TextMessage<'_>,
    ) -> Result<SendOk, GraphError> {
        let body = SendTextBody::new(msg)?;
        let (status, bytes) = self.post_messages(access_token, phone_number_id, &body).await?;
        let response: SendResponse = serde_json::from_slice(&bytes)
            .map_err(|e| GraphError::Decode { http_status: status, detail: json_error_summary(&e) })?;
        response
            .messages
            .into_iter()
            .next()
            .and_then(|m| m.id)
            .filter(|id| !id.is_empty())
            .map(|wamid| SendOk { wamid })
            .ok_or_else(|| GraphError::Decode { http_status: status, detail: "response has no messages[0].id".into() })
    }

    /// Marks the user's message `wamid` as read (blue ticks) and, with `typing`, shows the
    /// typing indicator until the reply is sent or 25 s pass.
    #[tracing::instrument(
        name = "graph.mark_read",
        skip_all,
        fields(phone_number_id = %phone_number_id, typing, http_status = Empty, error_code = Empty)
    )]
    pub async fn mark_read(
        &self,
        access_token: &str,
        phone_number_id: &str,
        wamid: &str,
        typing: bool,
    ) -> Result<(), GraphError> {
        let body = MarkReadBody::new(wamid, typing);
        let (status, bytes) = self.post_messages(access_token, phone_number_id, &body).await?;
        match serde_json::from_slice::<SuccessResponse>(&bytes) {
            Ok(SuccessResponse { success: Some(false) }) => {
                Err(GraphError::Decode { http_status: status, detail: "response says success: false".into() })
            }
            Ok(_) => Ok(()),
            Err(e) => Err(GraphError::Decode { http_status: status, detail: json_error_summary(&e) }),
        }
    }

    /// POSTs `body` to `{base}/{phone_number_id}/messages`; returns the status and body of a
    /// 2xx response, or the error. Records `http_status` / `error_code` on the current span.
    async fn post_messages<B: Serialize>(
        &self,
        access_token: &str,
        phone_number_id: &str,
        body: &B,
    ) -> Result<(u16, Vec<u8>), GraphError> {
        let url = self.messages_url(phone_number_id)?;
        let mut auth = HeaderValue::from_str(&format!("Bearer {access_token}"))
            .map_err(|_| GraphError::Config("access token is not a valid header value".into()))?;
        auth.set_sensitive(true);

        let response =
            self.http.post(url).header(AUTHORIZATION, auth).json(body).send().await.map_err(transport_error)?;
        let status = response.status().as_u16();
        let span = tracing::Span::current();
        span.record("http_status", status);
        let retry_after = retry_after(response.headers().get(RETRY_AFTER));
        let bytes = response.bytes().await.map_err(transport_error)?.to_vec();
        if (200..300).contains(&status) {
            return Ok((status, bytes));
        }
        let err = api_error(status, &bytes, retry_after);
        if let Some(code) = err.code() {
            span.record("error_code", code);
        }
        tracing::debug!(http_status = status, error_code = ?err.code(), class = %err.class(), "graph call failed");
        Err(err)
    }

    fn messages_url(&self, phone_number_id: &str) -> Result<Url, GraphError> {
        if phone_number_id.is_empty() || !phone_number_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(GraphError::Config("phone_number_id must be non-empty and alphanumeric".into()));
        }
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| GraphError::Config("Graph API base URL cannot take a path".into()))?
            .pop_if_empty()
            .extend([phone_number_id, "messages"]);
        Ok(url)
    }
}

/// A reqwest error without a usable response. The URL is stripped; the source chain
/// (timeouts, DNS, connection refused, …) carries no request content.
fn transport_error(err: reqwest::Error) -> GraphError {
    if err.is_builder() {
        return GraphError::Config(format!("cannot build request: {}", err.without_url()));
    }
    let timeout = err.is_timeout();
    let err = err.without_url();
    let mut detail = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        detail.push_str(": ");
        detail.push_str(&cause.to_string());
        source = cause.source();
    }
    GraphError::Network { timeout, detail }
}

/// `Retry-After` in seconds (the HTTP-date form is not used by Graph and is ignored).
fn retry_after(header: Option<&HeaderValue>) -> Option<Duration> {
    let secs = header?.to_str().ok()?.trim().parse::<u64>().ok()?;
    Some(Duration::from_secs(secs))
}

/// Reads the Graph error envelope `{"error":{"code","error_subcode","fbtrace_id",…}}`
/// leniently; the message and details are deliberately dropped.
fn api_error(http_status: u16, body: &[u8], retry_after: Option<Duration>) -> GraphError {
    let value: Value = match serde_json::from_slice(body) {
        Ok(value) => value,
        Err(e) => {
            let detail = format!("error body is not JSON ({})", json_error_summary(&e));
            return GraphError::Decode { http_status, detail };
        }
    };
    let Some(error) = value.get("error").filter(|e| e.is_object()) else {
        return GraphError::Decode { http_status, detail: "error body has no error object".into() };
    };
    let int = |key: &str| error.get(key).and_then(value_as_i64);
    GraphError::Api {
        http_status,
        code: int("code"),
        subcode: int("error_subcode"),
        fbtrace_id: error.get("fbtrace_id").and_then(Value::as_str).map(str::to_owned),
        retry_after,
    }
}
