use std::sync::Arc;
use std::time::Duration;

use switchboard_store::{ClaimKey, ClaimOutcome};

use crate::helpers::{poll_until, TestStore};

const LEASE: Duration = Duration::from_secs(30);
const DONE_TTL: Duration = Duration::from_secs(60);

#[tokio::test]
async fn acquire_then_busy_then_done_for_everyone() {
    let t = TestStore::new().await;
    let s = &t.store;
    let key = ClaimKey::inbound("t1", "wamid.A");

    assert_eq!(s.claim_state(&key).await.unwrap(), None);
    assert_eq!(s.claim(&key, "tok-a", LEASE).await.unwrap(), ClaimOutcome::Acquired);
    match s.claim(&key, "tok-b", LEASE).await.unwrap() {
        ClaimOutcome::Busy { ttl_ms } => assert!(ttl_ms > 0 && ttl_ms <= 30_000, "{ttl_ms}"),
        other => panic!("expected Busy, got {other:?}"),
    }
    // Re-entrant for the holder.
    assert_eq!(s.claim(&key, "tok-a", LEASE).await.unwrap(), ClaimOutcome::Acquired);
    assert!(matches!(s.claim_state(&key).await.unwrap(), Some(ClaimOutcome::Busy { .. })));

    assert!(s.complete(&key, "tok-a", "rp_1:sent", DONE_TTL).await.unwrap());
    let done = ClaimOutcome::Done("rp_1:sent".into());
    assert_eq!(s.claim(&key, "tok-b", LEASE).await.unwrap(), done);
    assert_eq!(s.claim(&key, "tok-a", LEASE).await.unwrap(), done);
    assert_eq!(s.claim_state(&key).await.unwrap(), Some(done.clone()));

    // The first fact stays; a late completion does not overwrite it.
    assert!(!s.complete(&key, "tok-b", "other", DONE_TTL).await.unwrap());
    assert_eq!(s.claim_state(&key).await.unwrap(), Some(done));
    let pttl = t.pttl(&t.key(&format!("claim:t1:in:{}", switchboard_domain::message_ref("wamid.A"))));
    assert!(pttl > 30_000 && pttl <= 60_000, "{pttl}");
}

#[tokio::test]
async fn expired_lease_lets_a_second_claimant_in() {
    let t = TestStore::new().await;
    let s = &t.store;
    let key = ClaimKey::send("t1", "rp_9", 0);

    assert_eq!(s.claim(&key, "slow", Duration::from_millis(200)).await.unwrap(), ClaimOutcome::Acquired);
    poll_until(Duration::from_secs(5), || async {
        (s.claim(&key, "fast", LEASE).await.unwrap() == ClaimOutcome::Acquired).then_some(())
    })
    .await;
    assert!(!s.renew(&key, "slow", LEASE).await.unwrap());
    // The slow worker finished anyway: the fact is recorded, but it learns it lost the lease.
    assert!(!s.complete(&key, "slow", "slow-result", DONE_TTL).await.unwrap());
    assert_eq!(s.claim_state(&key).await.unwrap(), Some(ClaimOutcome::Done("slow-result".into())));
    assert!(!s.complete(&key, "fast", "fast-result", DONE_TTL).await.unwrap());
}

#[tokio::test]
async fn renew_keeps_the_lease_until_lost() {
    let t = TestStore::new().await;
    let s = &t.store;
    let key = ClaimKey::inbound("t1", "wamid.R");
    let raw = t.key(&format!("claim:t1:in:{}", switchboard_domain::message_ref("wamid.R")));

    assert_eq!(s.claim(&key, "a", Duration::from_millis(300)).await.unwrap(), ClaimOutcome::Acquired);
    assert!(s.renew(&key, "a", LEASE).await.unwrap());
    assert!(t.pttl(&raw) > 1_000);
    assert!(!s.renew(&key, "b", LEASE).await.unwrap(), "not b's lease");

    // Let it lapse: renewing after expiry fails.
    assert!(s.renew(&key, "a", Duration::from_millis(150)).await.unwrap());
    poll_until(Duration::from_secs(5), || async { s.claim_state(&key).await.unwrap().is_none().then_some(()) }).await;
    assert!(!s.renew(&key, "a", LEASE).await.unwrap());
    assert_eq!(s.claim_state(&key).await.unwrap(), None, "renew must not resurrect");

    // Lost to someone else.
    assert_eq!(s.claim(&key, "b", LEASE).await.unwrap(), ClaimOutcome::Acquired);
    assert!(!s.renew(&key, "a", LEASE).await.unwrap());
}

#[tokio::test]
async fn release_only_by_the_holder() {
    let t = TestStore::new().await;
    let s = &t.store;
    let key = ClaimKey::inbound("t1", "wamid.L");

    assert_eq!(s.claim(&key, "a", LEASE).await.unwrap(), ClaimOutcome::Acquired);
    assert!(!s.release(&key, "b").await.unwrap());
    assert!(s.release(&key, "a").await.unwrap());
    assert_eq!(s.claim_state(&key).await.unwrap(), None);
    assert!(!s.release(&key, "a").await.unwrap());

    assert_eq!(s.claim(&key, "b", LEASE).await.unwrap(), ClaimOutcome::Acquired);
    assert!(s.complete(&key, "b", "ok", DONE_TTL).await.unwrap());
    assert!(!s.release(&key, "b").await.unwrap(), "a done value is never released");
    assert_eq!(s.claim_state(&key).await.unwrap(), Some(ClaimOutcome::Done("ok".into())));
}

#[tokio::test]
async fn send_parts_are_independent_claims() {
    let t = TestStore::new().await;
    let s = &t.store;
    let p0 = ClaimKey::send("t1", "rp_2", 0);
    let p1 = ClaimKey::send("t1", "rp_2", 1);
    assert_eq!(s.claim(&p0, "a", LEASE).await.unwrap(), ClaimOutcome::Acquired);
    assert_eq!(s.claim(&p1, "b", LEASE).await.unwrap(), ClaimOutcome::Acquired);
    assert_eq!(t.keys(), vec![t.key("claim:t1:send:rp_2:0"), t.key("claim:t1:send:rp_2:1")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_claims_one_winner() {
    let t = TestStore::new().await;
    let key = ClaimKey::inbound("t1", "wamid.RACE");
    let barrier = Arc::new(tokio::sync::Barrier::new(50));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..50 {
        let (store, key, barrier) = (t.store.clone(), key.clone(), barrier.clone());
        tasks.spawn(async move {
            barrier.wait().await;
            store.claim(&key, &format!("tok-{i}"), LEASE).await.unwrap()
        });
    }
    let outcomes = tasks.join_all().await;
    let acquired = outcomes.iter().filter(|o| **o == ClaimOutcome::Acquired).count();
    let busy = outcomes.iter().filter(|o| matches!(o, ClaimOutcome::Busy { .. })).count();
    assert_eq!((acquired, busy), (1, 49));
}
