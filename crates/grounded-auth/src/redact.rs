//! Redaction of secrets and personal data from text before it is logged
//! (the prompt log, audit details).
//!
//! It replaces what it finds with a marker: `[secret]` for keys, tokens,
//! passwords and long random-looking strings, `[email]`, `[card]` for
//! payment card numbers that pass the Luhn check, and `[phone]` for phone
//! numbers written internationally (`+44 20 7946 0958`) or in common
//! national forms with separators (`(555) 123-4567`, `555-123-4567`,
//! `030 1234567`, `06 12 34 56 78`).
//!
//! It is a filter of patterns, not a guarantee: a phone number written as
//! one run of digits without `+`, a name, or an address is not found, and
//! a long identifier that happens to look random (a commit hash) is
//! redacted. Patterns err on the side of keeping plain numbers (years,
//! versions, counts) intact.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::{Captures, Regex};

/// One pattern, its marker, and a check that a match really is one.
struct Rule {
    pattern: Regex,
    marker: &'static str,
    /// Whether a match (its `value` group, or the whole match) is to be
    /// replaced; what is before the `value` group is kept.
    accept: fn(&str) -> bool,
}

static RULES: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    let rule = |pattern: &str, marker: &'static str, accept: fn(&str) -> bool| Rule {
        pattern: Regex::new(pattern).expect("redaction pattern compiles"),
        marker,
        accept,
    };
    let any: fn(&str) -> bool = |_| true;

    // Order matters: specific secrets before the generic high-entropy runs,
    // and those before cards and phones, whose digit patterns would
    // otherwise eat parts of keys; international phones before cards, so
    // `+4915112345678` is not taken for a card after its `+`.
    vec![
        rule(
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
            "[secret]",
            any,
        ),
        rule(
            r"(?i)\bbearer\s+(?P<value>[A-Za-z0-9._~+/-]{16,}=*)",
            "[secret]",
            token_like,
        ),
        rule(
            r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*",
            "[secret]",
            any,
        ),
        rule(r"\bgnd_[A-Za-z0-9_]{20,}", "[secret]", any),
        rule(r"\bsk-[A-Za-z0-9_-]{20,}", "[secret]", any),
        rule(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b", "[secret]", any),
        rule(
            r"\b(?:gh[pousr]|github_pat)_[A-Za-z0-9_]{30,}",
            "[secret]",
            any,
        ),
        rule(r"\bxox[abprs]-[A-Za-z0-9-]{10,}", "[secret]", any),
        rule(
            concat!(
                r"(?i)\b(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key",
                r#"|client[_-]?secret)["']?\s*[:=]\s*["']?(?P<value>[^\s"',;\[][^\s"',;]{3,})"#,
            ),
            "[secret]",
            any,
        ),
        rule(
            r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b",
            "[email]",
            any,
        ),
        rule(r"\b[0-9a-fA-F]{32,}\b", "[secret]", hex_like),
        rule(r"[A-Za-z0-9+/_-]{32,}={0,2}", "[secret]", high_entropy),
        rule(
            r"\+\(?\d[\d ().-]{6,20}\d\b",
            "[phone]",
            international_phone,
        ),
        rule(r"\b\d(?:[ -]?\d){12,18}\b", "[card]", card_number),
        rule(
            r"(?:\(\d{3}\) ?|\b\d{3}[.-])\d{3}[.-]\d{4}\b",
            "[phone]",
            any,
        ),
        rule(
            r"\b0\d{1,4}(?:[ /.-]\d{2,8}){1,4}\b",
            "[phone]",
            national_phone,
        ),
    ]
});

/// `text` with secrets and personal data replaced by markers; borrowed
/// when nothing was found.
pub fn redact(text: &str) -> Cow<'_, str> {
    RULES
        .iter()
        .fold(Cow::Borrowed(text), |text, rule| rule.apply(text))
}

impl Rule {
    fn apply<'a>(&self, text: Cow<'a, str>) -> Cow<'a, str> {
        match text {
            Cow::Borrowed(text) => self.replace(text),
            Cow::Owned(text) => {
                let replaced = match self.replace(&text) {
                    Cow::Owned(replaced) => Some(replaced),
                    Cow::Borrowed(_) => None,
                };
                Cow::Owned(replaced.unwrap_or(text))
            }
        }
    }

    /// Replaces the accepted matches; borrowed when none was.
    fn replace<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = String::new();
        let mut copied = 0;
        let mut changed = false;

        for captures in self.pattern.captures_iter(text) {
            let Some((keep_until, end)) = self.accepted(&captures) else {
                continue;
            };
            out.push_str(&text[copied..keep_until]);
            out.push_str(self.marker);
            copied = end;
            changed = true;
        }

        if !changed {
            return Cow::Borrowed(text);
        }
        out.push_str(&text[copied..]);
        Cow::Owned(out)
    }

    /// Where the replaced part of an accepted match starts and ends.
    fn accepted(&self, captures: &Captures<'_>) -> Option<(usize, usize)> {
        let whole = captures.get(0)?;
        let value = captures.name("value").unwrap_or(whole);
        (self.accept)(value.as_str()).then_some((value.start(), value.end()))
    }
}

