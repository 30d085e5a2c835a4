//! The house on layers (ARCHITECTURE.md, "Layers"): every `crate::`, `super::` and `self::`
//! path in non-test code under `src/` — `use` trees with braces and inline paths alike — is
//! held against the table below. A module may use the modules of any lower row, and those
//! listed before it in its own row; nothing else. Since the rows are a total order, an
//! allowed edge can never close a cycle. The parts directly under `src/chaos/` must not form
//! one either (`chaos/mod.rs`'s re-exports left out).
//!
//! What breaks the rules today is listed below as exemptions, each with the step that removes
//! it; a stale exemption fails the test too, so the lists only shrink.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One row per layer, lowest first. Names that are not modules yet are rooms kept for what
/// comes next: the rule for them holds the day they are added.
const LAYERS: &[(&str, &[&str])] = &[
    ("L0 shared vocabulary", &["util"]),
    ("L1 the plan: pure data", &["policy", "plan"]),
    ("L2 measurement", &["metrics", "http"]),
    // `puller`: the Prometheus puller, beside the verification runtime.
    ("L3 runtime", &["engine", "chaos", "puller", "verify"]),
    ("L4 platform adapters", &["platform"]),
    // `exporter`: the Prometheus exporter, beside the record.
    ("L5 the record", &["record", "exporter"]),
    ("L6 judging", &["judge"]),
    ("L7 rendering", &["output", "charts", "compare", "report"]),
    ("L8 scenario files to plans", &["scenario"]),
    // `wire`: the coordinator/agent wire, beside the run.
    ("L9 the composition root", &["run", "wire"]),
    ("L10 the command line", &["cli"]),
    // The facade: what the binary, the tests and examples may use; nothing inside uses it.
    ("L11 the facade", &["api"]),
];

/// Edges between top-level modules that break the table today, and who removes them.
const EXEMPT: &[(&str, &str, &str)] = &[];

/// Knots among the parts directly under `src/chaos/` (each a strongly connected set), and
/// who unties them.
const CHAOS_KNOTS: &[(&[&str], &str)] = &[];

/// A path found in a file: the module it is in, and the path it names (both from the crate
/// root, `super::` and `self::` resolved).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Reference {
    from: Vec<String>,
    to: Vec<String>,
}

/// The module a file under `src/` is: `a/b.rs` and `a/b/mod.rs` are `a::b`, `lib.rs` the root.
fn module_of(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = relative
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// `source` with comments, string and character literals blanked (their `crate::` is prose,
/// not an import). Lifetimes are kept: `'a` is not a character literal.
fn code_only(source: &str) -> String {
    let b = source.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    let blank = |out: &mut Vec<u8>, bytes: &[u8]| {
        out.extend(bytes.iter().map(|&c| if c == b'\n' { b'\n' } else { b' ' }))
    };
    while i < b.len() {
        let rest = &b[i..];
        if rest.starts_with(b"//") {
            let end = rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len());
            blank(&mut out, &rest[..end]);
            i += end;
        } else if rest.starts_with(b"/*") {
            let (mut depth, mut j) = (1, 2);
            while j < rest.len() && depth > 0 {
                if rest[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if rest[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                } else {
                    j += 1;
                }
            }
            blank(&mut out, &rest[..j]);
            i += j;
        } else if let Some(len) = raw_string(rest) {
            blank(&mut out, &rest[..len]);
            i += len;
        } else if rest[0] == b'"' || rest.starts_with(b"b\"") {
            let mut j = if rest[0] == b'"' { 1 } else { 2 };
            while j < rest.len() && rest[j] != b'"' {
                j += if rest[j] == b'\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(rest.len());
            blank(&mut out, &rest[..end]);
            i += end;
        } else if rest[0] == b'\'' {
            // '\n', '\'', '\u{1F600}', 'x' (one char of up to 4 bytes) — or a lifetime.
            let len = if rest.get(1) == Some(&b'\\') {
                rest[2..].iter().position(|&c| c == b'\'').map(|p| p + 3)
            } else {
                let width = std::str::from_utf8(&rest[1..rest.len().min(5)])
                    .or_else(|e| std::str::from_utf8(&rest[1..1 + e.valid_up_to()]))
                    .ok()
                    .and_then(|s| s.chars().next())
                    .map_or(1, char::len_utf8);
                (rest.get(1 + width) == Some(&b'\'')).then_some(width + 2)
            };
            match len {
                Some(len) => {
                    blank(&mut out, &rest[..len]);
                    i += len;
                }
                None => {
                    out.push(b'\'');
                    i += 1;
                }
            }
        } else {
            out.push(rest[0]);
            i += 1;
        }
    }
    String::from_utf8(out).expect("only ASCII blanks were written")
}

/// The length of a raw string literal (`r"…"`, `r#"…"#`, `br"…"`) at the start of `s`.
fn raw_string(s: &[u8]) -> Option<usize> {
    let start = if s.starts_with(b"br") {
        2
    } else if s.starts_with(b"r") {
        1
    } else {
        return None;
    };
    let hashes = s[start..].iter().take_while(|&&c| c == b'#').count();
    if s.get(start + hashes) != Some(&b'"') {
        return None;
    }
    let close: Vec<u8> = std::iter::once(b'"')
        .chain(std::iter::repeat_n(b'#', hashes))
        .collect();
    let body = start + hashes + 1;
    let end = s[body..].windows(close.len()).position(|w| w == close)?;
    Some(body + end + close.len())
}

/// `code` without the items under `#[cfg(test)]`: an inline `mod tests { … }`, a function,
/// an impl or a `use` — up to the end of its braces or its `;`.
fn without_test_items(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let item = &rest[at..];
        let end = item
            .char_indices()
            .find(|&(_, c)| c == '{' || c == ';')
            .map_or(item.len(), |(i, c)| {
                if c == ';' {
                    return i + 1;
                }
                let mut depth = 0;
                for (j, c) in item[i..].char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                return i + j + 1;
                            }
                        }
                        _ => {}
                    }
                }
                item.len()
            });
        out.extend(
            item[..end]
                .chars()
                .map(|c| if c == '\n' { '\n' } else { ' ' }),
        );
        rest = &item[end..];
    }
    out.push_str(rest);
    out
}

