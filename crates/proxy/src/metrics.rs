//! Prometheus metrics, served on a separate local listener.
//!
//! The exposition text is written by hand rather than with prometheus-client: the
//! gateway has a dozen fixed series, the format (0.0.4) is a few lines of text, and
//! this keeps the vhost-cardinality cap and the status-class labels in one readable
//! place without another dependency.

use crate::gate::Drain;
use crate::limits::{
    MAX_METRIC_VHOSTS, METRICS_ACCEPT_ERROR_BACKOFF as ACCEPT_ERROR_BACKOFF,
    METRICS_HEADER_READ_TIMEOUT as HEADER_READ_TIMEOUT, METRICS_SHUTDOWN_GRACE as SHUTDOWN_GRACE,
};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::{self, Write as _};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;

use crate::ssh::ConnectionStats;

/// The `vhost` label value for vhosts beyond [`MAX_METRIC_VHOSTS`].
pub(crate) const OTHER_VHOST: &str = "other";

/// Upper bounds (`le`, seconds) of the `sshttp_request_duration_seconds` buckets: the
/// Prometheus client defaults, extended to a minute for slow upstreams.
pub(crate) const DURATION_BUCKETS_SECONDS: [f64; 13] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// The `content-type` of `GET /metrics`.
pub(crate) const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The gateway's counters. Share as `Arc<Metrics>`; every method takes `&self`.
/// Unlabelled series are atomics; the per-vhost ones sit behind one mutex, held for a
/// few map operations per request.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    requests_in_flight: AtomicU64,
    vhosts: Mutex<BTreeMap<String, VhostMetrics>>,
    connection_limits: Arc<ConnectionStats>,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    /// This replica's name, in `sshttp_replica_info{replica}`, if known.
    replica: Option<String>,
    /// Whether every series carries `replica` too (config `instance` set).
    label_series: bool,
}

#[derive(Debug, Default)]
struct VhostMetrics {
    /// By status class (`2xx`, …).
    requests: BTreeMap<&'static str, u64>,
    request_bytes: u64,
    response_bytes: u64,
    duration: Histogram,
    /// By kind (`connect`, `timeout`, `other`).
    upstream_errors: BTreeMap<&'static str, u64>,
    /// By reason (`rate`, `in_flight`).
    rate_limited: BTreeMap<&'static str, u64>,
}

#[derive(Debug, Default)]
struct Histogram {
    /// Observations per bucket of [`DURATION_BUCKETS_SECONDS`] (not cumulative; the
    /// text format's cumulative counts are summed when rendering).
    buckets: [u64; DURATION_BUCKETS_SECONDS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        if let Some(bucket) = DURATION_BUCKETS_SECONDS
            .iter()
            .position(|le| seconds <= *le)
            .and_then(|index| self.buckets.get_mut(index))
        {
            *bucket = bucket.saturating_add(1);
        }
        self.count = self.count.saturating_add(1);
        self.sum += seconds;
    }
}

impl Metrics {
    /// All counters at zero.
    #[cfg(test)]
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// All counters at zero, for the replica `replica`: `sshttp_replica_info{replica}`
    /// names it, and with `label_series` every series carries `replica="…"` too, so
    /// that replicas behind a load balancer are told apart wherever their series meet.
    pub(crate) fn with_replica(replica: &str, label_series: bool) -> Self {
        Self {
            replica: Some(replica.to_owned()),
            label_series,
            ..Self::default()
        }
    }

    /// What the connection limits did: the SSH server counts into it, the metrics
    /// endpoint renders it.
    pub(crate) fn connection_stats(&self) -> &Arc<ConnectionStats> {
        &self.connection_limits
    }

