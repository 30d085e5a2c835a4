//! Failure samples: what a failed request looked like, so a failure count comes with its
//! reason — the status and the start of the body, the transport's error text, the value a
//! check expected and the one it found, the redirect target refused.
//!
//! Per step and error class, at most `MAX_SAMPLES` distinct samples (distinct by status and
//! the first `KEY_BYTES` bytes of the detail), each detail at most `EXCERPT_BYTES` bytes.
//! A worker keeps the samples it has seen for the whole run and hands each new one over
//! once, with the second's report: never a message per request, and nothing is built for a
//! failure that looks like one already kept.

use serde::{Deserialize, Serialize};

use super::error_class::ErrorClass;

/// Distinct samples kept per step and class.
pub(crate) const MAX_SAMPLES: usize = 5;
/// What makes two samples the same: their status and this many bytes of their detail.
pub(crate) const KEY_BYTES: usize = 80;
/// The longest detail kept, in bytes (cut at a character boundary, "…" when cut).
pub(crate) const EXCERPT_BYTES: usize = 256;

/// One failed request, as the report shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureSample {
    /// The HTTP status, when a response came.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The body's start, the error's text, or a check's expected and found value, with the
    /// run's secret values redacted.
    pub detail: String,
    /// The run second it was first seen in (the request's intended start).
    pub second: u64,
}

impl FailureSample {
    fn same_as(&self, status: Option<u16>, detail: &str) -> bool {
        self.status == status && key(&self.detail) == key(detail)
    }
}

/// A step's samples: per class, the first `MAX_SAMPLES` distinct ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Samples {
    by_class: Vec<(ErrorClass, Vec<FailureSample>)>,
}

impl Samples {
    pub fn is_empty(&self) -> bool {
        self.by_class.is_empty()
    }

    /// Whether a failure of `class` with this status and detail would add nothing: the
    /// class is full, or a sample like it is kept.
    pub fn has_room_for(&self, class: ErrorClass, status: Option<u16>, detail: &str) -> bool {
        match self.by_class.iter().find(|(c, _)| *c == class) {
            None => true,
            Some((_, kept)) => {
                kept.len() < MAX_SAMPLES && !kept.iter().any(|s| s.same_as(status, detail))
            }
        }
    }

    /// Whether `class` has room for another distinct sample.
    pub fn has_room_for_class(&self, class: ErrorClass) -> bool {
        self.by_class
            .iter()
            .find(|(c, _)| *c == class)
            .is_none_or(|(_, kept)| kept.len() < MAX_SAMPLES)
    }

    /// Keeps `sample` when there is room for it; whether it was kept.
    pub fn add(&mut self, class: ErrorClass, sample: FailureSample) -> bool {
        if !self.has_room_for(class, sample.status, &sample.detail) {
            return false;
        }
        match self.by_class.iter_mut().find(|(c, _)| *c == class) {
            Some((_, kept)) => kept.push(sample),
            None => self.by_class.push((class, vec![sample])),
        }
        true
    }

    /// Another set's samples, kept while there is room (the earliest second first).
    pub fn merge(&mut self, other: &Samples) {
        for (class, samples) in &other.by_class {
            for sample in samples {
                self.add(*class, sample.clone());
            }
        }
    }

    /// Every class with its samples, in the order the classes are listed.
    pub fn iter(&self) -> impl Iterator<Item = (ErrorClass, &[FailureSample])> {
        let mut classes: Vec<&(ErrorClass, Vec<FailureSample>)> = self.by_class.iter().collect();
        classes.sort_by_key(|(class, _)| class.index());
        classes
            .into_iter()
            .map(|(class, samples)| (*class, samples.as_slice()))
    }
}

/// The part of a detail that tells samples apart.
fn key(detail: &str) -> &[u8] {
    &detail.as_bytes()[..detail.len().min(KEY_BYTES)]
}

/// At most `EXCERPT_BYTES` of `text`, cut at a character boundary, "…" when cut.
pub(crate) fn excerpt(text: &str) -> String {
    let start = prefix(text, EXCERPT_BYTES);
    if start.len() == text.len() {
        text.to_string()
    } else {
        format!("{start}…")
    }
}

/// The longest start of `text` of at most `bytes` bytes ending at a character boundary.
pub(crate) fn prefix(text: &str, bytes: usize) -> &str {
    let mut end = bytes.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// `text` with every secret value replaced by `[redacted]`.
pub(crate) fn redact(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for secret in secrets {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), "[redacted]");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(status: Option<u16>, detail: &str) -> FailureSample {
        FailureSample {
            status,
            detail: detail.into(),
            second: 0,
        }
    }

    #[test]
    fn at_most_five_distinct_per_class() {
        let mut samples = Samples::default();
        assert!(samples.add(ErrorClass::Http5xx, sample(Some(503), "busy")));
        assert!(!samples.add(ErrorClass::Http5xx, sample(Some(503), "busy")));
        // Same detail, another status: distinct.
        assert!(samples.add(ErrorClass::Http5xx, sample(Some(502), "busy")));
        // Details that differ only after the key's bytes are the same sample.
        let long = "x".repeat(KEY_BYTES);
        assert!(samples.add(ErrorClass::Http5xx, sample(Some(500), &format!("{long}a"))));
        assert!(!samples.add(ErrorClass::Http5xx, sample(Some(500), &format!("{long}b"))));
        for n in 0..10 {
            samples.add(ErrorClass::Http5xx, sample(Some(500), &n.to_string()));
        }
        let kept: Vec<_> = samples.iter().collect();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].1.len(), MAX_SAMPLES);
        // Another class has room of its own.
        assert!(samples.add(ErrorClass::Reset, sample(None, "connection reset")));
    }

    #[test]
    fn excerpts_are_bounded_and_secrets_redacted() {
        let text = "é".repeat(300);
        let cut = excerpt(&text);
        assert!(cut.len() <= EXCERPT_BYTES + '…'.len_utf8());
        assert!(cut.ends_with('…'));
        assert_eq!(
            redact("token=s3cr3t-value;", &["s3cr3t-value".into()]),
            "token=[redacted];"
        );
    }
}