/// A bearer value with something besides letters, as tokens have; keeps
/// prose like "bearer authentication".
fn token_like(value: &str) -> bool {
    value.bytes().any(|b| !b.is_ascii_alphabetic())
}

/// A hex run with both digits and letters (not a long number, not a word).
fn hex_like(run: &str) -> bool {
    run.bytes().any(|b| b.is_ascii_digit()) && run.bytes().any(|b| b.is_ascii_alphabetic())
}

/// A run of base64 characters that looks random: it mixes cases and
/// digits, is about as varied as random text, and changes between
/// uppercase, lowercase, digits and symbols about as often. Identifiers and
/// paths (`getElementById_2_querySelectorAll`, `/Users/Jane/Project2024`)
/// stay in one class for whole words, so they change class at most about
/// 0.42 of the time, where random base62 changes 0.65 of the time. With
/// these thresholds, about 2 % of random 32-character secrets and 1 % of
/// 43-character ones slip through; the specific patterns above catch the
/// common kinds of key whatever their entropy.
fn high_entropy(run: &str) -> bool {
    let has = |test: fn(&u8) -> bool| run.as_bytes().iter().any(test);
    let mixed =
        has(u8::is_ascii_uppercase) && has(u8::is_ascii_lowercase) && has(u8::is_ascii_digit);

    mixed && shannon_entropy(run) >= 4.0 && class_changes(run) >= 0.43
}

/// The share of neighbouring characters of different classes.
fn class_changes(run: &str) -> f64 {
    let class = |b: u8| match b {
        b'A'..=b'Z' => 0,
        b'a'..=b'z' => 1,
        b'0'..=b'9' => 2,
        _ => 3,
    };
    let bytes = run.as_bytes();
    if bytes.len() < 2 {
        return 0.0;
    }
    let changes = bytes
        .windows(2)
        .filter(|pair| class(pair[0]) != class(pair[1]))
        .count();
    changes as f64 / (bytes.len() - 1) as f64
}

/// Bits per character of `text`'s own character frequencies.
fn shannon_entropy(text: &str) -> f64 {
    let mut counts = [0usize; 256];
    for byte in text.bytes() {
        counts[usize::from(byte)] += 1;
    }
    let len = text.len() as f64;
    counts
        .iter()
        .filter(|count| **count > 0)
        .map(|count| {
            let p = *count as f64 / len;
            -p * p.log2()
        })
        .sum()
}

/// 13 to 19 digits that pass the Luhn check and start like a card number
/// (2 to 6: Mastercard, Amex, Diners, Visa, Discover, ...), which leaves out
/// millisecond timestamps and most other long numbers.
fn card_number(candidate: &str) -> bool {
    let digits: Vec<u32> = candidate.chars().filter_map(|c| c.to_digit(10)).collect();
    let card_like_start = matches!(digits.first(), Some(2..=6));

    (13..=19).contains(&digits.len()) && card_like_start && luhn(&digits)
}

fn luhn(digits: &[u32]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| match (i % 2 == 1, d * 2) {
            (true, doubled) if doubled > 9 => doubled - 9,
            (true, doubled) => doubled,
            (false, _) => d,
        })
        .sum();
    sum.is_multiple_of(10)
}

/// E.164 allows at most 15 digits; fewer than 8 is no full number.
fn international_phone(candidate: &str) -> bool {
    (8..=15).contains(&digit_count(candidate))
}

/// National numbers with a trunk 0 have 9 to 12 digits; this keeps dates
/// like `01.02.2024` (8 digits).
fn national_phone(candidate: &str) -> bool {
    (9..=12).contains(&digit_count(candidate))
}

