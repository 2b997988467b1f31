//! The real `switchboard` binary: start-up checks, the whole pipeline in one process, SIGTERM.

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use switchboard_tests::{wait_until, webhook, webhook::Text, TestEnv, PHONE_NUMBER_ID};

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

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
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = Command::new(BIN)
        .arg("all")
        .env_clear()
        .envs(env.env_vars())
        .env("SWITCHBOARD_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("SWITCHBOARD_LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary starts");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    wait_until(Duration::from_secs(30), "ready", || async {
        let r = client.get(format!("{base}/readyz")).send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await;

    let secret_text = "my order number is 98765";
    let body = webhook::text_batch(
        PHONE_NUMBER_ID,
        &[Text { from: "15557654321", wamid: "wamid.cli.1", body: secret_text, timestamp: webhook::now_s() }],
    );
    let sig = webhook::sign(switchboard_tests::APP_SECRET, &body);
    let res = client
        .post(format!("{base}/webhooks/whatsapp"))
        .header("X-Hub-Signature-256", sig)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let sent =
        wait_until(Duration::from_secs(30), "reply", || async { env.graph.delivered().into_iter().next() }).await;
    assert_eq!(sent.body, format!("reply to: {secret_text}"));

    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let exit = wait_until(Duration::from_secs(30), "exit after SIGTERM", || {
        let r = child.try_wait().unwrap();
        async move { r }
    })
    .await;
    assert_eq!(exit.code(), Some(0), "graceful shutdown exits 0");
    let mut logs = String::new();
    use std::io::Read;
    child.stdout.take().unwrap().read_to_string(&mut logs).unwrap();
    child.stderr.take().unwrap().read_to_string(&mut logs).unwrap();
    assert!(logs.contains("switchboard stopped"), "{logs}");
    // Logs never carry the user's number, text, or any secret.
    for needle in ["15557654321", secret_text, "test_app_secret", "test-access-token"] {
        assert!(!logs.contains(needle), "logs leak {needle:?}");
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
    let start = || {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(BIN)
            .arg("all")
            .env_clear()
            .envs(env.env_vars())
            .env("SWITCHBOARD_HTTP_ADDR", format!("127.0.0.1:{port}"))
            // The drain deadline is shorter than the LLM call: the turn is abandoned, not lost.
            .env("SWITCHBOARD_SHUTDOWN_TIMEOUT_MS", "300")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("binary starts");
        (child, format!("http://127.0.0.1:{port}"))
    };
    let client = reqwest::Client::new();
    let ready = |base: String| {
        let client = client.clone();
        async move {
            wait_until(Duration::from_secs(30), "ready", || async {
                let r = client.get(format!("{base}/readyz")).send().await.ok()?;
                (r.status() == 200).then_some(())
            })
            .await
        }
    };
    let stop = |child: &mut std::process::Child| {
        assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    };
    let exited = |mut child: std::process::Child| async move {
        wait_until(Duration::from_secs(30), "exit", || {
            let r = child.try_wait().unwrap();
            async move { r }
        })
        .await
    };

    let (mut first, base) = start();
    ready(base.clone()).await;
    let body = webhook::text_batch(
        PHONE_NUMBER_ID,
        &[Text { from: "15557770001", wamid: "wamid.term.1", body: "slow one", timestamp: webhook::now_s() }],
    );
    let sig = webhook::sign(switchboard_tests::APP_SECRET, &body);
    let res = client
        .post(format!("{base}/webhooks/whatsapp"))
        .header("X-Hub-Signature-256", sig)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    wait_until(Duration::from_secs(30), "LLM call in flight", || async { (!env.llm.calls().is_empty()).then_some(()) })
        .await;
    stop(&mut first);
    let status = exited(first).await;
    assert_eq!(status.code(), Some(0), "graceful exit");
    assert!(env.graph.delivered().is_empty(), "the abandoned turn sent nothing");

    let (mut second, base) = start();
    ready(base).await;
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
    stop(&mut second);
    assert_eq!(exited(second).await.code(), Some(0));
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
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = Command::new(BIN)
        .arg("all")
        .env_clear()
        .envs(env.env_vars())
        .env("SWITCHBOARD_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("SWITCHBOARD_TENANTS_FILE", &file)
        .env("SWITCHBOARD_PSEUDONYM_KEY", "test-pseudonym-key")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("binary starts");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    wait_until(Duration::from_secs(30), "ready", || async {
        let r = client.get(format!("{base}/readyz")).send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    let post = |wamid: &str| {
        let body = webhook::text_batch(
            PHONE_NUMBER_ID,
            &[Text { from: "15558880001", wamid, body: "hello", timestamp: webhook::now_s() }],
        );
        let sig = webhook::sign(switchboard_tests::APP_SECRET, &body);
        client.post(format!("{base}/webhooks/whatsapp")).header("X-Hub-Signature-256", sig).body(body).send()
    };
    assert_eq!(post("wamid.hup.1").await.unwrap().status(), 200);
    wait_until(Duration::from_secs(30), "first reply", || async { env.graph.delivered().into_iter().next() }).await;

    write("Second prompt.");
    assert!(Command::new("kill").args(["-HUP", &child.id().to_string()]).status().unwrap().success());
    // Poll until a message is answered with the new prompt (the reload is asynchronous).
    let mut n = 2;
    wait_until(Duration::from_secs(30), "a turn with the reloaded prompt", || {
        let post = post(&format!("wamid.hup.{n}"));
        n += 1;
        let env = &env;
        async move {
            let _ = post.await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            env.llm.calls().iter().any(|c| c.system_prompt() == Some("Second prompt.")).then_some(())
        }
    })
    .await;
    assert_eq!(env.graph.delivered()[0].authorization.as_deref(), Some("Bearer acme-token"));
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let status = wait_until(Duration::from_secs(30), "exit", || {
        let r = child.try_wait().unwrap();
        async move { r }
    })
    .await;
    assert_eq!(status.code(), Some(0));
    std::fs::remove_dir_all(dir).unwrap();
    env.teardown().await;
}
