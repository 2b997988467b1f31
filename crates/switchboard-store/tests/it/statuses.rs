use std::time::Duration;

use switchboard_store::{StatusRecord, StatusUpdate};

use crate::helpers::TestStore;

const TTL: Duration = Duration::from_secs(60);

fn update<'a>(status: &'a str, timestamp: i64) -> StatusUpdate<'a> {
    StatusUpdate { wamid: "wamid.OUT", status, timestamp, error_codes: &[], reply_id: None }
}

#[tokio::test]
async fn statuses_never_regress() {
    let t = TestStore::new().await;
    let s = &t.store;

    let sent = s.record_status("t1", &update("sent", 100), TTL).await.unwrap();
    assert_eq!((sent.status.as_str(), sent.timestamp, sent.regressed_ignored), ("sent", 100, false));
    let read = s.record_status("t1", &update("read", 102), TTL).await.unwrap();
    assert_eq!((read.status.as_str(), read.regressed_ignored), ("read", false));
    let late = s.record_status("t1", &update("delivered", 101), TTL).await.unwrap();
    assert_eq!((late.status.as_str(), late.timestamp), ("read", 102));
    assert!(late.regressed_ignored);

    let stored = s.status("t1", "wamid.OUT").await.unwrap().unwrap();
    assert_eq!(stored, StatusRecord { regressed_ignored: false, ..late });
    let pttl = t.pttl(&t.key(&format!("status:t1:{}", switchboard_domain::message_ref("wamid.OUT"))));
    assert!(pttl > 0 && pttl <= 60_000, "{pttl}");
}

#[tokio::test]
async fn failed_carries_error_codes_and_is_terminal() {
    let t = TestStore::new().await;
    let s = &t.store;
    s.record_status("t1", &update("sent", 100), TTL).await.unwrap();
    let failed = StatusUpdate { error_codes: &[131047, 131026], ..update("failed", 101) };
    let r = s.record_status("t1", &failed, TTL).await.unwrap();
    assert_eq!((r.status.as_str(), r.error_codes.clone()), ("failed", vec![131047, 131026]));
    assert!(!r.regressed_ignored);

    let after = s.record_status("t1", &update("read", 105), TTL).await.unwrap();
    assert!(after.regressed_ignored);
    assert_eq!((after.status.as_str(), after.error_codes), ("failed", vec![131047, 131026]));
}

#[tokio::test]
async fn duplicates_are_idempotent() {
    let t = TestStore::new().await;
    let s = &t.store;
    let first = s.record_status("t1", &update("delivered", 100), TTL).await.unwrap();
    let again = s.record_status("t1", &update("delivered", 100), TTL).await.unwrap();
    assert!(again.regressed_ignored);
    assert_eq!(again, StatusRecord { regressed_ignored: true, ..first });
    assert_eq!(t.keys(), vec![t.key(&format!("status:t1:{}", switchboard_domain::message_ref("wamid.OUT")))]);
}

#[tokio::test]
async fn reply_id_is_kept_once_known() {
    let t = TestStore::new().await;
    let s = &t.store;
    let r = s.record_status("t1", &update("read", 100), TTL).await.unwrap();
    assert_eq!(r.reply_id, None);
    // An ignored (older) update still teaches us the reply id.
    let with_id = StatusUpdate { reply_id: Some("rp_1"), ..update("sent", 99) };
    let r = s.record_status("t1", &with_id, TTL).await.unwrap();
    assert!(r.regressed_ignored);
    assert_eq!((r.status.as_str(), r.reply_id.as_deref()), ("read", Some("rp_1")));
    // Later updates without (or with another) id keep it.
    let r = s.record_status("t1", &update("played", 101), TTL).await.unwrap();
    assert_eq!(r.reply_id.as_deref(), Some("rp_1"));
    let other = StatusUpdate { reply_id: Some("rp_2"), ..update("failed", 102) };
    let r = s.record_status("t1", &other, TTL).await.unwrap();
    assert_eq!((r.status.as_str(), r.reply_id.as_deref()), ("failed", Some("rp_1")));
}

#[tokio::test]
async fn unknown_statuses_and_missing_records() {
    let t = TestStore::new().await;
    let s = &t.store;
    assert_eq!(s.status("t1", "wamid.NONE").await.unwrap(), None);
    let r = s.record_status("t1", &update("something_new", 100), TTL).await.unwrap();
    assert_eq!((r.status.as_str(), r.regressed_ignored), ("something_new", false));
    let r = s.record_status("t1", &update("sent", 101), TTL).await.unwrap();
    assert_eq!(r.status, "sent");
    let r = s.record_status("t1", &update("something_new", 102), TTL).await.unwrap();
    assert_eq!((r.status.as_str(), r.regressed_ignored), ("sent", true));
}

#[tokio::test]
async fn every_key_written_has_a_ttl() {
    let t = TestStore::new().await;
    let s = &t.store;
    let claim = switchboard_store::ClaimKey::inbound("t1", "wamid.T");
    s.claim(&claim, "a", TTL).await.unwrap();
    s.claim(&switchboard_store::ClaimKey::send("t1", "rp", 0), "a", TTL).await.unwrap();
    s.complete(&claim, "a", "ok", TTL).await.unwrap();
    s.record_status("t1", &update("sent", 1), TTL).await.unwrap();
    let e = switchboard_domain::ChatEntry {
        id: "x".into(),
        role: switchboard_domain::ChatRole::User,
        content: "hi".into(),
        at: 1,
    };
    s.append_context("t1", "c", &e, TTL).await.unwrap();
    let keys = t.keys();
    assert_eq!(keys.len(), 4);
    for key in keys {
        assert!(t.pttl(&key) > 0, "{key} has no TTL");
    }
}
