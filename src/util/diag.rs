//! Scenario diagnostics: every problem found in a file, each rendered as
//! `file:line:col: message` followed by the offending line and a caret under the span.

use std::fmt;
use std::ops::Range;

/// One problem at a byte range of the scenario source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub span: Range<usize>,
    pub message: String,
}

/// All problems of one scenario file, in source order, with what is needed to render them.
#[derive(Debug, Clone)]
pub struct Diagnostics {
    file: Box<str>,
    source: Box<str>,
    items: Vec<Diagnostic>,
    /// Lines holding a secret value: never quoted in a message.
    secret_lines: std::collections::BTreeSet<usize>,
    /// Spans of values already reported as the wrong type (`lenient.rs`): what later
    /// checks would say about them would be a second error for one mistake.
    poisoned: Vec<Range<usize>>,
    /// Every push, said or silenced: a part that found a mistake (even one already
    /// reported) tells by `len`, and builds nothing from it.
    pushed: usize,
}

impl Diagnostics {
    pub fn new(file: impl Into<String>, source: impl Into<String>) -> Self {
        Diagnostics {
            file: file.into().into_boxed_str(),
            source: source.into().into_boxed_str(),
            secret_lines: Default::default(),
            items: Vec::new(),
            poisoned: Vec::new(),
            pushed: 0,
        }
    }

    pub fn push(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.pushed += 1;
        if self.is_poisoned(&span) {
            return;
        }
        self.items.push(Diagnostic {
            span,
            message: message.into(),
        });
    }

    /// Says nothing more about the value at `span`: its one error is reported. (Anything
    /// within it, or at it, is silent from now on.)
    pub fn poison(&mut self, span: Range<usize>) {
        self.poisoned.push(span);
    }

    /// Whether a diagnostic at `span` would repeat one already given.
    fn is_poisoned(&self, span: &Range<usize>) -> bool {
        self.poisoned
            .iter()
            .any(|p| p.start <= span.start && span.end <= p.end)
    }

    /// Whether the value at `span` was the wrong type (reported, and set aside).
    pub fn was_reported(&self, span: &Range<usize>) -> bool {
        self.is_poisoned(span)
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The mistakes found so far, those silenced as repeats included, so a caller can tell
    /// whether its own part found one (`len() > before`).
    pub fn len(&self) -> usize {
        self.pushed
    }

    pub fn items(&self) -> &[Diagnostic] {
        &self.items
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.source.len());
        let before = &self.source[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before[line_start..].chars().count() + 1;
        (line, col)
    }

    /// `file:line:col: message` for each diagnostic, without snippets (for tests and logs).
    pub fn headlines(&self) -> Vec<String> {
        self.sorted()
            .map(|d| {
                let (line, col) = self.line_col(d.span.start);
                format!("{}:{line}:{col}: {}", self.file, d.message)
            })
            .collect()
    }

    fn sorted(&self) -> impl Iterator<Item = &Diagnostic> {
        let mut items: Vec<&Diagnostic> = self.items.iter().collect();
        items.sort_by_key(|d| (d.span.start, d.span.end));
        items.dedup_by(|a, b| a == b);
        items.into_iter()
    }
}

impl Diagnostics {
    /// Never quotes the lines these byte ranges (secret values) are on.
    pub fn hide(&mut self, spans: &[std::ops::Range<usize>]) {
        for span in spans {
            let (first, _) = self.line_col(span.start);
            let (last, _) = self.line_col(span.end.saturating_sub(1).max(span.start));
            self.secret_lines.extend(first..=last);
        }
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for diagnostic in self.sorted() {
            let (line, col) = self.line_col(diagnostic.span.start);
            writeln!(
                f,
                "{}:{line}:{col}: error: {}",
                self.file, diagnostic.message
            )?;
            let text = self.source.lines().nth(line - 1).unwrap_or("");
            let gutter = line.to_string().len();
            writeln!(f, "{:gutter$} |", "")?;
            if self.secret_lines.contains(&line) {
                writeln!(f, "{line} | (this line holds a secret: not shown)")?;
                continue;
            }
            writeln!(f, "{line} | {text}")?;
            let span_chars = self.source[diagnostic.span.start.min(self.source.len())
                ..diagnostic.span.end.min(self.source.len())]
                .lines()
                .next()
                .map_or(1, |s| s.chars().count().max(1));
            let available = text.chars().count().saturating_sub(col - 1).max(1);
            writeln!(
                f,
                "{:gutter$} | {}{}",
                "",
                " ".repeat(col - 1),
                "^".repeat(span_chars.min(available))
            )?;
        }
        let count = self.sorted().count();
        write!(
            f,
            "{count} error{} in {}",
            if count == 1 { "" } else { "s" },
            self.file
        )
    }
}

impl std::error::Error for Diagnostics {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_file_line_col_and_caret() {
        let source = "a = 1\nthink = \"3sx\"\n";
        let mut diagnostics = Diagnostics::new("s.toml", source);
        let start = source.find("\"3sx\"").unwrap();
        diagnostics.push(start..start + 5, "bad duration");
        let text = diagnostics.to_string();
        assert!(
            text.starts_with("s.toml:2:9: error: bad duration\n"),
            "{text}"
        );
        assert!(text.contains("2 | think = \"3sx\""), "{text}");
        assert!(text.contains("        ^^^^^"), "{text}");
        assert!(text.ends_with("1 error in s.toml"), "{text}");
    }
}
