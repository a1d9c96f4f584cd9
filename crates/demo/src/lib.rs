//! The demo upstream `sshttp serve` runs without configuration: a small HTTP service on
//! 127.0.0.1 that the gateway reaches through the same upstream path as any other.
//!
//! - `GET /multiply?a=4&b=5`: `20`, or `{"a":4,"b":5,"product":20}` when JSON is
//!   accepted;
//! - `/echo` (any method): the request as the upstream received it, identity fields
//!   included, with the size of its body (read streaming, never held);
//! - `/echo/body` (any method): the request body, streamed back;
//! - `/app/`: a small web application for browsers (module [`app`]);
//! - anything else: files from the static directory (tower-http's `ServeDir`: ETag,
//!   If-None-Match, Last-Modified, Range).
//!
//! A plain HTTP service that knows nothing of SSH: no sshttp crate is a dependency, and
//! the gateway does not depend on it either; the binary passes [`launch`] to the
//! gateway, so a gateway built without the binary carries none of this code.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use tower_http::services::ServeDir;
use tower_service::Service;

/// The demo's response body: any body, boxed.
pub type DemoBody = UnsyncBoxBody<Bytes, BoxError>;

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub mod app;

/// The files the demo serves when no static directory is configured: written into the
/// state directory at start.
const DEMO_FILES: &[(&str, &[u8])] = &[
    ("index.html", include_bytes!("../files/index.html")),
    (
        "images/header.png",
        include_bytes!("../files/images/header.png"),
    ),
];

/// Writes the built-in demo files under `dir` (replacing older copies).
pub fn write_demo_files(dir: &Path) -> io::Result<()> {
    for (name, content) in DEMO_FILES {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, content)?;
    }
    Ok(())
}

/// Starts the demo on `dir`, first writing the built-in files into it when `builtin`:
/// the launcher the gateway takes (`sshttp_proxy::gateway::DemoLauncher`).
pub fn launch(
    dir: PathBuf,
    builtin: bool,
) -> Pin<Box<dyn Future<Output = io::Result<SocketAddr>> + Send>> {
    Box::pin(async move {
        if builtin {
            write_demo_files(&dir)?;
        }
        start(dir).await
    })
}

/// Starts the demo service on 127.0.0.1 (a port chosen by the OS), serving files from
/// `static_dir`. Returns its address; it runs until the runtime stops.
pub async fn start(static_dir: PathBuf) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let files = ServeDir::new(static_dir).append_index_html_on_directories(true);
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                continue;
            };
            let files = files.clone();
            let service = hyper::service::service_fn(move |request| {
                let files = files.clone();
                async move { Ok::<_, Infallible>(handle(request, files).await) }
            });
            tokio::spawn(async move {
                let connection = http1::Builder::new()
                    .serve_connection(TokioIo::new(socket), service)
                    .with_upgrades();
                if let Err(error) = connection.await {
                    tracing::debug!(%error, "demo connection ended");
                }
            });
        }
    });
    Ok(addr)
}

async fn handle(request: Request<Incoming>, mut files: ServeDir) -> Response<DemoBody> {
    if app::owns(request.uri().path()) {
        return app::handle(request).await;
    }
    match request.uri().path() {
        "/multiply" => multiply(&request),
        "/echo" => echo(request).await,
        "/echo/body" => {
            let content_type = request.headers().get(header::CONTENT_TYPE).cloned();
            let mut response =
                Response::new(request.into_body().map_err(Into::into).boxed_unsync());
            if let Some(content_type) = content_type {
                response
                    .headers_mut()
                    .insert(header::CONTENT_TYPE, content_type);
            }
            response
        }
        _ => match files.call(request).await {
            Ok(response) => response.map(|body| body.map_err(Into::into).boxed_unsync()),
            Err(never) => match never {},
        },
    }
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<DemoBody> {
    full_response(status, content_type, body)
}

fn multiply(request: &Request<Incoming>) -> Response<DemoBody> {
    let wants_json = request
        .headers()
        .get_all(header::ACCEPT)
        .iter()
        .any(|value| value.to_str().is_ok_and(|v| v.contains("application/json")));
    let query = request.uri().query().unwrap_or_default();
    let number = |name: &str| -> Result<i64, String> {
        let value = query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value)
            .ok_or_else(|| format!("missing parameter {name} (try /multiply?a=4&b=5)"))?;
        value
            .parse()
            .map_err(|_| format!("parameter {name}={value:?} is not an integer"))
    };
    let product = number("a").and_then(|a| {
        let b = number("b")?;
        a.checked_mul(b)
            .map(|product| (a, b, product))
            .ok_or_else(|| format!("{a} × {b} does not fit in 64 bits"))
    });
    match (product, wants_json) {
        (Ok((a, b, product)), true) => text(
            StatusCode::OK,
            "application/json",
            format!("{}\n", json!({ "a": a, "b": b, "product": product })),
        ),
        (Ok((_, _, product)), false) => text(StatusCode::OK, "text/plain", format!("{product}\n")),
        (Err(message), true) => text(
            StatusCode::BAD_REQUEST,
            "application/json",
            format!("{}\n", json!({ "error": message })),
        ),
        (Err(message), false) => text(
            StatusCode::BAD_REQUEST,
            "text/plain",
            format!("{message}\n"),
        ),
    }
}

async fn echo(request: Request<Incoming>) -> Response<DemoBody> {
    let (parts, mut body) = request.into_parts();
    let mut report = format!("{} {} {:?}\n", parts.method, parts.uri, parts.version);
    for (name, value) in &parts.headers {
        let _ = writeln!(
            report,
            "{name}: {}",
            String::from_utf8_lossy(value.as_bytes())
        );
    }
    let mut length: u64 = 0;
    let mut failed = None;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Some(data) = frame.data_ref() {
                    length = length.saturating_add(data.len() as u64);
                }
            }
            Err(error) => {
                failed = Some(error);
                break;
            }
        }
    }
    let _ = writeln!(report, "\nbody: {length} bytes");
    if let Some(error) = failed {
        let _ = writeln!(report, "body failed: {error}");
    }
    let who = match parts.headers.get("sshttp-key-fingerprint") {
        Some(fingerprint) => format!(
            "you are {} with key {}",
            parts
                .headers
                .get("sshttp-user")
                .and_then(|user| user.to_str().ok())
                .unwrap_or("?"),
            fingerprint.to_str().unwrap_or("?")
        ),
        None => "you are anonymous".to_owned(),
    };
    let _ = writeln!(report, "{who}");
    if parts.method == Method::HEAD {
        report.clear();
    }
    text(StatusCode::OK, "text/plain; charset=utf-8", report)
}

/// A response whose body is all here.
pub(crate) fn full_response(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<DemoBody> {
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
