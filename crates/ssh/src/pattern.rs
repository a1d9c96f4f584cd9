//! OpenSSH's host and user patterns, as its `match.c` matches them.
//!
//! A pattern is matched byte by byte: `*` matches any run of bytes (the empty one
//! too), `?` any one byte, and every other byte itself, so `[` and `]` in
//! `[host]:port` are plain characters. Matching is case-sensitive; callers that
//! compare host names lowercase the name, and ask [`match_list`] to lowercase the
//! patterns, as OpenSSH's `match_hostname` does.
//!
//! A pattern list is comma-separated; an item starting with `!` is negated. A negated
//! item that matches decides the list ([`ListMatch::Negative`]) whatever else matches,
//! and a list of negations alone matches nothing.
//!
//! Used by the client's `known_hosts` and `ssh_config` readers and by the gateway's
//! `authorized_keys` `from=` option.

/// Longest item [`match_list`] accepts: OpenSSH copies each item into a 1024-byte
/// buffer, and a list with a longer item does not match at all.
pub const MAX_SUBPATTERN_LEN: usize = 1022;

/// OpenSSH's `match_pattern`: whether `text` matches the single `pattern` (no commas,
/// no `!`), case-sensitively.
pub fn matches(text: &str, pattern: &str) -> bool {
    match_bytes(text.as_bytes(), pattern.as_bytes(), false)
}

/// How a pattern list matched a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListMatch {
    /// No item matched (or only an overlong item was seen).
    None,
    /// Some item matched and no negated one did.
    Positive,
    /// A negated item matched.
    Negative,
}

impl ListMatch {
    /// Folds `(negated, matched)` for each item of a list, in order: the first negated
    /// item that matches ends the list as [`ListMatch::Negative`], so the iterator is
    /// consumed no further. For lists whose items are not plain patterns (the
    /// gateway's address blocks, ssh_config's `Host` arguments parsed ahead of time).
    pub fn from_items(items: impl IntoIterator<Item = (bool, bool)>) -> Self {
        let mut result = ListMatch::None;
        for (negated, matched) in items {
            if matched {
                if negated {
                    return ListMatch::Negative;
                }
                result = ListMatch::Positive;
            }
        }
        result
    }

    /// Whether the list admits the text: [`ListMatch::Positive`].
    pub fn is_positive(self) -> bool {
        self == ListMatch::Positive
    }
}

/// OpenSSH's `match_pattern_list`: matches `text` against the comma-separated `list`.
/// With `lowercase_patterns`, ASCII capitals in the patterns compare as lowercase
/// (OpenSSH's `dolower`); `text` is used as given.
pub fn match_list(text: &str, list: &str, lowercase_patterns: bool) -> ListMatch {
    match_items(text, list.split(','), lowercase_patterns)
}

/// [`match_list`] over a list already split at its commas (as `known_hosts` parsers
/// hand it over); each item may start with `!`.
pub fn match_items<'a>(
    text: &str,
    items: impl IntoIterator<Item = &'a str>,
    lowercase_patterns: bool,
) -> ListMatch {
    let mut result = ListMatch::None;
    for item in items {
        let (negated, pattern) = match item.strip_prefix('!') {
            Some(pattern) => (true, pattern),
            None => (false, item),
        };
        if pattern.len() > MAX_SUBPATTERN_LEN {
            return ListMatch::None;
        }
        if match_bytes(text.as_bytes(), pattern.as_bytes(), lowercase_patterns) {
            if negated {
                return ListMatch::Negative;
            }
            result = ListMatch::Positive;
        }
    }
    result
}

