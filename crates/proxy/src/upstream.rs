//! The gateway's seam to hyper's client: forwarding a request to a vhost's upstream
//! HTTP(S) service, with pooled connections, a bound on requests in flight, timeouts,
//! and errors as 502/503/504 responses.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use hyper_rustls::{ConfigBuilderExt, FixedServerNameResolver, HttpsConnector};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use sshttp_ssh::BoxError;
use tokio::sync::Semaphore;

use crate::config::GatewayLimits;
use crate::error::Error;

/// A response body from the gateway: the upstream's, streamed, or the gateway's own.
pub(crate) type GatewayBody = UnsyncBoxBody<Bytes, BoxError>;

/// A request body on its way upstream.
pub(crate) type UpstreamBody = UnsyncBoxBody<Bytes, BoxError>;

/// One upstream service: where it is and a pool of connections to it.
#[derive(Clone, Debug)]
pub(crate) struct UpstreamClient {
    client: Pool,
    scheme: Scheme,
    authority: Authority,
    /// The URL's path without its trailing `/`, prefixed to every request path.
    prefix: String,
    response_timeout: Duration,
    /// One permit per request in flight (see
    /// [`crate::config::DEFAULT_MAX_UPSTREAM_REQUESTS`]).
    in_flight: Arc<Semaphore>,
    max_in_flight: usize,
    /// How long a request waits for a permit: the connect timeout, since waiting for
    /// a permit stands in for waiting to connect.
    permit_wait: Duration,
}

/// hyper's pooled client: to a network address, or over a publisher's SSH
/// connection (`crate::publish`).
#[derive(Clone, Debug)]
enum Pool {
    Network(Client<HttpsConnector<HttpConnector>, UpstreamBody>),
    Published(Client<crate::publish::Connector, UpstreamBody>),
}

impl Pool {
    fn request(
        &self,
        request: Request<UpstreamBody>,
    ) -> hyper_util::client::legacy::ResponseFuture {
        match self {
            Self::Network(client) => client.request(request),
            Self::Published(client) => client.request(request),
        }
    }
}

/// Why an upstream did not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UpstreamFailure {
    /// No connection could be made: 502.
    Connect,
    /// No response head within the timeout: 504.
    Timeout,
    /// The connection failed during the exchange: 502.
    Other,
    /// The upstream had its maximum of requests in flight for the whole wait: 503.
    Busy,
}

impl UpstreamFailure {
    /// The label used in metrics and logs.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Timeout => "timeout",
            Self::Other => "other",
            Self::Busy => "busy",
        }
    }
}

