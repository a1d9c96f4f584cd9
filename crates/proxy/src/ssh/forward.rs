//! `direct-tcpip` channels (`ssh -L`, `ssh -D`; spec §14.10): the destination names a
//! vhost, and the channel carries HTTP/1.1 that the gateway serves as that vhost, with
//! the same policy, identity fields and limits as method channels.
//!
//! The gateway never relays bytes to the destination: hyper parses each request on the
//! channel, and the request goes through the gateway's service like any other. hyper
//! is named here as well as in `upstream.rs` because this is the one place the gateway
//! is an HTTP/1.1 *server*.

use std::sync::Arc;

use bytes::Buf;
use http::{HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use sshttp_protocol::{Limits, OpenFailureReason};
use sshttp_ssh::Body;
use sshttp_ssh::BoxError;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::gate::{Drain, Gatekeeper, Grant, OpenRefusal, Route};

/// The one destination port a vhost answers on: `ssh -L 8080:VHOST:80`.
pub(super) const HTTP_PORT: u32 = 80;

/// Routes a tunnel to `host:port`, a `direct-tcpip` channel (spec §14.10) or an
/// `http-connect` (spec §14.11): the host must name a vhost itself (a default vhost
/// never stands in for it), on port 80; no vhost passes TLS through.
pub(super) fn tunnel_route(
    gatekeeper: &dyn Gatekeeper,
    grant: &Grant,
    host: &str,
    port: Option<u32>,
) -> Result<Route, OpenRefusal> {
    let refused = |why: String| (OpenFailureReason::ADMINISTRATIVELY_PROHIBITED, why);
    if port != Some(HTTP_PORT) {
        let port = port.map_or_else(|| "none".to_owned(), |port| port.to_string());
        return Err(refused(format!(
            "port {port}: this gateway tunnels plain HTTP to its virtual hosts on port \
             {HTTP_PORT} only (no TLS pass-through is configured)"
        )));
    }
    match gatekeeper.route(grant, Some(host)) {
        Ok(route) if route.vhost.eq_ignore_ascii_case(host) => Ok(route),
        Ok(_) | Err(_) => Err(refused("not a virtual host of this gateway".to_owned())),
    }
}

/// Decides whether a `direct-tcpip` channel to `host:port` may be served: a tunnel
/// route, for a key that may forward ports.
pub(super) fn admit(
    gatekeeper: &dyn Gatekeeper,
    grant: &Grant,
    host: &str,
    port: u32,
) -> Result<(), OpenRefusal> {
    let route = tunnel_route(gatekeeper, grant, host, Some(port))?;
    if !route.permissions.port_forwarding {
        return Err((
            OpenFailureReason::ADMINISTRATIVELY_PROHIBITED,
            "port forwarding is not permitted for this key (authorized_keys \
             restrict or no-port-forwarding)"
                .to_owned(),
        ));
    }
    Ok(())
}

/// What serving one forwarded channel (or CONNECT tunnel) needs.
pub(super) struct Forwarded<S, IO> {
    /// The channel's bytes: a `direct-tcpip` stream or an `http-connect` tunnel.
    pub(super) io: IO,
    pub(super) vhost: String,
    pub(super) grant: Grant,
    pub(super) gatekeeper: Arc<dyn Gatekeeper>,
    pub(super) drain: Drain,
    pub(super) limits: Limits,
    pub(super) service: S,
}

/// Serves HTTP/1.1 on the channel until the client closes it. Upgrade requests
/// (WebSocket) are spliced to the upstream's upgraded connection after its 101.
pub(super) async fn serve<S, B, IO>(forwarded: Forwarded<S, IO>)
where
    S: super::RequestService<B>,
    B: super::ResponseBody,
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let Forwarded {
        io,
        vhost,
        grant,
        gatekeeper,
        drain,
        limits,
        service,
    } = forwarded;
    let io = TokioIo::new(io);
    let handler =
        hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
            let mut service = service.clone();
            let gatekeeper = gatekeeper.clone();
            let grant = grant.clone();
            let vhost = vhost.clone();
            let drain = drain.clone();
            async move {
                // Checked per request, so that a reload applies to a long-lived tunnel.
                let route = match gatekeeper.route(&grant, Some(&vhost)) {
                    Ok(route) => route,
                    Err((reason, description)) => {
                        return Ok::<_, std::convert::Infallible>(text(
                            reason.http_status(),
                            description,
                        ));
                    }
                };
                let Some(_in_flight) = drain.enter() else {
                    let mut response = text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the gateway is shutting down".into(),
                    );
                    response
                        .headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                    return Ok(response);
                };
                let mut request = request;
                let client_upgrade = request
                    .headers()
                    .contains_key(header::UPGRADE)
                    .then(|| hyper::upgrade::on(&mut request));
                let (mut parts, body) = request.into_parts();
                // The destination chose the vhost; the client's Host field does not.
                if let Ok(host) = HeaderValue::from_str(&route.vhost) {
                    parts.headers.insert(header::HOST, host);
                }
                parts.extensions.insert(route.identity.clone());
                parts.extensions.insert(route);
                let request = http::Request::from_parts(parts, Body::wrap(body));
                match service.call(request).await {
                    Ok(mut response) => {
                        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                            match client_upgrade {
                                Some(client) => {
                                    let upstream = hyper::upgrade::on(&mut response);
                                    tokio::spawn(splice(client, upstream));
                                }
                                None => {
                                    return Ok(text(
                                        StatusCode::BAD_GATEWAY,
                                        "the upstream switched protocols unasked".into(),
                                    ));
                                }
                            }
                        }
                        Ok(response.map(|body| {
                            body.map_frame(|frame| {
                                frame.map_data(|mut data| data.copy_to_bytes(data.remaining()))
                            })
                            .map_err(|error| -> BoxError { error.into() })
                            .boxed_unsync()
                        }))
                    }
                    Err(error) => {
                        let error: BoxError = error.into();
                        Ok(text(StatusCode::BAD_GATEWAY, error.to_string()))
                    }
                }
            }
        });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .max_headers(limits.max_header_count)
        .max_buf_size(limits.max_header_list_bytes.max(8192));
    if let Err(error) = builder.serve_connection(io, handler).with_upgrades().await {
        tracing::debug!("forwarded HTTP/1.1 connection ended: {error}");
    }
}

/// Copies bytes both ways between the client's and the upstream's upgraded
/// connections until both directions end.
async fn splice(client: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(both) => both,
        Err(error) => {
            tracing::debug!("upgrade failed: {error}");
            return;
        }
    };
    let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
    if let Err(error) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        tracing::debug!("upgraded connection ended: {error}");
    }
}

/// A short text response from the gateway itself.
fn text(
    status: StatusCode,
    message: String,
) -> http::Response<http_body_util::combinators::UnsyncBoxBody<bytes::Bytes, BoxError>> {
    let mut response = http::Response::new(
        Full::new(bytes::Bytes::from(message + "\n"))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
