//! The stock OpenSSH command grammar: an `exec` command string as the request an
//! sshttp client would send (spec §14.2-§14.4), and the exit status of a response
//! (spec §14.8).

use http::{HeaderName, HeaderValue, Method};

use crate::error::DecodeError;
use crate::header_list::{HeaderList, is_connection_specific};
use crate::limits::Limits;
use crate::request::Target;

/// A command that is not valid (exit status 2, spec §14.2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Exit status for a usage error.
pub const EXIT_USAGE: u32 = 2;
/// Exit status when no complete response arrived.
pub const EXIT_NO_RESPONSE: u32 = 1;

/// The request a command asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRequest {
    /// The method.
    pub method: Method,
    /// The origin-form target (`/path?query`), percent-encoded.
    pub target: String,
    /// Fields from `-H`, in order.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// `-i`: write the response head to standard error.
    pub show_head: bool,
    /// Whether standard input is the request body (`post`, `put`, `patch`).
    pub reads_body: bool,
}

impl ExecRequest {
    /// Parses a command string (spec §14.3, §14.4).
    pub fn parse(command: &[u8]) -> Result<Self, UsageError> {
        let words = split_words(command)?;
        let mut words = words.into_iter();
        let first = words
            .next()
            .ok_or_else(|| UsageError("empty command".to_owned()))?;
        let rest: Vec<Vec<u8>> = words.collect();
        let method = match first.to_ascii_lowercase().as_slice() {
            b"get" => Some((Method::GET, false)),
            b"head" => Some((Method::HEAD, false)),
            b"delete" => Some((Method::DELETE, false)),
            b"options" => Some((Method::OPTIONS, false)),
            b"post" => Some((Method::POST, true)),
            b"put" => Some((Method::PUT, true)),
            b"patch" => Some((Method::PATCH, true)),
            _ => None,
        };
        match method {
            Some((method, reads_body)) => method_form(method, reads_body, &rest),
            None => rpc_form(&first, &rest),
        }
    }
}

impl ExecRequest {
    /// Applies the limits and target rules a method channel's open is held to
    /// (spec §6.4, §11), so that every way into a gateway is held to the same ones:
    /// a target over `max_target_len` is [`DecodeError::TargetTooLong`], one that
    /// §6.4 makes malformed (e.g. `//x`) [`DecodeError::InvalidTarget`], and `-H`
    /// fields over `max_header_count` or `max_header_list_bytes`
    /// [`DecodeError::TooManyHeaders`] or [`DecodeError::HeaderListTooLarge`]. The
    /// status a refusal is reported with is that of the open failure
    /// ([`DecodeError::open_failure_reason`], spec §14.8).
    pub fn check(&self, limits: &Limits) -> Result<(), DecodeError> {
        if self.target.len() > limits.max_target_len {
            return Err(DecodeError::TargetTooLong {
                len: self.target.len(),
                max: limits.max_target_len,
            });
        }
        Target::parse(self.target.as_bytes())?.check_method(&self.method)?;
        let mut fields = HeaderList::new();
        for (name, value) in &self.headers {
            fields.push(name.clone(), value.clone());
        }
        fields.check_limits(limits)
    }
}

fn method_form(
    method: Method,
    reads_body: bool,
    words: &[Vec<u8>],
) -> Result<ExecRequest, UsageError> {
    let mut words = words.iter();
    let path = words.next().ok_or_else(|| {
        UsageError(format!(
            "{} needs a PATH, e.g. {} /",
            method,
            method.as_str().to_ascii_lowercase()
        ))
    })?;
    let target = if path.as_slice() == b"*" && method == Method::OPTIONS {
        "*".to_owned()
    } else if path.first() == Some(&b'/') {
        encode_target(path)
    } else {
        return Err(UsageError(format!(
            "PATH must begin with /: {:?}",
            String::from_utf8_lossy(path)
        )));
    };
    let mut request = ExecRequest {
        method,
        target,
        headers: Vec::new(),
        show_head: false,
        reads_body,
    };
    let mut words = words.peekable();
    while let Some(word) = words.next() {
        match word.as_slice() {
            b"-i" => request.show_head = true,
            b"-H" => {
                let mut field = words
                    .next()
                    .ok_or_else(|| UsageError("-H needs 'name: value'".to_owned()))?
                    .clone();
                // ssh joins its arguments with spaces, so `-H 'accept: text/plain'`
                // typed in a shell arrives as `-H accept: text/plain`: a name with an
                // empty value takes the words that follow, up to the next option.
                if field.trim_ascii_end().ends_with(b":") {
                    while let Some(next) = words.next_if(|next| !is_option(next)) {
                        field.push(b' ');
                        field.extend_from_slice(next);
                    }
                }
                request.headers.push(header_field(&field)?);
            }
            other => {
                return Err(UsageError(format!(
                    "unexpected {:?} (options: -H 'name: value', -i); ssh joins its arguments with spaces, so quote a word that holds spaces twice: ssh GATEWAY \"get /path -H 'name: a b'\"",
                    String::from_utf8_lossy(other)
                )));
            }
        }
    }
    Ok(request)
}