impl UpstreamClient {
    /// A client for the upstream at `url` (`http://…` or `https://…`). For https,
    /// `ca_file` replaces the web PKI roots and `server_name` the name checked.
    pub(crate) fn new(
        url: &Uri,
        ca_file: Option<&Path>,
        server_name: Option<&str>,
        limits: &GatewayLimits,
    ) -> Result<Self, Error> {
        let invalid = |message: String| Error::invalid(format!("upstream {url}: {message}"));
        let scheme = url
            .scheme()
            .cloned()
            .ok_or_else(|| invalid("no scheme".to_owned()))?;
        let authority = url
            .authority()
            .cloned()
            .ok_or_else(|| invalid("no host".to_owned()))?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(limits.upstream_connect_timeout));
        let tls = tls_config(ca_file).map_err(invalid)?;
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http();
        let builder = match server_name {
            Some(name) => {
                let name = ServerName::try_from(name.to_owned())
                    .map_err(|error| invalid(format!("server_name {name:?}: {error}")))?;
                builder.with_server_name_resolver(FixedServerNameResolver::new(name))
            }
            None => builder,
        };
        let connector = builder.enable_http1().wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(limits.upstream_idle_per_host)
            .pool_idle_timeout(limits.upstream_idle_timeout)
            .build(connector);
        Ok(Self {
            client: Pool::Network(client),
            scheme,
            authority,
            prefix: url.path().trim_end_matches('/').to_owned(),
            response_timeout: limits.upstream_response_timeout,
            in_flight: Arc::new(Semaphore::new(limits.max_upstream_requests)),
            max_in_flight: limits.max_upstream_requests,
            permit_wait: limits.upstream_connect_timeout,
        })
    }

    /// A client for a published name (spec §14.14): its connections are
    /// `forwarded-tcpip` channels to the name's publishers, pooled and reused like TCP
    /// connections, at most the rule's `max_visitor_channels` per publishing
    /// connection; a request waits up to `wait` for one.
    pub(crate) fn published(
        connector: crate::publish::Connector,
        limits: &GatewayLimits,
        wait: Duration,
    ) -> Self {
        let authority = Authority::try_from(connector.name.as_str())
            .unwrap_or_else(|_| Authority::from_static("published.invalid"));
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(limits.upstream_idle_per_host)
            .pool_idle_timeout(limits.upstream_idle_timeout)
            .build(connector);
        Self {
            client: Pool::Published(client),
            scheme: Scheme::HTTP,
            authority,
            prefix: String::new(),
            response_timeout: limits.upstream_response_timeout,
            in_flight: Arc::new(Semaphore::new(limits.max_upstream_requests)),
            max_in_flight: limits.max_upstream_requests,
            permit_wait: wait,
        }
    }

    /// Sends `request` (its URI's path and query are kept) to the upstream and returns
    /// the response, its body streamed. Failures become 502/504 responses with a
    /// plain-text body saying what happened, plus the failure kind.
    pub(crate) async fn forward(
        &self,
        mut request: Request<UpstreamBody>,
        vhost: &str,
    ) -> (Response<GatewayBody>, Option<UpstreamFailure>) {
        let path = request
            .uri()
            .path_and_query()
            .map_or("/", PathAndQuery::as_str);
        let uri = Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(format!("{}{path}", self.prefix))
            .build();
        match uri {
            Ok(uri) => *request.uri_mut() = uri,
            Err(error) => {
                let message = format!("request target not forwardable: {error}");
                return (error_response(StatusCode::BAD_REQUEST, &message), None);
            }
        }
        // On sshttp `connection: upgrade` is implied by `upgrade` (spec §8.1); HTTP/1.1
        // needs it spelled out.
        if request.headers().contains_key(header::UPGRADE) {
            request.headers_mut().insert(
                header::CONNECTION,
                http::HeaderValue::from_static("upgrade"),
            );
        }
        if let Some(interim) = request
            .extensions()
            .get::<crate::ssh::InterimSender>()
            .cloned()
        {
            hyper::ext::on_informational(&mut request, move |response| {
                let mut head = http::Response::new(());
                *head.status_mut() = response.status();
                *head.headers_mut() = response.headers().clone();
                interim.send(head.into_parts().0);
            });
        }
        let acquire = self.in_flight.clone().acquire_owned();
        let Ok(Ok(permit)) = tokio::time::timeout(self.permit_wait, acquire).await else {
            let max = self.max_in_flight;
            tracing::warn!(%vhost, upstream = %self.authority, max, "upstream at its maximum of requests in flight");
            let message = format!(
                "the upstream of {vhost} has its maximum of {max} requests in flight; try again"
            );
            let mut response = error_response(StatusCode::SERVICE_UNAVAILABLE, &message);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, http::HeaderValue::from_static("1"));
            return (response, Some(UpstreamFailure::Busy));
        };
        let response = tokio::time::timeout(self.response_timeout, self.client.request(request));
        match response.await {
            // The permit goes with the body: the upstream connection is busy until the
            // body has been read or dropped.
            Ok(Ok(response)) => (
                response.map(|body| {
                    Holding {
                        inner: body,
                        _guard: permit,
                    }
                    .map_err(BoxError::from)
                    .boxed_unsync()
                }),
                None,
            ),
            Ok(Err(error)) if request_body_failed(&error) => {
                // The client's request body failed (aborted, stalled, malformed
                // chunking through a tunnel): the client's error, not the upstream's.
                let cause = sshttp_ssh::error_chain(&error);
                tracing::debug!(%vhost, %cause, "request body failed");
                let message = format!("the request body could not be read: {}", body_cause(&error));
                (error_response(StatusCode::BAD_REQUEST, &message), None)
            }
            Ok(Err(error)) => {
                let failure = if error.is_connect() {
                    UpstreamFailure::Connect
                } else {
                    UpstreamFailure::Other
                };
                let cause = sshttp_ssh::error_chain(&error);
                tracing::warn!(%vhost, upstream = %self.authority, %cause, "upstream request failed");
                let message = match failure {
                    UpstreamFailure::Connect => {
                        format!("the gateway could not connect to the upstream of {vhost}: {cause}")
                    }
                    _ => format!("the upstream of {vhost} failed: {cause}"),
                };
                (
                    error_response(StatusCode::BAD_GATEWAY, &message),
                    Some(failure),
                )
            }
            Err(_elapsed) => {
                let secs = self.response_timeout.as_secs();
                tracing::warn!(%vhost, upstream = %self.authority, secs, "upstream timed out");
                let message = format!("the upstream of {vhost} did not answer within {secs} s");
                let response = error_response(StatusCode::GATEWAY_TIMEOUT, &message);
                (response, Some(UpstreamFailure::Timeout))
            }
        }
    }
}

/// Whether hyper failed because the request body it was sending failed: a user
/// error (the body stream is the caller's) that carries the body's own error. hyper's
/// other user errors (a dispatch task gone, say) carry none and stay the upstream's.
fn request_body_failed(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if let Some(hyper) = error.downcast_ref::<hyper::Error>() {
            return hyper.is_user() && std::error::Error::source(hyper).is_some();
        }
        cause = error.source();
    }
    false
}

/// The innermost cause of a failed request body: what went wrong with it, without
/// hyper's layers of "error from user's Body stream".
fn body_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut innermost = error;
    while let Some(source) = innermost.source() {
        innermost = source;
    }
    innermost.to_string()
}

/// A response body that holds a guard until it is dropped: its upstream's in-flight
/// permit, or its caller's count of requests in flight.
pub(crate) struct Holding<B, G> {
    pub(crate) inner: B,
    pub(crate) _guard: G,
}

impl<B: http_body::Body + Unpin, G: Unpin> http_body::Body for Holding<B, G> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A plain-text response from the gateway itself.
pub(crate) fn error_response(status: StatusCode, message: &str) -> Response<GatewayBody> {
    full_response(status, "text/plain; charset=utf-8", format!("{message}\n"))
}

/// A response whose body is all here.
pub(crate) fn full_response(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<GatewayBody> {
    let mut response = Response::new(
        Full::new(body.into())
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    response
}

fn tls_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| error.to_string())?;
    let config = match ca_file {
        None => builder.with_webpki_roots().with_no_client_auth(),
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|error| format!("ca_file {}: {error}", path.display()))?;
            for cert in certs {
                let cert = cert.map_err(|error| format!("ca_file {}: {error}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|error| format!("ca_file {}: {error}", path.display()))?;
            }
            if roots.is_empty() {
                return Err(format!("ca_file {}: no certificates", path.display()));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    Ok(config)
}
