use std::time::Duration;

use switchboard_domain::{ChatEntry, ChatRole, CONTEXT_WINDOW_MESSAGES};

use crate::helpers::TestStore;

const TTL: Duration = Duration::from_secs(60);

fn entry(i: usize) -> ChatEntry {
    ChatEntry {
        id: format!("wamid.{i}"),
        role: if i % 2 == 0 { ChatRole::User } else { ChatRole::Assistant },
        content: format!("message {i} with \"quotes\", unicode é and\nnewlines"),
        at: 1_760_000_000 + i as i64,
    }
}

#[tokio::test]
async fn window_keeps_the_last_ten_in_order() {
    let t = TestStore::new().await;
    let s = &t.store;
    let mut last = Vec::new();
    for i in 0..15 {
        last = s.append_context("t1", "conv1", &entry(i), TTL).await.unwrap();
        assert_eq!(last.len(), (i + 1).min(CONTEXT_WINDOW_MESSAGES));
    }
    let expected: Vec<ChatEntry> = (5..15).map(entry).collect();
    assert_eq!(last, expected);
    assert_eq!(s.context("t1", "conv1").await.unwrap(), expected);
    assert_eq!(t.keys(), vec![t.key("ctx:{t1:conv1}")]);
}

#[tokio::test]
async fn replaying_an_entry_adds_nothing() {
    let t = TestStore::new().await;
    let s = &t.store;
    for i in 0..3 {
        s.append_context("t1", "c", &entry(i), TTL).await.unwrap();
    }
    let before = s.context("t1", "c").await.unwrap();
    // Same id, even with different content: no second copy.
    let mut replay = entry(1);
    replay.content = "edited".into();
    let after = s.append_context("t1", "c", &replay, TTL).await.unwrap();
    assert_eq!(after, before);
    assert_eq!(s.append_context("t1", "c", &entry(2), TTL).await.unwrap(), before);
    assert_eq!(s.context("t1", "c").await.unwrap().len(), 3);
}

#[tokio::test]
async fn window_has_a_ttl() {
    let t = TestStore::new().await;
    t.store.append_context("t1", "c", &entry(0), TTL).await.unwrap();
    let pttl = t.pttl(&t.key("ctx:{t1:c}"));
    assert!(pttl > 0 && pttl <= 60_000, "{pttl}");
    // Every append resets it.
    t.store.append_context("t1", "c", &entry(1), Duration::from_secs(600)).await.unwrap();
    assert!(t.pttl(&t.key("ctx:{t1:c}")) > 60_000);
}

#[tokio::test]
async fn conversations_are_separate_and_entries_findable() {
    let t = TestStore::new().await;
    let s = &t.store;
    s.append_context("t1", "a", &entry(1), TTL).await.unwrap();
    s.append_context("t1", "b", &entry(2), TTL).await.unwrap();
    s.append_context("t2", "a", &entry(3), TTL).await.unwrap();

    assert_eq!(s.context("t1", "a").await.unwrap(), vec![entry(1)]);
    assert_eq!(s.context("t1", "missing").await.unwrap(), vec![]);
    assert_eq!(s.find_context_entry("t1", "b", "wamid.2").await.unwrap(), Some(entry(2)));
    assert_eq!(s.find_context_entry("t1", "b", "wamid.1").await.unwrap(), None);
    assert_eq!(s.find_context_entry("t9", "z", "wamid.1").await.unwrap(), None);
}
