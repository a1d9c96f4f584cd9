//! Publishing (spec §14.14): a web service behind NAT becomes a vhost when its SSH
//! connection asks `tcpip-forward` for `NAME:80` (`ssh -R NAME:80:localhost:3000 gw`).
//! Visitors' requests then travel to it as HTTP/1.1 on `forwarded-tcpip` channels of
//! that connection, through hyper's pooled client: a channel is kept alive and reused
//! like a TCP connection to any other upstream.
//!
//! The registry keeps, per published name, the key that holds it and the connections
//! publishing it. A name is held by one key while any of its connections publish it;
//! the same key may publish it from several connections, and visitors' connections
//! are spread across them.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use russh::server::{Handle, Msg};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::ssh::Closable;

/// Names kept after their last publisher left, so that visitors get 502 "offline"
/// rather than "unknown virtual host"; past it the oldest is forgotten.
pub(crate) const MAX_OFFLINE_NAMES: usize = 1024;

/// A `tcpip-forward` request, as the SSH layer hands it to the gatekeeper.
pub(crate) struct Forward {
    /// The SSH connection (unique for the process's lifetime).
    pub connection: u64,
    /// Its session, to open `forwarded-tcpip` channels on.
    pub handle: Handle,
    /// `address to bind`: the name, or for port 0 whatever the client sent.
    pub address: String,
    /// `port to bind`: 80, or 0 for a generated name.
    pub port: u32,
}

impl Forward {
    /// Whether it asks for a generated name (`ssh -R 0:HOST:PORT`).
    pub(crate) fn generates(&self) -> bool {
        self.port == 0
    }
}

/// One connection publishing a name.
#[derive(Clone)]
pub(crate) struct Publisher {
    /// The SSH connection (unique for the process's lifetime).
    pub connection: u64,
    /// Its session, to open `forwarded-tcpip` channels on.
    pub handle: Handle,
    /// The `tcpip-forward` address as the client sent it (the name, or for a
    /// generated name what it sent, such as `localhost`), echoed in each channel's
    /// open so that the client finds its forward.
    pub address: String,
    /// The port: 80 (also what a request for port 0 is given).
    pub port: u32,
    /// Visitor channels open on this connection, at most the rule's
    /// `max_visitor_channels`.
    pub channels: Arc<Semaphore>,
    /// How long a visitor waits for one: the rule's `publisher_wait_timeout_secs`.
    pub wait: Duration,
    /// Cancelled when this publisher unpublishes: its visitor channels, idle in the
    /// pool or busy, end then (a response in progress is aborted).
    pub gone: CancellationToken,
}

impl Publisher {
    /// The publisher of `forward`, within its rule's `limits`.
    pub(crate) fn new(forward: Forward, limits: &crate::config::PublishLimits) -> Self {
        // A request for port 0 is given port 80 (RFC 4254 §7.1 lets the server choose).
        let port = if forward.generates() {
            80
        } else {
            forward.port
        };
        Self {
            connection: forward.connection,
            handle: forward.handle,
            address: forward.address,
            port,
            channels: Arc::new(Semaphore::new(limits.max_visitor_channels)),
            wait: limits.publisher_wait_timeout,
            gone: CancellationToken::new(),
        }
    }
}

/// What the registry needs of a publisher (a trait so that its bookkeeping is tested
/// without SSH connections).
pub(crate) trait Publishing: Clone + Send + 'static {
    /// The publishing connection.
    fn connection(&self) -> u64;
    /// Whether this is the `tcpip-forward` for `address:port`.
    fn binds(&self, address: &str, port: u32) -> bool;
    /// It no longer publishes: end what it carries.
    fn gone(&self);
}

impl Publishing for Publisher {
    fn connection(&self) -> u64 {
        self.connection
    }

    fn binds(&self, address: &str, port: u32) -> bool {
        // A cancel of a port-0 forward may name 0 or the port it was given.
        self.address.eq_ignore_ascii_case(address) && (port == self.port || port == 0)
    }

    fn gone(&self) {
        self.gone.cancel();
    }
}

/// The connections publishing one name, shared with the name's upstream connector.
pub(crate) struct Publishers<P = Publisher> {
    list: Mutex<Vec<P>>,
    next: AtomicUsize,
}

impl<P> Default for Publishers<P> {
    fn default() -> Self {
        Self {
            list: Mutex::new(Vec::new()),
            next: AtomicUsize::new(0),
        }
    }
}