/// Every path of a `use` tree: `a::{b, c::{d, self}}` → `a::b`, `a::c::d`, `a::c`.
fn expand_use(tree: &str) -> Vec<String> {
    // Spaces only where they separate two words (`Plan as P`), none around `::`, `{`, `,`.
    let words: Vec<char> = tree
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .collect();
    let word = |c: Option<&char>| c.is_some_and(|c| c.is_alphanumeric() || *c == '_');
    let tree: String = words
        .iter()
        .enumerate()
        .filter(|&(i, c)| {
            *c != ' ' || (word(words.get(i.wrapping_sub(1))) && word(words.get(i + 1)))
        })
        .map(|(_, c)| *c)
        .collect();
    let Some(open) = tree.find('{') else {
        return vec![tree.split(" as ").next().unwrap_or_default().to_string()];
    };
    let prefix = &tree[..open];
    let inner = &tree[open + 1..tree.len() - 1];
    let (mut parts, mut depth, mut current) = (Vec::new(), 0, String::new());
    for c in inner.chars() {
        match c {
            ',' if depth == 0 => parts.push(std::mem::take(&mut current)),
            '{' => {
                depth += 1;
                current.push(c);
            }
            '}' => {
                depth -= 1;
                current.push(c);
            }
            _ => current.push(c),
        }
    }
    parts.push(current);
    parts
        .iter()
        .filter(|p| !p.is_empty())
        .flat_map(|p| expand_use(p))
        .map(|p| {
            if p == "self" {
                prefix.trim_end_matches("::").to_string()
            } else {
                format!("{prefix}{p}")
            }
        })
        .collect()
}

/// The paths `code` (already without comments, literals and test items) names, from the
/// module `module`: `use` trees and inline `crate::…`, `super::…`, `self::…` paths.
fn references(module: &[String], code: &str) -> Vec<Reference> {
    let mut paths = Vec::new();
    let mut rest = code;
    // `use` declarations (also `pub use`, `pub(crate) use`).
    let mut outside_uses = String::with_capacity(code.len());
    while let Some(at) = find_keyword(rest, "use") {
        outside_uses.push_str(&rest[..at]);
        let tail = &rest[at + 3..];
        let end = tail.find(';').unwrap_or(tail.len());
        paths.extend(expand_use(&tail[..end]));
        outside_uses.push_str(&" ".repeat(3 + end));
        rest = &tail[end..];
    }
    outside_uses.push_str(rest);
    // Inline paths.
    let bytes = outside_uses.as_bytes();
    for start in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(at) = outside_uses[from..].find(start) {
            let at = from + at;
            from = at + start.len();
            let before = at.checked_sub(1).map(|i| bytes[i]);
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':') {
                continue;
            }
            let end = outside_uses[at..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .map_or(outside_uses.len(), |e| at + e);
            paths.push(outside_uses[at..end].trim_end_matches(':').to_string());
        }
    }
    paths
        .into_iter()
        .filter_map(|path| resolve(module, &path))
        .map(|to| Reference {
            from: module.to_vec(),
            to,
        })
        .collect()
}

