//! Text for the terminal: what targets, APIs and scripts said may carry terminal escapes,
//! and a terminal that went away must not panic a run that is still recovering its faults.

use std::io::Write;

/// Writes to stdout, best effort: a terminal that went away (EIO after a hang-up) or a
/// closed pipe must not panic a run that is still recovering its faults (`print!` would).
pub(crate) fn say(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out
        .write_all(printable(text).as_bytes())
        .and_then(|_| out.flush());
}

/// `say` for stderr.
pub(crate) fn warn(text: &str) {
    let _ = std::io::stderr()
        .lock()
        .write_all(printable(text).as_bytes());
}

/// `text` without control characters but newlines and tabs: what targets, APIs and scripts
/// said (an error body, a script's stderr) may carry terminal escapes, and is printed live.
pub(crate) fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() && c != '\n' && c != '\t';
    if text.chars().any(unsafe_char) {
        std::borrow::Cow::Owned(text.chars().filter(|c| !unsafe_char(*c)).collect())
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

#[cfg(test)]
mod printable_tests {
    use super::printable;

    #[test]
    fn control_characters_are_dropped_but_lines_and_tabs_kept() {
        assert!(matches!(
            printable("plain\ttext\n"),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(
            printable("\u{1b}[2J\u{1b}]0;pwned\u{7}red\rline\u{9b}31m\n"),
            "[2J]0;pwnedredline31m\n"
        );
    }
}
