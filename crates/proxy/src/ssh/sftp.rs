//! A read-only SFTP subsystem over a vhost (spec §14.13): `scp gw:/path .`, `sftp gw`
//! and sshfs-style readers fetch a vhost's resources with the caller's identity and
//! the vhost's policy. Every operation is an HTTP request through the gateway's
//! service, so limits, identity fields, access log and metrics apply as to any other:
//! stat is a HEAD, a read is a GET of a byte range, and nothing is written, renamed
//! or listed.
//!
//! The SFTP framing is russh-sftp's (its server loop and packet codec); this module is
//! the mapping to HTTP.

use std::collections::HashMap;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::header::{CONTENT_LENGTH, RANGE};
use http::{Method, StatusCode};
use http_body_util::BodyExt as _;
use russh_sftp::protocol::{
    Attrs, Data, File, FileAttributes, Handle, Name, OpenFlags, Status, StatusCode as SftpStatus,
};
use russh_sftp::server::StatusReply;
use sshttp_ssh::{Body, BoxError};

use super::{RequestService, ResponseBody};
use crate::gate::Route;
use crate::limits::MAX_SFTP_OPEN_FILES;

/// Permissions reported for every file: a regular file, readable by all, never
/// writable (the subsystem is read-only).
const READ_ONLY_FILE: u32 = 0o100_444;

/// One SFTP session: the vhost route it serves and its open files. `B` is the body
/// type of the service's responses.
pub(super) struct Files<S, B> {
    service: S,
    route: Route,
    open: HashMap<String, OpenFile>,
    next_handle: u64,
    /// The connection's request permit the session holds while it runs.
    _slot: tokio::sync::OwnedSemaphorePermit,
    _body: PhantomData<fn() -> B>,
}

/// A file opened for reading.
struct OpenFile {
    path: String,
    size: Option<u64>,
}

impl<S, B> Files<S, B> {
    pub(super) fn new(service: S, route: Route, slot: tokio::sync::OwnedSemaphorePermit) -> Self {
        Self {
            service,
            route,
            open: HashMap::new(),
            next_handle: 0,
            _slot: slot,
            _body: PhantomData,
        }
    }
}

/// An SFTP status with a message saying why.
fn refuse(code: SftpStatus, message: impl Into<String>) -> StatusReply {
    StatusReply::new(code).with_message(message)
}

/// The SFTP status an HTTP status that is not a success stands for.
fn status_reply(status: StatusCode, path: &str) -> StatusReply {
    let code = match status {
        StatusCode::NOT_FOUND | StatusCode::GONE => SftpStatus::NoSuchFile,
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => SftpStatus::PermissionDenied,
        _ => SftpStatus::Failure,
    };
    refuse(code, format!("{path}: HTTP {status}"))
}

