//! Sessions: one SSH connection per (gateway, user), shared by every request to it.
//!
//! Concurrent requests are concurrent channels on the one connection, up to a cap
//! beyond which they queue; each vhost's `header` channel is opened once per
//! connection and reused. A connection that has dropped is replaced on the next
//! request; one left idle past the idle timeout is closed.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use http::HeaderValue;
use sshttp_protocol::{HeaderList, HeaderUpdate};
use tokio::sync::{OnceCell, Semaphore};
use tokio::time::Instant;

use crate::error::Error;
use crate::ssh::{ChannelGuard, Connection, Dial};

/// What a session is keyed by: the host as written, and the port and user asked for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct SessionKey {
    pub(crate) host: String,
    pub(crate) port: Option<u16>,
    pub(crate) user: Option<String>,
}

/// Every session a client holds.
pub(crate) struct Pool {
    slots: Mutex<HashMap<SessionKey, Arc<Slot>>>,
    idle_timeout: Option<Duration>,
    max_channels: usize,
}

/// One key's session, replaced when it drops. The async lock makes concurrent first
/// requests wait for one connection attempt rather than start one each.
#[derive(Default)]
struct Slot {
    session: tokio::sync::Mutex<Option<Arc<Session>>>,
}

/// A vhost's header channel on one session: its id once confirmed, and whether it is
/// being opened in the background.
#[derive(Default)]
struct HeaderSlot {
    id: OnceCell<NonZeroU32>,
    opening: AtomicBool,
}

/// One SSH connection and what hangs off it.
pub(crate) struct Session {
    connection: Connection,
    headers: Mutex<HashMap<String, Arc<HeaderSlot>>>,
    /// The version of the cookie store's cookies last pushed to each header channel.
    cookies_pushed: Mutex<HashMap<NonZeroU32, u64>>,
    permits: Arc<Semaphore>,
    max_channels: usize,
    last_used: Mutex<Instant>,
}

impl Pool {
    pub(crate) fn new(idle_timeout: Option<Duration>, max_channels: usize) -> Self {
        Self {
            slots: Mutex::new(HashMap::new()),
            idle_timeout,
            max_channels: max_channels.max(1),
        }
    }

    /// The live session for `key`, connecting with `dial()` if there is none.
    pub(crate) async fn checkout<F, Fut>(
        &self,
        key: &SessionKey,
        dial: F,
    ) -> Result<Arc<Session>, Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Dial, Error>>,
    {
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            slots.entry(key.clone()).or_default().clone()
        };
        let mut current = slot.session.lock().await;
        if let Some(session) = current.as_ref()
            && !session.connection.is_closed()
        {
            return Ok(session.clone());
        }
        let dial = dial().await?;
        tracing::debug!(host = %dial.host, port = dial.port, user = %dial.user, "connecting");
        let connection = Connection::dial(&dial).await?;
        let session = Arc::new(Session {
            connection,
            headers: Mutex::new(HashMap::new()),
            cookies_pushed: Mutex::new(HashMap::new()),
            permits: Arc::new(Semaphore::new(self.max_channels)),
            max_channels: self.max_channels,
            last_used: Mutex::new(Instant::now()),
        });
        if let Some(idle) = self.idle_timeout {
            tokio::spawn(reap_when_idle(
                Arc::downgrade(&slot),
                Arc::downgrade(&session),
                idle,
            ));
        }
        *current = Some(session.clone());
        Ok(session)
    }

    /// Forgets `session` if it is still `key`'s, so that the next request reconnects.
    pub(crate) async fn evict(&self, key: &SessionKey, session: &Arc<Session>) {
        let slot = {
            let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            slots.get(key).cloned()
        };
        if let Some(slot) = slot {
            let mut current = slot.session.lock().await;
            if current.as_ref().is_some_and(|s| Arc::ptr_eq(s, session)) {
                *current = None;
            }
        }
    }
}

impl Session {
    pub(crate) fn connection(&self) -> &Connection {
        &self.connection
    }

    /// Waits for room for one more channel on this connection.
    pub(crate) async fn channel_permit(&self) -> ChannelGuard {
        self.touch();
        // The semaphore is never closed, so acquiring only waits.
        loop {
            if let Ok(permit) = self.permits.clone().acquire_owned().await {
                return permit;
            }
        }
    }