/// The options of the method form.
fn is_option(word: &[u8]) -> bool {
    matches!(word, b"-i" | b"-H")
}

fn header_field(word: &[u8]) -> Result<(HeaderName, HeaderValue), UsageError> {
    let text = String::from_utf8_lossy(word);
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| UsageError(format!("-H {text:?}: expected 'name: value'")))?;
    let name = HeaderName::from_bytes(
        name.trim_matches([' ', '\t'])
            .to_ascii_lowercase()
            .as_bytes(),
    )
    .map_err(|_| UsageError(format!("-H {text:?}: invalid field name")))?;
    let value = HeaderValue::from_str(value.trim_matches([' ', '\t']))
        .map_err(|_| UsageError(format!("-H {text:?}: invalid field value")))?;
    if is_connection_specific(&name) {
        return Err(UsageError(format!(
            "-H {text:?}: {name} is not allowed (spec §10.3)"
        )));
    }
    Ok((name, value))
}

fn rpc_form(name: &[u8], words: &[Vec<u8>]) -> Result<ExecRequest, UsageError> {
    let mut target = String::from("/");
    target.push_str(&encode(name, |byte| is_unreserved(byte) || byte == b'/'));
    for (index, word) in words.iter().enumerate() {
        target.push(if index == 0 { '?' } else { '&' });
        if word.first() == Some(&b'=') {
            return Err(UsageError(format!(
                "{:?}: a parameter needs a name before =",
                String::from_utf8_lossy(word)
            )));
        }
        match word.iter().position(|&byte| byte == b'=') {
            Some(at) => {
                let (key, value) = word.split_at(at);
                target.push_str(&encode(key, is_unreserved));
                target.push('=');
                target.push_str(&encode(value.get(1..).unwrap_or_default(), is_unreserved));
            }
            None => target.push_str(&encode(word, is_unreserved)),
        }
    }
    Ok(ExecRequest {
        method: Method::GET,
        target,
        headers: Vec::new(),
        show_head: false,
        reads_body: false,
    })
}

fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// A target may hold bytes 0x21-0x7E except `#` (spec §6.4); `%` passes through.
fn encode_target(path: &[u8]) -> String {
    encode(path, |byte| (0x21..=0x7e).contains(&byte) && byte != b'#')
}

fn encode(bytes: &[u8], keep: impl Fn(u8) -> bool) -> String {
    let mut text = String::with_capacity(bytes.len());
    for &byte in bytes {
        if keep(byte) {
            text.push(char::from(byte));
        } else {
            text.push_str(&format!("%{byte:02X}"));
        }
    }
    text
}

/// Splits a command into words like a POSIX shell, without expansion (spec §14.2).
pub fn split_words(command: &[u8]) -> Result<Vec<Vec<u8>>, UsageError> {
    #[derive(PartialEq)]
    enum Quote {
        None,
        Single,
        Double,
    }
    let mut words = Vec::new();
    let mut word: Option<Vec<u8>> = None;
    let mut quote = Quote::None;
    let mut bytes = command.iter().copied();
    while let Some(byte) = bytes.next() {
        match quote {
            Quote::Single => match byte {
                b'\'' => quote = Quote::None,
                _ => word.get_or_insert_with(Vec::new).push(byte),
            },
            Quote::Double => match byte {
                b'"' => quote = Quote::None,
                b'\\' => {
                    let next = bytes
                        .next()
                        .ok_or_else(|| UsageError("unterminated \" quote".to_owned()))?;
                    let current = word.get_or_insert_with(Vec::new);
                    if !matches!(next, b'"' | b'\\' | b'$' | b'`') {
                        current.push(b'\\');
                    }
                    current.push(next);
                }
                _ => word.get_or_insert_with(Vec::new).push(byte),
            },
            Quote::None => match byte {
                b' ' | b'\t' | b'\n' => {
                    if let Some(done) = word.take() {
                        words.push(done);
                    }
                }
                b'\'' => {
                    word.get_or_insert_with(Vec::new);
                    quote = Quote::Single;
                }
                b'"' => {
                    word.get_or_insert_with(Vec::new);
                    quote = Quote::Double;
                }
                b'\\' => {
                    let next = bytes
                        .next()
                        .ok_or_else(|| UsageError("trailing backslash".to_owned()))?;
                    word.get_or_insert_with(Vec::new).push(next);
                }
                _ => word.get_or_insert_with(Vec::new).push(byte),
            },
        }
    }
    match quote {
        Quote::None => {}
        Quote::Single => return Err(UsageError("unterminated ' quote".to_owned())),
        Quote::Double => return Err(UsageError("unterminated \" quote".to_owned())),
    }
    words.extend(word);
    Ok(words)
}

