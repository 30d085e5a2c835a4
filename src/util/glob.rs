//! Name and value patterns, one grammar everywhere they appear (fault targets, guard
//! selectors, the operator policy, header checks): `*` matches any run of characters
//! (`/` and newlines included), `?` exactly one, every other character itself. Text is
//! matched as bytes, so `?` is one byte: the same as one character for what is matched here
//! (process, container and label names, and header values, which loadgen reads only when
//! they are ASCII).
//!
//! Compiled by globset into an automaton, so matching takes time linear in the text
//! whatever the pattern: a hand-written backtracking matcher took time growing with the
//! text's length to the power of the pattern's stars, and a header check such as
//! `*a*a*a*a*a*a*b` against a long header from the server tied a worker up.

use globset::{GlobBuilder, GlobMatcher};

/// A compiled pattern. Build it once (the plan holds it) and match it many times.
#[derive(Debug, Clone)]
pub struct Glob {
    pattern: String,
    matcher: GlobMatcher,
}

impl Glob {
    /// Compiles `pattern`. Every character but `*` and `?` is literal, so any text
    /// compiles; the `Result` only guards against globset refusing what it was given.
    pub fn new(pattern: &str) -> Result<Glob, String> {
        let matcher = GlobBuilder::new(&to_globset(pattern))
            .literal_separator(false)
            .backslash_escape(true)
            .case_insensitive(false)
            .build()
            .map_err(|e| format!("pattern {pattern:?}: {e}"))?
            .compile_matcher();
        Ok(Glob {
            pattern: pattern.to_string(),
            matcher,
        })
    }

    pub fn is_match(&self, text: &str) -> bool {
        self.matcher.is_match(text)
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }
}

impl PartialEq for Glob {
    fn eq(&self, other: &Glob) -> bool {
        self.pattern == other.pattern
    }
}

impl std::fmt::Display for Glob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.pattern)
    }
}

/// Whether `text` matches `pattern`, compiling it for this one use: for names matched a
/// handful of times (fault targets, the policy), not for anything on a request's path.
pub(crate) fn glob_match(pattern: &str, text: &str) -> bool {
    Glob::new(pattern).is_ok_and(|glob| glob.is_match(text))
}

/// Our grammar in globset's: a run of `*` is one `*` (globset gives `**` a meaning of its
/// own), `?` stays, and every character globset treats specially is escaped.
fn to_globset(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut previous_star = false;
    for c in pattern.chars() {
        match c {
            '*' if previous_star => continue,
            '*' | '?' => out.push(c),
            '[' | ']' | '{' | '}' | '\\' | '!' | ',' | '-' | '^' => {
                out.push('\\');
                out.push(c);
            }
            _ => out.push(c),
        }
        previous_star = c == '*';
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stars_and_question_marks_match_and_the_rest_is_literal() {
        assert!(glob_match("backend-*", "backend-2"));
        assert!(glob_match("b?ck*", "backend"));
        assert!(!glob_match("backend-*", "postgres"));
        assert!(glob_match("postgres", "postgres"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("?", ""));
        assert!(
            glob_match("a**b", "a/x/y\nb"),
            "a star crosses / and newlines"
        );
        for literal in ["[ab]", "{a,b}", "a\\b", "!x", "x-y", "^z"] {
            assert!(glob_match(literal, literal), "{literal} is literal text");
        }
        assert!(!glob_match("[ab]", "a"), "no character classes");
        assert!(!glob_match("{a,b}", "a"), "no alternatives");
        assert!(!glob_match("Backend", "backend"), "case matters");
    }

    /// The pattern the issue named, against a long text that never matches: a
    /// backtracking matcher explores about C(n, 6) splits here (~10^15 for n = 4000);
    /// an automaton reads the text once. The test finishes only if matching is linear.
    #[test]
    fn many_stars_against_a_long_text_is_linear() {
        let glob = Glob::new("*a*a*a*a*a*a*b").unwrap();
        let text = "a".repeat(4000);
        assert!(!glob.is_match(&text));
        assert!(glob.is_match(&format!("{text}b")));
    }
}
