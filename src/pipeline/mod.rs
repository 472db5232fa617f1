//! The copy pipeline (STYLE §5): one producer thread → bounded channel → `threads` workers →
//! reorder by sequence number → the consumer on the calling thread.
//!
//! Memory is bounded by a pool of `depth` buffers: the producer takes one before it produces
//! an item, and the consumer hands it back after consuming, so at most `depth` items exist at
//! once however slow any stage is. The first error wins: it stops the producer, the workers
//! drain, every thread is joined, and that error is returned. Cancellation is checked by the
//! producer and the consumer between items.

use crate::event::CancelToken;
use crate::{Error, Result};
use crossbeam_channel::{bounded, Receiver, Sender};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

thread_local! {
    static SPARE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Trades `give` for this thread's spare buffer. A worker that turns one buffer into another
/// (stored bytes into decoded ones) keeps its allocations this way instead of allocating a
/// chunk-sized buffer per item.
pub fn trade_spare(give: Vec<u8>) -> Vec<u8> {
    SPARE.with(|s| std::mem::replace(&mut *s.borrow_mut(), give))
}

/// Sizes of the pipeline.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Worker threads (at least 1).
    pub threads: usize,
    /// Buffers in the pool: the most items in flight at once (at least 1).
    pub depth: usize,
}

impl Shape {
    /// `threads` workers (0 = every core) with two buffers per worker plus two.
    pub fn for_threads(threads: usize) -> Shape {
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            threads
        };
        Shape {
            threads,
            depth: threads * 2 + 2,
        }
    }
}