fn digit_count(text: &str) -> usize {
    text.bytes().filter(u8::is_ascii_digit).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_redacted(input: &str, expected: &str) {
        assert_eq!(redact(input), expected, "input: {input:?}");
    }

    fn assert_kept(input: &str) {
        assert!(
            matches!(redact(input), Cow::Borrowed(_)),
            "changed: {input:?} -> {:?}",
            redact(input)
        );
    }

    #[test]
    fn emails() {
        assert_redacted(
            "write to jane.doe+rag@example.co.uk today",
            "write to [email] today",
        );
        assert_redacted("a@b.io,c@d.org", "[email],[email]");
    }

    #[test]
    fn phone_numbers() {
        assert_redacted("call +44 20 7946 0958 now", "call [phone] now");
        assert_redacted("call +1 (555) 123-4567.", "call [phone].");
        assert_redacted("+4915112345678", "[phone]");
        assert_redacted("tel:+33612345678", "tel:[phone]");
        assert_redacted("US: (555) 123-4567", "US: [phone]");
        assert_redacted("US: 555-123-4567", "US: [phone]");
        assert_redacted("FR: 06 12 34 56 78", "FR: [phone]");
        assert_redacted("DE: 030 1234567", "DE: [phone]");
        assert_redacted("UK: 020 7946 0958", "UK: [phone]");
    }

    #[test]
    fn card_numbers() {
        assert_redacted("card 4111 1111 1111 1111 ok", "card [card] ok");
        assert_redacted("card 4111-1111-1111-1111", "card [card]");
        assert_redacted("amex 378282246310005", "amex [card]");
        assert_redacted("mc 5555555555554444.", "mc [card].");
    }

    #[test]
    fn numbers_failing_luhn_or_too_short_are_not_cards() {
        assert_kept("order 4111 1111 1111 1112");
        assert_kept("id 411111111111");
        assert_kept("at 1700000000000 ms");
    }

    #[test]
    fn our_api_keys() {
        let generated = crate::key::generate_key();
        let text = format!("key={} end", generated.key.expose_secret());

        assert_redacted(&text, "key=[secret] end");
        assert_redacted(
            &format!("use {}", generated.key.expose_secret()),
            "use [secret]",
        );
    }

    #[test]
    fn provider_keys_and_tokens() {
        assert_redacted("sk-proj-abcdefghijklmnopqrstuvwx123", "[secret]");
        assert_redacted("AWS AKIAIOSFODNN7EXAMPLE here", "AWS [secret] here");
        assert_redacted("ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789", "[secret]");
        assert_redacted(
            "Authorization: Bearer abc.def-123_456~xyz",
            "Authorization: Bearer [secret]",
        );
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLWJ5dGVz";
        assert_redacted(&format!("token {jwt}."), "token [secret].");
        assert_redacted("password: hunter22", "password: [secret]");
        assert_redacted("API_KEY=\"s3cr3tvalue\"", "API_KEY=\"[secret]\"");
    }

    #[test]
    fn private_key_blocks() {
        let pem = concat!(
            "-----BEGIN PRIVATE KEY-----\n",
            "MIIEvQIBADANBg\nkqhkiG9w0BAQEF\n",
            "-----END PRIVATE KEY-----",
        );

        assert_redacted(&format!("here:\n{pem}\nthere"), "here:\n[secret]\nthere");
    }

    #[test]
    fn long_random_strings() {
        assert_redacted(
            "sha 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            "sha [secret]",
        );
        assert_redacted(
            "blob dGhpcyBpcyBhIHNlY3JldCB0b2tlbiB2YWx1ZSAxMjM0NTY3OA==",
            "blob [secret]",
        );
    }

    #[test]
    fn ordinary_text_is_kept() {
        for text in [
            "In 2024 we shipped 3 releases.",
            "grounded 0.1.0 needs rust 1.95 and qdrant 1.20.3",
            "version 10.0.19041.1 of the OS",
            "on 2024-01-15 at 12:30, and on 01.02.2024",
            "password protection and bearer authentication are words",
            "internationalization",
            "see /Users/Jane/Documents/Project2024/src/main.rs",
            "ThisIsAVeryLongCamelCaseIdentifierName2",
            "getElementById_2_querySelectorAll_addEventListener",
            "XMLHttpRequestUploadProgressEvent2024x",
            "the answer is 42, or 1234567",
            "192.168.1.10 and port 8080",
            "task-abcdefghijklmnopqrstuvwxyz",
            "",
        ] {
            assert_kept(text);
        }
    }

    #[test]
    fn several_kinds_in_one_text() {
        let text = "mail bob@example.com, call +33 6 12 34 56 78, card 5555 5555 5555 4444";

        assert_redacted(text, "mail [email], call [phone], card [card]");
    }

    #[test]
    fn redaction_is_idempotent() {
        let text = "password=hunter22 bob@example.com sk-abcdefghijklmnopqrstuvwxyz";
        let once = redact(text).into_owned();

        assert_eq!(redact(&once), once);
    }

    #[test]
    fn luhn_check() {
        let digits = |s: &str| s.chars().filter_map(|c| c.to_digit(10)).collect::<Vec<_>>();

        assert!(luhn(&digits("79927398713")));
        assert!(!luhn(&digits("79927398710")));
    }
}
