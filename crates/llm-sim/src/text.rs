//! Deterministic text helpers: the reply derived from a prompt, its split into streamed
//! tokens, word counts, stable hashes, embedding vectors and RFC 3339 timestamps.

use std::time::{SystemTime, UNIX_EPOCH};

/// Dimensions of every embedding vector.
pub const EMBEDDING_DIMS: usize = 8;

/// The reply to a prompt: `echo: <prompt>`. With `json` set (Ollama `format`, OpenAI
/// `response_format`), the same text wrapped as `{"reply":"echo: <prompt>"}`.
pub fn reply_for(prompt: &str, json: bool) -> String {
    let text = format!("echo: {prompt}");
    if json {
        serde_json::json!({ "reply": text }).to_string()
    } else {
        text
    }
}

/// Splits `text` into streaming tokens on whitespace boundaries, keeping the whitespace:
/// each token is a run of whitespace followed by a run of non-whitespace (the first token
/// has no leading whitespace unless the text starts with it; trailing whitespace stays on
/// the last token). Concatenating the tokens gives back `text` exactly.
pub fn tokenize(text: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut current = String::new();
    let mut prev_is_space = true;
    for ch in text.chars() {
        let is_space = ch.is_whitespace();
        if is_space && !prev_is_space && !current.is_empty() {
            tokens.push(std::mem::take(&mut current));
        }
        current.push(ch);
        prev_is_space = is_space;
    }
    if !current.is_empty() {
        tokens.push(current);
    }
    tokens
}

/// Keeps at most `limit` tokens (when a positive limit is given). True if any were dropped.
pub fn truncate_tokens(tokens: &mut Vec<String>, limit: Option<i64>) -> bool {
    match limit {
        Some(n) if n > 0 => {
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            if tokens.len() > n {
                tokens.truncate(n);
                true
            } else {
                false
            }
        }
        _ => false,
    }
}

/// Number of whitespace-separated words.
pub fn word_count(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// FNV-1a over `bytes`: a hash that stays the same across runs, platforms and Rust versions.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// One step of SplitMix64: a well-mixed 64-bit value from `x`.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Maps a 64-bit value to a float in `[0, 1)`.
pub fn unit_f64(x: u64) -> f64 {
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// A unit-length embedding of `text`, derived only from its bytes.
pub fn embedding(text: &str) -> Vec<f32> {
    let mut state = fnv1a(text.as_bytes());
    let mut v: Vec<f32> = (0..EMBEDDING_DIMS)
        .map(|_| {
            state = splitmix64(state);
            (unit_f64(state) * 2.0 - 1.0) as f32
        })
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > f32::EPSILON {
        for x in &mut v {
            *x /= norm;
        }
    }
    v
}

/// A fake `sha256:`-style hex digest (64 hex chars) derived from `name`.
pub fn digest_hex(name: &str) -> String {
    let mut state = fnv1a(name.as_bytes());
    (0..4)
        .map(|_| {
            state = splitmix64(state);
            format!("{state:016x}")
        })
        .collect()
}

/// Seconds since the Unix epoch.
pub fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Formats `t` as RFC 3339 in UTC with nanoseconds, e.g. `2024-05-01T12:00:00.123456789Z`
/// (the shape of Ollama's `created_at`).
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
        d.subsec_nanos()
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn tokens_concatenate_to_the_text() {
        for text in [
            "",
            "a",
            "echo: hello  world",
            " lead",
            "trail ",
            "a\nb\tc",
            "  ",
        ] {
            let tokens = tokenize(text);
            assert_eq!(tokens.concat(), text, "{text:?}");
            assert!(tokens.iter().all(|t| !t.is_empty()));
        }
        assert_eq!(tokenize("echo: hi there"), ["echo:", " hi", " there"]);
    }

    #[test]
    fn truncation_only_for_positive_limits() {
        let mut t = tokenize("a b c d");
        assert!(!truncate_tokens(&mut t, Some(-1)));
        assert!(!truncate_tokens(&mut t, None));
        assert!(truncate_tokens(&mut t, Some(2)));
        assert_eq!(t.concat(), "a b");
    }

    #[test]
    fn embeddings_are_stable_and_unit_length() {
        let a = embedding("hello");
        assert_eq!(a, embedding("hello"));
        assert_ne!(a, embedding("hello!"));
        let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
    }

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        let t = UNIX_EPOCH + Duration::new(1_709_210_096, 5);
        assert_eq!(rfc3339(t), "2024-02-29T12:34:56.000000005Z");
    }
}
