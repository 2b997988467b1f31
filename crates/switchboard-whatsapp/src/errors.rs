//! Classification of Graph API / WhatsApp errors into what the sender should do about them
//! (REFERENCE §7.2).
//!
//! The error `code` decides first; the HTTP status only matters when the code is absent or not
//! one we know. Both the synchronous path (a Graph error response) and the asynchronous path
//! (`errors[].code` of a `failed` status webhook, no HTTP status) use the same function.

/// What a failed Graph call (or a `failed` status) means for the sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Temporary failure on Meta's side or on the network: retry with backoff.
    Transient,
    /// Throughput / API-call rate limit of the business number, WABA or app
    /// (`130429`, `80007`, `4`): slow down and retry.
    Throughput,
    /// Pair rate limit (`131056`): too many messages to this one user; retry this user later.
    PairRate,
    /// The access token is expired or invalid (`0`, `190`): retrying with the same token is
    /// pointless; alert and pause sending for the tenant.
    TokenInvalid,
    /// The 24-hour customer service window is closed (`131047`, legacy `470`): free-form text
    /// cannot be sent until the user writes again.
    WindowClosed,
    /// Anything else: the request (or the recipient) is wrong and will stay wrong.
    Permanent,
}

impl ErrorClass {
    /// Whether the same request may succeed if sent again later.
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::Transient | Self::Throughput | Self::PairRate)
    }

    /// A stable snake_case name, suitable for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Transient => "transient",
            Self::Throughput => "throughput",
            Self::PairRate => "pair_rate",
            Self::TokenInvalid => "token_invalid",
            Self::WindowClosed => "window_closed",
            Self::Permanent => "permanent",
        }
    }
}

impl std::fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Classifies an error from its HTTP status (`None` when there was no response, or for the
/// asynchronous webhook path) and its Graph/WhatsApp error `code`.
///
/// Code first: known codes map to their class whatever the HTTP status. Without a known code,
/// `5xx`, `429`, `408` and "no response at all" are [`ErrorClass::Transient`]; any other status
/// is [`ErrorClass::Permanent`]. An unknown code without an HTTP status (a status webhook) is
/// [`ErrorClass::Permanent`].
pub fn classify(http_status: Option<u16>, code: Option<i64>) -> ErrorClass {
    if let Some(class) = code.and_then(class_of_code) {
        return class;
    }
    match http_status {
        Some(status) if status >= 500 || status == 429 || status == 408 => ErrorClass::Transient,
        Some(_) => ErrorClass::Permanent,
        // No response: a network failure, unless a code says otherwise (async status errors).
        None if code.is_none() => ErrorClass::Transient,
        None => ErrorClass::Permanent,
    }
}

/// The class of a code we know, `None` for codes we have never seen.
fn class_of_code(code: i64) -> Option<ErrorClass> {
    let class = match code {
        130429 | 80007 | 4 => ErrorClass::Throughput,
        131056 => ErrorClass::PairRate,
        0 | 190 => ErrorClass::TokenInvalid,
        131047 | 470 => ErrorClass::WindowClosed,
        // Generic / unavailable / maintenance / API down / media upload (courier retries it).
        131016 | 131000 | 1 | 2 | 131057 | 131053 => ErrorClass::Transient,
        // Invalid parameters, permissions, policy, recipient and account problems, spam and
        // marketing limits (131048/131049 must not be retried automatically).
        3
        | 10
        | 100
        | 200..=299
        | 368
        | 130497
        | 131008
        | 131009
        | 131026
        | 131030
        | 131031
        | 131042
        | 131048
        | 131049
        | 131050
        | 131051
        | 131052
        | 133010 => ErrorClass::Permanent,
        _ => return None,
    };
    Some(class)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_wins_over_http_status() {
        assert_eq!(classify(Some(429), Some(131056)), ErrorClass::PairRate);
        assert_eq!(classify(Some(400), Some(130429)), ErrorClass::Throughput);
        assert_eq!(classify(Some(500), Some(100)), ErrorClass::Permanent);
        assert_eq!(classify(Some(400), Some(131000)), ErrorClass::Transient);
        assert_eq!(classify(None, Some(131047)), ErrorClass::WindowClosed);
        assert_eq!(classify(Some(401), Some(0)), ErrorClass::TokenInvalid);
        assert_eq!(classify(Some(403), Some(250)), ErrorClass::Permanent);
    }

    #[test]
    fn without_a_known_code_http_status_decides() {
        for status in [500, 502, 503, 504, 429, 408] {
            assert_eq!(classify(Some(status), None), ErrorClass::Transient, "{status}");
            assert_eq!(classify(Some(status), Some(999_999)), ErrorClass::Transient, "{status}");
        }
        for status in [400, 401, 403, 404, 422, 200] {
            assert_eq!(classify(Some(status), None), ErrorClass::Permanent, "{status}");
        }
        assert_eq!(classify(None, None), ErrorClass::Transient);
        assert_eq!(classify(None, Some(131014)), ErrorClass::Permanent);
    }

    #[test]
    fn retryable_classes() {
        use ErrorClass::*;
        let retryable: Vec<_> = [Transient, Throughput, PairRate, TokenInvalid, WindowClosed, Permanent]
            .into_iter()
            .filter(|c| c.is_retryable())
            .collect();
        assert_eq!(retryable, vec![Transient, Throughput, PairRate]);
        assert_eq!(PairRate.to_string(), "pair_rate");
    }
}