    /// The id of `vhost`'s header channel if it is open. If it is not, starts opening
    /// it in the background (once) and returns `None`: the caller sends this request
    /// with `header-id` 0 and its own `host` field (spec §5.4, §6.5), rather than wait a round
    /// trip for the confirmation, so that a cold request costs one round trip less.
    pub(crate) fn header_if_open(self: &Arc<Self>, vhost: &str) -> Option<NonZeroU32> {
        let slot = self.header_slot(vhost);
        if let Some(id) = slot.id.get() {
            return Some(*id);
        }
        if !slot.opening.swap(true, Ordering::AcqRel) {
            let (session, vhost) = (Arc::clone(self), vhost.to_owned());
            tokio::spawn(async move {
                if let Err(error) = session.header_for(&vhost).await {
                    // Requests go on with their own host field, and the next one tries
                    // again.
                    tracing::debug!(vhost, "the vhost's header channel: {error}");
                    slot.opening.store(false, Ordering::Release);
                }
            });
        }
        None
    }

    /// The id of `vhost`'s header channel, opened on first use.
    pub(crate) async fn header_for(&self, vhost: &str) -> Result<NonZeroU32, Error> {
        let slot = self.header_slot(vhost);
        let id = slot
            .id
            .get_or_try_init(|| async {
                let host = HeaderValue::from_str(vhost).map_err(Error::builder)?;
                let defaults = HeaderList::new().with(http::header::HOST, host);
                let id = self.connection.open_header(defaults).await?;
                tracing::debug!(vhost, header_id = id, "opened the vhost's header channel");
                Ok::<_, Error>(id)
            })
            .await?;
        Ok(*id)
    }

    /// Makes the header channel `header_id` carry `cookie` (version `version` of the
    /// cookie store's), with a `header-update` if it carries an older version.
    pub(crate) async fn push_cookies(
        &self,
        header_id: NonZeroU32,
        cookie: Option<&HeaderValue>,
        version: u64,
    ) -> Result<(), Error> {
        let pushed = self
            .cookies_pushed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&header_id)
            .copied()
            .unwrap_or(0);
        // Versions only grow: a request that read the cookies before a newer push
        // goes out with the newer ones rather than taking them back.
        if pushed >= version {
            return Ok(());
        }
        let update = match cookie {
            Some(cookie) => HeaderUpdate {
                set: HeaderList::new().with(http::header::COOKIE, cookie.clone()),
                remove: Vec::new(),
            },
            None => HeaderUpdate {
                set: HeaderList::new(),
                remove: vec![http::header::COOKIE],
            },
        };
        self.connection.update_header(header_id, &update).await?;
        self.cookies_pushed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(header_id, version);
        Ok(())
    }

    fn header_slot(&self, vhost: &str) -> Arc<HeaderSlot> {
        let mut headers = self.headers.lock().unwrap_or_else(|e| e.into_inner());
        headers.entry(vhost.to_owned()).or_default().clone()
    }

    fn touch(&self) {
        *self.last_used.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    fn is_idle_for(&self, idle: Duration) -> bool {
        let last_used = *self.last_used.lock().unwrap_or_else(|e| e.into_inner());
        self.permits.available_permits() == self.max_channels && last_used.elapsed() >= idle
    }
}

/// Closes the session once no request has used it for `idle`; ends early when the
/// session is replaced or the client is dropped.
async fn reap_when_idle(slot: Weak<Slot>, session: Weak<Session>, idle: Duration) {
    loop {
        tokio::time::sleep(idle).await;
        let (Some(slot), Some(current)) = (slot.upgrade(), session.upgrade()) else {
            return;
        };
        if current.connection.is_closed() {
            return;
        }
        if !current.is_idle_for(idle) {
            continue;
        }
        let mut held = slot.session.lock().await;
        if held.as_ref().is_some_and(|s| Arc::ptr_eq(s, &current)) {
            *held = None;
        }
        drop(held);
        tracing::debug!("closing a session idle for {idle:?}");
        current.connection.close().await;
        return;
    }
}
