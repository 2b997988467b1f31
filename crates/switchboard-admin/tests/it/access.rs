//! Authentication, tenant isolation, the OpenAPI document, probes and what reaches the logs.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::{logs, TestAdmin, NUMBER, OPERATOR, TOKEN_A, TOKEN_B};

/// Every operation of the API on tenant `b` and user `wa_id`.
fn operations(wa_id: &str) -> Vec<(Method, String)> {
    let user = format!("/admin/tenants/b/users/{wa_id}");
    vec![
        (Method::GET, user.clone()),
        (Method::DELETE, user.clone()),
        (Method::PATCH, format!("{user}/messages/rp_x")),
        (Method::DELETE, format!("{user}/messages/rp_x")),
        (Method::PUT, format!("{user}/restriction")),
        (Method::DELETE, format!("{user}/restriction")),
        (Method::POST, format!("{user}/block")),
        (Method::GET, "/admin/tenants/b/audit".into()),
    ]
}

async fn call(a: &TestAdmin, method: Method, path: &str, auth: Option<&str>) -> (StatusCode, String) {
    let mut req = a.http.request(method, a.url(path)).body(r#"{"content":"x"}"#);
    if let Some(value) = auth {
        req = req.header("Authorization", value);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    if status == StatusCode::UNAUTHORIZED {
        assert_eq!(res.headers()["www-authenticate"], "Bearer");
    }
    (status, res.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_wrong_credentials_get_one_identical_401() {
    let a = TestAdmin::start().await;
    a.populate("b", "x").await;
    let wrong = [None, Some("Bearer nope"), Some("Basic b3BlcmF0b3I="), Some("Bearer "), Some("operator-token-1")];
    for (method, path) in operations(NUMBER) {
        for auth in wrong {
            let (status, body) = call(&a, method.clone(), &path, auth).await;
            assert_eq!(
                (status, body.as_str()),
                (StatusCode::UNAUTHORIZED, r#"{"error":"unauthorized"}"#),
                "{method} {path} {auth:?}"
            );
        }
        let almost = format!("Bearer {OPERATOR}x");
        assert_eq!(call(&a, method.clone(), &path, Some(&almost)).await.0, StatusCode::UNAUTHORIZED);
    }
    // Nothing was touched.
    assert_eq!(a.store.context("b", &TestAdmin::conversation("b")).await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_token_cannot_reach_another_tenant_nor_learn_who_exists() {
    let a = TestAdmin::start().await;
    a.populate("b", "x").await;
    let token_a = format!("Bearer {TOKEN_A}");
    for (existing, absent) in operations(NUMBER).into_iter().zip(operations("19999999999")) {
        let first = call(&a, existing.0.clone(), &existing.1, Some(&token_a)).await;
        let second = call(&a, absent.0.clone(), &absent.1, Some(&token_a)).await;
        assert_eq!(first, (StatusCode::FORBIDDEN, r#"{"error":"forbidden"}"#.to_string()), "{existing:?}");
        assert_eq!(first, second, "{existing:?} and {absent:?} must look the same");
    }
    // An unknown tenant looks the same to a tenant token; the operator is told it is unknown.
    let unknown = format!("/admin/tenants/zz/users/{NUMBER}");
    assert_eq!(call(&a, Method::GET, &unknown, Some(&token_a)).await.0, StatusCode::FORBIDDEN);
    assert_eq!(call(&a, Method::GET, &unknown, Some(&format!("Bearer {OPERATOR}"))).await.0, StatusCode::NOT_FOUND);
    // Tenant b's data is intact and its own token reaches it.
    assert_eq!(a.store.context("b", &TestAdmin::conversation("b")).await.unwrap().len(), 2);
    let user = format!("/admin/tenants/b/users/{NUMBER}");
    assert_eq!(call(&a, Method::GET, &user, Some(&format!("Bearer {TOKEN_B}"))).await.0, StatusCode::OK);
    assert_eq!(call(&a, Method::GET, &user, Some(&format!("Bearer {OPERATOR}"))).await.0, StatusCode::OK);
    // A bad wa_id is refused once authorised (400), and only then.
    assert_eq!(call(&a, Method::GET, "/admin/tenants/b/users/a%20b", Some(&token_a)).await.0, StatusCode::FORBIDDEN);
    assert_eq!(
        call(&a, Method::GET, "/admin/tenants/b/users/a%20b", Some(&format!("Bearer {TOKEN_B}"))).await.0,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_is_served_and_names_every_path() {
    let a = TestAdmin::start().await;
    let res = a.http.get(a.url("/admin/openapi.json")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let doc: Value = res.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    let expected = [
        ("/admin/tenants/{tenant}/users/{wa_id}", &["get", "delete"][..]),
        ("/admin/tenants/{tenant}/users/{wa_id}/messages/{id}", &["patch", "delete"]),
        ("/admin/tenants/{tenant}/users/{wa_id}/restriction", &["put", "delete"]),
        ("/admin/tenants/{tenant}/users/{wa_id}/profile", &["put", "delete"]),
        ("/admin/tenants/{tenant}/users/{wa_id}/block", &["post"]),
        ("/admin/tenants/{tenant}/audit", &["get"]),
        ("/admin/openapi.json", &["get"]),
        ("/healthz", &["get"]),
    ];
    for (path, methods) in expected {
        for m in methods {
            assert!(paths[path][m].is_object(), "{m} {path} missing from {paths:?}");
        }
    }
    assert_eq!(paths.len(), expected.len());
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            for (code, response) in op["responses"].as_object().unwrap() {
                assert!(response["description"].is_string(), "{method} {path} {code}: a response needs a description");
            }
        }
    }
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    let health = a.http.get(a.url("/healthz")).send().await.unwrap();
    assert_eq!((health.status(), health.text().await.unwrap().as_str()), (StatusCode::OK, "ok"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_name_routes_and_peers_never_numbers_or_tokens() {
    let a = TestAdmin::start().await;
    a.populate("b", "x").await;
    for (method, path) in operations(NUMBER) {
        call(&a, method.clone(), &path, Some(&format!("Bearer {TOKEN_B}"))).await;
        call(&a, method.clone(), &path, Some(&format!("Bearer {TOKEN_A}"))).await;
        call(&a, method, &path, Some("Bearer wrong-token")).await;
    }
    let logs = logs();
    assert!(logs.contains("admin request") && logs.contains("/admin/tenants/{tenant}/users/{wa_id}"), "{logs}");
    assert!(logs.contains("admin_bad_token") && logs.contains("admin_cross_tenant") && logs.contains("peer=127.0.0.1"));
    assert!(logs.contains("admin action"));
    for secret in [NUMBER, TOKEN_A, TOKEN_B, "wrong-token", "hello x", "answer x"] {
        assert!(!logs.contains(secret), "{secret} reached the logs");
    }
}
