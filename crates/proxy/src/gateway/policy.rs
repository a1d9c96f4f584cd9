//! The per-request policy of `sshttp serve` as tower layers, composed top to bottom in
//! [`stack`]: what happens to a request between the SSH layer (which authenticated the
//! connection and routed the request to a vhost) and the upstream.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response, StatusCode};
use http_body::Body as _;
use http_body_util::BodyExt as _;
use sshttp_ssh::Body;
use tower::ServiceBuilder;
use tower::layer::layer_fn;
use tower_service::Service;

use super::rate::Refusal;
use super::{CountedBody, JWKS_PATH, Site, State, Vhost, jwks_response, sign};
use crate::config::RateLimitConfig;
use crate::gate::Route;
use crate::identity::SSHTTP_IDENTITY_ASSERTION;
use crate::metrics::Metrics;
use crate::ssh::Refused;
use crate::upstream::{GatewayBody, Holding, UpstreamBody, error_response};

/// What every stage returns: a response, never an error (failures are responses).
pub(super) type Answer =
    Pin<Box<dyn Future<Output = Result<Response<GatewayBody>, Infallible>> + Send>>;

/// The stack [`stack`] builds.
pub(super) type Stack = Admit<RateLimit<Jwks<Identity<BodyLimit<Forward>>>>>;

/// The bytes of request body the upstream has read, for the access log: put in the
/// request's extensions by the observer (`GatewayService`), counted by [`BodyLimit`].
#[derive(Clone)]
pub(super) struct RequestBytes(pub(super) Arc<AtomicU64>);

/// The gateway's policy for one request, in the order it applies. The access log and
/// metrics observe the whole of it from outside (`GatewayService`).
pub(super) fn stack(state: &Arc<State>) -> Stack {
    let admit_state = state.clone();
    let issuer = state.issuer.clone();
    let rate_metrics = state.metrics.clone();
    ServiceBuilder::new()
        // The vhost the SSH layer routed to, in the configuration now in force.
        .layer(layer_fn(move |inner| Admit {
            inner,
            state: admit_state.clone(),
        }))
        // The vhost's per-caller limits: 429 past the rate or the requests in flight.
        .layer(layer_fn(move |inner| RateLimit {
            inner,
            metrics: rate_metrics.clone(),
        }))
        // The vhost's JWKS, answered here and never forwarded.
        .layer(layer_fn(|inner| Jwks { inner }))
        // Identity fields replace what the client sent; the assertion is signed.
        .layer(layer_fn(move |inner| Identity {
            inner,
            issuer: issuer.clone(),
        }))
        // The request-body limit: 413 before or during the body.
        .layer(layer_fn(|inner| BodyLimit { inner }))
        .service(Forward {
            metrics: state.metrics.clone(),
        })
}

/// The routed vhost, resolved once for the stages below.
#[derive(Clone)]
pub(super) struct Admitted {
    site: Arc<Site>,
    vhost: Arc<Vhost>,
    route: Route,
}

/// Resolves the request's [`Route`] against the current site: 500 without one, 421
/// for a vhost a reload removed.
#[derive(Clone)]
pub(super) struct Admit<S> {
    inner: S,
    state: Arc<State>,
}

impl<S> Service<Request<Body>> for Admit<S>
where
    S: Service<
            Request<Body>,
            Response = Response<GatewayBody>,
            Error = Infallible,
            Future = Answer,
        >,
{
    type Response = Response<GatewayBody>;
    type Error = Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<Body>) -> Answer {
        let site = self.state.site();
        let Some(route) = request.extensions_mut().remove::<Route>() else {
            let message = "request reached the gateway without a route";
            return answer(error_response(StatusCode::INTERNAL_SERVER_ERROR, message));
        };
        let Some(vhost) = self.state.vhost(&site, &route.vhost) else {
            let message = format!("virtual host {:?} was removed by a reload", route.vhost);
            return answer(error_response(StatusCode::MISDIRECTED_REQUEST, &message));
        };
        request
            .extensions_mut()
            .insert(Admitted { site, vhost, route });
        self.inner.call(request)
    }
}

