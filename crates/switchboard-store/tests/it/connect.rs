use std::time::{Duration, Instant};

use switchboard_store::{Store, StoreError};

use crate::helpers::{redis_url, TestStore};

#[tokio::test]
async fn connects_and_pings() {
    let t = TestStore::new().await;
    t.store.ping().await.unwrap();
    assert!(t.store.namespace().starts_with("sbtest-"));
    let dbg = format!("{:?}", t.store);
    assert!(dbg.contains("namespace"), "{dbg}");
}

#[tokio::test]
async fn rejects_bad_namespaces() {
    for ns in ["", "a{b}", "has space", "glob*"] {
        let err = Store::connect(&redis_url(), ns, 1).await.unwrap_err();
        assert!(matches!(err, StoreError::Pool(_)), "{ns:?}: {err:?}");
    }
}

#[tokio::test]
async fn bad_url_fails_without_quoting_it() {
    let err = Store::connect("nosuchscheme://user:hunter2@host/0", "sbtest-x", 1).await.unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[tokio::test]
async fn unreachable_server_fails_fast() {
    let started = Instant::now();
    let err = Store::connect("redis://127.0.0.1:1/0", "sbtest-x", 1).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5), "{err:?}");
}