/// `path` as an origin-form target: absolute, `.` and `..` resolved, percent-encoded
/// where a target may not carry the byte.
fn target_of(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    let mut target = String::from("/");
    target.push_str(&parts.join("/"));
    let mut encoded = String::with_capacity(target.len());
    for byte in target.bytes() {
        if (0x21..=0x7e).contains(&byte) && byte != b'#' && byte != b'?' {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

impl<S, B> Files<S, B>
where
    S: RequestService<B>,
    B: ResponseBody,
{
    /// Sends `method` for `path` through the gateway, as the session's caller, with
    /// `range` if given: the response.
    async fn request(
        &self,
        method: Method,
        path: &str,
        range: Option<String>,
    ) -> Result<http::Response<B>, StatusReply> {
        let target = target_of(path);
        let mut request = http::Request::new(Body::empty());
        *request.method_mut() = method;
        *request.uri_mut() = target
            .parse()
            .map_err(|_| refuse(SftpStatus::NoSuchFile, format!("{path}: not a path")))?;
        if let Some(range) = range
            && let Ok(value) = http::HeaderValue::from_str(&range)
        {
            request.headers_mut().insert(RANGE, value);
        }
        request.extensions_mut().insert(self.route.identity.clone());
        request.extensions_mut().insert(self.route.clone());
        let mut service = self.service.clone();
        service.call(request).await.map_err(|error| {
            let error: BoxError = error.into();
            refuse(SftpStatus::Failure, format!("{path}: {error}"))
        })
    }

    /// What a HEAD says of `path`: its size, if the response gave one.
    async fn head(&self, path: &str) -> Result<Option<u64>, StatusReply> {
        let response = self.request(Method::HEAD, path, None).await?;
        if !response.status().is_success() {
            return Err(status_reply(response.status(), path));
        }
        Ok(response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok()?.parse().ok()))
    }
}

fn attributes(size: Option<u64>) -> FileAttributes {
    FileAttributes {
        size,
        permissions: Some(READ_ONLY_FILE),
        ..FileAttributes::empty()
    }
}

impl<S, B> russh_sftp::server::Handler for Files<S, B>
where
    S: RequestService<B>,
    B: ResponseBody,
{
    type Error = StatusReply;

    fn unimplemented(&self) -> Self::Error {
        refuse(
            SftpStatus::OpUnsupported,
            "sshttp's SFTP is read-only: stat, open and read files (spec §14.13)",
        )
    }

    async fn realpath(&mut self, id: u32, path: String) -> Result<Name, Self::Error> {
        Ok(Name {
            id,
            files: vec![File::dummy(target_of(&path))],
        })
    }

    async fn stat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        if target_of(&path) == "/" {
            // The root stands for the vhost; it is no file, and lists nothing.
            let attrs = FileAttributes {
                permissions: Some(0o040_555),
                ..FileAttributes::empty()
            };
            return Ok(Attrs { id, attrs });
        }
        let size = self.head(&path).await?;
        Ok(Attrs {
            id,
            attrs: attributes(size),
        })
    }

    async fn lstat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        self.stat(id, path).await
    }

    async fn fstat(&mut self, id: u32, handle: String) -> Result<Attrs, Self::Error> {
        let file = self
            .open
            .get(&handle)
            .ok_or_else(|| refuse(SftpStatus::Failure, "no such handle"))?;
        Ok(Attrs {
            id,
            attrs: attributes(file.size),
        })
    }

    async fn open(
        &mut self,
        id: u32,
        filename: String,
        pflags: OpenFlags,
        _attrs: FileAttributes,
    ) -> Result<Handle, Self::Error> {
        let writes = OpenFlags::WRITE | OpenFlags::APPEND | OpenFlags::CREATE | OpenFlags::TRUNCATE;
        if pflags.intersects(writes) {
            return Err(refuse(
                SftpStatus::PermissionDenied,
                format!("{filename}: sshttp's SFTP is read-only"),
            ));
        }
        if self.open.len() >= MAX_SFTP_OPEN_FILES {
            return Err(refuse(
                SftpStatus::Failure,
                format!("at most {MAX_SFTP_OPEN_FILES} files open at once"),
            ));
        }
        let size = self.head(&filename).await?;
        self.next_handle = self.next_handle.wrapping_add(1);
        let handle = self.next_handle.to_string();
        self.open.insert(
            handle.clone(),
            OpenFile {
                path: filename,
                size,
            },
        );
        Ok(Handle { id, handle })
    }

    async fn read(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        len: u32,
    ) -> Result<Data, Self::Error> {
        let file = self
            .open
            .get(&handle)
            .ok_or_else(|| refuse(SftpStatus::Failure, "no such handle"))?;
        if file.size.is_some_and(|size| offset >= size) || len == 0 {
            return Err(StatusReply::new(SftpStatus::Eof));
        }
        let last = offset.saturating_add(u64::from(len)).saturating_sub(1);
        let path = file.path.clone();
        let range = format!("bytes={offset}-{last}");
        let response = self.request(Method::GET, &path, Some(range)).await?;
        let status = response.status();
        // 206: the range; 200: a service that ignores ranges sends it all, of which
        // the range is cut out as it streams by; 416: past the end.
        let skip = match status {
            StatusCode::PARTIAL_CONTENT => 0,
            StatusCode::OK => offset,
            StatusCode::RANGE_NOT_SATISFIABLE => return Err(StatusReply::new(SftpStatus::Eof)),
            status => return Err(status_reply(status, &path)),
        };
        let want = usize::try_from(len).unwrap_or(usize::MAX);
        let mut data = Vec::with_capacity(want.min(256 * 1024));
        let mut skip = skip;
        let mut body = std::pin::pin!(response.into_body());
        while data.len() < want {
            let Some(frame) = body.frame().await else {
                break;
            };
            let frame = frame.map_err(|error| {
                let error: BoxError = error.into();
                refuse(SftpStatus::Failure, format!("{path}: {error}"))
            })?;
            let Ok(chunk) = frame.into_data() else {
                continue;
            };
            let chunk = bytes::Buf::chunk(&chunk).to_vec();
            let start = usize::try_from(skip).unwrap_or(usize::MAX).min(chunk.len());
            skip = skip.saturating_sub(u64::try_from(start).unwrap_or(u64::MAX));
            let rest = chunk.get(start..).unwrap_or_default();
            let room = want.saturating_sub(data.len());
            data.extend_from_slice(rest.get(..room.min(rest.len())).unwrap_or_default());
        }
        if data.is_empty() {
            return Err(StatusReply::new(SftpStatus::Eof));
        }
        Ok(Data { id, data })
    }

    async fn close(&mut self, id: u32, handle: String) -> Result<Status, Self::Error> {
        self.open.remove(&handle);
        Ok(Status {
            id,
            status_code: SftpStatus::Ok,
            error_message: "Ok".to_owned(),
            language_tag: "en-US".to_owned(),
        })
    }

    async fn opendir(&mut self, _id: u32, path: String) -> Result<Handle, Self::Error> {
        Err(refuse(
            SftpStatus::PermissionDenied,
            format!(
                "{path}: a vhost lists no directories over SFTP; name a file, e.g. get {}",
                target_of(&format!("{path}/index.html"))
            ),
        ))
    }
}