impl<P: Publishing> Publishers<P> {
    /// The next publisher, round robin; `None` while the name is offline.
    fn pick(&self) -> Option<P> {
        let list = self.list.lock().unwrap_or_else(PoisonError::into_inner);
        if list.is_empty() {
            return None;
        }
        let index = self
            .next
            .fetch_add(1, Ordering::Relaxed)
            .checked_rem(list.len())?;
        list.get(index).cloned()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.list
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }
}

/// A published name.
struct Entry<V, P> {
    /// The key that holds it while it is published (`None`: offline).
    owner: Option<String>,
    publishers: Arc<Publishers<P>>,
    /// What visitors reach: the name's vhost, its upstream the connector below.
    vhost: Arc<V>,
    /// When it went offline, in unpublish order, for [`MAX_OFFLINE_NAMES`].
    offline_since: u64,
}

/// Every published name. `V` is the gateway's vhost type.
pub(crate) struct Registry<V, P = Publisher> {
    names: Mutex<Names<V, P>>,
}

struct Names<V, P> {
    entries: HashMap<String, Entry<V, P>>,
    unpublished: u64,
}

/// A fresh label for a generated name (`ssh -R 0:HOST:PORT`): 8 lowercase letters
/// and digits, about 41 bits.
pub(crate) fn generated_label() -> String {
    use rand::RngExt as _;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..8)
        .map(|_| {
            let index = rng.random_range(0..ALPHABET.len());
            char::from(ALPHABET.get(index).copied().unwrap_or(b'x'))
        })
        .collect()
}

/// Why a `tcpip-forward` was refused: said in the log, and to the publisher.
pub(crate) type Refusal = String;

fn too_many(max_names: usize) -> Refusal {
    format!(
        "this key already publishes {max_names} names, the most one key may (max_names_per_key)"
    )
}

impl<V, P> Default for Registry<V, P> {
    fn default() -> Self {
        Self {
            names: Mutex::new(Names {
                entries: HashMap::new(),
                unpublished: 0,
            }),
        }
    }
}

impl<V, P: Publishing> Registry<V, P> {
    fn names(&self) -> std::sync::MutexGuard<'_, Names<V, P>> {
        self.names.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The vhost of a published (or recently offline) `name`.
    pub(crate) fn vhost(&self, name: &str) -> Option<Arc<V>> {
        self.names()
            .entries
            .get(name)
            .map(|entry| entry.vhost.clone())
    }

    /// Publishes `name` for `owner` (a key fingerprint) on `publisher`'s connection;
    /// `vhost` builds the name's vhost from its publishers when the name is new or was
    /// offline.
    pub(crate) fn publish(
        &self,
        name: &str,
        owner: &str,
        max_names: usize,
        publisher: P,
        vhost: impl FnOnce(Arc<Publishers<P>>) -> V,
    ) -> Result<(), Refusal> {
        let mut names = self.names();
        let held = names
            .entries
            .iter()
            .filter(|(other, entry)| *other != name && entry.owner.as_deref() == Some(owner))
            .count();
        match names.entries.get_mut(name) {
            Some(entry) if entry.owner.as_deref().is_some_and(|held| held != owner) => {
                Err(format!(
                    "{name:?} is published by another key; it is free once that key unpublishes it"
                ))
            }
            Some(entry) => {
                if entry.owner.is_none() {
                    if held >= max_names {
                        return Err(too_many(max_names));
                    }
                    // Published again: under the rules as they are now (a reload may
                    // have changed who may visit), not as they were.
                    entry.vhost = Arc::new(vhost(entry.publishers.clone()));
                }
                entry.owner = Some(owner.to_owned());
                entry
                    .publishers
                    .list
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(publisher);
                Ok(())
            }
            None => {
                if held >= max_names {
                    return Err(too_many(max_names));
                }
                let publishers = Arc::new(Publishers::default());
                publishers
                    .list
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(publisher);
                let vhost = Arc::new(vhost(publishers.clone()));
                names.entries.insert(
                    name.to_owned(),
                    Entry {
                        owner: Some(owner.to_owned()),
                        publishers,
                        vhost,
                        offline_since: 0,
                    },
                );
                Ok(())
            }
        }
    }