/// Runs the pipeline.
///
/// - `produce(buf)` runs on the producer thread with a pooled buffer and returns the next item
///   (`Ok(None)` at the end).
/// - `work(item)` runs on the workers, in any order.
/// - `consume(out)` runs on the calling thread in production order and returns a buffer for
///   the pool (the item's, so its allocation is reused).
pub fn run<T, U, P, W, C>(
    shape: Shape,
    cancel: &CancelToken,
    mut produce: P,
    work: W,
    mut consume: C,
) -> Result<()>
where
    T: Send,
    U: Send,
    P: FnMut(Vec<u8>) -> Result<Option<T>> + Send,
    W: Fn(T) -> Result<U> + Sync,
    C: FnMut(U) -> Result<Vec<u8>>,
{
    let threads = shape.threads.max(1);
    let depth = shape.depth.max(1);
    let stop = AtomicBool::new(false);
    let first_err: Mutex<Option<Error>> = Mutex::new(None);
    let fail = |e: Error| {
        stop.store(true, Ordering::SeqCst);
        if let Ok(mut slot) = first_err.lock() {
            if slot.is_none() {
                *slot = Some(e);
            }
        }
    };

    let (pool_tx, pool_rx): (Sender<Vec<u8>>, Receiver<Vec<u8>>) = bounded(depth);
    for _ in 0..depth {
        // Capacity is `depth`, so these never block.
        let _ = pool_tx.send(Vec::new());
    }
    let (work_tx, work_rx) = bounded::<(u64, T)>(depth);
    // `None` marks an item whose work failed: the consumer may be waiting for exactly that
    // sequence number with every other buffer parked in `pending`, so it must be woken.
    let (done_tx, done_rx) = bounded::<(u64, Option<U>)>(depth);

    std::thread::scope(|s| {
        let stop = &stop;
        let fail = &fail;
        let work = &work;
        s.spawn(move || {
            let mut seq = 0u64;
            loop {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                if cancel.is_cancelled() {
                    fail(Error::Cancelled);
                    break;
                }
                let Ok(buf) = pool_rx.recv() else { break };
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                match produce(buf) {
                    Ok(Some(item)) => {
                        if work_tx.send((seq, item)).is_err() {
                            break;
                        }
                        seq += 1;
                    }
                    Ok(None) => break,
                    Err(e) => {
                        fail(e);
                        break;
                    }
                }
            }
            // Dropping work_tx ends the workers once they drain.
        });
        for _ in 0..threads {
            let rx = work_rx.clone();
            let tx = done_tx.clone();
            s.spawn(move || {
                for (seq, item) in rx.iter() {
                    if stop.load(Ordering::SeqCst) {
                        continue; // drain without working
                    }
                    let out = match work(item) {
                        Ok(out) => Some(out),
                        Err(e) => {
                            fail(e);
                            None
                        }
                    };
                    if tx.send((seq, out)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(work_rx);
        drop(done_tx);

        // The consumer: reorder, consume, recycle buffers.
        let mut pending: BTreeMap<u64, U> = BTreeMap::new();
        let mut next = 0u64;
        for (seq, out) in done_rx.iter() {
            // A failed item (`None`) has set `stop` before it was sent.
            let Some(out) = out else { break };
            if stop.load(Ordering::SeqCst) {
                break;
            }
            pending.insert(seq, out);
            while let Some(out) = pending.remove(&next) {
                next += 1;
                if cancel.is_cancelled() {
                    fail(Error::Cancelled);
                    break;
                }
                match consume(out) {
                    Ok(buf) => {
                        let _ = pool_tx.try_send(buf);
                    }
                    Err(e) => {
                        fail(e);
                        break;
                    }
                }
            }
            if stop.load(Ordering::SeqCst) {
                break;
            }
        }
        // Unblock the producer if it waits for a buffer, then let everything drain.
        stop.store(true, Ordering::SeqCst);
        drop(pool_tx);
        for _ in done_rx.iter() {}
    });

    match first_err.into_inner() {
        Ok(Some(e)) => Err(e),
        Ok(None) => Ok(()),
        Err(_) => Err(Error::Unsupported("pipeline state poisoned".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn squares(n: u64, shape: Shape, fail_at: Option<u64>) -> Result<Vec<u64>> {
        let mut i = 0u64;
        let mut out = Vec::new();
        run(
            shape,
            &CancelToken::new(),
            |buf| {
                if i == n {
                    return Ok(None);
                }
                i += 1;
                Ok(Some((i - 1, buf)))
            },
            |(x, buf): (u64, Vec<u8>)| {
                if Some(x) == fail_at {
                    return Err(Error::Unsupported(format!("item {x}")));
                }
                // Uneven work so that results arrive out of order.
                std::thread::sleep(std::time::Duration::from_micros((x * 7919) % 300));
                Ok((x * x, buf))
            },
            |(sq, buf)| {
                out.push(sq);
                Ok(buf)
            },
        )?;
        Ok(out)
    }

    #[test]
    fn results_arrive_in_order_for_every_shape() {
        for (threads, depth) in [(1, 1), (1, 4), (4, 1), (4, 10), (8, 3)] {
            let got = squares(500, Shape { threads, depth }, None).unwrap();
            let want: Vec<u64> = (0..500).map(|x| x * x).collect();
            assert_eq!(got, want, "threads {threads} depth {depth}");
        }
    }

    #[test]
    fn the_first_error_wins_and_every_thread_is_joined() {
        let e = squares(10_000, Shape::for_threads(4), Some(123)).unwrap_err();
        assert_eq!(e.to_string(), "not supported: item 123");
    }

    #[test]
    fn producer_and_consumer_errors_stop_the_run() {
        let r = run(
            Shape::for_threads(2),
            &CancelToken::new(),
            |_buf| Err::<Option<u8>, _>(Error::Cancelled),
            |x: u8| Ok(x),
            |_| Ok(Vec::new()),
        );
        assert!(matches!(r, Err(Error::Cancelled)));
        let mut n = 0;
        let r = run(
            Shape::for_threads(2),
            &CancelToken::new(),
            |buf| Ok(Some(buf)),
            Ok,
            |b| {
                n += 1;
                if n == 50 {
                    return Err(Error::Unsupported("consumer".into()));
                }
                Ok(b)
            },
        );
        assert_eq!(r.unwrap_err().to_string(), "not supported: consumer");
    }

    /// The failing item is the one the consumer waits for, and it fails last: every other
    /// buffer is already parked in the consumer's reorder map and the producer waits for one.
    /// This deadlocked once (CI hung in a chain test); it must return the error.
    #[test]
    fn a_worker_failing_the_awaited_item_after_the_rest_arrived_does_not_hang() {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut i = 0u64;
            let r = run(
                Shape {
                    threads: 2,
                    depth: 3,
                },
                &CancelToken::new(),
                |buf| {
                    i += 1;
                    Ok(Some((i - 1, buf)))
                },
                |(x, buf): (u64, Vec<u8>)| {
                    if x == 0 {
                        std::thread::sleep(std::time::Duration::from_millis(300));
                        return Err(Error::Unsupported("item 0".into()));
                    }
                    Ok(buf)
                },
                Ok,
            );
            let _ = tx.send(r);
        });
        let r = rx
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("the pipeline hung after a worker error");
        assert_eq!(r.unwrap_err().to_string(), "not supported: item 0");
    }

    #[test]
    fn cancellation_is_honoured() {
        let cancel = CancelToken::new();
        let mut n = 0;
        let r = run(
            Shape::for_threads(2),
            &cancel,
            |buf| Ok(Some(buf)),
            Ok,
            |b| {
                n += 1;
                if n == 10 {
                    cancel.cancel();
                }
                Ok(b)
            },
        );
        assert!(matches!(r, Err(Error::Cancelled)));
    }
}