    /// A configuration reload (SIGHUP) ended: `ok` if the new configuration runs.
    pub(crate) fn config_reloaded(&self, ok: bool) {
        let counter = if ok {
            &self.reloads_ok
        } else {
            &self.reloads_failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A request began: `sshttp_requests_in_flight` up. Pair each call with one
    /// [`request_finished`](Self::request_finished).
    pub(crate) fn request_started(&self) {
        self.requests_in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// A request ended with `status` after `duration`, having carried `request_bytes`
    /// and `response_bytes` of body: `sshttp_requests_in_flight` down, and the
    /// `vhost`'s `sshttp_requests_total{code}` (by status class), byte counters and
    /// `sshttp_request_duration_seconds` histogram updated.
    pub(crate) fn request_finished(
        &self,
        vhost: &str,
        status: u16,
        request_bytes: u64,
        response_bytes: u64,
        duration: Duration,
    ) {
        decrement(&self.requests_in_flight);
        self.with_vhost(vhost, |metrics| {
            let requests = metrics.requests.entry(status_class(status)).or_default();
            *requests = requests.saturating_add(1);
            metrics.request_bytes = metrics.request_bytes.saturating_add(request_bytes);
            metrics.response_bytes = metrics.response_bytes.saturating_add(response_bytes);
            metrics.duration.observe(duration.as_secs_f64());
        });
    }

    /// Forwarding to `vhost`'s upstream failed: `sshttp_upstream_errors_total{kind}`
    /// up. `kind` is `connect`, `timeout` or `other`; anything else counts as `other`.
    pub(crate) fn upstream_error(&self, vhost: &str, kind: &str) {
        let kind = match kind {
            "connect" => "connect",
            "timeout" => "timeout",
            "busy" => "busy",
            _ => "other",
        };
        self.with_vhost(vhost, |metrics| {
            let errors = metrics.upstream_errors.entry(kind).or_default();
            *errors = errors.saturating_add(1);
        });
    }

    /// A request to `vhost` was refused by its per-caller limits:
    /// `sshttp_rate_limited_total{reason}` up. `reason` is `rate` or `in_flight`.
    pub(crate) fn rate_limited(&self, vhost: &str, reason: &'static str) {
        self.with_vhost(vhost, |metrics| {
            let refused = metrics.rate_limited.entry(reason).or_default();
            *refused = refused.saturating_add(1);
        });
    }

    fn with_vhost(&self, vhost: &str, update: impl FnOnce(&mut VhostMetrics)) {
        // A panic elsewhere while the lock was held leaves counters that are still
        // worth serving.
        let mut vhosts = self.vhosts.lock().unwrap_or_else(PoisonError::into_inner);
        let key = if vhosts.contains_key(vhost) || vhosts.len() < MAX_METRIC_VHOSTS {
            vhost
        } else {
            OTHER_VHOST
        };
        if !vhosts.contains_key(key) {
            vhosts.insert(key.to_owned(), VhostMetrics::default());
        }
        if let Some(metrics) = vhosts.get_mut(key) {
            update(metrics);
        }
    }

    /// All series in the Prometheus text exposition format 0.0.4, each family with
    /// `# HELP` and `# TYPE` lines.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = self.render_into(&mut out);
        let Some(replica) = &self.replica else {
            return out;
        };
        let _ = family(
            &mut out,
            "sshttp_replica_info",
            "gauge",
            "This gateway's replica name (config instance, or the host name); always 1.",
        );
        let _ = writeln!(
            out,
            "sshttp_replica_info{{replica=\"{}\"}} 1",
            Escaped(replica)
        );
        if self.label_series {
            with_label(&out, "replica", replica)
        } else {
            out
        }
    }

    fn render_into(&self, out: &mut String) -> fmt::Result {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        family(
            out,
            "sshttp_connections_open",
            "gauge",
            "SSH connections currently open.",
        )?;
        writeln!(
            out,
            "sshttp_connections_open {}",
            load(&self.connection_limits.connections_open)
        )?;
        family(
            out,
            "sshttp_connections_total",
            "counter",
            "SSH connections accepted.",
        )?;
        writeln!(
            out,
            "sshttp_connections_total {}",
            load(&self.connection_limits.connections_total)
        )?;
        family(
            out,
            "sshttp_auth_failures_total",
            "counter",
            "Failed SSH authentication attempts.",
        )?;
        writeln!(
            out,
            "sshttp_auth_failures_total {}",
            load(&self.connection_limits.auth_failures)
        )?;
        family(
            out,
            "sshttp_requests_in_flight",
            "gauge",
            "HTTP requests being served.",
        )?;
        writeln!(
            out,
            "sshttp_requests_in_flight {}",
            load(&self.requests_in_flight)
        )?;

        let stats = &self.connection_limits;
        let limits: [(&str, &str, &str, &AtomicU64); 11] = [
            (
                "sshttp_unauthenticated_connections",
                "gauge",
                "SSH connections not yet authenticated.",
                &stats.unauthenticated,
            ),
            (
                "sshttp_channels_open",
                "gauge",
                "SSH channels open on all connections, from confirmation until both sides closed them.",
                &stats.channels_open,
            ),
            (
                "sshttp_unauthenticated_evicted_total",
                "counter",
                "Unauthenticated connections closed to make room under a cap (oldest first).",
                &stats.evicted,
            ),
            (
                "sshttp_login_timeouts_total",
                "counter",
                "Connections closed for not authenticating within the login grace time.",
                &stats.login_timeouts,
            ),
            (
                "sshttp_auth_tries_exceeded_total",
                "counter",
                "Connections closed after too many failed authentication attempts.",
                &stats.auth_tries_exceeded,
            ),
            (
                "sshttp_key_connections_refused_total",
                "counter",
                "Authentications refused because the key had its maximum of connections.",
                &stats.key_connections_refused,
            ),
            (
                "sshttp_idle_timeouts_total",
                "counter",
                "Authenticated connections closed after the idle-session timeout.",
                &stats.idle_timeouts,
            ),
            (
                "sshttp_body_timeouts_total",
                "counter",
                "Request or response bodies reset for making no progress.",
                &stats.body_timeouts,
            ),
            (
                "sshttp_accept_errors_total",
                "counter",
                "Failed accepts (mostly out of file descriptors); the gateway kept serving.",
                &stats.accept_errors,
            ),
            (
                "sshttp_proxy_header_refused_total",
                "counter",
                "Connections refused for their PROXY header: missing from a trusted balancer, malformed or late, or sent by an untrusted peer.",
                &stats.proxy_header_refused,
            ),
            (
                "sshttp_fd_limit",
                "gauge",
                "The soft limit on open file descriptors the gateway runs with.",
                &stats.fd_limit,
            ),
        ];
        for (name, kind, help, counter) in limits {
            family(out, name, kind, help)?;
            writeln!(out, "{name} {}", load(counter))?;
        }
        family(
            out,
            "sshttp_config_reloads_total",
            "counter",
            "Configuration reloads (SIGHUP), by result; a failed one leaves the running configuration.",
        )?;
        for (result, counter) in [("ok", &self.reloads_ok), ("failed", &self.reloads_failed)] {
            writeln!(
                out,
                "sshttp_config_reloads_total{{result=\"{result}\"}} {}",
                load(counter)
            )?;
        }

        let vhosts = self.vhosts.lock().unwrap_or_else(PoisonError::into_inner);
        family(
            out,
            "sshttp_requests_total",
            "counter",
            "HTTP requests served, by vhost and status class.",
        )?;
        for (vhost, metrics) in vhosts.iter() {
            for (code, count) in &metrics.requests {
                writeln!(
                    out,
                    "sshttp_requests_total{{vhost=\"{}\",code=\"{code}\"}} {count}",
                    Escaped(vhost)
                )?;
            }
        }
        family(
            out,
            "sshttp_request_bytes_total",
            "counter",
            "Request body bytes received from clients, by vhost.",
        )?;
        for (vhost, metrics) in vhosts.iter() {
            writeln!(
                out,
                "sshttp_request_bytes_total{{vhost=\"{}\"}} {}",
                Escaped(vhost),
                metrics.request_bytes
            )?;
        }
        family(
            out,
            "sshttp_response_bytes_total",
            "counter",
            "Response body bytes sent to clients, by vhost.",
        )?;
        for (vhost, metrics) in vhosts.iter() {
            writeln!(
                out,
                "sshttp_response_bytes_total{{vhost=\"{}\"}} {}",
                Escaped(vhost),
                metrics.response_bytes
            )?;
        }
        family(
            out,
            "sshttp_request_duration_seconds",
            "histogram",
            "Time from request start to the end of the response, by vhost.",
        )?;
        for (vhost, metrics) in vhosts.iter() {
            let vhost = Escaped(vhost);
            let histogram = &metrics.duration;
            let mut cumulative = 0u64;
            for (le, count) in DURATION_BUCKETS_SECONDS.iter().zip(&histogram.buckets) {
                cumulative = cumulative.saturating_add(*count);
                writeln!(
                    out,
                    "sshttp_request_duration_seconds_bucket{{vhost=\"{vhost}\",le=\"{le:?}\"}} {cumulative}"
                )?;
            }
            writeln!(
                out,
                "sshttp_request_duration_seconds_bucket{{vhost=\"{vhost}\",le=\"+Inf\"}} {}",
                histogram.count
            )?;
            writeln!(
                out,
                "sshttp_request_duration_seconds_sum{{vhost=\"{vhost}\"}} {:?}",
                histogram.sum
            )?;
            writeln!(
                out,
                "sshttp_request_duration_seconds_count{{vhost=\"{vhost}\"}} {}",
                histogram.count
            )?;
        }
        counters_by_vhost(
            out,
            &vhosts,
            (
                "sshttp_upstream_errors_total",
                "Requests the upstream could not serve, by vhost and kind (connect, timeout, busy, other).",
            ),
            "kind",
            |metrics| &metrics.upstream_errors,
        )?;
        counters_by_vhost(
            out,
            &vhosts,
            (
                "sshttp_rate_limited_total",
                "Requests answered 429 by the vhost's per-caller limits, by vhost and reason (rate, in_flight).",
            ),
            "reason",
            |metrics| &metrics.rate_limited,
        )?;
        Ok(())
    }
}

/// A counter family labelled by vhost and `label`, from one map per vhost.
fn counters_by_vhost(
    out: &mut String,
    vhosts: &BTreeMap<String, VhostMetrics>,
    (name, help): (&str, &str),
    label: &str,
    series: impl Fn(&VhostMetrics) -> &BTreeMap<&'static str, u64>,
) -> fmt::Result {
    family(out, name, "counter", help)?;
    for (vhost, metrics) in vhosts {
        for (value, count) in series(metrics) {
            writeln!(
                out,
                "{name}{{vhost=\"{}\",{label}=\"{value}\"}} {count}",
                Escaped(vhost)
            )?;
        }
    }
    Ok(())
}

fn decrement(gauge: &AtomicU64) {
    // Saturating: an unmatched decrement must not wrap the gauge to 2^64 - 1. The
    // closure never returns None, so the result carries nothing to handle.
    let _ = gauge.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |value| {
        Some(value.saturating_sub(1))
    });
}

fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "other",
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) -> fmt::Result {
    writeln!(out, "# HELP {name} {help}")?;
    writeln!(out, "# TYPE {name} {kind}")
}

