//! The real `switchboard` binary: start-up checks, the whole pipeline in one process, SIGTERM.

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use switchboard_tests::{wait_until, webhook, webhook::Text, FakeCollector, TestEnv, PHONE_NUMBER_ID};

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

/// A `switchboard all` process on a free port, ready (its `/readyz` answered 200).
struct Process {
    child: std::process::Child,
    base: String,
    client: reqwest::Client,
}

impl Process {
    /// Starts `switchboard all` with the test's settings plus `extra`; `capture` keeps its
    /// output for [`Process::stop`] to return.
    async fn start(env: &TestEnv, extra: &[(&str, &str)], capture: bool) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let out = || if capture { Stdio::piped() } else { Stdio::null() };
        let child = Command::new(BIN)
            .arg("all")
            .env_clear()
            .envs(env.env_vars())
            .env("SWITCHBOARD_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .envs(extra.iter().copied())
            .stdout(out())
            .stderr(out())
            .spawn()
            .expect("binary starts");
        let p = Self { child, base: format!("http://127.0.0.1:{port}"), client: reqwest::Client::new() };
        wait_until(Duration::from_secs(30), "ready", || async {
            let r = p.client.get(format!("{}/readyz", p.base)).send().await.ok()?;
            (r.status() == 200).then_some(())
        })
        .await;
        p
    }

    /// POSTs a signed webhook with one text message; returns the HTTP status.
    async fn post_text(&self, from: &str, wamid: &str, body: &str) -> u16 {
        let payload = webhook::text_batch(PHONE_NUMBER_ID, &[Text { from, wamid, body, timestamp: webhook::now_s() }]);
        let sig = webhook::sign(switchboard_tests::APP_SECRET, &payload);
        let url = format!("{}/webhooks/whatsapp", self.base);
        let res = self.client.post(url).header("X-Hub-Signature-256", sig).body(payload).send().await;
        res.map(|r| r.status().as_u16()).unwrap_or(0)
    }

    fn signal(&self, signal: &str) {
        assert!(Command::new("kill").args([signal, &self.child.id().to_string()]).status().unwrap().success());
    }

    /// SIGTERM, then waits for the exit; returns the exit code and the captured output.
    async fn stop(mut self) -> (Option<i32>, String) {
        self.signal("-TERM");
        let status = wait_until(Duration::from_secs(30), "exit after SIGTERM", || {
            let r = self.child.try_wait().unwrap();
            async move { r }
        })
        .await;
        let mut logs = String::new();
        use std::io::Read;
        if let Some(mut out) = self.child.stdout.take() {
            out.read_to_string(&mut logs).unwrap();
        }
        if let Some(mut err) = self.child.stderr.take() {
            err.read_to_string(&mut logs).unwrap();
        }
        (status.code(), logs)
    }
}

