//! Side effects after durability: how an entity kind starts real work (a scan, a child process)
//! once the events that call for it are durable, and the one way that work feeds what it
//! produces back to its entity ([`feed`]: batched, one append in flight, capped per run). Child
//! processes for an entity start in one place, [`start_child`]. The hook itself,
//! [`Effects`](super::Effects), is declared with the directory whose handle it receives; the
//! host actor calls it after the append is acknowledged and applied; it must not block, so it
//! spawns its work.
//! Nothing here decides what an entity keeps: the entity's rules do, on the commands fed to it.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::process::supervised::Offsets;
use crate::process::{self, Invocation, Line, Outcome, ProcessError, Running};

/// The most items one batch (so one append) carries, by default.
pub const BATCH_ITEMS: usize = 256;
/// A batch is closed once it holds this many bytes, by default: well under the log's limits.
pub const BATCH_BYTES: usize = 256 * 1024;
/// The longest an item waits for others to share its append, by default. Work that reports
/// fast gets few appends; work that reports slowly gets each item recorded this soon.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(50);
/// The most items one run feeds to its entity, by default; past it they are counted only.
pub const MAX_RUN_ITEMS: u64 = 10_000;
/// The most bytes of items one run feeds to its entity, by default; past it they are counted.
pub const MAX_RUN_BYTES: u64 = 4 * 1024 * 1024;

/// How [`feed`] batches and caps what one run reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeedLimits {
    /// The most items in one batch.
    pub batch_items: usize,
    /// A batch is closed once its items weigh this many bytes.
    pub batch_bytes: usize,
    /// How long the first item of a batch waits for more before the batch is sent (a full
    /// batch, or the end of the source, sends it at once).
    pub flush_interval: Duration,
    /// The most capped items the run records; the rest are counted in [`Fed`].
    pub max_items: u64,
    /// The most bytes of capped items the run records; the rest are counted in [`Fed`].
    pub max_bytes: u64,
}

impl FeedLimits {
    pub const DEFAULT: FeedLimits = FeedLimits {
        batch_items: BATCH_ITEMS,
        batch_bytes: BATCH_BYTES,
        flush_interval: FLUSH_INTERVAL,
        max_items: MAX_RUN_ITEMS,
        max_bytes: MAX_RUN_BYTES,
    };
}

impl Default for FeedLimits {
    fn default() -> Self {
        FeedLimits::DEFAULT
    }
}

/// Where a run's items come from.
pub trait Source {
    type Item;
    /// The next item, `None` once there are no more. Must be cancel-safe: [`feed`] drops it
    /// when a batch is recorded first, and asks again.
    fn next(&mut self) -> impl Future<Output = Option<Self::Item>>;
}

impl<T> Source for mpsc::Receiver<T> {
    type Item = T;
    fn next(&mut self) -> impl Future<Output = Option<T>> {
        self.recv()
    }
}

/// What an item costs against the caps.
pub trait Weigh {
    /// Its size, for the batch and run limits in bytes.
    fn bytes(&self) -> usize;
    /// Whether it counts against the run's caps. An item that only marks progress (an asset
    /// done) is always recorded, so that the entity's account of the run stays whole.
    fn capped(&self) -> bool {
        true
    }
}

/// What the entity said to a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Taken {
    /// Recorded (or failed in a way worth only a warning): go on.
    More,
    /// Recorded, and the entity keeps no more capped items: the rest are counted only.
    Full,
    /// The entity takes nothing more (the work was stopped): stop reading.
    Stop,
}

/// Which cap a run reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cap {
    Items,
    Bytes,
}

/// How a feed went.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fed {
    /// Batches sent to the entity: one append each.
    pub batches: u64,
    /// Items sent in those batches.
    pub sent: u64,
    /// Capped items not sent: past a cap, after [`Taken::Full`], or waiting at [`Taken::Stop`].
    pub dropped: u64,
    /// Their bytes.
    pub dropped_bytes: u64,
    /// The run's cap that was reached, if one was.
    pub capped: Option<Cap>,
    /// The entity answered [`Taken::Stop`]: the source was left unread from there.
    pub stopped: bool,
}

