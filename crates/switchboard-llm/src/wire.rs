//! The JSON shapes of `POST /chat/completions` (OpenAI-compatible).

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use switchboard_domain::{ChatEntry, ChatRole};

/// The request body.
#[derive(Debug, Serialize)]
pub(crate) struct WireRequest<'a> {
    pub(crate) model: &'a str,
    pub(crate) messages: Vec<WireMessage<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) max_tokens: Option<u32>,
    pub(crate) stream: bool,
}

/// One message of the request.
#[derive(Debug, Serialize)]
pub(crate) struct WireMessage<'a> {
    pub(crate) role: &'static str,
    pub(crate) content: &'a str,
}

impl<'a> WireRequest<'a> {
    /// The system prompt first, then the history in order.
    pub(crate) fn new(
        model: &'a str,
        system_prompt: &'a str,
        history: &'a [ChatEntry],
        max_tokens: Option<u32>,
    ) -> Self {
        let mut messages = Vec::with_capacity(history.len() + 1);
        messages.push(WireMessage { role: "system", content: system_prompt });
        messages.extend(history.iter().map(|e| WireMessage {
            role: match e.role {
                ChatRole::User => "user",
                ChatRole::Assistant => "assistant",
            },
            content: &e.content,
        }));
        Self { model, messages, max_tokens, stream: false }
    }
}

/// The response body; unknown fields are ignored, most known ones are optional.
#[derive(Debug, Deserialize)]
pub(crate) struct WireResponse {
    #[serde(default)]
    pub(crate) model: Option<String>,
    #[serde(default)]
    pub(crate) choices: Vec<WireChoice>,
    #[serde(default)]
    pub(crate) usage: Option<WireUsage>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WireChoice {
    #[serde(default)]
    pub(crate) message: Option<WireResponseMessage>,
    #[serde(default)]
    pub(crate) finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WireResponseMessage {
    #[serde(default)]
    pub(crate) content: Option<WireContent>,
}

/// `content` is a string in the chat completions API; some servers send an array of typed
/// parts instead. Anything else counts as no content.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum WireContent {
    Text(String),
    Parts(Vec<WirePart>),
    Other(IgnoredAny),
}

#[derive(Debug, Deserialize)]
pub(crate) struct WirePart {
    #[serde(default)]
    pub(crate) text: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WireUsage {
    #[serde(default)]
    pub(crate) prompt_tokens: Option<u64>,
    #[serde(default)]
    pub(crate) completion_tokens: Option<u64>,
}

impl WireResponse {
    /// The text of the first choice, trimmed; `None` if there is none or it is blank.
    pub(crate) fn text(&self) -> Option<String> {
        let content = self.choices.first()?.message.as_ref()?.content.as_ref()?;
        let text = match content {
            WireContent::Text(s) => s.trim().to_owned(),
            WireContent::Parts(parts) => {
                parts.iter().filter_map(|p| p.text.as_deref()).collect::<String>().trim().to_owned()
            }
            WireContent::Other(_) => return None,
        };
        (!text.is_empty()).then_some(text)
    }

    /// Why the first choice stopped (`stop`, `length`, …), for logs.
    pub(crate) fn finish_reason(&self) -> Option<&str> {
        self.choices.first()?.finish_reason.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> WireResponse {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn lenient_responses() {
        assert_eq!(parse(r#"{"choices":[{"message":{"content":" hi "}}]}"#).text().as_deref(), Some("hi"));
        assert_eq!(
            parse(r#"{"choices":[{"message":{"content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}}]}"#)
                .text()
                .as_deref(),
            Some("ab")
        );
        assert_eq!(parse(r#"{"choices":[{"message":{"content":null}}]}"#).text(), None);
        assert_eq!(parse(r#"{"choices":[{"message":{"content":42}}]}"#).text(), None);
        assert_eq!(parse(r#"{"choices":[{"message":{}}]}"#).text(), None);
        assert_eq!(parse(r#"{"choices":[]}"#).text(), None);
        assert_eq!(parse(r#"{"error":{"message":"x"}}"#).text(), None);
        let r = parse(
            r#"{"choices":[{"message":{"content":"x"},"finish_reason":"length"}],"usage":{"prompt_tokens":null}}"#,
        );
        assert_eq!(r.finish_reason(), Some("length"));
        assert!(r.usage.unwrap().prompt_tokens.is_none());
    }
}
