//! The JSON bodies the Graph API client sends and reads.

use serde::{Deserialize, Serialize};

use super::{GraphError, TextMessage};

/// The JSON body of a text send (REFERENCE §5.1).
#[derive(Serialize)]
pub(super) struct SendTextBody<'a> {
    messaging_product: &'static str,
    recipient_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<&'a str>,
    /// The BSUID, for users whose phone number is unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    recipient: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    context: Option<ReplyContext<'a>>,
    #[serde(rename = "type")]
    kind: &'static str,
    text: TextBody<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    biz_opaque_callback_data: Option<&'a str>,
}

#[derive(Serialize)]
struct ReplyContext<'a> {
    message_id: &'a str,
}

#[derive(Serialize)]
struct TextBody<'a> {
    /// Always sent explicitly: the assistant never wants link previews.
    preview_url: bool,
    body: &'a str,
}

impl<'a> SendTextBody<'a> {
    pub(super) fn new(msg: &TextMessage<'a>) -> Result<Self, GraphError> {
        let (to, recipient) = match (&msg.to.wa_id, &msg.to.user_id) {
            (Some(wa_id), _) => (Some(wa_id.as_str()), None),
            (None, Some(user_id)) => (None, Some(user_id.as_str())),
            (None, None) => return Err(GraphError::Config("recipient has neither wa_id nor user_id".into())),
        };
        Ok(Self {
            messaging_product: "whatsapp",
            recipient_type: "individual",
            to,
            recipient,
            context: msg.reply_to.map(|message_id| ReplyContext { message_id }),
            kind: "text",
            text: TextBody { preview_url: false, body: msg.body },
            biz_opaque_callback_data: msg.biz_opaque_callback_data,
        })
    }
}

/// The JSON body of a read receipt, with or without typing indicator (REFERENCE §5.2).
#[derive(Serialize)]
pub(super) struct MarkReadBody<'a> {
    messaging_product: &'static str,
    status: &'static str,
    message_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    typing_indicator: Option<TypingIndicator>,
}

impl<'a> MarkReadBody<'a> {
    pub(super) fn new(wamid: &'a str, typing: bool) -> Self {
        Self {
            messaging_product: "whatsapp",
            status: "read",
            message_id: wamid,
            typing_indicator: typing.then_some(TypingIndicator { kind: "text" }),
        }
    }
}

#[derive(Serialize)]
struct TypingIndicator {
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Deserialize)]
pub(super) struct SendResponse {
    #[serde(default)]
    pub(super) messages: Vec<SentMessage>,
}

#[derive(Deserialize)]
pub(super) struct SentMessage {
    #[serde(default)]
    pub(super) id: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct SuccessResponse {
    #[serde(default)]
    pub(super) success: Option<bool>,
}
