//! The broker's mail: what a destination's owner is asked ([`ToOwner`]), what it answers
//! ([`FromOwner`]), and the [`Outlet`] it answers through.
//!
//! Plain data and one trait, no channels: the shard applies a [`ToOwner`] and hands its answers to
//! an [`Outlet`], which the bus implements with crossbeam channels and the simulation with
//! in-memory queues. Keeping the vocabulary here (rather than in the bus) is what lets the broker
//! sit below the bus in the layering (lib.rs).
//!
//! Invariant: every message names the connection (or subscription) it is for by [`ConnRef`] /
//! [`SubKey`]; the receiving worker drops a message whose slot generation no longer matches.

use super::queue::SettleKind;
use super::{AckMode, ConnRef, Message, Publisher, StatsAsker, SubKey};
use crate::admin::{AdminOp, AdminReply};
use crate::stomp::ErrorWord;
use smallvec::SmallVec;
use std::sync::Arc;

/// Queue-local sequence numbers settled by one ACK or NACK.
pub type Seqs = SmallVec<[u64; 4]>;

/// A connection's request to the owner of a destination.
#[derive(Debug)]
pub enum ToOwner {
    /// Publish a message; `receipt` is echoed in a rejection's ERROR. `create`: the publisher
    /// may create the destination if this owner does not hold it (the `create` access rule);
    /// without it, a SEND that would create one gets ERROR `access denied`.
    Publish { msg: Arc<Message>, from: Publisher, receipt: Option<Box<str>>, create: bool },
    /// Add a subscription (topic or queue by the destination's name); `filter` is the value a
    /// filtered topic subscription routes on. `barrier`: the SUBSCRIBE asked for a receipt;
    /// answer [`FromOwner::BarrierDone`] once it is in place and *before* its first message,
    /// so the RECEIPT precedes the subscription's MESSAGEs.
    /// `durable`: a durable topic subscription's (identity, name); it then behaves as a queue
    /// of its own at the topic's owner, kept while nobody is subscribed.
    Subscribe {
        dest: Arc<str>,
        key: SubKey,
        mode: AckMode,
        prefetch: u32,
        filter: Option<Box<str>>,
        /// How a queue consumer takes part in dispatch: its selector (it is offered only the
        /// messages this accepts), priority and exclusivity. (A topic subscriber's selector is
        /// applied by its own worker while fanning out.)
        consumer: super::queue::ConsumerOpts,
        barrier: bool,
        durable: Option<Box<(Box<str>, Box<str>)>>,
        /// As for `Publish`: whether the subscriber may create the destination.
        create: bool,
    },
    /// Register a wildcard topic subscription (sent to every worker: each owner routes the
    /// topics it owns that match to the subscriber's worker).
    WildSubscribe { pattern: Arc<super::wildcard::Pattern>, key: SubKey },
    /// Remove one (sent to every worker).
    WildUnsubscribe { pattern: Arc<super::wildcard::Pattern>, key: SubKey },
    /// Delete the durable subscription (identity, name) of topic `dest` (of every topic this
    /// owner holds, when `None`: sent to every owner) and what it kept.
    Forget { dest: Option<Arc<str>>, from: ConnRef, identity: Box<str>, name: Box<str> },
    /// Browse a queue (`browser:true`): answer [`FromOwner::Browsed`] with what it holds, in
    /// arrival order, without consuming it. `barrier`: answer [`FromOwner::BarrierDone`]
    /// first (the SUBSCRIBE's receipt comes before the messages).
    Browse { dest: Arc<str>, key: SubKey, barrier: bool },
    /// A temporary destination's connection closed: delete it and what it holds.
    DropTemp { dest: Arc<str> },
    /// Remove a subscription; a queue takes back everything it had in flight.
    Unsubscribe { dest: Arc<str>, key: SubKey },
    /// ACK or NACK of queue messages by queue sequence.
    Settle { dest: Arc<str>, key: SubKey, seqs: Seqs, kind: SettleKind },
    /// Return `n` delivery credits for an auto-ack queue subscription.
    Credit { dest: Arc<str>, key: SubKey, n: u32 },
    /// Credit in bytes for a client-ack queue subscription: `paused` while its connection's
    /// unsent output is over `max_pending_bytes`, whatever its prefetch; resumed below half.
    Pace { dest: Arc<str>, key: SubKey, paused: bool },
    /// An auto-ack queue delivery that found its subscription gone: put it back.
    Bounce { dest: Arc<str>, key: SubKey, msg: Arc<Message>, seq: u64, deliveries: u32 },
    /// An admin action on a destination this worker owns (or, for `perms`, on worker 0's
    /// master policy table); answered with [`FromOwner::AdminResult`].
    Admin { from: ConnRef, op: AdminOp },
    /// A transaction's SENDs and ACKs for this owner (a COMMIT), applied together; their
    /// persistent part is logged as one record, so it survives a crash whole or not at all.
    /// (Atomic per owner: a transaction that spans owners is several of these.)
    Commit { from: ConnRef, ops: Vec<ToOwner> },
    /// Answer with [`FromOwner::BarrierDone`] once everything sent before it is applied (and,
    /// for a connection that wrote persistent records, once they are on disk).
    Barrier { from: ConnRef },
    /// Answer with the worker's numbers for a console page (answered by the worker, which
    /// knows its connections, not by the shard).
    Stats { from: StatsAsker },
}

