//! The receiving side of a channel's body as an explicit state machine (spec §7.5,
//! §9.5): what a peer has been sent so far, and whether what ended it was a complete
//! body or an abort.
//!
//! The SSH seam of each crate translates what arrives on a channel into
//! [`ChannelEvent`]s and acts on what comes back, so the rules (a body is complete only
//! at EOF, content-length must match, trailers come last, a reset aborts) are written
//! once, without I/O.

use bytes::Bytes;
use http::StatusCode;

use crate::codec::WireMessage;
use crate::error::DecodeError;
use crate::header_channel::HEADER_UPDATE;
use crate::limits::Limits;
use crate::reset::{HTTP_RESET, Reset, ResetCode};
use crate::response::{HTTP_RESPONSE, HTTP_TRAILERS, ResponseHead, Trailers};

/// Something that arrived on a request channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelEvent<'a> {
    /// `CHANNEL_DATA`.
    Data(Bytes),
    /// `CHANNEL_EXTENDED_DATA`: never part of an sshttp body (spec §9.6).
    ExtendedData,
    /// `CHANNEL_REQUEST` with its name and type-specific data.
    Request {
        /// The request name.
        name: &'a str,
        /// Whether the peer wants a reply.
        want_reply: bool,
        /// Type-specific data.
        data: &'a [u8],
    },
    /// `CHANNEL_EOF`.
    Eof,
    /// `CHANNEL_CLOSE`, or the connection went away.
    Close,
}

/// How long a body is, as far as the receiver knows in advance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLength {
    /// There is no body at all (HEAD, 204, 304, NO_BODY): any data is an error.
    None,
    /// `content-length` announced this many bytes.
    Exactly(u64),
    /// The body ends at EOF.
    UntilEof,
}

/// Why a body did not complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aborted {
    /// The reset code: the peer's, or the one this side sends back.
    pub code: ResetCode,
    /// What happened.
    pub description: String,
    /// Whether this side should tell the peer with its own `http-reset` (it broke the
    /// protocol); `false` when the peer aborted.
    pub reset_peer: bool,
}

impl Aborted {
    fn protocol(description: impl Into<String>) -> Self {
        Self {
            code: ResetCode::PROTOCOL_ERROR,
            description: description.into(),
            reset_peer: true,
        }
    }

    /// The peer's `http-reset` with this payload: its code (as the receiver must read
    /// it) and description; a malformed one is a protocol error.
    fn from_reset(data: &[u8], limits: &Limits) -> Self {
        let reset = Reset::decode_with(&mut &data[..], limits).unwrap_or(Reset {
            code: ResetCode::PROTOCOL_ERROR,
            description: "malformed http-reset".into(),
        });
        Self {
            code: reset.code.effective(),
            description: reset.description,
            reset_peer: false,
        }
    }

    fn from_decode(what: &str, error: &DecodeError) -> Self {
        Self {
            code: error.reset_code(),
            description: format!("malformed {what}: {error}"),
            reset_peer: true,
        }
    }
}

/// What the body receiver learned from one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyEvent {
    /// Nothing for the application (e.g. an unknown request without reply).
    Nothing,
    /// A chunk of body.
    Data(Bytes),
    /// The trailer section.
    Trailers(Trailers),
    /// The body is complete.
    End,
    /// The body will not complete.
    Aborted(Aborted),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyState {
    /// Data may arrive.
    Data,
    /// Trailers arrived: only EOF may follow.
    AfterTrailers,
    /// Complete or aborted: nothing more is delivered.
    Done,
}

/// Receives one body: a request body on the server, a response body on the client.
#[derive(Debug, Clone)]
pub struct BodyReader {
    state: BodyState,
    length: BodyLength,
    received: u64,
    limits: Limits,
}

impl BodyReader {
    /// A reader for a body of the given length.
    pub fn new(length: BodyLength, limits: Limits) -> Self {
        Self {
            state: BodyState::Data,
            length,
            received: 0,
            limits,
        }
    }

    /// Whether the body has completed or aborted.
    pub fn is_done(&self) -> bool {
        self.state == BodyState::Done
    }