/// The vhost's per-caller limits (spec §11.3): a request over the rate or over the
/// caller's requests in flight is answered 429 with `retry-after`; an admitted one
/// counts as in flight until its response body has been sent or dropped.
#[derive(Clone)]
pub(super) struct RateLimit<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S> Service<Request<Body>> for RateLimit<S>
where
    S: Service<
            Request<Body>,
            Response = Response<GatewayBody>,
            Error = Infallible,
            Future = Answer,
        >,
{
    type Response = Response<GatewayBody>;
    type Error = Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Answer {
        let Some(Admitted { vhost, route, .. }) = request.extensions().get::<Admitted>() else {
            return self.inner.call(request);
        };
        let limits = &vhost.limits;
        match limits.admit(&route.identity.limit_key(None)) {
            Ok(in_flight) => {
                let forwarded = self.inner.call(request);
                Box::pin(async move {
                    let response = forwarded.await?;
                    Ok(response.map(|body| {
                        Holding {
                            inner: body,
                            _guard: in_flight,
                        }
                        .boxed_unsync()
                    }))
                })
            }
            Err(refusal) => {
                self.metrics.rate_limited(&route.vhost, refusal.reason());
                answer(too_many_requests(&route.vhost, limits.config(), &refusal))
            }
        }
    }
}

/// The 429 of a per-caller limit, with `retry-after` and the line a command shows.
fn too_many_requests(
    vhost: &str,
    config: &RateLimitConfig,
    refusal: &Refusal,
) -> Response<GatewayBody> {
    let retry_after = refusal.retry_after_secs();
    let line = match refusal {
        Refusal::Rate { .. } => {
            let per_second = config.requests_per_second.unwrap_or(0.0);
            let burst = config.burst_or_default();
            format!(
                "over the limit of {per_second} requests per second (burst {burst}) per caller of {vhost}; retry after {retry_after} s"
            )
        }
        Refusal::InFlight => format!(
            "at the limit of {} requests in flight per caller of {vhost}; retry after {retry_after} s",
            config.max_in_flight
        ),
    };
    let mut response = error_response(StatusCode::TOO_MANY_REQUESTS, &line);
    response
        .headers_mut()
        .insert(http::header::RETRY_AFTER, HeaderValue::from(retry_after));
    response.extensions_mut().insert(Refused(line));
    response
}

/// Answers [`JWKS_PATH`] with the keys that verify the site's assertions.
#[derive(Clone)]
pub(super) struct Jwks<S> {
    inner: S,
}

impl<S> Service<Request<Body>> for Jwks<S>
where
    S: Service<
            Request<Body>,
            Response = Response<GatewayBody>,
            Error = Infallible,
            Future = Answer,
        >,
{
    type Response = Response<GatewayBody>;
    type Error = Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Answer {
        if request.uri().path() == JWKS_PATH
            && let Some(admitted) = request.extensions().get::<Admitted>()
        {
            return answer(jwks_response(admitted.site.assertion.as_ref()));
        }
        self.inner.call(request)
    }
}

/// Writes the identity fields (spec §13) over whatever the client sent and, if the
/// vhost wants one, the signed identity assertion.
#[derive(Clone)]
pub(super) struct Identity<S> {
    inner: S,
    issuer: String,
}