fn run_without_config(role: &str, extra: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new(BIN).arg(role).env_clear().envs(extra.iter().copied()).output().expect("binary runs");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn missing_required_settings_exit_non_zero_naming_the_variable() {
    let (code, stderr) = run_without_config("worker", &[]);
    assert_eq!(code, 2);
    assert_eq!(stderr.trim(), "switchboard: missing required setting SWITCHBOARD_PHONE_NUMBER_ID");

    let (code, stderr) = run_without_config("ingress", &[("SWITCHBOARD_PHONE_NUMBER_ID", "200")]);
    assert_eq!(code, 2);
    assert_eq!(stderr.trim(), "switchboard: missing required setting SWITCHBOARD_APP_SECRET");

    let (code, stderr) = run_without_config("dispatcher", &[("SWITCHBOARD_PHONE_NUMBER_ID", "200")]);
    assert_eq!(code, 2);
    assert_eq!(stderr.trim(), "switchboard: missing required setting SWITCHBOARD_ACCESS_TOKEN");

    let (code, stderr) =
        run_without_config("worker", &[("SWITCHBOARD_PHONE_NUMBER_ID", "200"), ("SWITCHBOARD_LLM_TIMEOUT_MS", "soon")]);
    assert_eq!(code, 2);
    assert!(stderr.contains("SWITCHBOARD_LLM_TIMEOUT_MS"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchboard_all_answers_a_webhook_and_exits_cleanly_on_sigterm() {
    let env = TestEnv::new().await;
    let process = Process::start(&env, &[("SWITCHBOARD_LOG_FORMAT", "json")], true).await;
    let secret_text = "my order number is 98765";
    assert_eq!(process.post_text("15557654321", "wamid.cli.1", secret_text).await, 200);
    let sent =
        wait_until(Duration::from_secs(30), "reply", || async { env.graph.delivered().into_iter().next() }).await;
    assert_eq!(sent.body, format!("reply to: {secret_text}"));

    let (code, logs) = process.stop().await;
    assert_eq!(code, Some(0), "graceful shutdown exits 0");
    assert!(logs.contains("switchboard stopped"), "{logs}");
    // Logs never carry the user's number, text, or any secret.
    for needle in ["15557654321", secret_text, "test_app_secret", "test-access-token"] {
        assert!(!logs.contains(needle), "logs leak {needle:?}");
    }
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_otlp_exporter_ships_the_message_trace_to_a_collector_and_flushes_on_sigterm() {
    let env = TestEnv::new().await;
    let collector = FakeCollector::start().await;
    let endpoint = collector.endpoint();
    let process = Process::start(
        &env,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_SERVICE_NAME", "switchboard-otlp-test"),
            // Longer than the test: only the flush at shutdown can deliver the spans.
            ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
            ("SWITCHBOARD_MARK_READ", "true"),
        ],
        false,
    )
    .await;
    let (number, text) = ("15557650001", "deliver to 42 Wallaby Way");
    assert_eq!(process.post_text(number, "wamid.otlp.1", text).await, 200);
    wait_until(Duration::from_secs(30), "reply", || async { env.graph.delivered().into_iter().next() }).await;
    // `mark read` is the last span of a conversation turn's trace.
    wait_until(Duration::from_secs(30), "read receipt", || async { env.graph.receipts().into_iter().next() }).await;
    assert_eq!(collector.requests(), 0, "nothing exported before the shutdown flush");
    let (code, _) = process.stop().await;
    assert_eq!(code, Some(0));

    let spans = collector.spans();
    assert!(spans.iter().all(|s| s.service == "switchboard-otlp-test"), "OTEL_SERVICE_NAME names the resource");
    let webhook = spans.iter().find(|s| s.span.name == "POST /webhooks/whatsapp").expect("the webhook span");
    let trace = webhook.trace_id().to_vec();
    assert_eq!(trace.len(), 16);
    for name in ["receive inbound", "turn", "chat", "send reply", "POST /{phone_number_id}/messages", "mark read"] {
        assert!(
            spans.iter().any(|s| s.span.name == name && s.trace_id() == trace),
            "{name:?} not in the webhook's trace"
        );
    }
    // OTLP span kind 4 = PRODUCER: the publishes of the trace (webhook events, job, receipt).
    let producers = spans.iter().filter(|s| s.trace_id() == trace && s.span.kind == 4).count();
    assert!(producers >= 3, "{producers} publish spans in the trace");
    let chat = spans.iter().find(|s| s.span.name == "chat" && s.trace_id() == trace).unwrap();
    assert!(chat.attribute("gen_ai.request.model").is_some());
    for s in &spans {
        for value in s.strings() {
            assert!(!value.contains(number) && !value.contains("Wallaby"), "span {:?} leaks: {value:?}", s.span.name);
        }
    }
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_commands_list_show_redrive_and_purge_by_reason() {
    use switchboard_domain::{now_ms, DeadLetter, DeadLetterReason};
    let env = TestEnv::new().await;
    let park = |reason: DeadLetterReason, code: Option<i64>, text: &str| {
        let info = DeadLetter {
            reason,
            tenant_id: Some("default".into()),
            error_code: code,
            last_error: "fake".into(),
            attempts: 1,
            first_attempt_at_ms: now_ms(),
            dead_lettered_at_ms: now_ms(),
            source_queue: env.bus.topology().outbound.clone(),
        };
        let body = serde_json::to_vec(&serde_json::json!({"body": text, "to": {"wa_id": "15550001234"}})).unwrap();
        env.bus.dead_letter(body, Default::default(), &info)
    };
    env.bus.publish(park(DeadLetterReason::SendPermanent, Some(131026), "secret reply one")).await.unwrap();
    env.bus.publish(park(DeadLetterReason::LlmFailed, None, "secret reply two")).await.unwrap();
    let vars = env.env_vars();
    let cli = |args: &[&str]| {
        let out = Command::new(BIN).args(args).env_clear().envs(vars.clone()).output().expect("binary runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        )
    };

    let (ok, out) = cli(&["dlq", "list"]);
    assert!(ok, "{out}");
    assert!(out.contains("2 message(s)"), "{out}");
    let (ok, out) = cli(&["dlq", "list", "--reason", "send_permanent", "--tenant", "default"]);
    assert!(ok && out.contains("send_permanent") && out.contains("131026") && out.contains("1 message(s)"), "{out}");
    assert!(!out.contains("secret reply"), "list never prints message text");
    let (ok, out) = cli(&["dlq", "show", "1"]);
    assert!(ok && out.contains("x-sb-reason: send_permanent") && out.contains("[masked]"), "{out}");
    assert!(!out.contains("secret reply") && !out.contains("15550001234"), "show masks text and numbers: {out}");

    let (ok, out) = cli(&["dlq", "purge", "--reason", "llm_failed"]);
    assert!(!ok && out.contains("--yes"), "purge needs --yes: {out}");
    let (ok, out) = cli(&["dlq", "purge", "--reason", "llm_failed", "--yes"]);
    assert!(ok && out.contains("purged 1"), "{out}");
    let (ok, out) = cli(&["dlq", "redrive", "--reason", "send_permanent"]);
    assert!(ok && out.contains("redrove 1"), "{out}");
    assert_eq!(env.bus.queue_depth(&env.bus.topology().dlq).await.unwrap(), 0);
    let back = env.bus.get(&env.bus.topology().outbound).await.unwrap().expect("redriven to the outbound queue");
    assert!(!back.headers.contains_key("x-sb-reason"), "dead-letter headers are dropped on redrive");
    back.ack().await.unwrap();
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_slow_llm_call_requeues_and_the_message_is_answered_once_after_restart() {
    use switchboard_tests::LlmReply;
    let env = TestEnv::new().await;
    env.llm.set_fallback(LlmReply::Delayed(Duration::from_millis(1_500), Box::new(LlmReply::Echo)));
    // The drain deadline is shorter than the LLM call: the turn is abandoned, not lost.
    let extra = [("SWITCHBOARD_SHUTDOWN_TIMEOUT_MS", "300")];

    let first = Process::start(&env, &extra, false).await;
    assert_eq!(first.post_text("15557770001", "wamid.term.1", "slow one").await, 200);
    wait_until(Duration::from_secs(30), "LLM call in flight", || async { (!env.llm.calls().is_empty()).then_some(()) })
        .await;
    assert_eq!(first.stop().await.0, Some(0), "graceful exit");
    assert!(env.graph.delivered().is_empty(), "the abandoned turn sent nothing");

    let second = Process::start(&env, &extra, false).await;
    let sent = wait_until(Duration::from_secs(30), "the reply after restart", || async {
        env.graph.delivered().into_iter().next()
    })
    .await;
    assert_eq!(sent.body, "reply to: slow one");
    let inbound = env.bus.topology().inbound.clone();
    wait_until(Duration::from_secs(30), "settled", || async {
        (env.bus.queue_depth(&inbound).await.ok()? == 0).then_some(())
    })
    .await;
    assert_eq!(second.stop().await.0, Some(0));
    assert_eq!(env.graph.delivered().len(), 1, "answered exactly once");
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_tenants_file_without_a_restart() {
    let env = TestEnv::new().await;
    let dir = std::env::temp_dir().join(format!("sbtenants-{}", env.settings.namespace));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("tenants.toml");
    let write = |prompt: &str| {
        let toml = format!(
            "[[tenant]]\nid = \"acme\"\nphone_number_ids = [\"{PHONE_NUMBER_ID}\"]\napp_secrets = [\"literal:{}\"]\n\
             verify_token = \"literal:vt\"\naccess_token = \"literal:acme-token\"\nsystem_prompt = \"{prompt}\"\n",
            switchboard_tests::APP_SECRET
        );
        std::fs::write(&file, toml).unwrap();
    };
    write("First prompt.");
    let path = file.to_str().unwrap().to_string();
    let extra = [("SWITCHBOARD_TENANTS_FILE", path.as_str()), ("SWITCHBOARD_PSEUDONYM_KEY", "test-pseudonym-key")];
    let process = Process::start(&env, &extra, false).await;
    assert_eq!(process.post_text("15558880001", "wamid.hup.1", "hello").await, 200);
    wait_until(Duration::from_secs(30), "first reply", || async { env.graph.delivered().into_iter().next() }).await;

    write("Second prompt.");
    process.signal("-HUP");
    // The reload is asynchronous: keep sending until a turn uses the new prompt.
    let mut n = 2;
    wait_until(Duration::from_secs(30), "a turn with the reloaded prompt", || {
        n += 1;
        let wamid = format!("wamid.hup.{n}");
        let (process, env) = (&process, &env);
        async move {
            process.post_text("15558880001", &wamid, "hello").await;
            let reloaded = || env.llm.calls().iter().any(|c| c.system_prompt() == Some("Second prompt."));
            // Message n - 1 of this conversation gives LLM call n - 1.
            wait_until(Duration::from_secs(5), "this message's turn", || async {
                (env.llm.calls().len() >= n - 1).then_some(())
            })
            .await;
            reloaded().then_some(())
        }
    })
    .await;
    assert_eq!(env.graph.delivered()[0].authorization.as_deref(), Some("Bearer acme-token"));
    assert_eq!(process.stop().await.0, Some(0));
    std::fs::remove_dir_all(dir).unwrap();
    env.teardown().await;
}