    /// Takes one event. After [`BodyEvent::End`] or [`BodyEvent::Aborted`], later
    /// events give [`BodyEvent::Nothing`].
    pub fn on_event(&mut self, event: ChannelEvent<'_>) -> BodyEvent {
        let outcome = match (self.state, event) {
            (BodyState::Done, _) => return BodyEvent::Nothing,
            (_, ChannelEvent::Close) => BodyEvent::Aborted(Aborted {
                code: ResetCode::CANCEL,
                description: "channel closed before the body was complete".into(),
                reset_peer: false,
            }),
            (
                _,
                ChannelEvent::Request {
                    name: HTTP_RESET,
                    data,
                    ..
                },
            ) => BodyEvent::Aborted(Aborted::from_reset(data, &self.limits)),
            (_, ChannelEvent::ExtendedData) => {
                BodyEvent::Aborted(Aborted::protocol("extended data on an sshttp channel"))
            }
            (BodyState::Data, ChannelEvent::Data(data)) => self.on_data(data),
            (BodyState::AfterTrailers, ChannelEvent::Data(_)) => {
                BodyEvent::Aborted(Aborted::protocol("data after trailers"))
            }
            (
                BodyState::Data,
                ChannelEvent::Request {
                    name: HTTP_TRAILERS,
                    want_reply: false,
                    data,
                },
            ) => match Trailers::decode_with(&mut &data[..], &self.limits) {
                Ok(trailers) if self.length == BodyLength::None => {
                    drop(trailers);
                    BodyEvent::Aborted(Aborted::protocol("trailers on a message without body"))
                }
                Ok(trailers) => {
                    self.state = BodyState::AfterTrailers;
                    return BodyEvent::Trailers(trailers);
                }
                Err(error) => BodyEvent::Aborted(Aborted::from_decode("http-trailers", &error)),
            },
            (_, ChannelEvent::Request { name, .. }) => {
                if name == HTTP_TRAILERS || name == HTTP_RESPONSE || name == HEADER_UPDATE {
                    BodyEvent::Aborted(Aborted::protocol(format!("unexpected request {name}")))
                } else {
                    // Unknown requests are answered CHANNEL_FAILURE if they want a
                    // reply (the SSH layer does that) and otherwise ignored; either
                    // way the exchange goes on (spec §16.2).
                    return BodyEvent::Nothing;
                }
            }
            (_, ChannelEvent::Eof) => match self.length {
                BodyLength::Exactly(expected) if expected != self.received => {
                    BodyEvent::Aborted(Aborted::protocol(format!(
                        "body ended after {} of {expected} bytes",
                        self.received
                    )))
                }
                _ => BodyEvent::End,
            },
        };
        if matches!(outcome, BodyEvent::End | BodyEvent::Aborted(_)) {
            self.state = BodyState::Done;
        }
        outcome
    }

    fn on_data(&mut self, data: Bytes) -> BodyEvent {
        let len = u64::try_from(data.len()).unwrap_or(u64::MAX);
        self.received = self.received.saturating_add(len);
        match self.length {
            BodyLength::None if !data.is_empty() => {
                self.state = BodyState::Done;
                BodyEvent::Aborted(Aborted::protocol("data on a message without body"))
            }
            BodyLength::Exactly(expected) if self.received > expected => {
                self.state = BodyState::Done;
                BodyEvent::Aborted(Aborted::protocol(format!(
                    "body longer than its content-length of {expected}"
                )))
            }
            _ => BodyEvent::Data(data),
        }
    }
}

/// What the client learned about the response from one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseEvent {
    /// Nothing for the application.
    Nothing,
    /// An interim (1xx) response head.
    Interim(ResponseHead),
    /// The final response head; its body follows.
    Head(ResponseHead),
    /// About the body.
    Body(BodyEvent),
    /// The final response head opened a tunnel (a 101 to an upgrade request, a 2xx
    /// to CONNECT; spec §8): from now on channel data are the tunnelled bytes, read
    /// with a [`TunnelReader`] instead of this reader.
    Tunnel(ResponseHead),
}

/// The client's view of one request channel after its request went out: waiting for
/// the head, then receiving the body (spec §7.5).
#[derive(Debug, Clone)]
pub struct ResponseReader {
    state: ResponseState,
    head_request: bool,
    tunnel: TunnelRequest,
    limits: Limits,
}