/// The start of the next `keyword` that stands alone (not part of a longer name).
fn find_keyword(text: &str, keyword: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut from = 0;
    while let Some(at) = text[from..].find(keyword) {
        let at = from + at;
        let before = at.checked_sub(1).map(|i| bytes[i]);
        let after = bytes.get(at + keyword.len()).copied();
        if !before.is_some_and(word) && after.is_some_and(|c| c.is_ascii_whitespace()) {
            return Some(at);
        }
        from = at + keyword.len();
    }
    None
}

/// `path` from the crate root, if it is a path into this crate.
fn resolve(module: &[String], path: &str) -> Option<Vec<String>> {
    let mut segments = path.split("::").filter(|s| !s.is_empty()).peekable();
    let mut at: Vec<String> = match segments.peek().copied() {
        Some("crate") => {
            segments.next();
            Vec::new()
        }
        Some("super" | "self") => module.to_vec(),
        _ => return None,
    };
    while let Some(&s) = segments.peek() {
        match s {
            "super" => {
                at.pop()?;
            }
            "self" => {}
            _ => break,
        }
        segments.next();
    }
    at.extend(segments.map(String::from));
    (!at.is_empty()).then_some(at)
}

/// Every reference in non-test code under `src/`. Files a `#[cfg(test)] mod x;` declares are
/// test code as a whole.
fn crate_references(src: &Path) -> Vec<Reference> {
    let mut files = Vec::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    let test_files: BTreeSet<PathBuf> = files
        .iter()
        .flat_map(|file| {
            let code = code_only(&std::fs::read_to_string(file).unwrap());
            let dir = if file
                .file_name()
                .is_some_and(|n| n == "mod.rs" || n == "lib.rs")
            {
                file.parent().unwrap().to_path_buf()
            } else {
                file.with_extension("")
            };
            code.split("#[cfg(test)]")
                .skip(1)
                .filter_map(|after| {
                    let after = after.trim_start().strip_prefix("mod ")?;
                    let name = after
                        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                        .next()?;
                    after[name.len()..].trim_start().starts_with(';').then(|| {
                        [
                            dir.join(format!("{name}.rs")),
                            dir.join(name).join("mod.rs"),
                        ]
                    })
                })
                .flatten()
                .collect::<Vec<_>>()
        })
        .collect();
    files
        .iter()
        .filter(|f| !test_files.contains(*f) && !f.ends_with("main.rs"))
        .flat_map(|file| {
            let code = without_test_items(&code_only(&std::fs::read_to_string(file).unwrap()));
            references(&module_of(file.strip_prefix(src).unwrap()), &code)
        })
        .collect()
}

/// Edges between top-level modules, each with one place that makes it.
fn top_level_edges(
    references: &[Reference],
    modules: &BTreeSet<String>,
) -> BTreeMap<(String, String), String> {
    let mut edges = BTreeMap::new();
    for r in references {
        let (Some(from), Some(to)) = (r.from.first(), r.to.first()) else {
            continue;
        };
        if from != to && modules.contains(to) {
            edges
                .entry((from.clone(), to.clone()))
                .or_insert_with(|| format!("{} uses {}", r.from.join("::"), r.to.join("::")));
        }
    }
    edges
}

/// The edges the table does not allow (exemptions not applied).
fn violations(edges: &BTreeMap<(String, String), String>) -> Vec<String> {
    let rank = |module: &str| -> Option<(usize, usize)> {
        LAYERS.iter().enumerate().find_map(|(row, (_, modules))| {
            modules.iter().position(|m| *m == module).map(|i| (row, i))
        })
    };
    let mut found = Vec::new();
    for ((from, to), example) in edges {
        match (rank(from), rank(to)) {
            (Some(a), Some(b)) if b < a => {}
            (None, _) => found.push(format!("{from} is in no layer of the table ({example})")),
            (_, None) => found.push(format!("{to} is in no layer of the table ({example})")),
            (Some((row, _)), Some(_)) => {
                found.push(format!("{from} -> {to} ({}: {example})", LAYERS[row].0))
            }
        }
    }
    found
}

