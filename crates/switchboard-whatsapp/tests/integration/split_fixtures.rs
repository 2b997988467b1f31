use switchboard_domain::{InboundContent, Pseudonymizer};
use switchboard_whatsapp::{parse_webhook, split_batch, SplitBatch};

use crate::{fixture_bytes, fixture_stems};

const PNID: &str = "200000000000002";
const TENANT: &str = "tenant-a";
const USER: &str = "15551234567";
const BSUID: &str = "US.13491208655302741918";
const RECEIVED_AT_MS: i64 = 1_760_000_999_000;

fn pseudo() -> Pseudonymizer {
    Pseudonymizer::new("fixture-key")
}

fn split(stem: &str) -> SplitBatch {
    let payload =
        parse_webhook(&fixture_bytes(&format!("webhook/{stem}.json"))).unwrap_or_else(|e| panic!("{stem}: {e}"));
    let route = |id: &str| (id == PNID).then(|| TENANT.to_owned());
    split_batch(&payload, route, &pseudo(), RECEIVED_AT_MS)
}

fn wamid(n: &str) -> String {
    format!("wamid.HBgLMTU1NTEyMzQ1NjcVAgASGBQzQUZBS0UwMDAwMDAwMDAwMDAw{n}AA=")
}

fn text(body: &str) -> InboundContent {
    InboundContent::Text { body: body.into() }
}

fn unsupported(kind: &str) -> InboundContent {
    InboundContent::Unsupported { message_type: kind.into() }
}

fn no_reply(kind: &str) -> InboundContent {
    InboundContent::NoReply { message_type: kind.into() }
}

/// The expected single inbound content of a one-message fixture, `None` for the others.
fn single_content(stem: &str) -> Option<InboundContent> {
    Some(match stem {
        "text" => text("Hi, what are your opening hours?"),
        "text_reply_context" => text("Yes, that one"),
        "text_forwarded" => text("fwd"),
        "text_unicode" => text("Ol\u{e1}! Pre\u{e7}o? \u{1f62e} \u{e4}\u{f6}\u{e5}"),
        "referral_ctwa" => text("Hi from the ad"),
        "bsuid_no_phone" => text("Hi (username user)"),
        "timestamp_millis" => text("ms timestamp edge case"),
        "interactive_button_reply" => text("Talk to a human"),
        "interactive_list_reply" => text("Pro plan"),
        "button_template_quick_reply" => text("Stop promotions"),
        "image" => unsupported("image"),
        "voice" | "audio_file" => unsupported("audio"),
        "video" => unsupported("video"),
        "document" => unsupported("document"),
        "sticker" => unsupported("sticker"),
        "location" => unsupported("location"),
        "contacts" => unsupported("contacts"),
        "order" => unsupported("order"),
        "unsupported" => unsupported("unsupported"),
        "interactive_with_value_error" => unsupported("interactive"),
        "reaction" | "reaction_removed" => no_reply("reaction"),
        "system_user_changed_number" => no_reply("system"),
        "edit_text" => no_reply("edit"),
        "revoke" => no_reply("revoke"),
        _ => return None,
    })
}

/// The expected single status of a status fixture: (status, error codes).
fn single_status(stem: &str) -> Option<(&'static str, Vec<i64>)> {
    Some(match stem {
        "status_sent" | "status_sent_conversation_int_expiry" => ("sent", vec![]),
        "status_delivered" | "status_delivered_legacy_cbp" => ("delivered", vec![]),
        "status_read" => ("read", vec![]),
        "status_played" => ("played", vec![]),
        "status_failed_131047" => ("failed", vec![131047]),
        "status_failed_131026" => ("failed", vec![131026]),
        "status_failed_minimal_legacy" => ("failed", vec![131014]),
        _ => return None,
    })
}