/// `text` (the exposition format) with `name="value"` as the first label of every
/// series.
fn with_label(text: &str, name: &str, value: &str) -> String {
    let label = format!("{name}=\"{}\"", Escaped(value));
    let mut out = String::with_capacity(text.len().saturating_add(text.len() / 2));
    for line in text.lines() {
        if line.starts_with('#') {
            out.push_str(line);
        } else if let Some(brace) = line.find('{') {
            let (series, rest) = line.split_at(brace.saturating_add(1));
            let _ = write!(out, "{series}{label},{rest}");
        } else if let Some((series, sample)) = line.split_once(' ') {
            let _ = write!(out, "{series}{{{label}}} {sample}");
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// A label value with `\`, `"` and line feed escaped, as the text format requires.
struct Escaped<'a>(&'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            match c {
                '\\' => f.write_str("\\\\")?,
                '"' => f.write_str("\\\"")?,
                '\n' => f.write_str("\\n")?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// Where the metrics listener reads the JWKS it serves: the current configuration's,
/// or none while no identity assertion is configured.
pub(crate) type JwksSource = Arc<dyn Fn() -> Option<serde_json::Value> + Send + Sync>;

/// Serves `GET /metrics` (`text/plain; version=0.0.4`), the health checks
/// `GET /healthz` (200 while the process serves) and `GET /readyz` (200 until `drain`
/// starts, then 503, so that a load balancer sends no new connections to a gateway
/// that is shutting down) and, while `jwks` returns one, `GET /jwks.json`
/// (`application/jwk-set+json`) on `listener` until `shutdown` resolves; `HEAD` too.
/// Other paths get 404, other methods 405. After `shutdown` it
/// stops accepting, lets responses in progress finish (for a few seconds at most) and
/// returns.
///
/// Failed accepts (e.g. out of file descriptors) are logged and retried, as hyper's
/// and axum's servers do, so a transient failure does not end the metrics listener.
pub(crate) async fn serve_metrics(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    jwks: JwksSource,
    drain: Drain,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "metrics listener: accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                    continue;
                }
            },
        };
        let metrics = metrics.clone();
        let jwks = jwks.clone();
        let drain = drain.clone();
        let service = service_fn(move |request: Request<hyper::body::Incoming>| {
            // Read per request: a reload may have changed or added the signing key.
            let current = jwks().map(|jwks| Bytes::from(jwks.to_string()));
            let ready = !drain.is_draining();
            let response = respond(&request, &metrics, current.as_ref(), ready);
            async move { Ok::<_, Infallible>(response) }
        });
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%peer, %error, "metrics connection failed");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("metrics listener: connections still open after the grace period");
    }
    Ok(())
}

