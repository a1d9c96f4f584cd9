//! [`Response`]: the head at hand, the body streaming behind it.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_core::Stream;
use http::{HeaderMap, StatusCode, Uri, Version};
use http_body::Body as _;
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;

use crate::error::{Error, Kind};
use sshttp_ssh::{Body, BodyError};

/// A response whose head has arrived; read the body with [`bytes`](Self::bytes),
/// [`text`](Self::text), [`json`](Self::json), [`chunk`](Self::chunk) or
/// [`bytes_stream`](Self::bytes_stream). Dropping it before the end cancels the
/// transfer at the gateway.
#[derive(Debug)]
pub struct Response {
    inner: http::Response<Body>,
    url: Uri,
}

impl Response {
    pub(crate) fn new(inner: http::Response<Body>, url: Uri) -> Self {
        Self { inner, url }
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.inner.status()
    }

    /// The HTTP version as the upstream's semantics go: sshttp carries HTTP/1.1.
    pub fn version(&self) -> Version {
        self.inner.version()
    }

    /// The headers.
    pub fn headers(&self) -> &HeaderMap {
        self.inner.headers()
    }

    /// The headers, to change.
    pub fn headers_mut(&mut self) -> &mut HeaderMap {
        self.inner.headers_mut()
    }

    /// The extensions, such as [`InterimResponses`](crate::InterimResponses).
    pub fn extensions(&self) -> &http::Extensions {
        self.inner.extensions()
    }

    /// The URL the request was sent to.
    pub fn url(&self) -> &Uri {
        &self.url
    }

    /// The `content-length`, when the response declares one.
    pub fn content_length(&self) -> Option<u64> {
        self.inner
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse().ok())
    }

    /// An error if the status is 400 or more; the response otherwise.
    pub fn error_for_status(self) -> Result<Self, Error> {
        let status = self.status();
        if status.is_client_error() || status.is_server_error() {
            return Err(Error::new(Kind::Status(status)).with_url(&self.url));
        }
        Ok(self)
    }

    /// The whole body. Buffers it all: for large bodies, use
    /// [`chunk`](Self::chunk) or [`bytes_stream`](Self::bytes_stream).
    pub async fn bytes(self) -> Result<Bytes, Error> {
        let url = self.url;
        match self.inner.into_body().collect().await {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(error) => Err(body_error(error).with_url(&url)),
        }
    }

    /// The whole body as UTF-8 text.
    pub async fn text(self) -> Result<String, Error> {
        let url = self.url.clone();
        let bytes = self.bytes().await?;
        String::from_utf8(bytes.to_vec())
            .map_err(|error| Error::with(Kind::Decode, error).with_url(&url))
    }

    /// The whole body, parsed as JSON.
    pub async fn json<T: DeserializeOwned>(self) -> Result<T, Error> {
        let url = self.url.clone();
        let bytes = self.bytes().await?;
        serde_json::from_slice(&bytes)
            .map_err(|error| Error::with(Kind::Decode, error).with_url(&url))
    }

    /// The next piece of the body, `None` at its end. Trailers are skipped; use
    /// [`into_http`](Self::into_http) to see them.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, Error> {
        loop {
            match self.inner.body_mut().frame().await {
                None => return Ok(None),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        return Ok(Some(data));
                    }
                }
                Some(Err(error)) => return Err(body_error(error).with_url(&self.url)),
            }
        }
    }

    /// The body as a stream of byte chunks, read as it arrives.
    pub fn bytes_stream(self) -> BytesStream {
        BytesStream {
            body: self.inner.into_body(),
            url: self.url,
        }
    }

    /// The response as an [`http::Response`], body and trailers included.
    pub fn into_http(self) -> http::Response<Body> {
        self.inner
    }

    /// The tunnel this response established: after a 101 to a request that carried
    /// `upgrade` (a WebSocket handshake), or a 2xx to CONNECT. Otherwise an error with
    /// [`Error::is_upgrade`]. Async like reqwest's, though the tunnel is ready at once.
    pub async fn upgrade(mut self) -> Result<crate::Upgraded, Error> {
        crate::upgrade::on(&mut self.inner).map_err(|error| error.with_url(&self.url))
    }
}

impl From<Response> for http::Response<Body> {
    fn from(response: Response) -> Self {
        response.inner
    }
}

/// A response body as a [`Stream`] of byte chunks, from [`Response::bytes_stream`].
#[derive(Debug)]
pub struct BytesStream {
    body: Body,
    url: Uri,
}

impl Stream for BytesStream {
    type Item = Result<Bytes, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            let frame = match Pin::new(&mut self.body).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Ready(Some(frame)) => frame,
            };
            match frame {
                Ok(frame) => {
                    if let Ok(data) = frame.into_data() {
                        return Poll::Ready(Some(Ok(data)));
                    }
                }
                Err(error) => {
                    return Poll::Ready(Some(Err(body_error(error).with_url(&self.url))));
                }
            }
        }
    }
}

fn body_error(error: BodyError) -> Error {
    let kind = if error.is_timeout() {
        Kind::Timeout
    } else {
        Kind::Body
    };
    Error::with(kind, error)
}
