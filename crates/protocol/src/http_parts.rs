//! Conversions between wire messages and the `http` crate's request and response heads.
//!
//! Going to the wire, headers are prepared the way an HTTP/1.1 proxy forwards them
//! (connection-specific fields dropped) and the result is checked against the limits a
//! peer will enforce, so a sender learns of an oversized request before sending it.

use std::num::NonZeroU32;

use http::{HeaderValue, Method, header, request, response};

use crate::channel_type::ChannelType;
use crate::error::DecodeError;
use crate::header_list::HeaderList;
use crate::limits::Limits;
use crate::request::{RequestBody, RequestOpen, Target};
use crate::response::ResponseHead;

/// The host name in a `host` value, without its port: `api.example.com:2222` →
/// `api.example.com`, `[::1]:80` → `[::1]`. A suffix that is not a decimal port stays
/// part of the name, so it cannot match a configured virtual host by accident.
pub fn host_name(host: &str) -> &str {
    let (name, port) = if host.starts_with('[') {
        match host.find(']') {
            Some(end) => host.split_at(end.saturating_add(1)),
            None => return host,
        }
    } else {
        match host.find(':') {
            Some(colon) => host.split_at(colon),
            None => return host,
        }
    };
    match port.strip_prefix(':') {
        Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => name,
        None if port.is_empty() => name,
        _ => host,
    }
}

impl RequestOpen {
    /// Builds the channel type and open payload for a request head.
    ///
    /// An absolute URI (as a proxy receives it) contributes its authority as `host`
    /// unless the request has one; CONNECT uses the authority as its target. The error
    /// is the one a peer with the same `limits` would answer.
    pub fn from_request_parts(
        parts: &request::Parts,
        header_id: Option<NonZeroU32>,
        body: RequestBody,
        limits: &Limits,
    ) -> Result<(ChannelType, Self), DecodeError> {
        let channel = ChannelType::request(parts.method.clone())?;
        let target = if parts.method == Method::CONNECT {
            let authority = parts.uri.authority().ok_or(DecodeError::InvalidTarget {
                reason: "CONNECT needs host:port",
            })?;
            Target::parse(authority.as_str().as_bytes())?
        } else {
            let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            let path = if path.is_empty() { "/" } else { path };
            Target::parse(path.as_bytes())?
        };
        if target.as_str().len() > limits.max_target_len {
            return Err(DecodeError::TargetTooLong {
                len: target.as_str().len(),
                max: limits.max_target_len,
            });
        }
        let mut headers = HeaderList::from_message_headers(&parts.headers);
        if let Some(authority) = parts.uri.authority()
            && !headers.contains(&header::HOST)
        {
            let host = HeaderValue::from_str(authority.as_str())
                .map_err(|_| DecodeError::InvalidHeaderValue { name: header::HOST })?;
            headers.push(header::HOST, host);
        }
        headers.check_limits(limits)?;
        if let RequestBody::Inline(bytes) = &body
            && bytes.len() > limits.max_inline_body
        {
            return Err(DecodeError::InlineBodyTooLarge {
                len: bytes.len(),
                max: limits.max_inline_body,
            });
        }
        let open = Self {
            header_id,
            target,
            headers,
            body,
        };
        open.check_method(&parts.method)?;
        open.check_rules()?;
        Ok((channel, open))
    }

    /// The request head this payload describes, for a channel of this method. Header
    /// channel defaults are not included: apply them first with
    /// [`HeaderList::apply_defaults`].
    pub fn to_request_parts(&self, method: Method) -> request::Parts {
        let (mut parts, ()) = http::Request::new(()).into_parts();
        parts.method = method;
        parts.uri = self.target.to_uri();
        parts.headers = self.headers.to_header_map();
        parts
    }
}

impl ResponseHead {
    /// Builds the wire head of a response, dropping connection-specific fields (but
    /// keeping `upgrade` on a 101).
    pub fn from_response_parts(
        parts: &response::Parts,
        limits: &Limits,
    ) -> Result<Self, DecodeError> {
        let mut headers = HeaderList::from_message_headers(&parts.headers);
        if parts.status != http::StatusCode::SWITCHING_PROTOCOLS {
            headers.remove(&header::UPGRADE);
        }
        headers.check_limits(limits)?;
        Ok(Self {
            status: parts.status,
            headers,
        })
    }

