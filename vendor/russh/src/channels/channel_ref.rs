use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::sync::mpsc::error::{SendError, TrySendError};
use tokio::sync::mpsc::{Receiver, Sender};
use tokio::sync::{oneshot, Semaphore, TryAcquireError};

use super::WindowSizeRef;
use crate::{ChannelMsg, ChannelOpenRejection};

/// What the peer answered to a channel open of a custom type.
pub(crate) type CustomOpenReply =
    oneshot::Sender<Result<CustomOpenConfirmation, ChannelOpenRejection>>;

/// A CHANNEL_OPEN_CONFIRMATION for a custom channel type, with its type-specific data.
#[derive(Debug)]
pub(crate) struct CustomOpenConfirmation {
    pub(crate) id: crate::ChannelId,
    pub(crate) max_packet_size: u32,
    pub(crate) window_size: u32,
    pub(crate) data: bytes::Bytes,
}

/// A handle to the [`super::Channel`]'s to be able to transmit messages
/// to it and update it's `window_size`.
#[derive(Debug)]
pub struct ChannelRef {
    pub(super) sender: Sender<ChannelMsg>,
    pub(super) window_size: WindowSizeRef,
    /// Set for channels opened with a custom type: the confirmation (with its data) or
    /// the failure (with its description) goes here instead of to the channel.
    pub(crate) open_reply: Option<CustomOpenReply>,
    /// With a window (see [`ChannelRef::queue`]): room for the messages that are not
    /// data.
    others: Option<Arc<Semaphore>>,
    /// With a window: room for data messages, one per [`MIN_DATA_COST`] bytes of it.
    data: Option<Arc<Semaphore>>,
    /// With a window: the room for messages that are not data that window notices
    /// leave free (half of it; see [`ChannelRef::try_send`]).
    reserved: usize,
}

/// With a window-bounded queue, the bytes of window a queued data message is counted
/// as at least. A queued message costs about 150 bytes of bookkeeping whatever its
/// size, so without this a peer filling an unread channel's window with one-byte
/// packets would make it cost some 150 times the window; with it, the queue's
/// bookkeeping stays within about 1.2 times the window. Only a peer whose packets
/// average fewer bytes than this over a whole window makes the session wait for the
/// reader (as every peer could before).
pub const MIN_DATA_COST: u32 = 128;

impl ChannelRef {
    pub fn new(sender: Sender<ChannelMsg>) -> Self {
        Self {
            sender,
            window_size: WindowSizeRef::new(0),
            open_reply: None,
            others: None,
            data: None,
            reserved: 0,
        }
    }

    /// A channel's queue: the session's end and the reader's end.
    ///
    /// Without `window`, the queue holds `channel_buffer_size` messages and the
    /// session waits for room for each. `window` is the window the channel
    /// advertises when it is returned only as the application reads
    /// (`adjust_window_on_read`): the peer can then never have more than `window`
    /// bytes of data in the queue, since data beyond the window is a protocol
    /// error, so data finds room without waiting unless the peer's packets average
    /// fewer than [`MIN_DATA_COST`] bytes (the queue holds `window /
    /// MIN_DATA_COST` data messages). The other messages are bounded by
    /// `channel_buffer_size` and wait for room, as before.
    pub(crate) fn queue(
        channel_buffer_size: usize,
        window: Option<u32>,
    ) -> (Self, ChannelReceiver) {
        let (capacity, others, data) = match window {
            Some(window) => {
                let data_messages = usize::try_from((window / MIN_DATA_COST).max(1))
                    .unwrap_or(usize::MAX)
                    .min(Semaphore::MAX_PERMITS);
                (
                    data_messages
                        .saturating_add(channel_buffer_size)
                        .min(Semaphore::MAX_PERMITS),
                    Some(Arc::new(Semaphore::new(channel_buffer_size))),
                    Some(Arc::new(Semaphore::new(data_messages))),
                )
            }
            None => (channel_buffer_size, None, None),
        };
        let (sender, receiver) = tokio::sync::mpsc::channel(capacity);
        (
            Self {
                others: others.clone(),
                data: data.clone(),
                reserved: channel_buffer_size / 2,
                ..Self::new(sender)
            },
            ChannelReceiver {
                receiver,
                others,
                data,
            },
        )
    }

