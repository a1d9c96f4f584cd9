//! Who gets a connection, and for how long: the caps and deadlines that keep the
//! gateway up in front of slow, idle and hostile peers (spec §11.2).
//!
//! Before authentication a connection costs a file descriptor and a session task and
//! proves nothing, so unauthenticated connections are bounded in total and per source
//! address, and each must authenticate within the login grace time. When a cap is
//! reached the *oldest* unauthenticated connection (of that source, or overall) is
//! closed to make room: an honest client authenticates within milliseconds of
//! connecting, so it is never the oldest for long, while sockets held open idle are.
//! (sshd's MaxStartups refuses the newest instead, which is why 200 idle sockets lock
//! honest clients out of it.) After authentication, connections are bounded per key
//! and closed after an idle period with no channel open.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::config::ConnectionLimits;

/// Counters of what the connection limits did, read by the metrics endpoint.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    /// Connections open (accepted and not yet ended).
    pub connections_open: AtomicU64,
    /// Connections accepted since start.
    pub connections_total: AtomicU64,
    /// Failed authentication attempts.
    pub auth_failures: AtomicU64,
    /// Connections not yet authenticated.
    pub unauthenticated: AtomicU64,
    /// SSH channels open on all connections, as russh holds them: from the open's
    /// confirmation until both sides have sent CHANNEL_CLOSE.
    pub channels_open: AtomicU64,
    /// Unauthenticated connections closed to make room under a cap.
    pub evicted: AtomicU64,
    /// Connections closed for not authenticating within the login grace time.
    pub login_timeouts: AtomicU64,
    /// Connections closed after too many failed authentication attempts.
    pub auth_tries_exceeded: AtomicU64,
    /// Authentications refused because the key had its maximum of connections.
    pub key_connections_refused: AtomicU64,
    /// Authenticated connections closed after the idle-session timeout.
    pub idle_timeouts: AtomicU64,
    /// Request or response bodies reset for making no progress.
    pub body_timeouts: AtomicU64,
    /// Failed accepts (out of file descriptors, mostly); the gateway keeps serving.
    pub accept_errors: AtomicU64,
    /// Connections refused for their PROXY header (spec §17.15): missing from a
    /// trusted balancer, malformed or late, or sent by an untrusted peer.
    pub proxy_header_refused: AtomicU64,
    /// The soft `RLIMIT_NOFILE` the process runs with, once raised at start (0 if
    /// unknown).
    pub fd_limit: AtomicU64,
}

impl ConnectionStats {
    pub(crate) fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a connection for as long as the returned guard lives.
    pub(crate) fn connection(self: &Arc<Self>) -> OpenConnection {
        Self::count(&self.connections_total);
        Self::count(&self.connections_open);
        OpenConnection(self.clone())
    }
}

/// An accepted connection, counted in [`ConnectionStats::connections_open`] until
/// dropped (also when its task panics).
pub(crate) struct OpenConnection(Arc<ConnectionStats>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.connections_open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The admission table of one gateway listener set.
#[derive(Debug)]
pub(crate) struct Admission {
    limits: ConnectionLimits,
    stats: Arc<ConnectionStats>,
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    next_id: u64,
    /// Unauthenticated connections by age (the id grows with each accept).
    pending: BTreeMap<u64, Pending>,
    per_source: HashMap<IpAddr, usize>,
    per_key: HashMap<String, usize>,
}

#[derive(Debug)]
struct Pending {
    source: IpAddr,
    close: CancellationToken,
}

impl Table {
    fn remove(&mut self, id: u64) -> Option<Pending> {
        let pending = self.pending.remove(&id)?;
        if let Some(count) = self.per_source.get_mut(&pending.source) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.per_source.remove(&pending.source);
            }
        }
        Some(pending)
    }

    /// Closes the oldest pending connection for which `pick` holds.
    fn evict_oldest(&mut self, pick: impl Fn(&Pending) -> bool) -> bool {
        let Some(id) = self
            .pending
            .iter()
            .find(|(_, pending)| pick(pending))
            .map(|(id, _)| *id)
        else {
            return false;
        };
        if let Some(pending) = self.remove(id) {
            pending.close.cancel();
        }
        true
    }
}

impl Admission {
    pub(crate) fn new(limits: ConnectionLimits, stats: Arc<ConnectionStats>) -> Self {
        Self {
            limits,
            stats,
            table: Mutex::default(),
        }
    }

    pub(crate) fn limits(&self) -> &ConnectionLimits {
        &self.limits
    }