/// Feeds `source`'s items to `record` in batches until the source ends or the entity says
/// [`Taken::Stop`]: one batch in flight at a time; the items that arrive meanwhile wait, and go
/// together in the next batch once it is full or its first item has waited
/// [`FeedLimits::flush_interval`]. A full batch waiting stops the reading, so a source that
/// reports faster than the log records is slowed down (a child blocks on its pipe) rather than
/// grows memory. Capped items past [`FeedLimits::max_items`] or [`FeedLimits::max_bytes`] are
/// counted, not sent, and so is every one after the first that did not fit: what the entity
/// keeps is the beginning of the run. The caller records that the run was cut, in its face's
/// way, from the returned [`Fed`].
pub async fn feed<S, R, F>(source: &mut S, limits: &FeedLimits, mut record: R) -> Fed
where
    S: Source,
    S::Item: Weigh,
    R: FnMut(Vec<S::Item>) -> F,
    F: Future<Output = Taken>,
{
    let mut fed = Fed::default();
    let mut pending: Vec<S::Item> = Vec::new();
    let mut pending_bytes = 0usize;
    // When the oldest waiting item must be sent.
    let mut due: Option<Instant> = None;
    let mut in_flight: Option<Pin<Box<F>>> = None;
    let (mut kept_items, mut kept_bytes) = (0u64, 0u64);
    // The entity keeps no more capped items (a cap was reached, or it said it is full).
    let mut refusing = false;
    let mut open = true;
    loop {
        let full =
            pending.len() >= limits.batch_items.max(1) || pending_bytes >= limits.batch_bytes;
        let send =
            !pending.is_empty() && (full || !open || due.is_some_and(|due| Instant::now() >= due));
        if in_flight.is_none() && send {
            fed.batches += 1;
            fed.sent += pending.len() as u64;
            pending_bytes = 0;
            due = None;
            in_flight = Some(Box::pin(record(std::mem::take(&mut pending))));
            continue;
        }
        if !open && in_flight.is_none() && pending.is_empty() {
            return fed;
        }
        let wake = due.unwrap_or_else(Instant::now);
        tokio::select! {
            taken = async {
                match in_flight.as_mut() {
                    Some(recording) => recording.await,
                    None => std::future::pending().await,
                }
            }, if in_flight.is_some() => {
                in_flight = None;
                match taken {
                    Taken::More => {}
                    Taken::Full => {
                        refusing = true;
                        pending.retain(|item| {
                            let drop = item.capped();
                            if drop {
                                fed.dropped += 1;
                                fed.dropped_bytes += item.bytes() as u64;
                                pending_bytes -= item.bytes();
                            }
                            !drop
                        });
                        if pending.is_empty() {
                            due = None;
                        }
                    }
                    Taken::Stop => {
                        for item in pending.iter().filter(|item| item.capped()) {
                            fed.dropped += 1;
                            fed.dropped_bytes += item.bytes() as u64;
                        }
                        fed.stopped = true;
                        return fed;
                    }
                }
            }
            item = source.next(), if open && !full => match item {
                None => open = false,
                Some(item) => {
                    let bytes = item.bytes();
                    if item.capped() {
                        let cap = if kept_items >= limits.max_items {
                            Some(Cap::Items)
                        } else if kept_bytes + bytes as u64 > limits.max_bytes {
                            Some(Cap::Bytes)
                        } else {
                            None
                        };
                        if let (false, Some(cap)) = (refusing, cap) {
                            fed.capped = Some(cap);
                            refusing = true;
                        }
                        if refusing {
                            fed.dropped += 1;
                            fed.dropped_bytes += bytes as u64;
                            continue;
                        }
                        kept_items += 1;
                        kept_bytes += bytes as u64;
                    }
                    pending.push(item);
                    pending_bytes += bytes;
                    due.get_or_insert_with(|| Instant::now() + limits.flush_interval);
                }
            },
            () = tokio::time::sleep_until(wake), if due.is_some() && in_flight.is_none() => {}
        }
    }
}

/// Starts a child process for an entity's work. Every face starts its children here, so that
/// how they are started (today [`process::spawn`], in the server's own process) is decided in
/// one place.
pub fn start_child(invocation: Invocation) -> Result<Running, ProcessError> {
    process::spawn(invocation)
}

/// Starts a child process for an entity's work under a supervisor of its own, in the run
/// directory `dir` (see [`process::supervised`]): the child outlives annals, and the returned
/// [`process::supervised::Supervision`] finds it again. `remove_at_end` are files the
/// supervisor removes when the child ends (credentials handed to it).
pub fn start_supervised(
    invocation: Invocation,
    dir: &std::path::Path,
    remove_at_end: Vec<std::path::PathBuf>,
) -> Result<(Running, process::supervised::Supervision), ProcessError> {
    process::supervised::spawn(invocation, dir, remove_at_end)
}

/// A child's output fed to its entity, and how the child ended.
#[derive(Debug)]
pub struct ChildEnded {
    pub fed: Fed,
    pub outcome: Result<Outcome, ProcessError>,
}

