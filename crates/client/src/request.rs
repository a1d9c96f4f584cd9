//! [`Request`] and [`RequestBuilder`].

use std::time::Duration;

use http::header::{CONTENT_TYPE, HOST};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use serde::Serialize;

use crate::client::Client;
use crate::error::Error;
use crate::response::Response;
use sshttp_ssh::Body;

/// A request ready to send with [`Client::execute`].
#[derive(Debug)]
pub struct Request {
    inner: http::Request<Body>,
    timeout: Option<Duration>,
}

impl Request {
    /// A request without headers or body.
    pub fn new(method: Method, url: Uri) -> Self {
        let mut inner = http::Request::new(Body::empty());
        *inner.method_mut() = method;
        *inner.uri_mut() = url;
        Self {
            inner,
            timeout: None,
        }
    }

    /// The method.
    pub fn method(&self) -> &Method {
        self.inner.method()
    }

    /// The `sshttp://` URL.
    pub fn url(&self) -> &Uri {
        self.inner.uri()
    }

    /// The headers.
    pub fn headers(&self) -> &HeaderMap {
        self.inner.headers()
    }

    /// The headers, to change.
    pub fn headers_mut(&mut self) -> &mut HeaderMap {
        self.inner.headers_mut()
    }

    /// The body, to replace.
    pub fn body_mut(&mut self) -> &mut Body {
        self.inner.body_mut()
    }

    /// The timeout for this request, overriding the client's.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    pub(crate) fn into_parts(self) -> (http::Request<Body>, Option<Duration>) {
        (self.inner, self.timeout)
    }
}

impl From<http::Request<Body>> for Request {
    fn from(inner: http::Request<Body>) -> Self {
        Self {
            inner,
            timeout: None,
        }
    }
}

/// Builds a request; errors (a bad URL or header) are kept until [`send`](Self::send).
#[must_use = "a RequestBuilder does nothing until you `send` it"]
#[derive(Debug)]
pub struct RequestBuilder {
    client: Client,
    request: Result<Request, Error>,
}

impl RequestBuilder {
    pub(crate) fn new(client: Client, request: Result<Request, Error>) -> Self {
        Self { client, request }
    }

    fn and_then(mut self, f: impl FnOnce(&mut Request) -> Result<(), Error>) -> Self {
        if let Ok(request) = &mut self.request
            && let Err(error) = f(request)
        {
            self.request = Err(error);
        }
        self
    }

    /// Adds a header.
    pub fn header<K, V>(self, name: K, value: V) -> Self
    where
        K: TryInto<HeaderName>,
        K::Error: Into<http::Error>,
        V: TryInto<HeaderValue>,
        V::Error: Into<http::Error>,
    {
        self.and_then(|request| {
            let name = name.try_into().map_err(|e| Error::builder(e.into()))?;
            let value = value.try_into().map_err(|e| Error::builder(e.into()))?;
            request.headers_mut().append(name, value);
            Ok(())
        })
    }

    /// Adds these headers, replacing any of the same names.
    pub fn headers(self, headers: HeaderMap) -> Self {
        self.and_then(|request| {
            for (name, value) in &headers {
                request.headers_mut().insert(name, value.clone());
            }
            Ok(())
        })
    }

    /// Sends the request to this vhost of the gateway instead of the URL's host: one
    /// SSH connection to `sshttp://gw.example.com` reaches every vhost behind it.
    pub fn vhost(self, vhost: &str) -> Self {
        self.header(HOST, vhost)
    }

    /// Appends these pairs to the URL's query, encoded as a form would be.
    pub fn query<T: Serialize + ?Sized>(self, query: &T) -> Self {
        self.and_then(|request| {
            let encoded = serde_urlencoded::to_string(query).map_err(Error::builder)?;
            if encoded.is_empty() {
                return Ok(());
            }
            let url = request.url().clone();
            let mut parts = url.into_parts();
            let (path, old_query) = match &parts.path_and_query {
                Some(pq) => (pq.path().to_owned(), pq.query().map(str::to_owned)),
                None => ("/".to_owned(), None),
            };
            let query = match old_query {
                Some(old) if !old.is_empty() => format!("{old}&{encoded}"),
                _ => encoded,
            };
            parts.path_and_query = Some(format!("{path}?{query}").parse().map_err(Error::builder)?);
            *request.inner.uri_mut() = Uri::from_parts(parts).map_err(Error::builder)?;
            Ok(())
        })
    }

    /// The body: bytes, a string, or a [`Body`] made from a stream.
    pub fn body(self, body: impl Into<Body>) -> Self {
        self.and_then(|request| {
            *request.body_mut() = body.into();
            Ok(())
        })
    }

    /// A JSON body, with `content-type: application/json`.
    pub fn json<T: Serialize + ?Sized>(self, value: &T) -> Self {
        self.and_then(|request| {
            let json = serde_json::to_vec(value).map_err(Error::builder)?;
            set_content_type(request, "application/json");
            *request.body_mut() = Body::from(json);
            Ok(())
        })
    }

    /// A form body, with `content-type: application/x-www-form-urlencoded`.
    pub fn form<T: Serialize + ?Sized>(self, value: &T) -> Self {
        self.and_then(|request| {
            let form = serde_urlencoded::to_string(value).map_err(Error::builder)?;
            set_content_type(request, "application/x-www-form-urlencoded");
            *request.body_mut() = Body::from(form);
            Ok(())
        })
    }

    /// The timeout for this request, from sending it to the end of the response body.
    pub fn timeout(self, timeout: Duration) -> Self {
        self.and_then(|request| {
            request.timeout = Some(timeout);
            Ok(())
        })
    }

    /// The request, without sending it.
    pub fn build(self) -> Result<Request, Error> {
        self.request
    }

    /// Sends the request; resolves when the response head has arrived. The body
    /// streams behind it.
    pub async fn send(self) -> Result<Response, Error> {
        self.client.execute(self.request?).await
    }
}

fn set_content_type(request: &mut Request, value: &'static str) {
    if !request.headers().contains_key(CONTENT_TYPE) {
        request
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(value));
    }
}