impl<S> Service<Request<Body>> for Identity<S>
where
    S: Service<
            Request<Body>,
            Response = Response<GatewayBody>,
            Error = Infallible,
            Future = Answer,
        >,
{
    type Response = Response<GatewayBody>;
    type Error = Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<Body>) -> Answer {
        // Taken out and put back rather than cloned: the caller's identity is strings.
        let Some(admitted) = request.extensions_mut().remove::<Admitted>() else {
            return self.inner.call(request);
        };
        let Admitted { site, vhost, route } = &admitted;
        route.identity.apply(request.headers_mut(), &route.vhost);
        if vhost.identity_assertion
            && let Some((signer, lifetime)) = &site.assertion
        {
            match sign(signer, *lifetime, route, &self.issuer) {
                Ok(token) => {
                    request
                        .headers_mut()
                        .insert(SSHTTP_IDENTITY_ASSERTION, token);
                }
                Err(error) => {
                    let message = sshttp_ssh::error_chain(&error);
                    tracing::error!(%message, "cannot sign the identity assertion");
                    return answer(error_response(StatusCode::INTERNAL_SERVER_ERROR, &message));
                }
            }
        }
        request.extensions_mut().insert(admitted);
        self.inner.call(request)
    }
}

/// The site's request-body limit: 413 for a body declared or known to be larger, and
/// for one that grows past it while the upstream reads it.
#[derive(Clone)]
pub(super) struct BodyLimit<S> {
    inner: S,
}

impl<S> Service<Request<Body>> for BodyLimit<S>
where
    S: Service<
            Request<UpstreamBody>,
            Response = Response<GatewayBody>,
            Error = Infallible,
            Future = Answer,
        >,
{
    type Response = Response<GatewayBody>;
    type Error = Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Answer {
        let limit = request
            .extensions()
            .get::<Admitted>()
            .map_or(u64::MAX, |admitted| admitted.site.max_request_body);
        let count = request
            .extensions()
            .get::<RequestBytes>()
            .map_or_else(|| Arc::new(AtomicU64::new(0)), |bytes| bytes.0.clone());
        let declared = request
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok()?.parse::<u64>().ok())
            .unwrap_or(0);
        if declared.max(request.body().size_hint().lower()) > limit {
            return answer(too_large(limit));
        }
        let exceeded = Arc::new(AtomicBool::new(false));
        let mut request = request.map(|body| {
            CountedBody {
                inner: body,
                count,
                limit,
                exceeded: exceeded.clone(),
            }
            .boxed_unsync()
        });
        request.extensions_mut().insert(OverLimit(exceeded.clone()));
        let forwarded = self.inner.call(request);
        Box::pin(async move {
            let response = forwarded.await?;
            if exceeded.load(Ordering::Acquire) {
                return Ok(too_large(limit));
            }
            Ok(response)
        })
    }
}

/// Set when the request body grew past the limit: the upstream's failure that follows
/// is this gateway's doing, not the upstream's, and is not counted against it.
#[derive(Clone)]
struct OverLimit(Arc<AtomicBool>);

fn too_large(limit: u64) -> Response<GatewayBody> {
    let message = format!("the request body is larger than this gateway's limit of {limit} bytes");
    error_response(StatusCode::PAYLOAD_TOO_LARGE, &message)
}

/// The vhost's upstream, through its hyper client (`upstream.rs`); failures counted.
#[derive(Clone)]
pub(super) struct Forward {
    metrics: Arc<Metrics>,
}

impl Service<Request<UpstreamBody>> for Forward {
    type Response = Response<GatewayBody>;
    type Error = Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<UpstreamBody>) -> Answer {
        let Some(Admitted { vhost, route, .. }) = request.extensions_mut().remove::<Admitted>()
        else {
            let message = "request reached the upstream stage without a vhost";
            return answer(error_response(StatusCode::INTERNAL_SERVER_ERROR, message));
        };
        let metrics = self.metrics.clone();
        let over_limit = request.extensions().get::<OverLimit>().cloned();
        Box::pin(async move {
            let (response, failure) = vhost.upstream.forward(request, &route.vhost).await;
            let ours = over_limit.is_some_and(|over| over.0.load(Ordering::Acquire));
            if let Some(failure) = failure
                && !ours
            {
                metrics.upstream_error(&route.vhost, failure.as_str());
            }
            Ok(response)
        })
    }
}

fn answer(response: Response<GatewayBody>) -> Answer {
    Box::pin(std::future::ready(Ok(response)))
}