    /// Ends what `connection` publishes: the name at `address:port`, or (with `None`)
    /// everything. A name without publishers goes offline: visitors get 502, and any
    /// key may publish it again.
    pub(crate) fn unpublish(&self, connection: u64, only: Option<(&str, u32)>) -> Unpublished {
        let mut names = self.names();
        let mut ended = 0usize;
        let mut offline = Vec::new();
        let mut unpublished = names.unpublished;
        for (name, entry) in &mut names.entries {
            if entry.owner.is_none() {
                continue;
            }
            let mut list = entry
                .publishers
                .list
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            list.retain(|publisher| {
                let stays = publisher.connection() != connection
                    || only.is_some_and(|(address, port)| !publisher.binds(address, port));
                if !stays {
                    publisher.gone();
                    ended = ended.saturating_add(1);
                }
                stays
            });
            if list.is_empty() {
                entry.owner = None;
                unpublished = unpublished.saturating_add(1);
                entry.offline_since = unpublished;
                offline.push(name.clone());
            }
        }
        names.unpublished = unpublished;
        if offline.is_empty() {
            return Unpublished { ended, offline };
        }
        // Forget the oldest offline names past the bound.
        let mut offline_names: Vec<(u64, String)> = names
            .entries
            .iter()
            .filter(|(_, entry)| entry.owner.is_none())
            .map(|(name, entry)| (entry.offline_since, name.clone()))
            .collect();
        if offline_names.len() > MAX_OFFLINE_NAMES {
            offline_names.sort_unstable();
            let excess = offline_names.len().saturating_sub(MAX_OFFLINE_NAMES);
            for (_, name) in offline_names.into_iter().take(excess) {
                names.entries.remove(&name);
            }
        }
        Unpublished { ended, offline }
    }

    /// How many names are published now (not offline).
    #[cfg(test)]
    pub(crate) fn published(&self) -> usize {
        self.names()
            .entries
            .values()
            .filter(|entry| !entry.publishers.is_empty())
            .count()
    }
}

/// What [`Registry::unpublish`] ended.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Unpublished {
    /// How many of the connection's `tcpip-forward`s it ended (none: the cancel named
    /// an address the connection does not publish, which is answered failure as
    /// OpenSSH's sshd does).
    pub(crate) ended: usize,
    /// The names that went offline: they have no publisher left.
    pub(crate) offline: Vec<String>,
}

/// hyper's connector for a published name: each "connection" to the upstream is a
/// `forwarded-tcpip` channel to one of the name's publishers.
#[derive(Clone)]
pub(crate) struct Connector {
    pub name: String,
    pub publishers: Arc<Publishers>,
}

/// Its name only: the publishers' sessions say nothing useful.
impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<PublishedStream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let name = self.name.clone();
        let publisher = self.publishers.pick();
        Box::pin(async move {
            let offline = || {
                io::Error::new(
                    io::ErrorKind::NotConnected,
                    format!(
                        "the published service {name} is offline: no connection publishes it now"
                    ),
                )
            };
            let publisher = publisher.ok_or_else(offline)?;
            let open = async {
                let permit = publisher
                    .channels
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| offline())?;
                let channel = publisher
                    .handle
                    .channel_open_forwarded_tcpip(
                        publisher.address.clone(),
                        publisher.port,
                        "127.0.0.1",
                        0,
                    )
                    .await
                    .map_err(|error| {
                        io::Error::new(
                            io::ErrorKind::ConnectionRefused,
                            format!("the publisher of {name} refused the channel: {error}"),
                        )
                    })?;
                Ok::<_, io::Error>(TokioIo::new(PublishedStream {
                    inner: Closable::new(
                        channel.into_stream(),
                        publisher.gone.clone(),
                        "the publisher unpublished",
                    ),
                    _permit: permit,
                }))
            };
            let wait = publisher.wait;
            tokio::time::timeout(wait, open)
                .await
                .map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "the publisher of {name} gave no channel within {} s (publisher_wait_timeout_secs)",
                            wait.as_secs()
                        ),
                    )
                })?
        })
    }
}

/// A visitor's channel to a publisher, holding its slot on that connection. Its reads
/// and writes fail once the publisher unpublishes, so that hyper drops it from its
/// pool, busy or idle, and the channel closes (dropping it sends CHANNEL_CLOSE).
pub(crate) struct PublishedStream {
    inner: Closable<russh::ChannelStream<Msg>>,
    _permit: OwnedSemaphorePermit,
}