    /// Queues `msg` for the channel's reader, waiting for room if there is none
    /// (see [`ChannelRef::queue`] for the room a window-bounded queue has).
    pub async fn send(&self, msg: ChannelMsg) -> Result<(), SendError<ChannelMsg>> {
        if let Some(others) = self.room_for(&msg) {
            match others.acquire().await {
                Ok(permit) => permit.forget(),
                Err(_) => return Err(SendError(msg)),
            }
        }
        self.sender.send(msg).await
    }

    /// Queues `msg` for the channel's reader if there is room for it now.
    ///
    /// A window notice ([`ChannelMsg::WindowAdjusted`]) is informational and dropped
    /// unless more than half of the room for messages that are not data is free: a
    /// channel that writes while its reader waits gets a notice for every window
    /// the peer returns, and notices that filled that room made the session wait
    /// for the reader at the peer's next EOF or close, while the reader waited for
    /// the writes that the session, so stopped, no longer let through.
    pub fn try_send(&self, msg: ChannelMsg) -> Result<(), TrySendError<ChannelMsg>> {
        let others = self.room_for(&msg);
        if let (Some(others), ChannelMsg::WindowAdjusted { .. }) = (others, &msg)
            && others.available_permits() <= self.reserved
        {
            return Err(TrySendError::Full(msg));
        }
        if let Some(others) = others {
            match others.try_acquire() {
                Ok(permit) => permit.forget(),
                Err(TryAcquireError::Closed) => return Err(TrySendError::Closed(msg)),
                Err(TryAcquireError::NoPermits) => return Err(TrySendError::Full(msg)),
            }
        }
        self.sender.try_send(msg).inspect_err(|_| {
            if let Some(others) = others {
                others.add_permits(1);
            }
        })
    }

    /// Where `msg` takes room when the queue is bounded by a window: data among
    /// the data messages, everything else among the others.
    fn room_for(&self, msg: &ChannelMsg) -> Option<&Semaphore> {
        if msg.is_windowed() {
            self.data.as_deref()
        } else {
            self.others.as_deref()
        }
    }

    pub(crate) fn window_size(&self) -> &WindowSizeRef {
        &self.window_size
    }
}

impl std::ops::Deref for ChannelRef {
    type Target = Sender<ChannelMsg>;

    fn deref(&self) -> &Self::Target {
        &self.sender
    }
}

/// The reader's end of a channel's queue (see [`ChannelRef::queue`]).
#[derive(Debug)]
pub(crate) struct ChannelReceiver {
    receiver: Receiver<ChannelMsg>,
    others: Option<Arc<Semaphore>>,
    data: Option<Arc<Semaphore>>,
}

impl ChannelReceiver {
    pub(crate) async fn recv(&mut self) -> Option<ChannelMsg> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Takes the next message, making room for another of its kind.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<ChannelMsg>> {
        let msg = ready!(self.receiver.poll_recv(cx));
        if let Some(msg) = &msg {
            let room = if msg.is_windowed() {
                &self.data
            } else {
                &self.others
            };
            if let Some(room) = room {
                room.add_permits(1);
            }
        }
        Poll::Ready(msg)
    }

    /// Refuses further messages; those queued can still be taken.
    pub(crate) fn close(&mut self) {
        self.receiver.close();
        self.close_rooms();
    }

    /// A session waiting for room for this channel must not wait for a reader that
    /// has gone.
    fn close_rooms(&self) {
        for room in [&self.others, &self.data].into_iter().flatten() {
            room.close();
        }
    }
}

impl Drop for ChannelReceiver {
    fn drop(&mut self) {
        self.close_rooms();
    }
}
