//! Data-subject operations against a real Redis: export, rectify, erase (nothing left but the
//! markers), restriction, block, the audit log, tenant isolation.

use std::time::Duration;

use serde_json::json;
use switchboard_domain::{message_ref, ChatEntry, ChatRole, InboundEvent, OutboundJob, Pseudonymizer};
use switchboard_store::{AuditRecord, ClaimKey, ClaimOutcome, Rate, StatusUpdate, Store};

use crate::helpers::{poll_until, redis_url, TestStore};

const TTL: Duration = Duration::from_secs(60);
const NUMBER: &str = "15551234567";

/// One user's footprint: a committed and answered turn, a pending message, a sent part with a
/// failed status, a pair-rate bucket, an inbound claim. Texts and wamids carry `tag` and the
/// number, so any leftover shows in a value scan.
struct Footprint {
    conversation: String,
    reply_id: String,
}

fn event(tenant: &str, conversation: &str, wamid: &str, text: &str, at: i64) -> InboundEvent {
    serde_json::from_value(json!({
        "tenant_id": tenant, "phone_number_id": "200", "wamid": wamid, "from": {"wa_id": NUMBER},
        "conversation": conversation, "timestamp": at, "received_at_ms": at * 1000,
        "content": {"kind": "text", "body": text}
    }))
    .unwrap()
}

async fn populate(s: &Store, tenant: &str, tag: &str) -> Footprint {
    let c = Pseudonymizer::new("test-key").conversation(tenant, NUMBER);
    let (in1, in2, out1) = (
        format!("wamid.IN1-{NUMBER}-{tag}"),
        format!("wamid.IN2-{NUMBER}-{tag}"),
        format!("wamid.OUT1-{NUMBER}-{tag}"),
    );
    let first = event(tenant, &c, &in1, &format!("first words {tag}"), 1_760_000_000);
    s.enqueue_message(&first, TTL).await.unwrap();
    let user = ChatEntry { id: in1.clone(), role: ChatRole::User, content: format!("first words {tag}"), at: 1 };
    s.append_context(tenant, &c, &user, TTL).await.unwrap();
    let reply_id = format!("rp_{tag}");
    let job: OutboundJob = serde_json::from_value(json!({
        "tenant_id": tenant, "phone_number_id": "200", "reply_id": reply_id, "to": {"wa_id": NUMBER},
        "conversation": c, "in_reply_to": in1, "wamids": [in1], "kind": "assistant",
        "body": format!("assistant answer {tag}"), "user_timestamp": 1_760_000_000, "created_at_ms": 1
    }))
    .unwrap();
    let answer = ChatEntry { id: reply_id.clone(), role: ChatRole::Assistant, content: job.body.clone(), at: 2 };
    let lease = ClaimKey::conversation(tenant, &c);
    assert_eq!(s.claim(&lease, "tok", TTL).await.unwrap(), ClaimOutcome::Acquired);
    assert!(s.commit_turn("tok", &job, Some(&answer), TTL, TTL).await.unwrap());
    s.finish_turn(&job, TTL).await.unwrap();
    // A second message waits for its turn.
    s.enqueue_message(&event(tenant, &c, &in2, &format!("pending words {tag}"), 1_760_000_005), TTL).await.unwrap();
    // The dispatcher sent the reply; WhatsApp reported it failed.
    let part = ClaimKey::send(tenant, &reply_id, 0);
    assert_eq!(s.claim(&part, "d1", TTL).await.unwrap(), ClaimOutcome::Acquired);
    s.complete(&part, "d1", &out1, TTL).await.unwrap();
    s.record_sent(&job, &out1, 0, TTL).await.unwrap();
    let failed = StatusUpdate {
        wamid: &out1,
        status: "failed",
        timestamp: 1_760_000_010,
        error_codes: &[131047],
        reply_id: Some(&reply_id),
    };
    s.record_status(tenant, &failed, TTL).await.unwrap();
    s.reserve(&format!("pair:{tenant}:{c}"), Rate { per_second: 1.0, burst: 1 }).await.unwrap();
    s.claim(&ClaimKey::inbound(tenant, &in1), "in", TTL).await.unwrap();
    s.count_resend(tenant, &reply_id, TTL).await.unwrap();
    Footprint { conversation: c, reply_id }
}