impl Connection for PublishedStream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl AsyncRead for PublishedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for PublishedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::limits::DEFAULT_MAX_PUBLISHED_NAMES_PER_KEY as MAX_PUBLISHED_NAMES_PER_KEY;

    /// A publisher without a connection: its number and its bind address.
    #[derive(Clone, Debug, PartialEq)]
    struct Fake(u64, &'static str);

    impl Publishing for Fake {
        fn connection(&self) -> u64 {
            self.0
        }

        fn binds(&self, address: &str, port: u32) -> bool {
            self.1 == address && port == 80
        }

        fn gone(&self) {}
    }

    fn registry() -> Registry<String, Fake> {
        Registry::default()
    }

    fn publish(
        registry: &Registry<String, Fake>,
        name: &'static str,
        owner: &str,
        connection: u64,
    ) -> Result<(), Refusal> {
        registry.publish(
            name,
            owner,
            MAX_PUBLISHED_NAMES_PER_KEY,
            Fake(connection, name),
            |_| name.to_owned(),
        )
    }

    #[test]
    fn a_name_is_held_by_one_key_and_spread_over_its_connections() {
        let registry = registry();
        publish(&registry, "a.localhost", "key-1", 1).unwrap();
        publish(&registry, "a.localhost", "key-1", 2).unwrap();
        let refused = publish(&registry, "a.localhost", "key-2", 3).unwrap_err();
        assert!(refused.contains("another key"), "{refused}");
        let entry_publishers = {
            let names = registry.names();
            names.entries["a.localhost"].publishers.clone()
        };
        let picks: Vec<u64> = (0..4).map(|_| entry_publishers.pick().unwrap().0).collect();
        assert_eq!(picks, [1, 2, 1, 2], "round robin");
        // One connection leaves: still held.
        assert_eq!(
            registry.unpublish(1, None),
            Unpublished {
                ended: 1,
                offline: vec![]
            }
        );
        assert!(publish(&registry, "a.localhost", "key-2", 3).is_err());
        // cancel-tcpip-forward of another address changes nothing; of this one, ends it.
        assert_eq!(
            registry.unpublish(2, Some(("b.localhost", 80))),
            Unpublished::default()
        );
        assert_eq!(
            registry.unpublish(2, Some(("a.localhost", 80))),
            Unpublished {
                ended: 1,
                offline: vec!["a.localhost".to_owned()]
            }
        );
        assert_eq!(registry.published(), 0);
        assert!(entry_publishers.pick().is_none(), "offline");
        assert_eq!(
            registry.vhost("a.localhost").as_deref().map(String::as_str),
            Some("a.localhost")
        );
        // Free for another key now, and built again from the rules of now.
        let again = |connection: u64, vhost: &'static str| {
            registry.publish(
                "a.localhost",
                "key-2",
                MAX_PUBLISHED_NAMES_PER_KEY,
                Fake(connection, "a.localhost"),
                |_| vhost.to_owned(),
            )
        };
        again(3, "rules after a reload").unwrap();
        assert_eq!(registry.published(), 1);
        assert_eq!(
            registry.vhost("a.localhost").as_deref().map(String::as_str),
            Some("rules after a reload")
        );
        // While it is held, another connection of its key joins what is there.
        again(4, "ignored").unwrap();
        assert_eq!(
            registry.vhost("a.localhost").as_deref().map(String::as_str),
            Some("rules after a reload")
        );
    }

    #[test]
    fn a_key_holds_at_most_its_limit_and_offline_names_are_bounded() {
        let registry = registry();
        let names: Vec<&'static str> = (0..=MAX_OFFLINE_NAMES)
            .map(|i| &*Box::leak(format!("n{i}.localhost").into_boxed_str()))
            .collect();
        for name in &names[..MAX_PUBLISHED_NAMES_PER_KEY] {
            publish(&registry, name, "key-1", 1).unwrap();
        }
        let refused =
            publish(&registry, names[MAX_PUBLISHED_NAMES_PER_KEY], "key-1", 1).unwrap_err();
        assert!(refused.contains("16 names"), "{refused}");
        publish(&registry, names[MAX_PUBLISHED_NAMES_PER_KEY], "key-2", 2).unwrap();
        registry.unpublish(1, None);
        registry.unpublish(2, None);
        assert_eq!(registry.published(), 0);
        // Each name published once by its own connection, then the connection ends.
        for (i, name) in names.iter().enumerate() {
            let connection = 100 + u64::try_from(i).unwrap();
            publish(&registry, name, "key-3", connection).unwrap();
            registry.unpublish(connection, None);
        }
        let kept = registry.names().entries.len();
        assert_eq!(kept, MAX_OFFLINE_NAMES, "offline names are bounded");
        assert!(
            registry.vhost("n0.localhost").is_none(),
            "the oldest offline name is forgotten"
        );
        assert!(registry.vhost(names[MAX_OFFLINE_NAMES]).is_some());
    }
}
