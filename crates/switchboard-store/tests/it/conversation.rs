//! Sequencing state: pending order, idempotent enqueue, the fenced turn commit, recovery.

use std::time::Duration;

use switchboard_domain::{ChatEntry, ChatRole, InboundContent, InboundEvent, OutboundJob, ReplyKind, UserRef};
use switchboard_store::{
    lease::{Acquired, Lease},
    ClaimKey, MessageState,
};

use crate::helpers::TestStore;

const TTL: Duration = Duration::from_secs(60);

fn event(wamid: &str, timestamp: i64, received_at_ms: i64) -> InboundEvent {
    InboundEvent {
        tenant_id: "t1".into(),
        phone_number_id: "200".into(),
        wamid: wamid.into(),
        from: UserRef { wa_id: Some("15550000000".into()), user_id: None },
        conversation: "c1".into(),
        timestamp,
        received_at_ms,
        content: InboundContent::Text { body: format!("text of {wamid}") },
        profile_name: None,
        trace: Default::default(),
    }
}

fn job(wamids: &[&str]) -> OutboundJob {
    OutboundJob {
        tenant_id: "t1".into(),
        phone_number_id: "200".into(),
        reply_id: format!("rp_{}", wamids.join("_")),
        to: UserRef::default(),
        conversation: "c1".into(),
        in_reply_to: wamids.last().unwrap().to_string(),
        wamids: wamids.iter().map(|w| w.to_string()).collect(),
        kind: ReplyKind::Assistant,
        body: "answer".into(),
        user_timestamp: 0,
        created_at_ms: 0,
        last_received_at_ms: 0,
        trace: Default::default(),
    }
}

async fn lease(t: &TestStore, lease_ms: u64) -> Lease {
    match Lease::acquire(&t.store, ClaimKey::conversation("t1", "c1"), Duration::from_millis(lease_ms), Duration::ZERO)
        .await
        .unwrap()
    {
        Acquired::Lease(l) => l,
        _ => panic!("lease should be free"),
    }
}

#[tokio::test]
async fn pending_messages_come_out_by_user_timestamp_then_arrival_and_enqueue_is_idempotent() {
    let t = TestStore::new().await;
    let s = &t.store;
    // Arrival order differs from the users' timestamps; equal timestamps keep arrival order.
    s.enqueue_message(&event("w3", 1_760_000_002, 1_760_000_002_500), TTL).await.unwrap();
    s.enqueue_message(&event("w1", 1_760_000_001, 1_760_000_003_000), TTL).await.unwrap();
    s.enqueue_message(&event("w2a", 1_760_000_002, 1_760_000_002_100), TTL).await.unwrap();
    // A duplicate delivery of w1 (same wamid, later arrival) changes nothing.
    assert_eq!(
        s.enqueue_message(&event("w1", 1_760_000_001, 1_760_000_009_000), TTL).await.unwrap(),
        MessageState::Open
    );
    let order: Vec<String> = s.pending_messages("t1", "c1").await.unwrap().into_iter().map(|e| e.wamid).collect();
    assert_eq!(order, vec!["w1", "w2a", "w3"]);
}

