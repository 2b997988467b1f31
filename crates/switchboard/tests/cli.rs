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
