use switchboard_whatsapp::{classify, ErrorClass};

use crate::{fixture_json, fixture_stems};

/// Every file of `graph/errors/`: (file stem, expected code, expected class). A new fixture
/// must be added here, or `every_error_fixture_is_classified` fails.
const EXPECTED: &[(&str, i64, ErrorClass)] = {
    use ErrorClass::*;
    &[
        ("0_auth", 0, TokenInvalid),
        ("100_invalid_param_generic", 100, Permanent),
        ("100_invalid_param_text_too_long", 100, Permanent),
        ("10_permission", 10, Permanent),
        ("130429_throughput", 130429, Throughput),
        ("130429_throughput_http429", 130429, Throughput),
        ("131000_generic", 131000, Transient),
        ("131009_param_value", 131009, Permanent),
        ("131016_service_unavailable", 131016, Transient),
        ("131026_undeliverable", 131026, Permanent),
        ("131030_not_in_allowed_list", 131030, Permanent),
        ("131047_reengagement", 131047, WindowClosed),
        ("131048_spam_rate", 131048, Permanent),
        ("131051_unsupported_type", 131051, Permanent),
        ("131052_media_download", 131052, Permanent),
        ("131053_media_upload", 131053, Transient),
        ("131056_pair_rate", 131056, PairRate),
        ("131056_pair_rate_http429", 131056, PairRate),
        ("131057_maintenance", 131057, Transient),
        ("133010_not_registered", 133010, Permanent),
        ("190_token_expired", 190, TokenInvalid),
        ("190_token_invalid", 190, TokenInvalid),
        ("368_policy_block", 368, Permanent),
        ("470_legacy_reengagement", 470, WindowClosed),
        ("4_app_rate_limit", 4, Throughput),
        ("80007_waba_rate_limit", 80007, Throughput),
    ]
};

#[test]
fn every_error_fixture_is_classified() {
    let stems = fixture_stems("graph/errors", "json");
    let listed: Vec<&str> = EXPECTED.iter().map(|(stem, ..)| *stem).collect();
    for stem in &stems {
        assert!(listed.contains(&stem.as_str()), "fixture {stem} missing from EXPECTED");
    }
    for (stem, code, class) in EXPECTED {
        assert!(stems.iter().any(|s| s == stem), "EXPECTED lists missing fixture {stem}");
        let fixture = fixture_json(&format!("graph/errors/{stem}.json"));
        let status = u16::try_from(fixture["_http_status"].as_u64().unwrap()).unwrap();
        assert_eq!(fixture["body"]["error"]["code"].as_i64(), Some(*code), "{stem}");
        let got = classify(Some(status), Some(*code));
        assert_eq!(got, *class, "{stem}");
        // The webhook path (no HTTP status) agrees for every known code.
        assert_eq!(classify(None, Some(*code)), *class, "{stem} without status");
    }
}
