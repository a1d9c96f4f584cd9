//! [`Client`] as a [`tower_service::Service`], so that hyper, axum and tower code can
//! send requests over sshttp directly.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::client::Client;
use crate::error::Error;
use sshttp_ssh::{Body, BoxError};

impl<B> tower_service::Service<http::Request<B>> for Client
where
    B: http_body::Body + Send + 'static,
    B::Data: Into<bytes::Bytes>,
    B::Error: Into<BoxError>,
{
    type Response = http::Response<Body>;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Error>> + Send>>;

    /// Always ready: requests beyond a session's channel cap queue inside the client.
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    /// Sends a request whose URI is an `sshttp://` URL; a `host` header picks the vhost.
    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let client = self.clone();
        let request = request.map(Body::wrap);
        Box::pin(async move {
            let url = request.uri().clone();
            client
                .send_http(request, None)
                .await
                .map_err(|error| error.with_url(&url))
        })
    }
}