/// Whether the request may open a tunnel, and on which final status (spec §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TunnelRequest {
    None,
    /// The request carried `upgrade`: a 101 switches protocols.
    Upgrade,
    /// A CONNECT: a 2xx establishes the tunnel.
    Connect,
}

#[derive(Debug, Clone)]
enum ResponseState {
    AwaitingHead,
    Body(BodyReader),
}

impl ResponseReader {
    /// A reader for the response to a request; `head_request` for HEAD, whose
    /// response has no body whatever its content-length says.
    pub fn new(head_request: bool, limits: Limits) -> Self {
        Self {
            state: ResponseState::AwaitingHead,
            head_request,
            tunnel: TunnelRequest::None,
            limits,
        }
    }

    /// A reader for the response to an upgrade request (one carrying `upgrade`): a
    /// 101 gives [`ResponseEvent::Tunnel`].
    pub fn upgrade(limits: Limits) -> Self {
        Self {
            tunnel: TunnelRequest::Upgrade,
            ..Self::new(false, limits)
        }
    }

    /// A reader for the response to a CONNECT: a 2xx gives [`ResponseEvent::Tunnel`].
    pub fn connect(limits: Limits) -> Self {
        Self {
            tunnel: TunnelRequest::Connect,
            ..Self::new(false, limits)
        }
    }

    /// Takes one event.
    pub fn on_event(&mut self, event: ChannelEvent<'_>) -> ResponseEvent {
        match &mut self.state {
            ResponseState::Body(body) => ResponseEvent::Body(body.on_event(event)),
            ResponseState::AwaitingHead => match event {
                ChannelEvent::Request {
                    name: HTTP_RESPONSE,
                    want_reply: false,
                    data,
                } => match ResponseHead::decode_with(&mut &data[..], &self.limits) {
                    Ok(head) if head.status == StatusCode::SWITCHING_PROTOCOLS => {
                        if self.tunnel == TunnelRequest::Upgrade {
                            self.finish_with_tunnel(head)
                        } else {
                            self.abort(Aborted::protocol("101 to a request without upgrade"))
                        }
                    }
                    Ok(head) if head.is_interim() => ResponseEvent::Interim(head),
                    Ok(head)
                        if self.tunnel == TunnelRequest::Connect && head.status.is_success() =>
                    {
                        self.finish_with_tunnel(head)
                    }
                    Ok(head) => match self.body_length(&head) {
                        Ok(length) => {
                            self.state =
                                ResponseState::Body(BodyReader::new(length, self.limits.clone()));
                            ResponseEvent::Head(head)
                        }
                        Err(error) => self.abort(Aborted::from_decode("http-response", &error)),
                    },
                    Err(error) => self.abort(Aborted::from_decode("http-response", &error)),
                },
                ChannelEvent::Data(_) => {
                    self.abort(Aborted::protocol("data before the response head"))
                }
                ChannelEvent::Eof => self.abort(Aborted::protocol("EOF before the response head")),
                // Resets, closes and stray requests: the body reader's rules apply.
                other => {
                    let mut body = BodyReader::new(BodyLength::None, self.limits.clone());
                    let event = body.on_event(other);
                    self.state = ResponseState::Body(body);
                    ResponseEvent::Body(event)
                }
            },
        }
    }

    /// Later events are the tunnel's: this reader delivers nothing more.
    fn finish_with_tunnel(&mut self, head: ResponseHead) -> ResponseEvent {
        self.finish();
        ResponseEvent::Tunnel(head)
    }

    fn abort(&mut self, aborted: Aborted) -> ResponseEvent {
        self.finish();
        ResponseEvent::Body(BodyEvent::Aborted(aborted))
    }

    /// Ends the exchange: later events give nothing.
    fn finish(&mut self) {
        let mut body = BodyReader::new(BodyLength::None, self.limits.clone());
        body.state = BodyState::Done;
        self.state = ResponseState::Body(body);
    }