fn respond<B>(
    request: &Request<B>,
    metrics: &Metrics,
    jwks: Option<&Bytes>,
    ready: bool,
) -> Response<Full<Bytes>> {
    let known = match request.uri().path() {
        "/metrics" | "/healthz" | "/readyz" => true,
        "/jwks.json" => jwks.is_some(),
        _ => false,
    };
    if !known {
        return text_response(StatusCode::NOT_FOUND, "not found\n");
    }
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        let mut response = text_response(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match request.uri().path() {
        "/healthz" => return text_response(StatusCode::OK, "ok\n"),
        "/readyz" if ready => return text_response(StatusCode::OK, "ready\n"),
        "/readyz" => {
            return text_response(StatusCode::SERVICE_UNAVAILABLE, "draining\n");
        }
        _ => {}
    }
    let (content_type, body) = match jwks {
        Some(jwks) if request.uri().path() == "/jwks.json" => {
            ("application/jwk-set+json", jwks.clone())
        }
        _ => (METRICS_CONTENT_TYPE, Bytes::from(metrics.render())),
    };
    let mut response = Response::new(Full::new(body));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn text_response(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::{TcpListener, TcpStream};

    /// One sample line: metric name, labels in order, value.
    #[derive(Debug, PartialEq)]
    struct Sample {
        name: String,
        labels: Vec<(String, String)>,
        value: f64,
    }

    /// A strict parser for the sample lines we emit (no timestamps), unescaping label
    /// values; panics on anything malformed.
    fn parse_sample(line: &str) -> Sample {
        let name_end = line.find(['{', ' ']).expect("name");
        let name = line[..name_end].to_owned();
        let mut rest = &line[name_end..];
        let mut labels = Vec::new();
        if let Some(after) = rest.strip_prefix('{') {
            rest = after;
            loop {
                let eq = rest.find("=\"").expect("label=\"");
                let label = rest[..eq].to_owned();
                assert!(
                    label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                    "{line}"
                );
                let mut value = String::new();
                let mut chars = rest[eq + 2..].char_indices();
                let end = loop {
                    match chars.next().expect("closing quote") {
                        (_, '\\') => match chars.next().expect("escape").1 {
                            'n' => value.push('\n'),
                            c @ ('\\' | '"') => value.push(c),
                            c => panic!("bad escape \\{c} in {line}"),
                        },
                        (i, '"') => break eq + 2 + i + 1,
                        (_, '\n') => panic!("raw newline in {line}"),
                        (_, c) => value.push(c),
                    }
                };
                labels.push((label, value));
                rest = &rest[end..];
                if let Some(after) = rest.strip_prefix(',') {
                    rest = after;
                } else {
                    rest = rest.strip_prefix('}').expect("}");
                    break;
                }
            }
        }
        let value = rest.strip_prefix(' ').expect("space before value");
        let value = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("value in {line}")),
        };
        Sample {
            name,
            labels,
            value,
        }
    }

    /// Parses a whole exposition: every line is a HELP, a TYPE or a sample of the
    /// family last declared, HELP before TYPE, each family once.
    fn parse(text: &str) -> Vec<Sample> {
        assert!(text.ends_with('\n'));
        let mut families: Vec<(String, String)> = Vec::new();
        let mut samples = Vec::new();
        let mut help_for: Option<String> = None;
        for line in text.lines() {
            if let Some(help) = line.strip_prefix("# HELP ") {
                let name = help.split(' ').next().unwrap().to_owned();
                assert!(
                    !families.iter().any(|(n, _)| *n == name),
                    "{name} declared twice"
                );
                help_for = Some(name);
            } else if let Some(declared) = line.strip_prefix("# TYPE ") {
                let (name, kind) = declared.split_once(' ').unwrap();
                assert_eq!(help_for.take().as_deref(), Some(name), "HELP precedes TYPE");
                assert!(["counter", "gauge", "histogram"].contains(&kind));
                families.push((name.to_owned(), kind.to_owned()));
            } else {
                let sample = parse_sample(line);
                let (family, kind) = families.last().expect("a TYPE before samples");
                let base = match kind.as_str() {
                    "histogram" => ["_bucket", "_sum", "_count"]
                        .iter()
                        .find_map(|suffix| sample.name.strip_suffix(suffix))
                        .expect("histogram suffix"),
                    _ => sample.name.as_str(),
                };
                assert_eq!(base, family, "{line}");
                samples.push(sample);
            }
        }
        samples
    }

    fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn value(samples: &[Sample], name: &str, pairs: &[(&str, &str)]) -> Option<f64> {
        let labels = labels(pairs);
        samples
            .iter()
            .find(|s| s.name == name && s.labels == labels)
            .map(|s| s.value)
    }

    #[test]
    fn renders_exact_exposition_for_one_vhost() {
        let metrics = Metrics::new();
        let stats = metrics.connection_stats().clone();
        let _open = stats.connection();
        drop(stats.connection());
        ConnectionStats::count(&stats.auth_failures);
        metrics.request_started();
        metrics.request_started();
        metrics.request_finished("api", 200, 10, 2000, Duration::from_millis(20));
        metrics.upstream_error("api", "timeout");
        metrics.rate_limited("api", "rate");
        let expected = "\
# HELP sshttp_connections_open SSH connections currently open.
# TYPE sshttp_connections_open gauge
sshttp_connections_open 1
# HELP sshttp_connections_total SSH connections accepted.
# TYPE sshttp_connections_total counter
sshttp_connections_total 2
# HELP sshttp_auth_failures_total Failed SSH authentication attempts.
# TYPE sshttp_auth_failures_total counter
sshttp_auth_failures_total 1
# HELP sshttp_requests_in_flight HTTP requests being served.
# TYPE sshttp_requests_in_flight gauge
sshttp_requests_in_flight 1
# HELP sshttp_unauthenticated_connections SSH connections not yet authenticated.
# TYPE sshttp_unauthenticated_connections gauge
sshttp_unauthenticated_connections 0
# HELP sshttp_channels_open SSH channels open on all connections, from confirmation until both sides closed them.
# TYPE sshttp_channels_open gauge
sshttp_channels_open 0
# HELP sshttp_unauthenticated_evicted_total Unauthenticated connections closed to make room under a cap (oldest first).
# TYPE sshttp_unauthenticated_evicted_total counter
sshttp_unauthenticated_evicted_total 0
# HELP sshttp_login_timeouts_total Connections closed for not authenticating within the login grace time.
# TYPE sshttp_login_timeouts_total counter
sshttp_login_timeouts_total 0
# HELP sshttp_auth_tries_exceeded_total Connections closed after too many failed authentication attempts.
# TYPE sshttp_auth_tries_exceeded_total counter
sshttp_auth_tries_exceeded_total 0
# HELP sshttp_key_connections_refused_total Authentications refused because the key had its maximum of connections.
# TYPE sshttp_key_connections_refused_total counter
sshttp_key_connections_refused_total 0
# HELP sshttp_idle_timeouts_total Authenticated connections closed after the idle-session timeout.
# TYPE sshttp_idle_timeouts_total counter
sshttp_idle_timeouts_total 0
# HELP sshttp_body_timeouts_total Request or response bodies reset for making no progress.
# TYPE sshttp_body_timeouts_total counter
sshttp_body_timeouts_total 0
# HELP sshttp_accept_errors_total Failed accepts (mostly out of file descriptors); the gateway kept serving.
# TYPE sshttp_accept_errors_total counter
sshttp_accept_errors_total 0
# HELP sshttp_proxy_header_refused_total Connections refused for their PROXY header: missing from a trusted balancer, malformed or late, or sent by an untrusted peer.
# TYPE sshttp_proxy_header_refused_total counter
sshttp_proxy_header_refused_total 0
# HELP sshttp_fd_limit The soft limit on open file descriptors the gateway runs with.
# TYPE sshttp_fd_limit gauge
sshttp_fd_limit 0
# HELP sshttp_config_reloads_total Configuration reloads (SIGHUP), by result; a failed one leaves the running configuration.
# TYPE sshttp_config_reloads_total counter
sshttp_config_reloads_total{result=\"ok\"} 0
sshttp_config_reloads_total{result=\"failed\"} 0
# HELP sshttp_requests_total HTTP requests served, by vhost and status class.
# TYPE sshttp_requests_total counter
sshttp_requests_total{vhost=\"api\",code=\"2xx\"} 1
# HELP sshttp_request_bytes_total Request body bytes received from clients, by vhost.
# TYPE sshttp_request_bytes_total counter
sshttp_request_bytes_total{vhost=\"api\"} 10
# HELP sshttp_response_bytes_total Response body bytes sent to clients, by vhost.
# TYPE sshttp_response_bytes_total counter
sshttp_response_bytes_total{vhost=\"api\"} 2000
# HELP sshttp_request_duration_seconds Time from request start to the end of the response, by vhost.
# TYPE sshttp_request_duration_seconds histogram
sshttp_request_duration_seconds_bucket{vhost=\"api\",le=\"0.005\"} 0
sshttp_request_duration_seconds_bucket{vhost=\"api\",le=\"0.01\"} 0
sshttp_request_duration_seconds_bucket{vhost=\"api\",le=\"0.025\"} 1
sshttp_request_duration_seconds_bucket{vhost=\"api\",le=\"0.05\"} 1
sshttp_request_duration_seconds_bucket{vhost=\"api\",le=\"0.1\"} 1
sshttp_request_duration_seconds_bucket{vhost=\"api\",le=\"0.25\"} 1
sshttp_request_duration_seconds_bucket{vhost=\"api\",le=\"0.5\"} 1
sshttp_request_duration_seconds_bucket{vhost=\"api\",le=\"1.0\"} 1
sshttp_request_duration_seconds_bucket{vhost=\"api\",le=\"2.5\"} 1
sshttp_request_duration_seconds_bucket{vhost=\"api\",le=\"5.0\"} 1
sshttp_request_duration_seconds_bucket{vhost=\"api\",le=\"10.0\"} 1
sshttp_request_duration_seconds_bucket{vhost=\"api\",le=\"30.0\"} 1
sshttp_request_duration_seconds_bucket{vhost=\"api\",le=\"60.0\"} 1
sshttp_request_duration_seconds_bucket{vhost=\"api\",le=\"+Inf\"} 1
sshttp_request_duration_seconds_sum{vhost=\"api\"} 0.02
sshttp_request_duration_seconds_count{vhost=\"api\"} 1
# HELP sshttp_upstream_errors_total Requests the upstream could not serve, by vhost and kind (connect, timeout, busy, other).
# TYPE sshttp_upstream_errors_total counter
sshttp_upstream_errors_total{vhost=\"api\",kind=\"timeout\"} 1
# HELP sshttp_rate_limited_total Requests answered 429 by the vhost's per-caller limits, by vhost and reason (rate, in_flight).
# TYPE sshttp_rate_limited_total counter
sshttp_rate_limited_total{vhost=\"api\",reason=\"rate\"} 1
";
        let rendered = metrics.render();
        let expected_lines: Vec<&str> = expected.lines().collect();
        assert_eq!(rendered.lines().collect::<Vec<_>>(), expected_lines);
        assert_eq!(parse(&rendered).len(), 38);
    }

    #[test]
    fn counts_requests_by_status_class_and_vhost() {
        let metrics = Metrics::new();
        for (vhost, status) in [
            ("a", 200),
            ("a", 204),
            ("a", 404),
            ("a", 503),
            ("b", 101),
            ("b", 302),
            ("b", 999),
        ] {
            metrics.request_started();
            metrics.request_finished(vhost, status, 1, 2, Duration::ZERO);
        }
        metrics.upstream_error("b", "connect");
        metrics.upstream_error("b", "refused by policy");
        let samples = parse(&metrics.render());
        let requests = |vhost, code| {
            value(
                &samples,
                "sshttp_requests_total",
                &[("vhost", vhost), ("code", code)],
            )
        };
        assert_eq!(requests("a", "2xx"), Some(2.0));
        assert_eq!(requests("a", "4xx"), Some(1.0));
        assert_eq!(requests("a", "5xx"), Some(1.0));
        assert_eq!(requests("a", "3xx"), None, "no empty series");
        assert_eq!(requests("b", "1xx"), Some(1.0));
        assert_eq!(requests("b", "3xx"), Some(1.0));
        assert_eq!(requests("b", "other"), Some(1.0));
        assert_eq!(
            value(&samples, "sshttp_request_bytes_total", &[("vhost", "a")]),
            Some(4.0)
        );
        assert_eq!(
            value(&samples, "sshttp_response_bytes_total", &[("vhost", "b")]),
            Some(6.0)
        );
        assert_eq!(value(&samples, "sshttp_requests_in_flight", &[]), Some(0.0));
        let errors = |kind| {
            value(
                &samples,
                "sshttp_upstream_errors_total",
                &[("vhost", "b"), ("kind", kind)],
            )
        };
        assert_eq!(errors("connect"), Some(1.0));
        assert_eq!(errors("other"), Some(1.0), "unknown kinds count as other");
        assert_eq!(
            samples
                .iter()
                .filter(|s| s.name == "sshttp_upstream_errors_total")
                .count(),
            2
        );
    }

    #[test]
    fn gauges_do_not_wrap_below_zero() {
        let metrics = Metrics::new();
        metrics.request_finished("a", 200, 0, 0, Duration::ZERO);
        let samples = parse(&metrics.render());
        assert_eq!(value(&samples, "sshttp_requests_in_flight", &[]), Some(0.0));
    }

    #[test]
    fn escapes_label_values() {
        let metrics = Metrics::new();
        let vhost = "we\"ird\\host\nname";
        metrics.request_finished(vhost, 200, 0, 0, Duration::ZERO);
        let rendered = metrics.render();
        assert!(
            rendered
                .lines()
                .any(|line| line
                    == r#"sshttp_requests_total{vhost="we\"ird\\host\nname",code="2xx"} 1"#),
            "{rendered}"
        );
        let samples = parse(&rendered);
        assert_eq!(
            value(
                &samples,
                "sshttp_request_duration_seconds_count",
                &[("vhost", vhost)]
            ),
            Some(1.0)
        );
    }

    #[test]
    fn histogram_buckets_are_cumulative_with_count_and_sum() {
        let metrics = Metrics::new();
        let observed = [
            Duration::from_millis(3),
            Duration::from_millis(100), // exactly on a bound: counted in le="0.1"
            Duration::from_millis(200),
            Duration::from_millis(200),
            Duration::from_secs(7),
            Duration::from_secs(100), // above the last bound: only in +Inf
        ];
        for duration in observed {
            metrics.request_finished("v", 200, 0, 0, duration);
        }
        let samples = parse(&metrics.render());
        let buckets: Vec<(String, f64)> = samples
            .iter()
            .filter(|s| s.name == "sshttp_request_duration_seconds_bucket")
            .map(|s| {
                assert_eq!(s.labels[0], ("vhost".to_owned(), "v".to_owned()));
                assert_eq!(s.labels[1].0, "le");
                (s.labels[1].1.clone(), s.value)
            })
            .collect();
        let expected = [
            ("0.005", 1.0),
            ("0.01", 1.0),
            ("0.025", 1.0),
            ("0.05", 1.0),
            ("0.1", 2.0),
            ("0.25", 4.0),
            ("0.5", 4.0),
            ("1.0", 4.0),
            ("2.5", 4.0),
            ("5.0", 4.0),
            ("10.0", 5.0),
            ("30.0", 5.0),
            ("60.0", 5.0),
            ("+Inf", 6.0),
        ];
        let expected: Vec<(String, f64)> = expected
            .iter()
            .map(|(le, n)| ((*le).to_owned(), *n))
            .collect();
        assert_eq!(buckets, expected);
        // `le` values parse back to the bounds, in increasing order.
        let bounds: Vec<f64> = buckets[..buckets.len() - 1]
            .iter()
            .map(|(le, _)| le.parse().unwrap())
            .collect();
        assert_eq!(bounds, DURATION_BUCKETS_SECONDS);
        assert_eq!(
            value(
                &samples,
                "sshttp_request_duration_seconds_count",
                &[("vhost", "v")]
            ),
            Some(6.0)
        );
        let sum = value(
            &samples,
            "sshttp_request_duration_seconds_sum",
            &[("vhost", "v")],
        )
        .unwrap();
        assert!((sum - 107.503).abs() < 1e-9, "{sum}");
    }

    #[test]
    fn caps_distinct_vhost_labels() {
        let metrics = Metrics::new();
        for i in 0..MAX_METRIC_VHOSTS + 10 {
            metrics.request_finished(&format!("vhost{i}"), 200, 0, 0, Duration::ZERO);
        }
        // A vhost seen before the cap keeps its own series.
        metrics.request_finished("vhost0", 500, 0, 0, Duration::ZERO);
        metrics.upstream_error("late", "connect");
        let samples = parse(&metrics.render());
        let vhosts: std::collections::BTreeSet<&str> = samples
            .iter()
            .filter(|s| s.name == "sshttp_requests_total")
            .map(|s| s.labels[0].1.as_str())
            .collect();
        assert_eq!(vhosts.len(), MAX_METRIC_VHOSTS + 1);
        assert!(vhosts.contains(OTHER_VHOST));
        assert!(!vhosts.contains(format!("vhost{MAX_METRIC_VHOSTS}").as_str()));
        assert_eq!(
            value(
                &samples,
                "sshttp_requests_total",
                &[("vhost", OTHER_VHOST), ("code", "2xx")]
            ),
            Some(10.0)
        );
        assert_eq!(
            value(
                &samples,
                "sshttp_requests_total",
                &[("vhost", "vhost0"), ("code", "5xx")]
            ),
            Some(1.0)
        );
        assert_eq!(
            value(
                &samples,
                "sshttp_upstream_errors_total",
                &[("vhost", OTHER_VHOST), ("kind", "connect")]
            ),
            Some(1.0)
        );
    }

    /// An HTTP/1.1 response read off a keep-alive connection (content-length bodies).
    struct Answer {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    }

    impl Answer {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    async fn exchange(stream: &mut TcpStream, method: &str, path: &str) -> Answer {
        let request = format!("{method} {path} HTTP/1.1\r\nhost: metrics.test\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed before the response head");
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = std::str::from_utf8(&buf[..head_end]).unwrap();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
        let status = status_line[9..12].parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (n, v) = l.split_once(": ").unwrap();
                (n.to_owned(), v.to_owned())
            })
            .collect();
        let mut answer = Answer {
            status,
            headers,
            body: String::new(),
        };
        let length: usize = answer.header("content-length").unwrap().parse().unwrap();
        let body_len = if method == "HEAD" { 0 } else { length };
        let mut body = buf[head_end..].to_vec();
        while body.len() < body_len {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed inside the body");
            body.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(body.len(), body_len, "nothing after the body");
        answer.body = String::from_utf8(body).unwrap();
        answer
    }

    #[tokio::test]
    async fn serves_metrics_and_jwks_until_shutdown() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Arc::new(Metrics::new());
        let _open = metrics.connection_stats().connection();
        let jwks = serde_json::json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "k", "alg": "EdDSA", "use": "sig"}]});
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_metrics(
            listener,
            metrics.clone(),
            {
                let jwks = jwks.clone();
                Arc::new(move || Some(jwks.clone()))
            },
            Drain::default(),
            async {
                let _ = stopped.await;
            },
        ));

        let mut stream = TcpStream::connect(addr).await.unwrap();
        let answer = exchange(&mut stream, "GET", "/metrics").await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.header("content-type"), Some(METRICS_CONTENT_TYPE));
        assert_eq!(answer.body, metrics.render());
        let samples = parse(&answer.body);
        assert_eq!(value(&samples, "sshttp_connections_open", &[]), Some(1.0));

        let answer = exchange(&mut stream, "GET", "/jwks.json").await;
        assert_eq!(answer.status, 200);
        assert_eq!(
            answer.header("content-type"),
            Some("application/jwk-set+json")
        );
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&answer.body).unwrap(),
            jwks
        );

        let answer = exchange(&mut stream, "HEAD", "/metrics").await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body, "");

        let answer = exchange(&mut stream, "GET", "/other").await;
        assert_eq!(answer.status, 404);
        let answer = exchange(&mut stream, "GET", "/metrics/").await;
        assert_eq!(answer.status, 404);
        let answer = exchange(&mut stream, "POST", "/metrics").await;
        assert_eq!(answer.status, 405);
        assert_eq!(answer.header("allow"), Some("GET, HEAD"));

        // `stream` is now an idle keep-alive connection: it must not hold up shutdown.
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(3), server)
            .await
            .expect("serve_metrics returns after shutdown")
            .unwrap()
            .unwrap();
        let mut rest = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut rest)).await;
        assert!(
            matches!(read, Ok(Ok(0))),
            "the idle connection was closed: {read:?}"
        );
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "the listener was closed"
        );
    }

    #[tokio::test]
    async fn readyz_turns_503_when_the_drain_starts_and_healthz_stays_200() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let drain = Drain::default();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_metrics(
            listener,
            Arc::new(Metrics::new()),
            Arc::new(|| None),
            drain.clone(),
            async {
                let _ = stopped.await;
            },
        ));
        let mut stream = TcpStream::connect(addr).await.unwrap();
        for path in ["/healthz", "/readyz"] {
            let answer = exchange(&mut stream, "GET", path).await;
            assert_eq!(answer.status, 200, "{path}");
        }
        drain.start();
        let answer = exchange(&mut stream, "GET", "/readyz").await;
        assert_eq!((answer.status, answer.body.as_str()), (503, "draining\n"));
        let answer = exchange(&mut stream, "HEAD", "/readyz").await;
        assert_eq!(answer.status, 503);
        let answer = exchange(&mut stream, "GET", "/healthz").await;
        assert_eq!(answer.status, 200);
        let answer = exchange(&mut stream, "POST", "/readyz").await;
        assert_eq!(answer.status, 405);
        let answer = exchange(&mut stream, "GET", "/metrics").await;
        assert_eq!(answer.status, 200, "metrics are served through the drain");
        drop(stream);
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }

    #[test]
    fn the_replica_is_named_and_with_instance_labels_every_series() {
        let unlabelled = Metrics::with_replica("gw-1", false);
        let samples = parse(&unlabelled.render());
        assert_eq!(
            value(&samples, "sshttp_replica_info", &[("replica", "gw-1")]),
            Some(1.0)
        );
        assert_eq!(value(&samples, "sshttp_connections_open", &[]), Some(0.0));

        let labelled = Metrics::with_replica("gw \"1\"", true);
        labelled.request_started();
        labelled.request_finished("a.test", 200, 1, 2, Duration::from_millis(3));
        let text = labelled.render();
        for line in text.lines().filter(|line| !line.starts_with('#')) {
            assert!(
                line.contains("{replica=\"gw \\\"1\\\"\""),
                "every series is labelled: {line}"
            );
        }
        let samples = parse(&text);
        assert_eq!(
            value(
                &samples,
                "sshttp_requests_in_flight",
                &[("replica", "gw \"1\"")]
            ),
            Some(0.0)
        );
        assert_eq!(
            value(
                &samples,
                "sshttp_requests_total",
                &[
                    ("replica", "gw \"1\""),
                    ("vhost", "a.test"),
                    ("code", "2xx")
                ]
            ),
            Some(1.0)
        );
    }

    #[tokio::test]
    async fn without_jwks_only_metrics_is_served() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_metrics(
            listener,
            Arc::new(Metrics::new()),
            Arc::new(|| None),
            Drain::default(),
            async {
                let _ = stopped.await;
            },
        ));
        let mut stream = TcpStream::connect(addr).await.unwrap();
        assert_eq!(exchange(&mut stream, "GET", "/jwks.json").await.status, 404);
        assert_eq!(
            exchange(&mut stream, "GET", "/metrics?x=1").await.status,
            200
        );
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(3), server)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}