/// Every key of the namespace with a printable dump of its value.
fn dump(t: &TestStore) -> Vec<(String, String)> {
    let mut con = redis::Client::open(redis_url()).unwrap().get_connection().unwrap();
    t.keys()
        .into_iter()
        .map(|key| {
            let kind: String = redis::cmd("TYPE").arg(&key).query(&mut con).unwrap();
            let cmd = match kind.as_str() {
                "string" => redis::cmd("GET").arg(&key).clone(),
                "list" => redis::cmd("LRANGE").arg(&key).arg(0).arg(-1).clone(),
                "hash" => redis::cmd("HGETALL").arg(&key).clone(),
                "zset" => redis::cmd("ZRANGE").arg(&key).arg(0).arg(-1).clone(),
                "set" => redis::cmd("SMEMBERS").arg(&key).clone(),
                "stream" => redis::cmd("XRANGE").arg(&key).arg("-").arg("+").clone(),
                other => panic!("unexpected type {other}"),
            };
            let value: redis::Value = cmd.query(&mut con).unwrap();
            (key, format!("{value:?}"))
        })
        .collect()
}

#[tokio::test]
async fn export_holds_what_the_conversation_produced() {
    let t = TestStore::new().await;
    let s = &t.store;
    let f = populate(s, "t1", "x").await;
    s.restrict("t1", &f.conversation, true).await.unwrap();
    let e = s.export_subject("t1", &f.conversation).await.unwrap();
    assert_eq!(e.subject_ref, f.conversation);
    let texts: Vec<&str> = e.context.iter().map(|c| c.content.as_str()).collect();
    assert_eq!(texts, vec!["first words x", "assistant answer x"]);
    assert_eq!(e.pending.len(), 1);
    assert!(
        matches!(&e.pending[0].content, switchboard_domain::InboundContent::Text { body } if body == "pending words x")
    );
    assert!(e.unpublished.is_empty());
    assert_eq!(e.sent_jobs.len(), 1);
    assert_eq!(e.messages.len(), 1);
    assert_eq!((e.messages[0].state.as_str(), e.messages[0].reply_id.as_deref()), ("answered", Some("rp_x")));
    assert!(e.messages[0].expires_in_ms > 0);
    assert_eq!(e.deliveries.len(), 1);
    let d = &e.deliveries[0];
    assert_eq!((d.reply_id.as_str(), d.part, d.state.as_str()), ("rp_x", 0, "sent"));
    let status = d.status.as_ref().unwrap();
    assert_eq!((status.status.as_str(), status.error_codes.clone()), ("failed", vec![131047]));
    assert_eq!(d.message_ref.as_deref(), Some(message_ref(&format!("wamid.OUT1-{NUMBER}-x")).as_str()));
    assert!(e.restricted_since_ms.is_some() && e.erased_at_ms.is_none());
    assert_eq!(e.last_inbound_at, Some(1_760_000_005));
    assert!(e.turn_in_progress); // the test never released the lease
    assert!(e.storage.iter().any(|k| k.key.contains(":ctx:") && k.expires_in_ms > 0));
    assert!(e.storage.iter().any(|k| k.key.contains(":status:t1:")));
    assert!(e.storage.iter().any(|k| k.key.contains(":restricted:") && k.expires_in_ms == -1));
    let json = serde_json::to_string(&e).unwrap();
    assert!(json.contains("assistant answer x") && json.contains(NUMBER));
}

#[tokio::test]
async fn erase_leaves_no_trace_but_the_marker_and_spares_others() {
    let t = TestStore::new().await;
    let s = &t.store;
    let f = populate(s, "t1", "gone").await;
    let other = populate(s, "t2", "kept").await; // same number, other tenant
    let before = dump(&t);
    assert!(before.iter().any(|(_, v)| v.contains("gone")));

    let report = s.erase_subject("t1", &f.conversation, TTL).await.unwrap();
    assert_eq!((report.context_entries, report.pending_messages, report.delivery_statuses), (2, 1, 1));
    for kind in ["ctx", "conv", "msg", "claim", "sent", "job", "resends", "status", "rate"] {
        assert!(report.deleted_keys.get(kind).copied().unwrap_or(0) > 0, "{kind}: {report:?}");
    }
    assert!(!report.restricted);

    let after = dump(&t);
    for (key, value) in &after {
        if key.starts_with(&t.key("erased:")) {
            assert_eq!(key, &t.key(&format!("erased:{{t1:{}}}", f.conversation)));
            continue;
        }
        assert!(!key.contains(&f.conversation), "{key} left behind");
        assert!(!value.contains("gone") && !value.contains(&f.reply_id), "{key} still holds the user's data");
        assert!(key.contains("t2") || key.contains(&other.conversation), "{key} is not the other tenant's");
    }
    // The other tenant's user is untouched.
    assert_eq!(after.len(), before.iter().filter(|(k, _)| k.contains("t2")).count() + 1);
    assert_eq!(s.export_subject("t2", &other.conversation).await.unwrap().context.len(), 2);
    assert!(s.is_erased("t1", &f.conversation).await.unwrap());
    assert!(!s.is_erased("t2", &other.conversation).await.unwrap());
    let marker = t.pttl(&t.key(&format!("erased:{{t1:{}}}", f.conversation)));
    assert!(marker > 0 && marker <= 60_000);
    // Idempotent.
    let again = s.erase_subject("t1", &f.conversation, TTL).await.unwrap();
    assert!(again.deleted_keys.is_empty() && again.context_entries == 0);
}