    fn body_length(&self, head: &ResponseHead) -> Result<BodyLength, DecodeError> {
        let no_body = self.head_request
            || head.status == StatusCode::NO_CONTENT
            || head.status == StatusCode::NOT_MODIFIED
            || head.status == StatusCode::SWITCHING_PROTOCOLS;
        if no_body {
            return Ok(BodyLength::None);
        }
        Ok(match head.headers.content_length()? {
            Some(length) => BodyLength::Exactly(length),
            None => BodyLength::UntilEof,
        })
    }
}

/// What one direction of a tunnel delivered (spec §8.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TunnelEvent {
    /// Nothing for the application.
    Nothing,
    /// Tunnelled bytes.
    Data(Bytes),
    /// `CHANNEL_EOF`: the peer will send no more; the other direction goes on.
    Eof,
    /// `CHANNEL_CLOSE` after EOF: the tunnel ended cleanly.
    Closed,
    /// The tunnel was aborted: a reset, a close without EOF, or a protocol error.
    Aborted(Aborted),
}

/// Receives one direction of a tunnel: what a channel carries after a 101 or a 2xx to
/// CONNECT (spec §8.3). Data in both directions are raw bytes; `http-response` and
/// `http-trailers` are protocol errors; a close without EOF is an abort.
#[derive(Debug, Clone)]
pub struct TunnelReader {
    eof: bool,
    done: bool,
    limits: Limits,
}

impl TunnelReader {
    /// A reader for a tunnel that has just been established.
    pub fn new(limits: Limits) -> Self {
        Self {
            eof: false,
            done: false,
            limits,
        }
    }