    pub(crate) fn stats(&self) -> &Arc<ConnectionStats> {
        &self.stats
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        // The table stays consistent under every panic point (each change is one
        // map operation), so a poisoned lock is still usable.
        self.table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Admits a new connection from `source` as unauthenticated, closing the oldest
    /// unauthenticated ones that the caps then leave no room for.
    /// `close` ends the connection.
    pub(crate) fn admit(self: &Arc<Self>, source: IpAddr, close: CancellationToken) -> PreAuth {
        let mut table = self.table();
        let id = table.next_id;
        table.next_id = table.next_id.wrapping_add(1);
        let from_source = table.per_source.get(&source).copied().unwrap_or(0);
        if from_source >= self.limits.max_unauthenticated_per_source
            && table.evict_oldest(|pending| pending.source == source)
        {
            ConnectionStats::count(&self.stats.evicted);
        }
        if table.pending.len() >= self.limits.max_unauthenticated && table.evict_oldest(|_| true) {
            ConnectionStats::count(&self.stats.evicted);
        }
        table.pending.insert(
            id,
            Pending {
                source,
                close: close.clone(),
            },
        );
        let count = table.per_source.entry(source).or_default();
        *count = count.saturating_add(1);
        self.stats
            .unauthenticated
            .store(table.pending.len() as u64, Ordering::Relaxed);
        PreAuth {
            admission: self.clone(),
            id,
        }
    }

    /// Closes up to `count` of the oldest unauthenticated connections, when accepts
    /// fail for want of file descriptors. Oldest, as under the caps: an honest client
    /// authenticates within milliseconds, so the newest unauthenticated connection
    /// is most likely the honest one that was just accepted, while the oldest have
    /// proved nothing for longest. (Shedding the newest lost the honest client
    /// whenever a flood kept the accept queue full.)
    pub(crate) fn shed_oldest(&self, count: usize) -> usize {
        let mut table = self.table();
        let oldest: Vec<u64> = table.pending.keys().take(count).copied().collect();
        for id in &oldest {
            if let Some(pending) = table.remove(*id) {
                pending.close.cancel();
            }
        }
        self.stats
            .unauthenticated
            .store(table.pending.len() as u64, Ordering::Relaxed);
        oldest.len()
    }

    /// Counts an authenticated connection for `key` (a fingerprint or certificate key
    /// id), unless it has its maximum already.
    pub(crate) fn enter_key(self: &Arc<Self>, key: &str) -> Option<KeySlot> {
        let mut table = self.table();
        let count = table.per_key.entry(key.to_owned()).or_default();
        if *count >= self.limits.max_connections_per_key {
            ConnectionStats::count(&self.stats.key_connections_refused);
            return None;
        }
        *count = count.saturating_add(1);
        Some(KeySlot {
            admission: self.clone(),
            key: key.to_owned(),
        })
    }

    fn leave(&self, id: u64) {
        let mut table = self.table();
        table.remove(id);
        self.stats
            .unauthenticated
            .store(table.pending.len() as u64, Ordering::Relaxed);
    }
}

/// An unauthenticated connection's place in the table; dropping it (or
/// [`PreAuth::authenticated`]) gives the place up.
#[derive(Debug)]
pub(crate) struct PreAuth {
    admission: Arc<Admission>,
    id: u64,
}

impl Drop for PreAuth {
    fn drop(&mut self) {
        self.admission.leave(self.id);
    }
}

/// One of a key's connections; dropping it frees the slot.
#[derive(Debug)]
pub(crate) struct KeySlot {
    admission: Arc<Admission>,
    key: String,
}

impl Drop for KeySlot {
    fn drop(&mut self) {
        let mut table = self.admission.table();
        if let Some(count) = table.per_key.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                table.per_key.remove(&self.key);
            }
        }
    }
}

/// What one connection's task watches: whether it authenticated, how many channels
/// it has open, and when one last opened or closed.
#[derive(Debug)]
pub(crate) struct Activity {
    authenticated: Notify,
    channels: AtomicUsize,
    /// Names the connection publishes (spec §14.14): it is not idle while it does.
    published: AtomicUsize,
    /// Milliseconds since `epoch` of the last channel open or close.
    last_change_ms: AtomicU64,
    epoch: tokio::time::Instant,
    stats: Arc<ConnectionStats>,
}

impl Drop for Activity {
    fn drop(&mut self) {
        // Channels still open when the connection ends end with it.
        let open = self.channels.load(Ordering::Acquire) as u64;
        self.stats.channels_open.fetch_sub(open, Ordering::Relaxed);
    }
}

