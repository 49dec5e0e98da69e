//! A session's outbound queue: what the store thread (fan-out, `Sent` replies) and the
//! session's own reader hand to the connection's writer task.
//!
//! It replaces a bounded tokio `mpsc` channel, which allocates its shared state and a
//! first block of 32 slots when it is created, whether anything is ever sent or not
//! (about 1.5 KB per idle connection), and which costs a semaphore permit, a block-list
//! push and an atomic wake per item. Here one `Mutex` guards a `VecDeque` that allocates
//! on the first push. A push is one uncontended lock; it wakes the writer only when the
//! writer is parked on an empty queue, so a fan-out to 1,000 sessions costs one lock and
//! one push each. The writer takes everything queued in one lock (by swapping deques)
//! and works through its batch without locking.
//!
//! There is one receiver (the writer) and any number of senders. Nothing here is held
//! across an `.await`.
//!
//! # Bounds
//!
//! - Items: at most `capacity` are held at once, counting those waiting in the queue and
//!   the writer's current batch (which counts until the writer comes back for more, by
//!   when it has sealed them). A `try_send` beyond that fails with
//!   [`TrySendError::Full`]; `send_wait` waits for room.
//! - Storage: none until the first push. Under load the queue and the writer's batch each
//!   keep their buffer, so a busy connection does not allocate per item. When the writer
//!   parks on an empty queue it keeps no buffer of its own, and the queue keeps at most
//!   one of at most [`KEEP_SLOTS`] slots: a connection that once got a burst of thousands
//!   of items does not keep room for them for the rest of its life.

use std::collections::VecDeque;
use std::fmt;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use tokio::sync::Notify;

/// Slots of storage a parked queue may keep (32 bytes each for the server's items), so a
/// connection that gets a few messages per delivery round (a busy room's commit) does not
/// allocate and grow a buffer for every round: that was 2–3% of the store thread's CPU in
/// a 1,000-member room at 4 slots. A connection keeps 512 bytes at most at rest, and
/// nothing if nothing was ever queued for it.
pub const KEEP_SLOTS: usize = 16;

/// A queue for at most `capacity` items (see the module's bounds).
pub fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        capacity,
        senders: AtomicUsize::new(1),
        room: Notify::new(),
        queue: Mutex::new(Queue {
            items: VecDeque::new(),
            taken: 0,
            waker: None,
            room_wanted: false,
            senders_gone: false,
            receiver_gone: false,
        }),
    });
    (Sender { shared: Arc::clone(&shared) }, Receiver { shared, batch: VecDeque::new() })
}

