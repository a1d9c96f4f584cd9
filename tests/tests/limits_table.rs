//! `docs/limits.md` and the code cannot drift apart (issue 18): every limit constant in
//! `crates/*/src` has a row, every row names a constant that exists, and each row's
//! default is the constant's value as the source defines it.

// Test code states expectations with unwrap, expect, panic, indexing and plain arithmetic.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Words that make a constant's name a limit: a bound, a default, or a deadline.
const LIMIT_WORDS: &[&str] = &[
    "DEFAULT_",
    "MAX_",
    "MIN_",
    "TIMEOUT",
    "GRACE",
    "BACKOFF",
    "INTERVAL",
    "WINDOW_SIZE",
    "PACKET_SIZE",
    "BUFFER_SIZE",
    "QUEUE",
    "FLUSH",
    "EVERY",
    "KEEPALIVE",
    "SHED_",
    "REJECTION_TIME",
];

/// Constants whose names look like limits but are not: each with why.
const NOT_LIMITS: &[(&str, &str)] = &[
    ("DEFAULT_LISTEN", "an address"),
    ("DEFAULT_PORT", "SSH's port number"),
    ("DEFAULT_KEY_FILES", "file names"),
    ("DEFAULT_BODY_TYPE", "a content type"),
    (
        "MIN_ENTRY_LEN",
        "the size of an empty header entry's encoding, not a policy",
    ),
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            found.push(path);
        }
    }
}

/// Every limit constant defined at the top level of a file in `crates/*/src`: its
/// name, the expression that defines it, and where.
fn limits_in_code() -> BTreeMap<String, (String, String)> {
    let mut files = Vec::new();
    for krate in std::fs::read_dir(workspace().join("crates")).unwrap() {
        let src = krate.unwrap().path().join("src");
        if src.is_dir() {
            rust_files(&src, &mut files);
        }
    }
    let mut limits = BTreeMap::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let relative = file
            .strip_prefix(workspace())
            .unwrap()
            .display()
            .to_string();
        for line in text.lines() {
            let rest = ["pub const ", "pub(crate) const ", "const "]
                .iter()
                .find_map(|prefix| line.strip_prefix(prefix));
            let Some(rest) = rest else { continue };
            let Some((name, _)) = rest.split_once(':') else {
                continue;
            };
            let is_limit = LIMIT_WORDS.iter().any(|word| name.contains(word));
            if !is_limit || NOT_LIMITS.iter().any(|(not, _)| *not == name) {
                continue;
            }
            let value = rest
                .split_once('=')
                .map(|(_, value)| value.trim().trim_end_matches(';').trim().to_owned())
                .unwrap_or_default();
            let previous = limits.insert(name.to_owned(), (value, relative.clone()));
            assert!(
                previous.is_none(),
                "{name} is defined twice ({relative}); the table could not say which"
            );
        }
    }
    limits
}

/// The rows of `docs/limits.md`: constant name and the default's text.
fn limits_in_table() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(workspace().join("docs/limits.md")).unwrap();
    let mut rows = BTreeMap::new();
    for line in text.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // "| `NAME` | `DEFAULT` | key | metric | seen |" splits into 7 cells.
        if cells.len() != 7 {
            continue;
        }
        let (Some(name), Some(default)) = (backticked(cells[1]), backticked(cells[2])) else {
            continue;
        };
        let previous = rows.insert(name.to_owned(), default.to_owned());
        assert!(previous.is_none(), "docs/limits.md has two rows for {name}");
    }
    rows
}

fn backticked(cell: &str) -> Option<&str> {
    cell.strip_prefix('`')?.strip_suffix('`')
}

/// The value of a constant's defining expression as the table writes it: `5 s`,
/// `100 ms`, a plain number. Understands what the limit constants use: integer and
/// float literals, `*`, `/` and `<<` between two of them, and `Duration`'s
/// constructors.
fn evaluate(expression: &str) -> String {
    let expression = expression.replace('_', "");
    let expression = expression.trim_start_matches("std::time::");
    if let Some(secs) = call(expression, "Duration::fromsecs(") {
        return format!("{} s", integer(secs));
    }
    if let Some(millis) = call(expression, "Duration::frommillis(") {
        return format!("{} ms", integer(millis));
    }
    if expression == "Duration::ZERO" {
        return "0 s".to_owned();
    }
    // Literals and operators separated by spaces, applied left to right.
    let mut tokens = expression.split_whitespace();
    let first = tokens.next().unwrap_or_default();
    let float = expression.contains('.');
    let mut value = number(first);
    while let Some(operator) = tokens.next() {
        let operand = number(tokens.next().unwrap_or_default());
        value = match operator {
            "*" => value * operand,
            "/" => value / operand,
            "<<" => value * 2f64.powf(operand),
            _ => panic!("{expression:?}: unknown operator {operator:?}"),
        };
    }
    if float {
        format!("{value}")
    } else {
        format!("{value:.0}")
    }
}

fn call<'a>(expression: &'a str, function: &str) -> Option<&'a str> {
    expression.strip_prefix(function)?.strip_suffix(')')
}

fn integer(text: &str) -> u64 {
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("{text:?} is not an integer literal"))
}

fn number(text: &str) -> f64 {
    text.trim().parse().unwrap_or_else(|_| {
        panic!("{text:?}: a limit constant's value must be a literal or a simple product")
    })
}

#[test]
fn every_limit_in_the_code_has_a_row_with_its_value_and_every_row_a_constant() {
    let code = limits_in_code();
    let table = limits_in_table();
    assert!(
        code.len() > 50,
        "found only {} limits: {code:?}",
        code.len()
    );

    let missing: Vec<String> = code
        .iter()
        .filter(|(name, _)| !table.contains_key(*name))
        .map(|(name, (_, file))| format!("{name} ({file})"))
        .collect();
    assert!(
        missing.is_empty(),
        "limits without a row in docs/limits.md: {missing:#?}"
    );
    let stale: Vec<&String> = table
        .keys()
        .filter(|name| !code.contains_key(*name))
        .collect();
    assert!(
        stale.is_empty(),
        "rows of docs/limits.md naming no constant in crates/*/src: {stale:?}"
    );
    let wrong: Vec<String> = code
        .iter()
        .filter_map(|(name, (expression, file))| {
            let value = evaluate(expression);
            let written = &table[name];
            (written != &value).then(|| {
                format!("{name} ({file}) is {value} (`{expression}`), the table says {written}")
            })
        })
        .collect();
    assert!(wrong.is_empty(), "defaults that differ: {wrong:#?}");
}

#[test]
fn the_evaluator_reads_what_limit_constants_are_written_with() {
    assert_eq!(evaluate("8 * 1024"), "8192");
    assert_eq!(evaluate("8 * 1024 * 1024"), "8388608");
    assert_eq!(evaluate("1.0 / 86_400.0"), format!("{}", 1.0 / 86_400.0));
    assert_eq!(evaluate("1 << 30"), "1073741824");
    assert_eq!(evaluate("65_535"), "65535");
    assert_eq!(evaluate("Duration::from_secs(120)"), "120 s");
    assert_eq!(evaluate("Duration::from_millis(5)"), "5 ms");
    assert_eq!(evaluate("Duration::ZERO"), "0 s");
    assert_eq!(evaluate("std::time::Duration::from_secs(3)"), "3 s");
    assert_eq!(evaluate("1_000_000.0"), "1000000");
    assert_eq!(evaluate("0.5"), "0.5");
}
