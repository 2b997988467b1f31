//! The rights, end to end: export, erase (nothing left but the audit record and the marker,
//! in Redis and in the dead-letter queue), restriction, block, rectification, the audit log.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{event, logs, TestAdmin, NUMBER, OPERATOR, TOKEN_A, TOKEN_B};

async fn send(
    a: &TestAdmin,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = a.http.request(method, a.url(path)).bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

fn user(tenant: &str) -> String {
    format!("/admin/tenants/{tenant}/users/{NUMBER}")
}

async fn audit(a: &TestAdmin, tenant: &str, token: &str) -> Vec<Value> {
    let (status, body) = send(a, reqwest::Method::GET, &format!("/admin/tenants/{tenant}/audit"), token, None).await;
    assert_eq!(status, StatusCode::OK);
    body["records"].as_array().unwrap().clone()
}

/// The `detail` of each `rectify` record of the tenant's audit log, oldest first.
async fn rectify_details(a: &TestAdmin, tenant: &str) -> Vec<String> {
    let records = audit(a, tenant, OPERATOR).await;
    records.iter().filter(|r| r["action"] == "rectify").map(|r| r["detail"].as_str().unwrap().into()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_returns_everything_held_and_is_audited() {
    let a = TestAdmin::start().await;
    a.populate("b", "x").await;
    let (status, doc) = send(&a, reqwest::Method::GET, &user("b"), TOKEN_B, None).await;
    assert_eq!(status, StatusCode::OK);
    let subject = &doc["subject"];
    assert_eq!(subject["subject_ref"], TestAdmin::conversation("b"));
    let texts: Vec<&str> =
        subject["context"].as_array().unwrap().iter().map(|e| e["content"].as_str().unwrap()).collect();
    assert_eq!(texts, vec!["hello x", "answer x"]);
    assert_eq!(subject["pending"][0]["content"]["body"], "pending x");
    assert_eq!(subject["pending"][0]["from"]["wa_id"], NUMBER);
    assert!(subject["storage"].as_array().unwrap().iter().any(|k| k["key"].as_str().unwrap().contains(":ctx:")));
    assert_eq!(doc["parked"].as_array().unwrap().len(), 1);
    assert_eq!(doc["parked"][0]["reason"], "llm_failed");
    assert_eq!(doc["parked"][0]["body"]["content"]["body"], "pending x");

    let records = audit(&a, "b", TOKEN_B).await;
    assert_eq!(records[0]["action"], "export");
    assert_eq!(records[0]["actor"], "tenant:b");
    assert_eq!(records[0]["subject_ref"], TestAdmin::conversation("b"));
    assert!(!serde_json::to_string(&records).unwrap().contains(NUMBER));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erase_leaves_only_the_audit_record_and_the_marker() {
    let a = TestAdmin::start().await;
    a.populate("b", "gone").await;
    a.populate("a", "kept").await; // the same person, with another tenant
    let mut stranger = event("b", "someone-else", "wamid.S", "stranger's words");
    stranger.from.wa_id = Some("4915112345678".into());
    a.park(&stranger).await;

    let (status, body) = send(&a, reqwest::Method::DELETE, &user("b"), OPERATOR, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["report"]["context_entries"], 2);
    assert_eq!(body["report"]["pending_messages"], 1);
    assert_eq!(body["parked"], json!({"deleted": 1, "not_examined": 0}));

    let c = TestAdmin::conversation("b");
    for (key, value) in a.dump() {
        if key.ends_with(":audit:b") {
            assert!(!value.contains(NUMBER) && !value.contains("gone"), "{value}");
            continue;
        }
        if key.contains(":erased:") {
            assert_eq!(key, format!("{}:erased:{{b:{c}}}", a.ns));
            continue;
        }
        assert!(!key.contains(&c) && !value.contains("gone"), "{key} = {value} is left of the erased user");
        assert!(key.contains("{a:") || key.ends_with(":audit:a"), "{key} is not tenant a's");
    }
    let dlq = a.dlq_bodies().await;
    assert!(dlq.iter().all(|b| !b.contains("gone")), "{dlq:?}");
    assert_eq!(dlq.len(), 2, "the stranger's and tenant a's dead letters stay");
    // Tenant a's copy of the same person is untouched.
    assert_eq!(a.store.context("a", &TestAdmin::conversation("a")).await.unwrap().len(), 2);

    let records = audit(&a, "b", TOKEN_B).await;
    let erase = records.iter().find(|r| r["action"] == "erase").unwrap();
    assert_eq!(erase["actor"], "operator");
    assert_eq!(erase["subject_ref"], c);
    assert!(erase["detail"].as_str().unwrap().contains("ctx=1"), "{erase}");
    assert!(erase["detail"].as_str().unwrap().contains("parked_deleted=1"), "{erase}");
    // Repeating is harmless.
    assert_eq!(send(&a, reqwest::Method::DELETE, &user("b"), TOKEN_B, None).await.0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restriction_goes_on_and_off_and_block_erases_and_restricts() {
    let a = TestAdmin::start().await;
    a.populate("b", "x").await;
    let path = format!("{}/restriction", user("b"));
    let (status, body) = send(&a, reqwest::Method::PUT, &path, TOKEN_B, None).await;
    assert_eq!(
        (status, body["restricted"].clone(), body["changed"].clone()),
        (StatusCode::OK, json!(true), json!(true))
    );
    assert!(body["since_ms"].as_i64().unwrap() > 0);
    assert_eq!(send(&a, reqwest::Method::PUT, &path, TOKEN_B, None).await.1["changed"], false);
    assert!(a.store.is_restricted("b", &TestAdmin::conversation("b")).await.unwrap());
    let (_, export) = send(&a, reqwest::Method::GET, &user("b"), TOKEN_B, None).await;
    assert!(export["subject"]["restricted_since_ms"].is_i64());
    let (_, body) = send(&a, reqwest::Method::DELETE, &path, TOKEN_B, None).await;
    assert_eq!((body["restricted"].clone(), body["changed"].clone()), (json!(false), json!(true)));
    assert!(!a.store.is_restricted("b", &TestAdmin::conversation("b")).await.unwrap());

    let (status, body) = send(&a, reqwest::Method::POST, &format!("{}/block", user("b")), OPERATOR, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (body["report"]["restricted"].clone(), body["report"]["context_entries"].clone()),
        (json!(true), json!(2))
    );
    let (_, export) = send(&a, reqwest::Method::GET, &user("b"), TOKEN_B, None).await;
    assert!(export["subject"]["context"].as_array().unwrap().is_empty());
    assert!(export["subject"]["restricted_since_ms"].is_i64() && export["subject"]["erased_at_ms"].is_i64());
    let actions: Vec<String> =
        audit(&a, "b", TOKEN_B).await.iter().map(|r| r["action"].as_str().unwrap().into()).collect();
    for expected in ["restrict", "lift_restriction", "block"] {
        assert!(actions.iter().any(|a| a == expected), "{expected} not in {actions:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rectify_edits_or_removes_a_stored_message() {
    let a = TestAdmin::start().await;
    a.populate("b", "x").await;
    let message = |id: &str| format!("{}/messages/{id}", user("b"));
    let (status, body) =
        send(&a, reqwest::Method::PATCH, &message("wamid.U-x"), TOKEN_B, Some(json!({"content": "corrected"}))).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"rectified": "edited"})));
    let (status, _) = send(&a, reqwest::Method::DELETE, &message("rp_x"), TOKEN_B, None).await;
    assert_eq!(status, StatusCode::OK);
    let window = a.store.context("b", &TestAdmin::conversation("b")).await.unwrap();
    assert_eq!(window.iter().map(|e| e.content.as_str()).collect::<Vec<_>>(), vec!["corrected"]);

    let (status, body) = send(&a, reqwest::Method::DELETE, &message("rp_x"), TOKEN_B, None).await;
    assert_eq!((status, body), (StatusCode::NOT_FOUND, json!({"error": "not_found"})));
    for bad in [json!({}), json!({"content": ""}), json!({"content": "x", "more": 1})] {
        let (status, body) = send(&a, reqwest::Method::PATCH, &message("wamid.U-x"), TOKEN_B, Some(bad)).await;
        assert_eq!((status, body["error"].clone()), (StatusCode::BAD_REQUEST, json!("bad_request")));
    }
    // Another tenant's token is refused before the body is even read.
    let (status, _) = send(&a, reqwest::Method::PATCH, &message("wamid.U-x"), TOKEN_A, Some(json!({}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let details = rectify_details(&a, "b").await;
    assert_eq!(details, vec!["edited", "removed", "not_found"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tenant_exports_its_own_audit_log() {
    let a = TestAdmin::start().await;
    a.populate("b", "x").await;
    send(&a, reqwest::Method::GET, &user("b"), TOKEN_B, None).await;
    send(&a, reqwest::Method::PUT, &format!("{}/restriction", user("b")), OPERATOR, None).await;
    let b = audit(&a, "b", TOKEN_B).await;
    let actions: Vec<&str> = b.iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert_eq!(actions, vec!["export", "restrict", "audit_export"]);
    assert!(b.windows(2).all(|w| w[0]["at_ms"].as_i64() <= w[1]["at_ms"].as_i64()));
    let own = audit(&a, "a", TOKEN_A).await;
    assert_eq!(own.len(), 1, "tenant a sees only its own export of its log: {own:?}");
    let future = switchboard_domain::now_ms() + 60_000;
    let (status, body) =
        send(&a, reqwest::Method::GET, &format!("/admin/tenants/b/audit?since_ms={future}"), TOKEN_B, None).await;
    assert_eq!((status, body["records"].as_array().unwrap().len()), (StatusCode::OK, 0));
    let (status, _) = send(&a, reqwest::Method::GET, "/admin/tenants/b/audit?since_ms=soon", TOKEN_B, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stored_profile_name_is_exported_corrected_and_removed() {
    let a = TestAdmin::start().await;
    let conv = TestAdmin::conversation("b");
    let profile = format!("{}/profile", user("b"));
    // Nothing stored: 404, and the export says so.
    let (status, _) = send(&a, reqwest::Method::PUT, &profile, TOKEN_B, Some(json!({"name": "Ann"}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    a.store.set_profile_name("b", &conv, "Zelda Q", std::time::Duration::from_secs(600)).await.unwrap();
    let (_, export) = send(&a, reqwest::Method::GET, &user("b"), TOKEN_B, None).await;
    assert_eq!(export["subject"]["profile_name"], json!("Zelda Q"), "{export}");

    let (status, body) = send(&a, reqwest::Method::PUT, &profile, TOKEN_B, Some(json!({"name": " Zelda "}))).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"rectified": "profile_edited"})));
    assert_eq!(a.store.profile_name("b", &conv).await.unwrap().as_deref(), Some("Zelda"));
    for bad in [json!({}), json!({"name": "  "}), json!({"name": "x".repeat(129)}), json!({"name": "x", "more": 1})] {
        let (status, _) = send(&a, reqwest::Method::PUT, &profile, TOKEN_B, Some(bad)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }
    let (status, _) = send(&a, reqwest::Method::PUT, &profile, TOKEN_A, Some(json!({"name": "x"}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "another tenant's token");
    let (status, body) = send(&a, reqwest::Method::DELETE, &profile, TOKEN_B, None).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"rectified": "profile_removed"})));
    assert_eq!(a.store.profile_name("b", &conv).await.unwrap(), None);
    let (status, _) = send(&a, reqwest::Method::DELETE, &profile, TOKEN_B, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let details = rectify_details(&a, "b").await;
    assert_eq!(details, ["profile_not_found", "profile_edited", "profile_removed", "profile_not_found"]);
    assert!(!logs().contains("Zelda"), "the name is never logged");
}