#[tokio::test]
async fn a_commit_is_fenced_by_the_lease_and_a_turn_survives_until_published() {
    let t = TestStore::new().await;
    let s = &t.store;
    for (i, w) in ["w1", "w2"].iter().enumerate() {
        s.enqueue_message(&event(w, 1_760_000_000 + i as i64, 1_760_000_000_000), TTL).await.unwrap();
    }
    let old = lease(&t, 150).await;
    let stale_token = old.token().to_string();
    drop(old); // stops renewing: the lease expires as if its holder had stalled
    let fresh = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Acquired::Lease(l) =
                Lease::acquire(s, ClaimKey::conversation("t1", "c1"), Duration::from_secs(10), Duration::ZERO)
                    .await
                    .unwrap()
            {
                return l;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the expired lease is taken over");

    let turn = job(&["w1", "w2"]);
    let reply = ChatEntry { id: turn.reply_id.clone(), role: ChatRole::Assistant, content: "answer".into(), at: 0 };
    // The stalled holder may not commit anything.
    assert!(!s.commit_turn(&stale_token, &turn, Some(&reply), TTL, TTL).await.unwrap());
    assert_eq!(s.pending_messages("t1", "c1").await.unwrap().len(), 2);
    assert!(s.unpublished_turns("t1", "c1").await.unwrap().is_empty());
    assert!(s.context("t1", "c1").await.unwrap().is_empty());

    // The holder commits: messages leave the pending set, the turn waits for publication.
    assert!(s.commit_turn(fresh.token(), &turn, Some(&reply), TTL, TTL).await.unwrap());
    assert!(s.pending_messages("t1", "c1").await.unwrap().is_empty());
    let wamids = vec!["w1".to_string(), "w2".to_string()];
    let committed = MessageState::Committed(turn.reply_id.clone());
    assert_eq!(s.message_states("t1", "c1", &wamids).await.unwrap(), vec![committed.clone(), committed]);
    assert_eq!(s.unpublished_turns("t1", "c1").await.unwrap(), vec![turn.clone()]);
    assert_eq!(s.context("t1", "c1").await.unwrap(), vec![reply]);

    // Published: answered, and a redelivery is recognised.
    s.finish_turn(&turn, TTL).await.unwrap();
    assert!(s.unpublished_turns("t1", "c1").await.unwrap().is_empty());
    let answered = MessageState::Answered(turn.reply_id.clone());
    assert_eq!(s.message_states("t1", "c1", &wamids).await.unwrap(), vec![answered.clone(), answered.clone()]);
    assert_eq!(s.enqueue_message(&event("w1", 1_760_000_000, 1), TTL).await.unwrap(), answered);
    assert!(s.pending_messages("t1", "c1").await.unwrap().is_empty());
    fresh.release().await.unwrap();
    assert!(!s.conversation_leased("t1", "c1").await.unwrap());
}

#[tokio::test]
async fn replies_leave_in_commit_order_and_a_stuck_one_can_be_skipped() {
    let t = TestStore::new().await;
    let s = &t.store;
    let holder = lease(&t, 10_000).await;
    let turns: Vec<OutboundJob> = ["w1", "w2", "w3"].iter().map(|w| job(&[w])).collect();
    for turn in &turns {
        assert!(s.commit_turn(holder.token(), turn, None, TTL, TTL).await.unwrap());
    }
    let may_go = |i: usize| s.reply_may_go("t1", "c1", &turns[i].reply_id);
    assert_eq!((may_go(0).await.unwrap(), may_go(1).await.unwrap(), may_go(2).await.unwrap()), (true, false, false));
    assert!(s.reply_may_go("t1", "c1", "rp_not_a_turn").await.unwrap(), "not in line: goes at once");
    assert!(s.reply_may_go("t1", "other", &turns[1].reply_id).await.unwrap(), "other conversations are apart");

    s.reply_settled("t1", "c1", &turns[0].reply_id).await.unwrap();
    assert_eq!((may_go(1).await.unwrap(), may_go(2).await.unwrap()), (true, false));
    // The third gives up on the second (its job lost, say): it goes, the second stays unordered.
    assert_eq!(s.skip_replies_before("t1", "c1", &turns[2].reply_id).await.unwrap(), 1);
    assert!(may_go(2).await.unwrap());
    assert!(may_go(1).await.unwrap(), "the skipped one is sent whenever it comes");
    assert!(may_go(0).await.unwrap(), "a settled one redelivered goes at once");

    // A later turn queues after the last one still in line, even after the line emptied.
    s.reply_settled("t1", "c1", &turns[2].reply_id).await.unwrap();
    let later = [job(&["w4"]), job(&["w5"])];
    for turn in &later {
        assert!(s.commit_turn(holder.token(), turn, None, TTL, TTL).await.unwrap());
    }
    assert!(s.reply_may_go("t1", "c1", &later[0].reply_id).await.unwrap());
    assert!(!s.reply_may_go("t1", "c1", &later[1].reply_id).await.unwrap());
    holder.release().await.unwrap();
}