/// Feeds a child's output lines, each made an item by `item`, to `record` (see [`feed`]), then
/// waits for the child's end. Lines left unread when the entity said [`Taken::Stop`] are read
/// and discarded, so the child is never blocked on a full pipe.
pub async fn feed_child<T, M, R, F>(
    running: Running,
    limits: &FeedLimits,
    item: M,
    record: R,
) -> ChildEnded
where
    T: Weigh,
    M: FnMut(Line) -> T,
    R: FnMut(Vec<T>) -> F,
    F: Future<Output = Taken>,
{
    let mut lines = Items { running, item };
    let fed = feed(&mut lines, limits, record).await;
    ChildEnded {
        fed,
        outcome: lines.running.wait().await,
    }
}

/// An item made of a line of a supervised run, with where the line's stream goes on after it:
/// a batch of them tells how far the run was read once it is recorded.
pub struct ReadItem<T> {
    pub item: T,
    pub stream: process::Stream,
    pub offset: u64,
}

impl<T> ReadItem<T> {
    /// The item of `line`, made by `item`.
    pub fn of(line: Line, item: impl FnOnce(Line) -> T) -> ReadItem<T> {
        let (stream, offset) = (line.stream, line.offset);
        ReadItem {
            item: item(line),
            stream,
            offset,
        }
    }

    /// A batch's items, and where reading stands after them when it stood at `from` before.
    pub fn split(batch: Vec<ReadItem<T>>, from: Offsets) -> (Vec<T>, Offsets) {
        let mut read = from;
        let items = batch
            .into_iter()
            .map(|read_item| {
                match read_item.stream {
                    process::Stream::Stdout => read.stdout = read_item.offset,
                    process::Stream::Stderr => read.stderr = read_item.offset,
                }
                read_item.item
            })
            .collect();
        (items, read)
    }
}

impl<T: Weigh> Weigh for ReadItem<T> {
    fn bytes(&self) -> usize {
        self.item.bytes()
    }
    fn capped(&self) -> bool {
        self.item.capped()
    }
}

/// A child's lines, made items.
struct Items<M> {
    running: Running,
    item: M,
}

impl<T, M: FnMut(Line) -> T> Source for Items<M> {
    type Item = T;
    async fn next(&mut self) -> Option<T> {
        self.running.next_line().await.map(&mut self.item)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// An item of `bytes` bytes; `marker`s are not capped.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct Item {
        bytes: usize,
        marker: bool,
    }

    impl Weigh for Item {
        fn bytes(&self) -> usize {
            self.bytes
        }
        fn capped(&self) -> bool {
            !self.marker
        }
    }

    /// An ordinary (capped) item of `bytes` bytes.
    const fn sized(bytes: usize) -> Item {
        Item {
            bytes,
            marker: false,
        }
    }

    const SMALL: Item = sized(1);
    const MARKER: Item = Item {
        bytes: 1,
        marker: true,
    };

    type Batches = Arc<Mutex<Vec<Vec<Item>>>>;

    /// A recorder that keeps each batch, takes `each` to record one, and answers `answers`
    /// in turn (then `More`).
    fn recorder(
        batches: &Batches,
        each: Duration,
        answers: Vec<Taken>,
    ) -> impl FnMut(Vec<Item>) -> Pin<Box<dyn Future<Output = Taken> + Send>> {
        let batches = batches.clone();
        let mut answers = answers.into_iter();
        move |batch| {
            batches.lock().unwrap().push(batch);
            let answer = answers.next().unwrap_or(Taken::More);
            Box::pin(async move {
                tokio::time::sleep(each).await;
                answer
            })
        }
    }

    fn sizes(batches: &Batches) -> Vec<usize> {
        batches.lock().unwrap().iter().map(Vec::len).collect()
    }

    fn channel_of(items: impl IntoIterator<Item = Item>) -> mpsc::Receiver<Item> {
        let items: Vec<Item> = items.into_iter().collect();
        let (sender, receiver) = mpsc::channel(items.len().max(1));
        for item in items {
            sender.try_send(item).unwrap();
        }
        receiver
    }

    /// Feeds `items`, all there from the start, to a recorder that takes `each` per batch.
    async fn feed_items<const N: usize>(
        items: [Item; N],
        limits: FeedLimits,
        each: Duration,
    ) -> (Batches, Fed) {
        let batches = Batches::default();
        let mut source = channel_of(items);
        let fed = feed(&mut source, &limits, recorder(&batches, each, vec![])).await;
        (batches, fed)
    }

