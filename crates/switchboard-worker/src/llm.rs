//! The LLM call with retries.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use switchboard_domain::ChatEntry;
use switchboard_llm::{ChatRequest, Completion, LlmError};

use crate::Worker;

/// Longest wait between LLM attempts, whatever a `Retry-After` asks for.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(10);

impl Worker {
    /// Calls the LLM, retrying transient failures with exponential backoff (each delay plus a
    /// random jitter of up to 100 %), honouring (clamped) `Retry-After`, and never retrying once
    /// shutdown has begun. Returns the result and the number of attempts made.
    #[tracing::instrument(name = "chat", skip_all, fields(
        otel.kind = "client",
        gen_ai.operation.name = "chat",
        gen_ai.provider.name = "openai",
        gen_ai.request.model = model,
        gen_ai.usage.input_tokens,
        gen_ai.usage.output_tokens,
        attempts,
    ))]
    pub(crate) async fn generate(
        &self,
        tenant: &switchboard_config::Tenant,
        model: &str,
        system_prompt: &str,
        history: &[ChatEntry],
    ) -> (Result<Completion, LlmError>, u32) {
        let s = &self.inner.settings;
        let request = ChatRequest { model, system_prompt, history, max_tokens: s.llm_max_tokens };
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(s.llm_backoff_base_ms))
            .with_max_delay(MAX_RETRY_DELAY)
            .with_max_times(s.llm_max_attempts.saturating_sub(1) as usize)
            .with_jitter();
        let shutdown = self.inner.shutdown.clone();
        let client = self.inner.llm_for(tenant);
        let client = &client;
        let mut attempts = 0u32;
        let result = (|| {
            attempts += 1;
            async {
                let started = std::time::Instant::now();
                let result = client.complete(&request).await;
                let outcome = match &result {
                    Ok(_) => "ok".to_string(),
                    Err(e) => e.label().replace(' ', "_"),
                };
                metrics::histogram!("switchboard_llm_request_seconds", "model" => model.to_string(), "outcome" => outcome)
                    .record(started.elapsed().as_secs_f64());
                result
            }
        })
        .retry(backoff)
        .when(|e: &LlmError| e.is_retryable() && !shutdown.is_cancelled())
        .adjust(|e, planned| match e {
            LlmError::Status { retry_after: Some(after), .. } => Some((*after).min(MAX_RETRY_DELAY)),
            _ => planned,
        })
        .notify(|error, delay| tracing::warn!(error = %error.label(), ?delay, "LLM call failed; retrying"))
        .await;
        let span = tracing::Span::current();
        span.record("attempts", attempts);
        if let Ok(c) = &result {
            span.record("gen_ai.usage.input_tokens", c.prompt_tokens);
            span.record("gen_ai.usage.output_tokens", c.completion_tokens);
        }
        (result, attempts)
    }
}