struct Shared<T> {
    capacity: usize,
    /// Live [`Sender`]s. The last one to go marks the queue closed, under the lock.
    senders: AtomicUsize,
    /// Senders in `send_wait` waiting for room.
    room: Notify,
    queue: Mutex<Queue<T>>,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, Queue<T>> {
        // Nothing panics while holding it (a panic in a `Drop` of an item runs outside).
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

struct Queue<T> {
    items: VecDeque<T>,
    /// Items the receiver took with its last batch. They count against the capacity
    /// until it comes back for more: by then it has consumed them.
    taken: usize,
    /// The receiver, parked on an empty queue. Taken by the push that wakes it.
    waker: Option<Waker>,
    /// A `send_wait` found the queue full: notify `room` once the receiver makes some.
    room_wanted: bool,
    senders_gone: bool,
    receiver_gone: bool,
}

/// Why [`Sender::try_send`] failed; the item is handed back.
#[derive(Debug, PartialEq, Eq)]
pub enum TrySendError<T> {
    /// The queue holds `capacity` items: the writer is not keeping up.
    Full(T),
    /// The receiver is gone (the connection's writer has ended).
    Closed(T),
}

/// [`Sender::send_wait`] failed: the receiver is gone. The item is handed back.
#[derive(Debug, PartialEq, Eq)]
pub struct SendError<T>(pub T);

/// The sending side; cheap to clone.
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Sender<T> {
    /// Queues `item` unless the queue is full or the receiver is gone.
    pub fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
        if let Some(w) = self.push(item, false)? {
            w.wake();
        }
        Ok(())
    }

    /// As [`Sender::try_send`], but a parked writer is not woken: its waker is handed back
    /// for the caller to wake once it has queued everything else it has for this round
    /// (the fan-out of a commit), so the writer finds all of it at once.
    pub fn try_send_quiet(&self, item: T) -> Result<Option<Waker>, TrySendError<T>> {
        self.push(item, false)
    }

    /// Queues `item`, waiting while the queue is full; fails if the receiver goes.
    pub async fn send_wait(&self, mut item: T) -> Result<(), SendError<T>> {
        loop {
            let mut room = pin!(self.shared.room.notified());
            // Registered before looking, so room made in between is not missed.
            room.as_mut().enable();
            match self.push(item, true) {
                Ok(waker) => {
                    if let Some(w) = waker {
                        w.wake();
                    }
                    return Ok(());
                }
                Err(TrySendError::Closed(back)) => return Err(SendError(back)),
                Err(TrySendError::Full(back)) => item = back,
            }
            room.await;
        }
    }

    /// Queues `item`; the parked receiver's waker, if it was parked, to be woken outside
    /// the lock.
    fn push(&self, item: T, want_room: bool) -> Result<Option<Waker>, TrySendError<T>> {
        let mut q = self.shared.lock();
        if q.receiver_gone {
            return Err(TrySendError::Closed(item));
        }
        if q.items.len() + q.taken >= self.shared.capacity {
            q.room_wanted |= want_room;
            return Err(TrySendError::Full(item));
        }
        q.items.push_back(item);
        Ok(q.waker.take())
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.senders.fetch_add(1, Ordering::Relaxed);
        Sender { shared: Arc::clone(&self.shared) }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if self.shared.senders.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        let waker = {
            let mut q = self.shared.lock();
            q.senders_gone = true;
            q.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender").field("capacity", &self.shared.capacity).finish_non_exhaustive()
    }
}

/// The receiving side, owned by the connection's writer.
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
    /// Taken from the queue in one lock, in order; the next lock happens when it is empty.
    batch: VecDeque<T>,
}

/// What the receiver found when it went to the queue.
enum Refill<T> {
    Item(T),
    Empty,
    Closed,
}

impl<T> Receiver<T> {
    /// The next item; `None` once every sender is gone and everything queued was taken.
    pub async fn recv(&mut self) -> Option<T> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        if let Some(item) = self.batch.pop_front() {
            return Poll::Ready(Some(item));
        }
        match self.refill(Some(cx.waker())) {
            Refill::Item(item) => Poll::Ready(Some(item)),
            Refill::Closed => Poll::Ready(None),
            Refill::Empty => Poll::Pending,
        }
    }

    /// The items already taken from the queue and not yet handed out: what the next
    /// `try_recv`s return without locking. The writer sizes its buffer from them.
    pub fn taken(&self) -> impl Iterator<Item = &T> {
        self.batch.iter()
    }

    /// The next item if one is queued now.
    pub fn try_recv(&mut self) -> Option<T> {
        if let Some(item) = self.batch.pop_front() {
            return Some(item);
        }
        match self.refill(None) {
            Refill::Item(item) => Some(item),
            Refill::Empty | Refill::Closed => None,
        }
    }