/// The exit status of a final response status (spec §14.8).
pub fn exit_status(status: http::StatusCode) -> u32 {
    match status.as_u16() / 100 {
        1 | 2 => 0,
        3 => 3,
        4 => 4,
        5 => 5,
        _ => EXIT_NO_RESPONSE,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn target(command: &str) -> String {
        ExecRequest::parse(command.as_bytes()).unwrap().target
    }

    #[test]
    fn commands_are_held_to_the_limits_and_target_rules_of_an_open() {
        let limits = Limits::default();
        let checked = |command: String| {
            ExecRequest::parse(command.as_bytes())
                .unwrap()
                .check(&limits)
        };
        assert_eq!(checked("get /x -H 'accept: a'".to_owned()), Ok(()));
        assert!(matches!(
            checked("get //x".to_owned()),
            Err(DecodeError::InvalidTarget { .. })
        ));
        let long_path = format!("get /{}", "a".repeat(limits.max_target_len));
        assert!(matches!(
            checked(long_path),
            Err(DecodeError::TargetTooLong { .. })
        ));
        let big_value = format!("get / -H 'x-big: {}'", "v".repeat(100_000));
        assert!(matches!(
            checked(big_value),
            Err(DecodeError::HeaderListTooLarge { .. })
        ));
        let eight =
            format!("get /{}", " -H 'x-f: {}'".repeat(8)).replace("{}", &"v".repeat(25_000));
        assert!(matches!(
            checked(eight),
            Err(DecodeError::HeaderListTooLarge { .. })
        ));
        let many = format!(
            "get /{}",
            " -H 'x-f: v'".repeat(limits.max_header_count + 1)
        );
        assert!(matches!(
            checked(many),
            Err(DecodeError::TooManyHeaders { .. })
        ));
    }

    #[test]
    fn rpc_form_matches_the_spec_table() {
        assert_eq!(target("multiply a=4 b=5"), "/multiply?a=4&b=5");
        assert_eq!(target("users/42 fields=name"), "/users/42?fields=name");
        assert_eq!(target("report verbose"), "/report?verbose");
        assert_eq!(target("search 'q=hello world'"), "/search?q=hello%20world");
        assert_eq!(target("status"), "/status");
        assert_eq!(target("a b=c=d"), "/a?b=c%3Dd");
        assert!(ExecRequest::parse(b"x =v").is_err());
    }

    #[test]
    fn a_header_whose_quotes_ssh_dropped_takes_the_words_up_to_the_next_option() {
        // What `ssh gw get /x -H 'accept: application/json' -i` sends.
        let request = ExecRequest::parse(b"get /x -H accept: application/json -i").unwrap();
        assert_eq!(request.headers[0].0, "accept");
        assert_eq!(request.headers[0].1, "application/json");
        assert!(request.show_head);
        let request = ExecRequest::parse(b"get /x -H x-note: a b c -H y: 1").unwrap();
        assert_eq!(request.headers[0].1, "a b c");
        assert_eq!(request.headers[1].1, "1");
        // A field with its value in the same word takes nothing more.
        let error = ExecRequest::parse(b"get /x -H a:1 extra").unwrap_err();
        assert!(error.0.contains("unexpected \"extra\""), "{error}");
        assert!(
            error.0.contains("quote a word that holds spaces twice"),
            "{error}"
        );
    }

    #[test]
    fn method_form_takes_path_headers_and_head_flag() {
        let request =
            ExecRequest::parse(br#"GET /x?y=1 -i -H "accept: application/json""#).unwrap();
        assert_eq!(request.method, Method::GET);
        assert_eq!(request.target, "/x?y=1");
        assert!(request.show_head && !request.reads_body);
        assert_eq!(request.headers.len(), 1);
        assert_eq!(request.headers[0].0, "accept");
        assert_eq!(request.headers[0].1, "application/json");
        assert!(ExecRequest::parse(b"post /upload").unwrap().reads_body);
        assert_eq!(target("get '/a b#c'"), "/a%20b%23c");
        assert_eq!(target("options *"), "*");
    }

    #[test]
    fn bad_commands_are_usage_errors() {
        for command in [
            "",
            "get",
            "get x",
            "get / -x",
            "get / -H",
            "get / -H nocolon",
            "get / -H 'connection: close'",
            "get '/x",
            "get \"/x",
            "get /x\\",
        ] {
            assert!(
                ExecRequest::parse(command.as_bytes()).is_err(),
                "{command:?}"
            );
        }
    }

    #[test]
    fn words_split_like_a_shell_without_expansion() {
        let words = split_words(br#"a 'b c' "d \" \x" e\ f g'h'"i" $HOME *"#).unwrap();
        let words: Vec<&[u8]> = words.iter().map(Vec::as_slice).collect();
        assert_eq!(
            words,
            [
                &b"a"[..],
                b"b c",
                b"d \" \\x",
                b"e f",
                b"ghi",
                b"$HOME",
                b"*"
            ]
        );
        assert_eq!(split_words(b"''").unwrap(), [Vec::<u8>::new()]);
    }

    #[test]
    fn exit_status_follows_the_status_class() {
        use http::StatusCode;
        assert_eq!(exit_status(StatusCode::OK), 0);
        assert_eq!(exit_status(StatusCode::NOT_MODIFIED), 3);
        assert_eq!(exit_status(StatusCode::NOT_FOUND), 4);
        assert_eq!(exit_status(StatusCode::BAD_GATEWAY), 5);
    }
}