/// An owner's answer, for the worker that holds the connection it names.
#[derive(Debug)]
pub enum FromOwner {
    /// A topic message for every local subscriber of `dest`.
    TopicMessage { dest: Arc<str>, msg: Arc<Message> },
    /// A queue message for one subscription. `retained`: the owner keeps it until ACK/NACK.
    QueueMessage { key: SubKey, msg: Arc<Message>, seq: u64, redelivered: bool, retained: bool, deliveries: u32 },
    /// A queue's messages for a browsing subscription (at most [`super::queue::BROWSE_MAX`];
    /// `truncated` when it held more), then the end of the browse.
    Browsed { key: SubKey, msgs: Vec<Arc<Message>>, truncated: bool },
    /// A message a topic kept (`min_delivery`), replayed to one new subscription.
    Replay { key: SubKey, msg: Arc<Message> },
    /// The owner refused a subscription (e.g. `dest flup`): forget it locally, ERROR, close.
    SubscribeRefused { key: SubKey, word: ErrorWord, detail: String },
    /// The outcome of an admin action, for the admin connection that asked.
    AdminResult { conn: ConnRef, reply: AdminReply },
    /// Everything the connection sent to this owner before its barrier has been applied.
    BarrierDone { conn: ConnRef, owner: u16 },
    /// Producer flow control: `dest` (an `overflow = "block"` queue) is over its limits
    /// (`blocked`), or back under them. Sent to every worker; each holds, or lets go, the
    /// connections of its own that send to `dest`.
    Flow { dest: Arc<str>, blocked: bool },
    /// The owner refused a frame; the connection gets ERROR and is closed.
    Rejected { conn: ConnRef, word: ErrorWord, detail: String, receipt: Option<Box<str>> },
}

/// Where a shard sends what it produces: answers to connections' workers and requests to other
/// owners (dead letters). Implemented by `bus::Outbox`.
pub trait Outlet {
    /// The worker this outlet sends from (the owner itself).
    fn me(&self) -> usize;
    /// Number of workers (destinations are spread over them by [`super::owner_of`]).
    fn workers(&self) -> usize;
    /// Send a request to the owner worker `w`.
    fn to_owner(&mut self, w: usize, msg: ToOwner);
    /// Send an answer to the worker `w` that holds the connection it names.
    fn answer(&mut self, w: usize, msg: FromOwner);
}