    /// With the batch consumed: takes everything queued, or parks (with `park`) on an
    /// empty queue, letting surplus storage go.
    fn refill(&mut self, park: Option<&Waker>) -> Refill<T> {
        let mut spare = VecDeque::new();
        let mut parked = false;
        let (outcome, notify) = {
            let mut q = self.shared.lock();
            // The last batch is consumed: its items no longer count.
            let made_room = std::mem::take(&mut q.taken) > 0;
            let notify = made_room && std::mem::take(&mut q.room_wanted);
            let outcome = if !q.items.is_empty() {
                // The queue gets the batch's empty buffer, so neither side allocates for
                // the next round.
                std::mem::swap(&mut self.batch, &mut q.items);
                q.taken = self.batch.len();
                self.batch.pop_front().map_or(Refill::Empty, Refill::Item)
            } else if q.senders_gone {
                Refill::Closed
            } else {
                if let Some(waker) = park {
                    if !q.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
                        q.waker = Some(waker.clone());
                    }
                    // At rest the queue keeps one buffer of at most KEEP_SLOTS (the
                    // batch's, if the queue has none) and the batch keeps none.
                    if q.items.capacity() > KEEP_SLOTS {
                        spare = std::mem::take(&mut q.items);
                    }
                    if q.items.capacity() == 0 && self.batch.capacity() <= KEEP_SLOTS {
                        std::mem::swap(&mut self.batch, &mut q.items);
                    }
                    parked = true;
                }
                Refill::Empty
            };
            (outcome, notify)
        };
        // Freed outside the lock.
        drop(spare);
        if parked {
            self.batch = VecDeque::new();
        }
        if notify {
            self.shared.room.notify_waiters();
        }
        outcome
    }

    /// Slots of storage the queue and the batch hold (allocated, not used).
    #[cfg(test)]
    fn storage_slots(&self) -> usize {
        self.shared.lock().items.capacity() + self.batch.capacity()
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let (items, notify) = {
            let mut q = self.shared.lock();
            q.receiver_gone = true;
            (std::mem::take(&mut q.items), std::mem::take(&mut q.room_wanted))
        };
        // Dropped outside the lock.
        drop(items);
        if notify {
            self.shared.room.notify_waiters();
        }
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("capacity", &self.shared.capacity)
            .field("batch", &self.batch.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::task::Waker;
    use std::time::Duration;

    use super::*;

    /// Polls `rx` once, as the writer does before it parks.
    fn poll_once<T>(rx: &mut Receiver<T>) -> Poll<Option<T>> {
        rx.poll_recv(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn try_send_fails_at_capacity() {
        let (tx, mut rx) = channel(3);
        for i in 0..3 {
            assert_eq!(tx.try_send(i), Ok(()));
        }
        assert_eq!(tx.try_send(3), Err(TrySendError::Full(3)));
        // The writer's batch counts until it comes back for more.
        assert_eq!(rx.try_recv(), Some(0));
        assert_eq!(tx.try_send(3), Err(TrySendError::Full(3)));
        assert_eq!(rx.try_recv(), Some(1));
        assert_eq!(rx.try_recv(), Some(2));
        assert_eq!(rx.try_recv(), None);
        for i in 3..6 {
            assert_eq!(tx.try_send(i), Ok(()));
        }
        assert_eq!(tx.try_send(6), Err(TrySendError::Full(6)));
    }

    #[test]
    fn order_is_kept_across_batches() {
        let (tx, mut rx) = channel(1000);
        let mut got = Vec::new();
        let mut next = 0;
        for round in 1..20 {
            for _ in 0..round {
                tx.try_send(next).expect("room");
                next += 1;
            }
            // Take part of it, then more arrives behind the writer's batch.
            for _ in 0..round / 2 {
                got.extend(rx.try_recv());
            }
        }
        while let Some(x) = rx.try_recv() {
            got.push(x);
        }
        assert_eq!(got, (0..next).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn recv_ends_after_the_last_sender_once_drained() {
        let (tx, mut rx) = channel(10);
        let tx2 = tx.clone();
        tx.try_send(1).expect("room");
        drop(tx);
        tx2.try_send(2).expect("room");
        assert_eq!(rx.recv().await, Some(1));
        let waiting = tokio::spawn(async move { (rx.recv().await, rx.recv().await, rx.recv().await) });
        tokio::task::yield_now().await;
        tx2.try_send(3).expect("room");
        drop(tx2);
        assert_eq!(waiting.await.expect("task"), (Some(2), Some(3), None));
    }

    #[tokio::test]
    async fn a_parked_receiver_is_woken_by_a_push() {
        let (tx, mut rx) = channel::<u32>(10);
        assert!(poll_once(&mut rx).is_pending());
        let got = tokio::spawn(async move { rx.recv().await });
        tokio::task::yield_now().await;
        tx.try_send(7).expect("room");
        let got = tokio::time::timeout(Duration::from_secs(5), got).await.expect("woken").expect("task");
        assert_eq!(got, Some(7));
    }

    /// A waker that counts its wakes.
    struct CountWakes(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for CountWakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_quiet_push_hands_back_the_parked_receivers_waker_instead_of_waking_it() {
        let (tx, mut rx) = channel::<u32>(10);
        let wakes = Arc::new(CountWakes(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&wakes));
        assert!(rx.poll_recv(&mut Context::from_waker(&waker)).is_pending(), "parked");
        let handed = tx.try_send_quiet(1).expect("room").expect("the parked receiver's waker");
        assert_eq!(tx.try_send_quiet(2).expect("room").map(|_| ()), None, "handed back once");
        assert_eq!(wakes.0.load(Ordering::SeqCst), 0, "nobody was woken yet");
        handed.wake();
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
        assert_eq!((rx.try_recv(), rx.try_recv()), (Some(1), Some(2)), "both were queued, in order");
        assert!(
            matches!(tx.try_send_quiet(3), Ok(None)),
            "a receiver that is not parked has no waker to hand"
        );
        for i in 4..=10 {
            let _ = tx.try_send_quiet(i).expect("room");
        }
        assert!(matches!(tx.try_send_quiet(11), Err(TrySendError::Full(11))), "bounded like try_send");
    }

    #[tokio::test]
    async fn send_wait_waits_for_room() {
        let (tx, mut rx) = channel(2);
        tx.try_send(0).expect("room");
        tx.try_send(1).expect("room");
        let waiter = tokio::spawn({
            let tx = tx.clone();
            async move {
                tx.send_wait(2).await.expect("sent");
                tx.send_wait(3).await.expect("sent");
            }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "the queue is full: it waits");
        // The first take does not make room (the batch counts); the next one does.
        assert_eq!(rx.try_recv(), Some(0));
        assert_eq!(rx.try_recv(), Some(1));
        assert!(!waiter.is_finished());
        let mut got = Vec::new();
        while got.len() < 2 {
            got.push(rx.recv().await.expect("item"));
        }
        tokio::time::timeout(Duration::from_secs(5), waiter).await.expect("proceeded").expect("task");
        assert_eq!(got, [2, 3]);
    }

    #[tokio::test]
    async fn send_wait_fails_when_the_receiver_goes() {
        let (tx, rx) = channel(1);
        tx.try_send(0).expect("room");
        let waiter = tokio::spawn(async move { tx.send_wait(1).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        drop(rx);
        let r = tokio::time::timeout(Duration::from_secs(5), waiter).await.expect("woken").expect("task");
        assert_eq!(r, Err(SendError(1)));
    }

    #[test]
    fn try_send_fails_when_the_receiver_is_gone() {
        let (tx, rx) = channel(4);
        drop(rx);
        assert_eq!(tx.try_send(1), Err(TrySendError::Closed(1)));
    }

    #[test]
    fn nothing_is_allocated_before_the_first_push() {
        let (tx, mut rx) = channel::<u64>(1024);
        let tx2 = tx.clone();
        assert!(poll_once(&mut rx).is_pending());
        assert_eq!(rx.try_recv(), None);
        assert_eq!(rx.storage_slots(), 0);
        drop((tx, tx2));
        assert_eq!(poll_once(&mut rx), Poll::Ready(None));
        assert_eq!(rx.storage_slots(), 0);
    }

    #[test]
    fn storage_is_let_go_once_a_burst_is_drained() {
        let (tx, mut rx) = channel(2048);
        for i in 0..1000 {
            tx.try_send(i).expect("room");
        }
        assert!(rx.storage_slots() >= 1000);
        // More arrives while the writer works through its batch: both buffers are big.
        for _ in 0..500 {
            rx.try_recv().expect("item");
        }
        for i in 0..500 {
            tx.try_send(i).expect("room");
        }
        while rx.try_recv().is_some() {}
        assert!(rx.storage_slots() > 1000, "kept while the writer keeps finding work");
        assert!(poll_once(&mut rx).is_pending());
        assert_eq!(rx.storage_slots(), 0, "a big buffer is not kept at rest");

        // Rounds of a few items reuse one buffer that stays at rest between them.
        for round in 0..10 {
            for i in 0..10 {
                tx.try_send(round * 10 + i).expect("room");
            }
            for i in 0..10 {
                assert_eq!(poll_once(&mut rx), Poll::Ready(Some(round * 10 + i)));
            }
            assert!(poll_once(&mut rx).is_pending());
            let kept = rx.storage_slots();
            assert!((10..=KEEP_SLOTS).contains(&kept), "round {round}: {kept} slots at rest");
        }
        assert!(poll_once(&mut rx).is_pending());

        // A trickle keeps one small buffer, and no more.
        for round in 0..10 {
            tx.try_send(round).expect("room");
            assert_eq!(poll_once(&mut rx), Poll::Ready(Some(round)));
            assert!(poll_once(&mut rx).is_pending());
            assert!(rx.storage_slots() <= KEEP_SLOTS, "round {round}: {} slots", rx.storage_slots());
        }
    }
}