/// The strongly connected sets of more than one node (Tarjan's algorithm).
fn knots(edges: &BTreeSet<(String, String)>) -> Vec<BTreeSet<String>> {
    struct State<'a> {
        next: BTreeMap<&'a str, Vec<&'a str>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        found: Vec<BTreeSet<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        for w in s.next.get(v).cloned().unwrap_or_default() {
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.stack.contains(&w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut set = BTreeSet::new();
            while let Some(w) = s.stack.pop() {
                set.insert(w.to_string());
                if w == v {
                    break;
                }
            }
            if set.len() > 1 {
                s.found.push(set);
            }
        }
    }
    let mut state = State {
        next: BTreeMap::new(),
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for (a, b) in edges {
        state.next.entry(a).or_default().push(b);
        state.next.entry(b).or_default();
    }
    let nodes: Vec<&str> = state.next.keys().copied().collect();
    for v in nodes {
        if !state.index.contains_key(v) {
            visit(&mut state, v);
        }
    }
    state.found
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The directories and files directly under `dir` as module names.
fn parts_of(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() || p.extension().is_some_and(|e| e == "rs"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .filter(|n| n != "mod" && n != "lib" && n != "main")
        .collect()
}

#[test]
fn the_top_level_modules_keep_to_their_layers() {
    let modules = parts_of(&src());
    let edges = top_level_edges(&crate_references(&src()), &modules);
    let exempt: BTreeSet<(String, String)> = EXEMPT
        .iter()
        .map(|(a, b, _)| (a.to_string(), b.to_string()))
        .collect();
    let broken: Vec<String> = violations(&edges)
        .into_iter()
        .filter(|v| {
            !exempt
                .iter()
                .any(|(a, b)| v.starts_with(&format!("{a} -> {b} ")))
        })
        .collect();
    assert!(
        broken.is_empty(),
        "imports against the layers (ARCHITECTURE.md):\n  {}",
        broken.join("\n  ")
    );
    let stale: Vec<_> = exempt.iter().filter(|e| !edges.contains_key(*e)).collect();
    assert!(
        stale.is_empty(),
        "exempted edges that no longer exist (remove them from EXEMPT): {stale:?}"
    );
    // With the exemptions applied the graph has no cycle (the table is a total order); what
    // the exemptions still close is said here, so it cannot grow unnoticed.
    let all: BTreeSet<(String, String)> = edges.keys().cloned().collect();
    for knot in knots(&all) {
        assert!(
            knot.iter()
                .all(|m| exempt.iter().any(|(a, b)| a == m || b == m)),
            "an import cycle among {knot:?} not covered by an exemption"
        );
    }
}

#[test]
fn the_parts_of_the_chaos_core_form_no_cycle() {
    let chaos = src().join("chaos");
    let parts = parts_of(&chaos);
    let mut edges = BTreeSet::new();
    for r in crate_references(&src()) {
        let (Some(from), Some(to)) = (r.from.get(1), r.to.get(1)) else {
            continue;
        };
        if r.from[0] == "chaos" && r.to[0] == "chaos" && from != to && parts.contains(to) {
            edges.insert((from.clone(), to.clone()));
        }
    }
    let found: BTreeSet<BTreeSet<String>> = knots(&edges).into_iter().collect();
    let known: BTreeSet<BTreeSet<String>> = CHAOS_KNOTS
        .iter()
        .map(|(parts, _)| parts.iter().map(|p| p.to_string()).collect())
        .collect();
    assert_eq!(
        found, known,
        "import cycles among the parts of src/chaos/ (CHAOS_KNOTS lists the known ones)"
    );
}

/// The chaos core: the lifecycle's traits and everything generic over them. It names no
/// backend; only `backends` (the one file naming them all) and the composition root do.
const CHAOS_CORE: &[&str] = &[
    "effect",
    "guard",
    "ledger",
    "lifecycle",
    "outcome",
    "ports",
    "recover",
    "registry",
    "runner",
];
const CHAOS_BACKENDS: &[&str] = &[
    "backends", "docker", "firewall", "kube", "network", "process",
];

#[test]
fn the_chaos_core_names_no_backend_and_each_backend_only_the_core() {
    let mut wrong = BTreeSet::new();
    for r in crate_references(&src()) {
        let (Some(from), Some(to)) = (r.from.get(1), r.to.get(1)) else {
            continue;
        };
        if r.from[0] != "chaos" || r.to[0] != "chaos" || from == to {
            continue;
        }
        let core_to_backend =
            CHAOS_CORE.contains(&from.as_str()) && CHAOS_BACKENDS.contains(&to.as_str());
        // A backend reaches another backend only through a port (the packet backend enters
        // a container's namespace through `ports::Containers`, not through Docker's).
        let backend_to_backend = CHAOS_BACKENDS.contains(&from.as_str())
            && from != "backends"
            && CHAOS_BACKENDS.contains(&to.as_str());
        if core_to_backend || backend_to_backend {
            wrong.insert(format!("chaos::{from} -> chaos::{to}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:?}");
}

// The checker on snippets: each form it must read, and each mistake it must report.

fn refs(file: &str, source: &str) -> BTreeSet<String> {
    let module = module_of(Path::new(file));
    references(&module, &without_test_items(&code_only(source)))
        .into_iter()
        .map(|r| r.to.join("::"))
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn a_use_group_is_read_path_by_path() {
    assert_eq!(
        refs(
            "engine/worker.rs",
            "use crate::{metrics::{self, Recorder}, plan::{Plan as P, schedule::*}};\nuse std::fmt;"
        ),
        set(&[
            "metrics",
            "metrics::Recorder",
            "plan::Plan",
            "plan::schedule::*"
        ])
    );
}

#[test]
fn inline_paths_and_paths_through_a_used_module_are_read() {
    assert_eq!(
        refs(
            "engine/worker.rs",
            "use super::super::analysis;\nfn f() -> u8 { let x = crate::slo::live::Streak::new(); analysis::verdicts::judge(x) }"
        ),
        set(&["analysis", "slo::live::Streak::new"])
    );
}

#[test]
fn super_and_self_resolve_from_the_file_module() {
    assert_eq!(
        refs(
            "chaos/kube/actions.rs",
            "use super::super::guard::check;\nuse self::inner::X;\nuse super::pin;"
        ),
        set(&[
            "chaos::guard::check",
            "chaos::kube::actions::inner::X",
            "chaos::kube::pin"
        ])
    );
    assert_eq!(
        refs("chaos/mod.rs", "pub use super::plan::chaos;"),
        set(&["plan::chaos"])
    );
}

#[test]
fn comments_literals_and_test_code_are_not_imports() {
    let source = r##"
        // use crate::report;
        /* crate::cli::main */
        const S: &str = "crate::run::x";
        const R: &str = r#"use crate::scenario;"#;
        fn f<'a>(c: char) -> bool { c == '"' || c == '\'' }
        #[cfg(test)]
        mod tests { use crate::compare::x; }
        #[cfg(test)]
        use crate::report::y;
        use crate::metrics::Second;
    "##;
    assert_eq!(refs("slo/live.rs", source), set(&["metrics::Second"]));
}

#[test]
fn an_upward_import_and_a_module_outside_the_table_are_reported() {
    let edges = |pairs: &[(&str, &str)]| -> BTreeMap<(String, String), String> {
        pairs
            .iter()
            .map(|(a, b)| ((a.to_string(), b.to_string()), format!("{a} uses {b}")))
            .collect()
    };
    // The bottom layer reaching up, the plan reaching into the engine, a row's later module
    // used by an earlier one: each is reported.
    let found = violations(&edges(&[
        ("util", "plan"),
        ("plan", "engine"),
        ("policy", "plan"),
        ("report", "charts"),
        ("cli", "run"),
        ("gadgets", "util"),
    ]));
    assert_eq!(found.len(), 4, "{found:#?}");
    assert!(found[0].starts_with("gadgets is in no layer"), "{found:#?}");
    assert!(found.iter().any(|f| f.starts_with("plan -> engine ")));
    assert!(found.iter().any(|f| f.starts_with("policy -> plan ")));
    assert!(found.iter().any(|f| f.starts_with("util -> plan ")));
}

#[test]
fn a_cycle_is_found_as_one_knot() {
    let edges: BTreeSet<(String, String)> = [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")]
        .iter()
        .map(|(x, y)| (x.to_string(), y.to_string()))
        .collect();
    assert_eq!(knots(&edges), vec![set(&["a", "b", "c"])]);
}