#[tokio::test]
async fn restriction_survives_erasure_and_block_does_both() {
    let t = TestStore::new().await;
    let s = &t.store;
    let f = populate(s, "t1", "r").await;
    let c = &f.conversation;
    assert!(!s.is_restricted("t1", c).await.unwrap());
    assert!(s.restrict("t1", c, true).await.unwrap());
    assert!(!s.restrict("t1", c, true).await.unwrap()); // already on: since unchanged
    assert_eq!(t.pttl(&t.key(&format!("restricted:{{t1:{c}}}"))), -1);
    assert!(s.erase_subject("t1", c, TTL).await.unwrap().restricted);
    assert!(s.is_restricted("t1", c).await.unwrap());
    assert!(s.restrict("t1", c, false).await.unwrap());
    assert!(!s.restrict("t1", c, false).await.unwrap());
    assert!(!s.is_restricted("t1", c).await.unwrap());

    let g = populate(s, "t1", "child").await; // same number and tenant: same conversation
    assert_eq!(&g.conversation, c);
    let report = s.block_subject("t1", c, TTL).await.unwrap();
    assert!(report.restricted && report.context_entries == 2);
    let left: Vec<String> = t.keys();
    assert_eq!(left.len(), 2, "{left:?}"); // the restriction and erasure markers
    assert!(s.export_subject("t1", c).await.unwrap().restricted_since_ms.is_some());
}

#[tokio::test]
async fn rectify_edits_or_removes_one_entry() {
    let t = TestStore::new().await;
    let s = &t.store;
    let f = populate(s, "t1", "fix").await;
    let c = &f.conversation;
    let user_id = format!("wamid.IN1-{NUMBER}-fix");
    assert!(s.rectify_context_entry("t1", c, &user_id, Some("corrected \"words\" é".into())).await.unwrap());
    let window = s.context("t1", c).await.unwrap();
    assert_eq!(window[0].content, "corrected \"words\" é");
    assert_eq!((window[0].id.as_str(), window[0].role, window[0].at), (user_id.as_str(), ChatRole::User, 1));
    // By message ref, removal.
    assert!(s.rectify_context_entry("t1", c, &message_ref(&f.reply_id), None).await.unwrap());
    assert_eq!(s.context("t1", c).await.unwrap().len(), 1);
    assert!(!s.rectify_context_entry("t1", c, "rp_missing", None).await.unwrap());
    assert!(!s.rectify_context_entry("t2", c, &user_id, None).await.unwrap()); // other tenant
    let ttl = t.pttl(&t.key(&format!("ctx:{{t1:{c}}}")));
    assert!(ttl > 0 && ttl <= 60_000, "{ttl}");
    assert!(s.forget_context("t1", c).await.unwrap());
    assert!(s.context("t1", c).await.unwrap().is_empty());
}

#[tokio::test]
async fn audit_log_is_per_tenant_and_trimmed_by_age() {
    let t = TestStore::new().await;
    let s = &t.store;
    let record = |action: &str| AuditRecord {
        at_ms: switchboard_domain::now_ms(),
        actor: "operator".into(),
        action: action.into(),
        subject_ref: Some("c1".into()),
        detail: "keys=3".into(),
    };
    s.audit("t1", &record("export"), TTL).await.unwrap();
    s.audit("t1", &record("erase"), TTL).await.unwrap();
    s.audit("t2", &record("restrict"), TTL).await.unwrap();
    let log = s.audit_log("t1", 0, TTL, 100).await.unwrap();
    assert_eq!(log.iter().map(|r| r.action.as_str()).collect::<Vec<_>>(), vec!["export", "erase"]);
    assert_eq!(s.audit_log("t1", 0, TTL, 1).await.unwrap().len(), 1);
    assert!(s.audit_log("t1", switchboard_domain::now_ms() + 60_000, TTL, 100).await.unwrap().is_empty());
    assert!(s.audit_log("t9", 0, TTL, 100).await.unwrap().is_empty());
    let ttl = t.pttl(&t.key("audit:t1"));
    assert!(ttl > 0 && ttl <= 60_000, "{ttl}");

    // A short retention: the record is gone once it is older.
    let short = Duration::from_millis(300);
    s.audit("t3", &record("block"), short).await.unwrap();
    assert_eq!(s.audit_log("t3", 0, short, 100).await.unwrap().len(), 1);
    poll_until(Duration::from_secs(5), || async {
        s.audit_log("t3", 0, short, 100).await.unwrap().is_empty().then_some(())
    })
    .await;
}