    #[tokio::test(start_paused = true)]
    async fn many_items_at_once_go_in_few_full_batches() {
        let (batches, fed) =
            feed_items([SMALL; 1000], FeedLimits::DEFAULT, Duration::from_millis(5)).await;
        assert_eq!(sizes(&batches), [256, 256, 256, 232]);
        assert_eq!((fed.batches, fed.sent, fed.dropped), (4, 1000, 0));
        assert_eq!(fed.capped, None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_is_closed_by_its_bytes_too() {
        let big = sized(100);
        let limits = FeedLimits {
            batch_bytes: 250,
            ..FeedLimits::DEFAULT
        };
        let (batches, _) = feed_items([big; 10], limits, Duration::ZERO).await;
        assert_eq!(sizes(&batches), [3, 3, 3, 1]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_item_waits_at_most_the_flush_interval_for_company() {
        let batches = Batches::default();
        let (sender, mut source) = mpsc::channel(16);
        let recording = recorder(&batches, Duration::from_millis(1), vec![]);
        let feeding =
            tokio::spawn(async move { feed(&mut source, &FeedLimits::DEFAULT, recording).await });
        for _ in 0..3 {
            sender.send(SMALL).await.unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // 30 ms after the first item: still waiting for more.
        assert_eq!(sizes(&batches), Vec::<usize>::new());
        tokio::time::sleep(FLUSH_INTERVAL - Duration::from_millis(29)).await;
        assert_eq!(sizes(&batches), [3]);
        // A lone item later on goes alone, once its own interval has passed.
        sender.send(SMALL).await.unwrap();
        tokio::time::sleep(FLUSH_INTERVAL - Duration::from_millis(1)).await;
        assert_eq!(sizes(&batches), [3]);
        tokio::time::sleep(Duration::from_millis(2)).await;
        assert_eq!(sizes(&batches), [3, 1]);
        // The end of the source sends what waits at once.
        sender.send(SMALL).await.unwrap();
        drop(sender);
        let fed = feeding.await.unwrap();
        assert_eq!(sizes(&batches), [3, 1, 1]);
        assert_eq!((fed.batches, fed.sent), (3, 5));
    }

    #[tokio::test(start_paused = true)]
    async fn past_the_item_cap_items_are_counted_not_sent() {
        let mut items = [SMALL; 26];
        items[25] = MARKER;
        let limits = FeedLimits {
            max_items: 10,
            ..FeedLimits::DEFAULT
        };
        let (batches, fed) = feed_items(items, limits, Duration::ZERO).await;
        // Ten items and the marker, which the cap does not count.
        assert_eq!(sizes(&batches), [11]);
        assert_eq!(batches.lock().unwrap()[0].last(), Some(&MARKER));
        assert_eq!((fed.sent, fed.dropped, fed.dropped_bytes), (11, 15, 15));
        assert_eq!(fed.capped, Some(Cap::Items));
    }

    #[tokio::test(start_paused = true)]
    async fn past_the_byte_cap_only_the_beginning_is_sent() {
        let four = sized(4);
        let limits = FeedLimits {
            max_bytes: 10,
            ..FeedLimits::DEFAULT
        };
        // The third does not fit; the fourth would, but what is kept is a beginning.
        let (batches, fed) = feed_items([four, four, four, SMALL], limits, Duration::ZERO).await;
        assert_eq!(sizes(&batches), [2]);
        assert_eq!((fed.dropped, fed.dropped_bytes), (2, 5));
        assert_eq!(fed.capped, Some(Cap::Bytes));
    }

    #[tokio::test(start_paused = true)]
    async fn once_the_entity_is_full_only_markers_are_sent() {
        let batches = Batches::default();
        let (sender, mut source) = mpsc::channel(16);
        let recording = recorder(&batches, Duration::ZERO, vec![Taken::Full]);
        let feeding =
            tokio::spawn(async move { feed(&mut source, &FeedLimits::DEFAULT, recording).await });
        sender.send(SMALL).await.unwrap();
        tokio::time::sleep(FLUSH_INTERVAL * 2).await;
        for item in [SMALL, SMALL, MARKER] {
            sender.send(item).await.unwrap();
        }
        drop(sender);
        let fed = feeding.await.unwrap();
        assert_eq!(*batches.lock().unwrap(), [vec![SMALL], vec![MARKER]]);
        assert_eq!((fed.sent, fed.dropped), (2, 2));
        // The entity's own limit, not the run's cap.
        assert_eq!(fed.capped, None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_ends_the_feed_and_leaves_the_source_unread() {
        let batches = Batches::default();
        let mut source = channel_of([SMALL; 300]);
        let fed = feed(
            &mut source,
            &FeedLimits::DEFAULT,
            recorder(&batches, Duration::from_millis(1), vec![Taken::Stop]),
        )
        .await;
        assert!(fed.stopped);
        assert_eq!(sizes(&batches), [256]);
        // What waited for the next batch is counted; the rest is still in the source.
        assert_eq!(fed.sent + fed.dropped + source.len() as u64, 300);
    }
}