impl Activity {
    pub(crate) fn new(stats: Arc<ConnectionStats>) -> Self {
        Self {
            authenticated: Notify::new(),
            channels: AtomicUsize::new(0),
            published: AtomicUsize::new(0),
            last_change_ms: AtomicU64::new(0),
            epoch: tokio::time::Instant::now(),
            stats,
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub(crate) fn authenticated(&self) {
        self.touch();
        self.authenticated.notify_one();
    }

    pub(crate) async fn wait_authenticated(&self) {
        self.authenticated.notified().await;
    }

    /// A channel of this connection was confirmed.
    pub(crate) fn channel_opened(&self) {
        self.channels.fetch_add(1, Ordering::AcqRel);
        self.stats.channels_open.fetch_add(1, Ordering::Relaxed);
        self.touch();
    }

    /// russh released one of this connection's channels (both sides closed it).
    pub(crate) fn channel_closed(&self) {
        // A close russh reports for an open we did not count changes nothing.
        if self
            .channels
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
        {
            self.stats.channels_open.fetch_sub(1, Ordering::Relaxed);
        }
        self.touch();
    }

    /// How many names the connection publishes now (spec §14.14).
    pub(crate) fn set_published(&self, names: usize) {
        self.published.store(names, Ordering::Release);
        self.touch();
    }

    pub(crate) fn channels(&self) -> usize {
        self.channels.load(Ordering::Acquire)
    }

    fn touch(&self) {
        self.last_change_ms.store(self.now_ms(), Ordering::Release);
    }

    /// How long the connection has had no channel open, if it has none.
    pub(crate) fn idle_for(&self) -> Option<Duration> {
        if self.channels() > 0 || self.published.load(Ordering::Acquire) > 0 {
            return None;
        }
        let since = self.last_change_ms.load(Ordering::Acquire);
        Some(Duration::from_millis(self.now_ms().saturating_sub(since)))
    }
}

/// A stream that fails every read and write once `close` is cancelled, saying `why`:
/// a connection's socket, so that the SSH session on it ends wherever it is (mid key
/// exchange included) and the socket is released; a visitor's channel to a
/// publisher (`crate::publish`), so that hyper drops it when the publisher leaves.
pub(crate) struct Closable<T> {
    inner: T,
    closed: Pin<Box<WaitForCancellationFutureOwned>>,
    why: &'static str,
}

impl<T> Closable<T> {
    pub(crate) fn new(inner: T, close: CancellationToken, why: &'static str) -> Self {
        Self {
            inner,
            closed: Box::pin(close.cancelled_owned()),
            why,
        }
    }

    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        match self.closed.as_mut().poll(cx) {
            Poll::Ready(()) => Err(io::Error::new(io::ErrorKind::ConnectionAborted, self.why)),
            Poll::Pending => Ok(()),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Closable<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check(cx)?;
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Closable<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check(cx)?;
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
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn admission(total: usize, per_source: usize) -> Arc<Admission> {
        let limits = ConnectionLimits {
            max_unauthenticated: total,
            max_unauthenticated_per_source: per_source,
            ..ConnectionLimits::default()
        };
        Arc::new(Admission::new(limits, Arc::default()))
    }

    fn admit(admission: &Arc<Admission>, source: &str) -> (PreAuth, CancellationToken) {
        let close = CancellationToken::new();
        let pre = admission.admit(source.parse().unwrap(), close.clone());
        (pre, close)
    }

    fn closed(entry: &(PreAuth, CancellationToken)) -> bool {
        entry.1.is_cancelled()
    }

    #[test]
    fn the_oldest_of_a_source_makes_room_for_its_newest() {
        let admission = admission(100, 2);
        let first = admit(&admission, "127.0.0.2");
        let other = admit(&admission, "127.0.0.3");
        let second = admit(&admission, "127.0.0.2");
        let third = admit(&admission, "127.0.0.2");
        assert!(closed(&first));
        assert!(!closed(&second) && !closed(&third) && !closed(&other));
        assert_eq!(admission.stats.evicted.load(Ordering::Relaxed), 1);
        assert_eq!(admission.stats.unauthenticated.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn the_total_cap_closes_the_oldest_overall_and_authenticated_ones_leave() {
        let admission = admission(2, 100);
        let one = admit(&admission, "127.0.0.2");
        let two = admit(&admission, "127.0.0.3");
        drop(two);
        let three = admit(&admission, "127.0.0.4");
        assert!(!closed(&one), "a place given up must not count");
        let four = admit(&admission, "127.0.0.5");
        assert!(closed(&one));
        assert!(!closed(&three) && !closed(&four));
    }

    #[test]
    fn shedding_takes_the_oldest_first() {
        let admission = admission(100, 100);
        let old = admit(&admission, "127.0.0.2");
        let new = admit(&admission, "127.0.0.2");
        assert_eq!(admission.shed_oldest(1), 1);
        assert!(closed(&old) && !closed(&new));
    }

    #[test]
    fn a_key_has_at_most_its_connections_and_a_dropped_slot_frees_one() {
        let limits = ConnectionLimits {
            max_connections_per_key: 2,
            ..ConnectionLimits::default()
        };
        let admission = Arc::new(Admission::new(limits, Arc::default()));
        let one = admission.enter_key("SHA256:k").unwrap();
        let _two = admission.enter_key("SHA256:k").unwrap();
        assert!(admission.enter_key("SHA256:k").is_none());
        assert!(admission.enter_key("SHA256:other").is_some());
        drop(one);
        assert!(admission.enter_key("SHA256:k").is_some());
    }
}