    /// The response head as `http` parts.
    pub fn to_response_parts(&self) -> response::Parts {
        let (mut parts, ()) = http::Response::new(()).into_parts();
        parts.status = self.status;
        parts.headers = self.headers.to_header_map();
        parts
    }
}

#[cfg(test)]
mod tests {
    use http::{Request, Response, StatusCode};

    use super::*;

    #[test]
    fn proxy_request_moves_authority_into_host_and_drops_hop_by_hop() {
        let (parts, ()) = Request::get("http://api.example.com/multiply?a=4&b=5")
            .header("connection", "keep-alive, x-private")
            .header("keep-alive", "timeout=5")
            .header("x-private", "secret")
            .header("te", "gzip, trailers")
            .header("accept", "application/json")
            .body(())
            .unwrap()
            .into_parts();
        let (channel, open) =
            RequestOpen::from_request_parts(&parts, None, RequestBody::Empty, &Limits::default())
                .unwrap();
        assert_eq!(channel.name(), "http-get");
        assert_eq!(open.target.as_str(), "/multiply?a=4&b=5");
        let expected = HeaderList::new()
            .with(header::TE, HeaderValue::from_static("trailers"))
            .with(header::ACCEPT, HeaderValue::from_static("application/json"))
            .with(header::HOST, HeaderValue::from_static("api.example.com"));
        assert_eq!(open.headers, expected);
        let back = open.to_request_parts(Method::GET);
        assert_eq!(back.uri, "/multiply?a=4&b=5");
        assert_eq!(back.headers["host"], "api.example.com");
    }

    #[test]
    fn websocket_upgrade_request_keeps_upgrade() {
        let (parts, ()) = Request::get("/chat")
            .header("connection", "Upgrade")
            .header("upgrade", "websocket")
            .body(())
            .unwrap()
            .into_parts();
        let (_, open) =
            RequestOpen::from_request_parts(&parts, None, RequestBody::Empty, &Limits::default())
                .unwrap();
        assert!(open.is_upgrade());
        assert!(!open.headers.contains(&header::CONNECTION));
    }

    #[test]
    fn connect_uses_authority_form() {
        let (parts, ()) = Request::connect("example.com:443")
            .body(())
            .unwrap()
            .into_parts();
        let (channel, open) =
            RequestOpen::from_request_parts(&parts, None, RequestBody::Empty, &Limits::default())
                .unwrap();
        assert_eq!(channel.name(), "http-connect");
        assert_eq!(open.target.as_str(), "example.com:443");
    }

    #[test]
    fn oversized_request_is_refused_before_sending() {
        let long = format!("/{}", "a".repeat(100));
        let (parts, ()) = Request::get(long).body(()).unwrap().into_parts();
        let limits = Limits {
            max_target_len: 50,
            ..Limits::default()
        };
        assert_eq!(
            RequestOpen::from_request_parts(&parts, None, RequestBody::Empty, &limits),
            Err(DecodeError::TargetTooLong { len: 101, max: 50 })
        );
    }

    #[test]
    fn host_names_lose_their_port_only() {
        for (host, name) in [
            ("api.example.com", "api.example.com"),
            ("api.example.com:2222", "api.example.com"),
            ("[::1]", "[::1]"),
            ("[::1]:80", "[::1]"),
            ("api.example.com:", "api.example.com:"),
            ("api.example.com:http", "api.example.com:http"),
            ("[::1", "[::1"),
        ] {
            assert_eq!(host_name(host), name, "{host}");
        }
    }

    #[test]
    fn response_round_trips_through_parts() {
        let (parts, ()) = Response::builder()
            .status(StatusCode::NOT_FOUND)
            .header("content-type", "text/plain")
            .header("transfer-encoding", "chunked")
            .header("upgrade", "h2c")
            .body(())
            .unwrap()
            .into_parts();
        let head = ResponseHead::from_response_parts(&parts, &Limits::default()).unwrap();
        assert_eq!(head.headers.len(), 1);
        let back = head.to_response_parts();
        assert_eq!(back.status, StatusCode::NOT_FOUND);
        assert_eq!(back.headers["content-type"], "text/plain");
    }
}
