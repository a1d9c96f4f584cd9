//! The gateway's one error type: opaque, with a [`kind`](Error::kind) to match on and
//! its cause kept as [`source`](std::error::Error::source), in the manner of the
//! client's `sshttp_client::Error` (and reqwest's and hyper's).

use std::fmt;
use std::path::Path;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why the gateway cannot load its configuration, start, or go on accepting.
///
/// `Display` says what was being done (`host key /etc/sshttp/key`); the cause, when
/// there is one (an I/O error, TOML's message with line and column, a key parser's
/// complaint), is its [`source`](std::error::Error::source), so that `{:#}` in anyhow
/// or a walk of the chain prints both.
pub struct Error {
    inner: Box<Inner>,
}

struct Inner {
    kind: ErrorKind,
    context: String,
    source: Option<BoxError>,
}

/// What kind of failure an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The configuration file, or a file it names (host keys, authorized_keys, CA keys,
    /// the assertion key), cannot be read.
    Read,
    /// The configuration file is not valid TOML, or has unknown or mistyped fields.
    Syntax,
    /// A value in the configuration, or in a file it names, is wrong.
    Invalid,
    /// A listener, a signal handler or the state directory failed.
    Io,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, context: impl Into<String>) -> Self {
        Self {
            inner: Box::new(Inner {
                kind,
                context: context.into(),
                source: None,
            }),
        }
    }

    pub(crate) fn with(
        kind: ErrorKind,
        context: impl Into<String>,
        source: impl Into<BoxError>,
    ) -> Self {
        let mut error = Self::new(kind, context);
        error.inner.source = Some(source.into());
        error
    }

    /// A wrong value, said in `message`.
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, message)
    }

    /// A wrong value in what `context` names, for the reason `source` gives.
    pub(crate) fn invalid_because(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::with(ErrorKind::Invalid, context, source)
    }

    /// An I/O failure while doing what `context` says, for `map_err`.
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| Self::with(ErrorKind::Io, context, source)
    }

    /// The same error, said to be in the file at `path`.
    pub(crate) fn in_file(mut self, path: &Path) -> Self {
        self.inner.context = format!("{}: {}", path.display(), self.inner.context);
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.context)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("sshttp_proxy::Error");
        debug.field("kind", &self.inner.kind);
        debug.field("context", &self.inner.context);
        if let Some(source) = &self.inner.source {
            debug.field("source", source);
        }
        debug.finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner
            .source
            .as_deref()
            .map(|source| source as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn display_says_what_was_done_and_the_cause_is_the_source() {
        let cause = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let error = Error::io("host key /k")(cause).in_file(Path::new("/etc/gw.toml"));
        assert_eq!(error.kind(), ErrorKind::Io);
        assert_eq!(error.to_string(), "/etc/gw.toml: host key /k");
        assert_eq!(error.source().unwrap().to_string(), "no such file");
        assert_eq!(
            sshttp_ssh::error_chain(&error),
            "/etc/gw.toml: host key /k: no such file"
        );
    }
}