/// `*`/`?` matching, iterative: on a mismatch only the last `*` backtracks, eating
/// one more byte, which is enough for these two wildcards and bounds the work by
/// `text.len() * pattern.len()`.
fn match_bytes(mut text: &[u8], mut pattern: &[u8], lowercase_pattern: bool) -> bool {
    // Where to resume after the last `*`: the pattern after it, and the text it has
    // not yet eaten.
    let mut resume: Option<(&[u8], &[u8])> = None;
    loop {
        match (pattern.split_first(), text.split_first()) {
            (Some((b'*', rest)), _) => {
                resume = Some((rest, text));
                pattern = rest;
            }
            (Some((&p, pattern_rest)), Some((&t, text_rest)))
                if p == b'?' || p == t || (lowercase_pattern && p.to_ascii_lowercase() == t) =>
            {
                pattern = pattern_rest;
                text = text_rest;
            }
            (None, None) => return true,
            _ => match resume.and_then(|(after_star, eaten)| {
                eaten.split_first().map(|(_, rest)| (after_star, rest))
            }) {
                // Let the last `*` swallow one more byte and try again.
                Some((after_star, rest)) => {
                    resume = Some((after_star, rest));
                    pattern = after_star;
                    text = rest;
                }
                None => return false,
            },
        }
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    #[test]
    fn single_patterns_follow_openssh() {
        for (text, pattern, want) in [
            ("", "", true),
            ("", "*", true),
            ("a", "", false),
            ("abc", "a*c", true),
            ("abc", "a*b", false),
            ("abcbc", "*bc", true),
            ("abc", "???", true),
            ("ab", "???", false),
            ("[h]:22", "[h]:2?", true),
            ("aXbXc", "a*b*c", true),
            ("ab", "a**b", true),
            ("ab", "**b", true),
            ("10.1.2.3", "10.*", true),
            ("10.0.0.21", "1?.0.0.*1", true),
            ("10.0.0.12", "1?.0.0.*1", false),
            ("110.1.2.3", "10.*", false),
            ("xxaxxbxxcxx", "*a*b*c*", true),
            ("xxaxxcxxbxx", "*a*b*c*", false),
            ("Web", "web", false),
            ("web", "Web", false),
        ] {
            assert_eq!(matches(text, pattern), want, "{text:?} vs {pattern:?}");
        }
    }

    /// Patterns that make a naive backtracking matcher exponential.
    #[test]
    fn many_stars_stay_fast() {
        assert!(matches("aaaaaaaaaaaaaaaaaaaab", "*a*a*a*a*b"));
        assert!(!matches("aaaaaaaaaaaaaaaaaaaaa", "*a*a*a*a*b"));
        let text = "a".repeat(4096);
        assert!(!matches(&text, &format!("{}b", "*a".repeat(64))));
    }

    #[test]
    fn lists_negate_and_a_negation_wins() {
        assert_eq!(match_list("bob", "alice,bob", false), ListMatch::Positive);
        assert_eq!(match_list("bob", "b*,!bob", false), ListMatch::Negative);
        assert_eq!(match_list("bob", "!bob,b*", false), ListMatch::Negative);
        assert_eq!(match_list("bob", "alice", false), ListMatch::None);
        // A negation alone matches nothing.
        assert_eq!(match_list("bob", "!alice", false), ListMatch::None);
        assert_eq!(
            match_items("bob", ["alice", "b?b"], false),
            ListMatch::Positive
        );
    }

    #[test]
    fn lowercase_patterns_is_openssh_dolower() {
        assert_eq!(
            match_list("web.example", "*.EXAMPLE", true),
            ListMatch::Positive
        );
        assert_eq!(
            match_list("web.example", "*.EXAMPLE", false),
            ListMatch::None
        );
        // Only the patterns are lowercased: the caller lowercases the text.
        assert_eq!(match_list("Web.example", "web.*", true), ListMatch::None);
    }

    #[test]
    fn overlong_subpattern_never_matches() {
        let long = "a".repeat(MAX_SUBPATTERN_LEN + 1);
        assert_eq!(
            match_items(&long, ["*", long.as_str()], false),
            ListMatch::None
        );
        let fits = "a".repeat(MAX_SUBPATTERN_LEN);
        assert_eq!(
            match_items(&fits, [fits.as_str()], false),
            ListMatch::Positive
        );
        // The `!` is not counted.
        assert_eq!(
            match_list(&fits, &format!("*,!{fits}"), false),
            ListMatch::Negative
        );
    }

    #[test]
    fn items_fold_like_a_list() {
        assert_eq!(ListMatch::from_items([]), ListMatch::None);
        assert_eq!(
            ListMatch::from_items([(false, false), (false, true)]),
            ListMatch::Positive
        );
        assert_eq!(
            ListMatch::from_items([(false, true), (true, true)]),
            ListMatch::Negative
        );
        assert_eq!(ListMatch::from_items([(true, false)]), ListMatch::None);
        assert!(ListMatch::Positive.is_positive());
        assert!(!ListMatch::Negative.is_positive());
    }
}