/// A stream that, when the client ends its side of the SFTP session, first runs
/// `on_end` (the gateway's exit status and EOF, as sshd sends them when sftp-server
/// exits; scp reports a failure without them) and only then shows the end to the
/// SFTP server, whose dropping the stream closes the channel: so the exit status
/// always comes before the close.
pub(super) struct EndSignal<T> {
    inner: T,
    on_end: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    at_end: bool,
}

impl<T> EndSignal<T> {
    pub(super) fn new(inner: T, on_end: impl Future<Output = ()> + Send + 'static) -> Self {
        Self {
            inner,
            on_end: Some(Box::pin(on_end)),
            at_end: false,
        }
    }
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for EndSignal<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.at_end {
            let before = buf.filled().len();
            let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
            match polled {
                Poll::Ready(Ok(())) if buf.filled().len() == before => self.at_end = true,
                Poll::Ready(Err(_)) => self.at_end = true,
                polled => return polled,
            }
        }
        if let Some(on_end) = &mut self.on_end {
            if on_end.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.on_end = None;
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for EndSignal<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sftp_paths_become_absolute_clean_targets() {
        assert_eq!(target_of("."), "/");
        assert_eq!(target_of(""), "/");
        assert_eq!(target_of("images/header.png"), "/images/header.png");
        assert_eq!(target_of("/a/./b/../c"), "/a/c");
        assert_eq!(target_of("/../../etc/passwd"), "/etc/passwd");
        assert_eq!(target_of("/a b#?"), "/a%20b%23%3F");
    }
}
