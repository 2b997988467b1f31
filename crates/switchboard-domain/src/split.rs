//! Splitting long replies into WhatsApp-sized text messages.

/// WhatsApp's limit on `text.body` (REFERENCE §5.3). The counting unit is not documented, so a
/// part must fit in this many Unicode scalar values *and* this many UTF-16 code units.
pub const MAX_TEXT_CHARS: usize = 4096;

/// Splits `text` into parts of at most `max` characters (and `max` UTF-16 units), preferring
/// paragraph boundaries, then line breaks, then sentence ends, then spaces; a part is cut inside
/// a word only when a single word is longer than `max`. Parts are trimmed; empty parts dropped.
/// Text that already fits comes back as one part, untouched apart from trimming.
pub fn split_message(text: &str, max: usize) -> Vec<String> {
    assert!(max >= 16, "a part limit below 16 characters is not useful");
    let mut parts = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        if fits(rest, max) {
            parts.push(rest.to_string());
            break;
        }
        let window_end = prefix_end(rest, max);
        let window = &rest[..window_end];
        let cut = best_cut(window).unwrap_or(window_end);
        let (head, tail) = rest.split_at(cut);
        let head = head.trim_end();
        if !head.is_empty() {
            parts.push(head.to_string());
        }
        rest = tail.trim_start();
    }
    parts
}

fn fits(s: &str, max: usize) -> bool {
    s.chars().count() <= max && s.encode_utf16().count() <= max
}

/// Byte index of the end of the longest prefix that fits both limits.
fn prefix_end(s: &str, max: usize) -> usize {
    let (mut chars, mut units) = (0usize, 0usize);
    for (idx, c) in s.char_indices() {
        chars += 1;
        units += c.len_utf16();
        if chars > max || units > max {
            return idx;
        }
    }
    s.len()
}

/// The best place to cut inside `window` (a byte index just after the separator), looking for
/// the strongest boundary that still leaves a reasonably long part (at least a third of it).
fn best_cut(window: &str) -> Option<usize> {
    let min = window.len() / 3;
    let acceptable = |i: usize| i > min;
    let paragraph = window.rfind("\n\n").map(|i| i + 2);
    let line = window.rfind('\n').map(|i| i + 1);
    let sentence = [". ", "! ", "? ", "\u{3002}", "\u{ff01}", "\u{ff1f}"]
        .iter()
        .filter_map(|sep| window.rfind(sep).map(|i| i + sep.len()))
        .max();
    let space = window.rfind(char::is_whitespace).map(|i| i + 1);
    [paragraph, line, sentence, space].into_iter().flatten().find(|&i| acceptable(i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_one_part() {
        assert_eq!(split_message("  hello  ", 4096), vec!["hello"]);
        assert!(split_message("   ", 4096).is_empty());
    }

    #[test]
    fn five_thousand_chars_become_two_parts_on_a_sentence_boundary() {
        let sentence = "This is a sentence of moderate length. ";
        let text = sentence.repeat(5000 / sentence.len() + 1);
        let parts = split_message(&text, MAX_TEXT_CHARS);
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|p| p.chars().count() <= MAX_TEXT_CHARS));
        assert!(parts[0].ends_with('.'));
        assert_eq!(parts.join(" "), text.trim());
    }

    #[test]
    fn paragraphs_are_preferred_over_sentences() {
        let para = format!("{}\n\n", "Word. ".repeat(30));
        let text = para.repeat(4);
        let parts = split_message(&text, 400);
        assert!(parts.len() >= 2);
        for p in &parts {
            assert!(p.ends_with('.'), "part should end at a paragraph: {p:?}");
        }
    }

    #[test]
    fn a_giant_word_is_cut_hard_and_nothing_is_lost() {
        let text = "x".repeat(10_000);
        let parts = split_message(&text, 4096);
        assert_eq!(parts.iter().map(|p| p.len()).collect::<Vec<_>>(), vec![4096, 4096, 1808]);
    }

    #[test]
    fn utf16_limit_is_respected_for_astral_characters() {
        let text = "😀".repeat(3000); // 3000 chars, 6000 UTF-16 units
        let parts = split_message(&text, 4096);
        assert!(parts.len() == 2);
        assert!(parts.iter().all(|p| p.encode_utf16().count() <= 4096));
        assert_eq!(parts.concat(), text);
    }
}