#[test]
fn every_webhook_fixture_splits_as_expected() {
    let user_conversation = pseudo().conversation(TENANT, USER);
    for stem in fixture_stems("webhook", "json") {
        let batch = split(&stem);
        assert!(batch.unknown_phone_number_ids.is_empty(), "{stem}");
        assert_eq!(batch.skipped_messages, 0, "{stem}");

        // Identities never leak into conversation keys.
        for conversation in batch
            .inbound
            .iter()
            .map(|e| e.conversation.as_str())
            .chain(batch.statuses.iter().filter_map(|s| s.conversation.as_deref()))
        {
            assert_eq!(conversation.len(), 32, "{stem}");
            assert!(conversation.bytes().all(|b| b.is_ascii_hexdigit()), "{stem}");
            assert!(!conversation.contains("1555") && !conversation.contains("US."), "{stem}");
        }
        for (position, event) in batch.inbound.iter().enumerate() {
            assert_eq!((event.tenant_id.as_str(), event.phone_number_id.as_str()), (TENANT, PNID));
            assert_eq!(event.received_at_ms, RECEIVED_AT_MS + position as i64, "{stem}: the batch's order kept");
            assert!(event.wamid.starts_with("wamid."), "{stem}");
        }

        if let Some(content) = single_content(&stem) {
            assert_eq!(batch.inbound.len(), 1, "{stem}");
            assert!(batch.statuses.is_empty(), "{stem}");
            let event = &batch.inbound[0];
            assert_eq!(event.content, content, "{stem}");
            assert_eq!(event.timestamp, 1_760_000_000, "{stem}");
            if stem != "bsuid_no_phone" {
                assert_eq!(event.from.wa_id.as_deref(), Some(USER), "{stem}");
                assert_eq!(event.conversation, user_conversation, "{stem}");
            }
            let value_errors: &[i64] = if stem == "interactive_with_value_error" { &[131000] } else { &[] };
            assert_eq!(batch.value_error_codes, value_errors, "{stem}");
        } else if let Some((status, codes)) = single_status(&stem) {
            assert!(batch.inbound.is_empty(), "{stem}");
            assert_eq!(batch.statuses.len(), 1, "{stem}");
            let event = &batch.statuses[0];
            assert_eq!((event.status.as_str(), &event.error_codes), (status, &codes), "{stem}");
            assert!(event.wamid.starts_with("wamid."), "{stem}");
            assert!(event.timestamp >= 1_760_000_100, "{stem}");
            assert_eq!(event.conversation.as_deref(), Some(user_conversation.as_str()), "{stem}");
            assert_eq!(event.reply_id, None, "{stem}");
            assert_eq!((event.tenant_id.as_str(), event.received_at_ms), (TENANT, RECEIVED_AT_MS));
        } else {
            match stem.as_str() {
                "batch_mixed" => {
                    let wamids: Vec<_> = batch.inbound.iter().map(|e| e.wamid.clone()).collect();
                    assert_eq!(wamids, vec![wamid("0040"), wamid("0041")]);
                    assert_eq!(batch.inbound[1].timestamp, 1_760_000_001);
                    assert_eq!(batch.statuses.len(), 1);
                    assert_eq!(batch.statuses[0].status, "delivered");
                }
                "duplicate_in_one_post" => {
                    assert_eq!(batch.inbound.len(), 1);
                    assert_eq!(batch.inbound[0].wamid, wamid("0042"));
                }
                "non_messages_field" => {
                    assert!(batch.is_empty());
                    assert_eq!(batch.ignored_changes, 1);
                }
                "value_errors_130429" => {
                    assert!(batch.is_empty());
                    assert_eq!(batch.value_error_codes, vec![130429]);
                }
                other => panic!("no expectation for webhook fixture {other}: add one"),
            }
        }
        if stem != "non_messages_field" {
            assert_eq!(batch.ignored_changes, 0, "{stem}");
        }
    }
}

#[test]
fn text_fixture_event_in_detail() {
    let batch = split("text");
    let event = &batch.inbound[0];
    assert_eq!(event.wamid, wamid("0001"));
    assert_eq!(event.timestamp, 1_760_000_000);
    assert_eq!(event.from.wa_id.as_deref(), Some(USER));
    assert_eq!(event.from.user_id, None);
    assert_eq!(event.conversation, pseudo().conversation(TENANT, USER));
    // The ingress keeps it only for tenants with `remember_profile_name`.
    assert_eq!(event.profile_name.as_ref().map(|n| n.0.as_str()), Some("Ana Test"));
}

#[test]
fn bsuid_user_has_user_id_and_no_phone() {
    let event = &split("bsuid_no_phone").inbound[0];
    assert_eq!(event.from.wa_id, None);
    assert_eq!(event.from.user_id.as_deref(), Some(BSUID));
    assert_eq!(event.conversation, pseudo().conversation(TENANT, BSUID));
}

#[test]
fn millisecond_timestamps_become_seconds() {
    assert_eq!(split("timestamp_millis").inbound[0].timestamp, 1_760_000_000);
}

#[test]
fn unknown_phone_number_ids_produce_nothing_and_are_listed_once() {
    for stem in fixture_stems("webhook", "json") {
        let payload = parse_webhook(&fixture_bytes(&format!("webhook/{stem}.json"))).unwrap();
        let batch = split_batch(&payload, |_| None, &pseudo(), RECEIVED_AT_MS);
        assert!(batch.is_empty(), "{stem}");
        assert!(batch.value_error_codes.is_empty(), "{stem}");
        if stem == "non_messages_field" {
            assert!(batch.unknown_phone_number_ids.is_empty());
        } else {
            // batch_mixed has two changes for the same number: listed once.
            assert_eq!(batch.unknown_phone_number_ids, vec![PNID.to_owned()], "{stem}");
        }
    }
}

#[test]
fn decoded_unicode_form_parses_to_the_same_events() {
    let decoded = parse_webhook(&fixture_bytes("webhook/text_unicode_decoded_form.bin")).unwrap();
    let route = |id: &str| (id == PNID).then(|| TENANT.to_owned());
    let batch = split_batch(&decoded, route, &pseudo(), RECEIVED_AT_MS);
    assert_eq!(batch, split("text_unicode"));
}
