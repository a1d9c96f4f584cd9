use tokio::sync::mpsc::Sender;
use tokio::sync::oneshot;

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
}

impl ChannelRef {
    pub fn new(sender: Sender<ChannelMsg>) -> Self {
        Self {
            sender,
            window_size: WindowSizeRef::new(0),
            open_reply: None,
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