    /// Whether the tunnel has ended, cleanly or not.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Takes one event. After [`TunnelEvent::Closed`] or [`TunnelEvent::Aborted`],
    /// later events give [`TunnelEvent::Nothing`].
    pub fn on_event(&mut self, event: ChannelEvent<'_>) -> TunnelEvent {
        if self.done {
            return TunnelEvent::Nothing;
        }
        let outcome = match event {
            ChannelEvent::Data(data) if self.eof => {
                drop(data);
                TunnelEvent::Aborted(Aborted::protocol("tunnel data after EOF"))
            }
            ChannelEvent::Data(data) => TunnelEvent::Data(data),
            ChannelEvent::Eof if self.eof => TunnelEvent::Nothing,
            ChannelEvent::Eof => {
                self.eof = true;
                TunnelEvent::Eof
            }
            ChannelEvent::Close if self.eof => TunnelEvent::Closed,
            ChannelEvent::Close => TunnelEvent::Aborted(Aborted {
                code: ResetCode::CANCEL,
                description: "tunnel closed without EOF".into(),
                reset_peer: false,
            }),
            ChannelEvent::ExtendedData => {
                TunnelEvent::Aborted(Aborted::protocol("extended data on an sshttp channel"))
            }
            ChannelEvent::Request {
                name: HTTP_RESET,
                data,
                ..
            } => TunnelEvent::Aborted(Aborted::from_reset(data, &self.limits)),
            ChannelEvent::Request { name, .. } => {
                if name == HTTP_TRAILERS || name == HTTP_RESPONSE || name == HEADER_UPDATE {
                    TunnelEvent::Aborted(Aborted::protocol(format!(
                        "unexpected request {name} in a tunnel"
                    )))
                } else {
                    // Unknown requests: CHANNEL_FAILURE if a reply is wanted (the SSH
                    // layer answers), otherwise ignored (spec §16.2).
                    TunnelEvent::Nothing
                }
            }
        };
        if matches!(outcome, TunnelEvent::Closed | TunnelEvent::Aborted(_)) {
            self.done = true;
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use http::{HeaderValue, header};

    use super::*;
    use crate::header_list::HeaderList;

    fn head(status: u16, length: Option<&'static str>) -> Vec<u8> {
        let mut headers = HeaderList::new();
        if let Some(length) = length {
            headers.push(header::CONTENT_LENGTH, HeaderValue::from_static(length));
        }
        ResponseHead {
            status: StatusCode::from_u16(status).unwrap(),
            headers,
        }
        .to_bytes()
        .to_vec()
    }

    fn response(bytes: &[u8]) -> ChannelEvent<'_> {
        ChannelEvent::Request {
            name: HTTP_RESPONSE,
            want_reply: false,
            data: bytes,
        }
    }

    #[test]
    fn complete_response_with_interim_head_and_trailers() {
        let mut reader = ResponseReader::new(false, Limits::default());
        let early = head(103, None);
        let ok = head(200, None);
        let trailers = Trailers::default().to_bytes();
        assert!(matches!(
            reader.on_event(response(&early)),
            ResponseEvent::Interim(_)
        ));
        assert!(matches!(
            reader.on_event(response(&ok)),
            ResponseEvent::Head(_)
        ));
        assert_eq!(
            reader.on_event(ChannelEvent::Data(Bytes::from_static(b"hi"))),
            ResponseEvent::Body(BodyEvent::Data(Bytes::from_static(b"hi")))
        );
        let trailers = ChannelEvent::Request {
            name: HTTP_TRAILERS,
            want_reply: false,
            data: &trailers,
        };
        assert!(matches!(
            reader.on_event(trailers),
            ResponseEvent::Body(BodyEvent::Trailers(_))
        ));
        assert_eq!(
            reader.on_event(ChannelEvent::Eof),
            ResponseEvent::Body(BodyEvent::End)
        );
        assert_eq!(
            reader.on_event(ChannelEvent::Close),
            ResponseEvent::Body(BodyEvent::Nothing)
        );
    }

    #[test]
    fn trailers_that_want_a_reply_abort_the_body() {
        // want reply TRUE where FALSE is required (spec §9.6): a protocol error, not
        // trailers.
        let mut reader = BodyReader::new(BodyLength::UntilEof, Limits::default());
        let trailers = Trailers::default().to_bytes();
        let event = reader.on_event(ChannelEvent::Request {
            name: HTTP_TRAILERS,
            want_reply: true,
            data: &trailers,
        });
        assert!(
            matches!(&event, BodyEvent::Aborted(aborted) if aborted.reset_peer),
            "{event:?}"
        );
    }

    #[test]
    fn close_before_eof_is_an_abort_not_a_short_body() {
        let mut reader = ResponseReader::new(false, Limits::default());
        let ok = head(200, None);
        reader.on_event(response(&ok));
        reader.on_event(ChannelEvent::Data(Bytes::from_static(b"partial")));
        assert!(matches!(
            reader.on_event(ChannelEvent::Close),
            ResponseEvent::Body(BodyEvent::Aborted(Aborted {
                code: ResetCode::CANCEL,
                ..
            }))
        ));
    }

    #[test]
    fn content_length_mismatch_aborts() {
        let mut short = BodyReader::new(BodyLength::Exactly(5), Limits::default());
        short.on_event(ChannelEvent::Data(Bytes::from_static(b"abc")));
        assert!(matches!(
            short.on_event(ChannelEvent::Eof),
            BodyEvent::Aborted(_)
        ));
        let mut long = BodyReader::new(BodyLength::Exactly(2), Limits::default());
        assert!(matches!(
            long.on_event(ChannelEvent::Data(Bytes::from_static(b"abc"))),
            BodyEvent::Aborted(_)
        ));
    }

    #[test]
    fn reset_carries_the_peers_code() {
        let mut reader = BodyReader::new(BodyLength::UntilEof, Limits::default());
        let reset = Reset {
            code: ResetCode::UPSTREAM_ERROR,
            description: "upstream went away".into(),
        }
        .to_bytes();
        let event = ChannelEvent::Request {
            name: HTTP_RESET,
            want_reply: false,
            data: &reset,
        };
        assert_eq!(
            reader.on_event(event),
            BodyEvent::Aborted(Aborted {
                code: ResetCode::UPSTREAM_ERROR,
                description: "upstream went away".into(),
                reset_peer: false,
            })
        );
    }

    #[test]
    fn head_response_has_no_body_whatever_its_length() {
        let mut reader = ResponseReader::new(true, Limits::default());
        let ok = head(200, Some("10"));
        reader.on_event(response(&ok));
        assert_eq!(
            reader.on_event(ChannelEvent::Eof),
            ResponseEvent::Body(BodyEvent::End)
        );
    }

    #[test]
    fn unknown_requests_without_reply_are_ignored() {
        let mut reader = BodyReader::new(BodyLength::UntilEof, Limits::default());
        let event = ChannelEvent::Request {
            name: "x@example.com",
            want_reply: false,
            data: b"",
        };
        assert_eq!(reader.on_event(event), BodyEvent::Nothing);
    }

    #[test]
    fn a_101_opens_a_tunnel_only_for_an_upgrade_request() {
        let switching = head(101, None);
        let mut upgrade = ResponseReader::upgrade(Limits::default());
        assert!(matches!(
            upgrade.on_event(response(&switching)),
            ResponseEvent::Tunnel(head) if head.status == StatusCode::SWITCHING_PROTOCOLS
        ));
        let mut plain = ResponseReader::new(false, Limits::default());
        assert!(matches!(
            plain.on_event(response(&switching)),
            ResponseEvent::Body(BodyEvent::Aborted(Aborted {
                code: ResetCode::PROTOCOL_ERROR,
                reset_peer: true,
                ..
            }))
        ));
        // An upgrade request the server does not switch gets an ordinary response.
        let ok = head(200, Some("2"));
        let mut declined = ResponseReader::upgrade(Limits::default());
        assert!(matches!(
            declined.on_event(response(&ok)),
            ResponseEvent::Head(_)
        ));
    }

    #[test]
    fn only_a_2xx_to_connect_opens_a_tunnel() {
        let ok = head(200, Some("0"));
        let mut connect = ResponseReader::connect(Limits::default());
        assert!(matches!(
            connect.on_event(response(&ok)),
            ResponseEvent::Tunnel(_)
        ));
        let refused = head(403, Some("5"));
        let mut refused_connect = ResponseReader::connect(Limits::default());
        assert!(matches!(
            refused_connect.on_event(response(&refused)),
            ResponseEvent::Head(_)
        ));
        assert_eq!(
            refused_connect.on_event(ChannelEvent::Data(Bytes::from_static(b"no"))),
            ResponseEvent::Body(BodyEvent::Data(Bytes::from_static(b"no")))
        );
    }

    #[test]
    fn tunnel_half_close_then_close_is_clean() {
        let mut tunnel = TunnelReader::new(Limits::default());
        assert_eq!(
            tunnel.on_event(ChannelEvent::Data(Bytes::from_static(b"ping"))),
            TunnelEvent::Data(Bytes::from_static(b"ping"))
        );
        assert_eq!(tunnel.on_event(ChannelEvent::Eof), TunnelEvent::Eof);
        assert!(!tunnel.is_done());
        assert_eq!(tunnel.on_event(ChannelEvent::Close), TunnelEvent::Closed);
        assert!(tunnel.is_done());
        assert_eq!(tunnel.on_event(ChannelEvent::Close), TunnelEvent::Nothing);
    }

    #[test]
    fn tunnel_aborts_on_close_without_eof_reset_and_http_messages() {
        let mut closed = TunnelReader::new(Limits::default());
        assert!(matches!(
            closed.on_event(ChannelEvent::Close),
            TunnelEvent::Aborted(Aborted {
                code: ResetCode::CANCEL,
                reset_peer: false,
                ..
            })
        ));
        let reset = Reset {
            code: ResetCode::TIMEOUT,
            description: "idle".into(),
        }
        .to_bytes();
        let mut reset_tunnel = TunnelReader::new(Limits::default());
        assert!(matches!(
            reset_tunnel.on_event(ChannelEvent::Request {
                name: HTTP_RESET,
                want_reply: false,
                data: &reset,
            }),
            TunnelEvent::Aborted(Aborted {
                code: ResetCode::TIMEOUT,
                reset_peer: false,
                ..
            })
        ));
        let ok = head(200, None);
        let mut response_in_tunnel = TunnelReader::new(Limits::default());
        assert!(matches!(
            response_in_tunnel.on_event(response(&ok)),
            TunnelEvent::Aborted(Aborted {
                code: ResetCode::PROTOCOL_ERROR,
                reset_peer: true,
                ..
            })
        ));
        let mut after_eof = TunnelReader::new(Limits::default());
        after_eof.on_event(ChannelEvent::Eof);
        assert!(matches!(
            after_eof.on_event(ChannelEvent::Data(Bytes::from_static(b"late"))),
            TunnelEvent::Aborted(_)
        ));
    }
}
