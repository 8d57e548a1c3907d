//! A bounded pool of store connections (or of anything holding one, such as a ledger), for a
//! component that serves many requests at once: the workbench.
//!
//! At most `size` connections are open. A request takes an idle one, or opens a new one while
//! fewer than `size` exist, or waits for one to be handed back — at most `acquire_timeout`,
//! then it gets [`PoolError::Exhausted`] (the workbench answers 503) rather than queueing
//! without end behind a stalled database.
//!
//! Invariants: a connection is used by one request at a time; a connection handed back while
//! its holder panics is closed, not reused (it may be in an unknown state); the gauges
//! `pharmwatch_store_pool_connections{state}` always sum to the connections open.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Limits of a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolLimits {
    /// Most connections open at once.
    pub size: usize,
    /// Longest wait for a connection.
    pub acquire_timeout: Duration,
}

/// Why no connection was handed out.
#[derive(Debug, thiserror::Error)]
pub enum PoolError<E> {
    /// Opening a new connection failed.
    #[error(transparent)]
    Open(E),
    /// Every connection stayed busy for the whole wait.
    #[error("all {size} store connections stayed busy for {waited:?}")]
    Exhausted {
        /// The pool's size.
        size: usize,
        /// How long the request waited.
        waited: Duration,
    },
}

struct Slots<T> {
    idle: Vec<T>,
    open: usize,
}

type Opener<T, E> = Box<dyn Fn() -> Result<T, E> + Send + Sync>;

/// A bounded pool (see the module documentation).
pub struct Pool<T, E> {
    slots: Mutex<Slots<T>>,
    freed: Condvar,
    limits: PoolLimits,
    opener: Opener<T, E>,
}

impl<T, E> std::fmt::Debug for Pool<T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("limits", &self.limits)
            .finish()
    }
}

impl<T, E> Pool<T, E> {
    /// A pool that opens connections with `opener`, starting with `first` (already open).
    pub fn new(
        first: T,
        limits: PoolLimits,
        opener: impl Fn() -> Result<T, E> + Send + Sync + 'static,
    ) -> Self {
        let pool = Self {
            slots: Mutex::new(Slots {
                idle: vec![first],
                open: 1,
            }),
            freed: Condvar::new(),
            limits: PoolLimits {
                size: limits.size.max(1),
                ..limits
            },
            opener: Box::new(opener),
        };
        pool.report(&pool.lock());
        pool
    }

    /// The pool's limits.
    pub fn limits(&self) -> PoolLimits {
        self.limits
    }

    fn lock(&self) -> MutexGuard<'_, Slots<T>> {
        // The slots hold no invariant a panicking holder could break mid-way.
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn report(&self, slots: &Slots<T>) {
        crate::metrics::store_pool(slots.open - slots.idle.len(), slots.idle.len());
    }

    /// A connection for one request: an idle one, a new one, or the next handed back.
    pub fn get(&self) -> Result<Pooled<'_, T, E>, PoolError<E>> {
        let started = Instant::now();
        let mut slots = self.lock();
        let mut waited = false;
        loop {
            if let Some(item) = slots.idle.pop() {
                self.report(&slots);
                return Ok(Pooled {
                    pool: self,
                    item: Some(item),
                });
            }
            if slots.open < self.limits.size {
                slots.open += 1;
                drop(slots);
                return match (self.opener)() {
                    Ok(item) => {
                        self.report(&self.lock());
                        Ok(Pooled {
                            pool: self,
                            item: Some(item),
                        })
                    }
                    Err(e) => {
                        let mut slots = self.lock();
                        slots.open -= 1;
                        self.report(&slots);
                        self.freed.notify_one();
                        Err(PoolError::Open(e))
                    }
                };
            }
            if !waited {
                waited = true;
                crate::metrics::store_pool_wait();
            }
            let left = self
                .limits
                .acquire_timeout
                .saturating_sub(started.elapsed());
            if left.is_zero() {
                crate::metrics::store_pool_timeout();
                tracing::warn!(
                    size = self.limits.size,
                    waited_ms = started.elapsed().as_millis() as u64,
                    "every store connection stayed busy; request refused"
                );
                return Err(PoolError::Exhausted {
                    size: self.limits.size,
                    waited: started.elapsed(),
                });
            }
            slots = self.wait(slots, left);
        }
    }

    /// Waits for a connection to be handed back (at most `left`); on an async runtime's
    /// worker the worker is handed back first, as for any blocking store call.
    fn wait<'a>(
        &self,
        slots: MutexGuard<'a, Slots<T>>,
        left: Duration,
    ) -> MutexGuard<'a, Slots<T>> {
        let wait = || {
            self.freed
                .wait_timeout(slots, left)
                .unwrap_or_else(|p| p.into_inner())
                .0
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(wait)
            }
            _ => wait(),
        }
    }

    /// Connections in use and idle.
    pub fn status(&self) -> (usize, usize) {
        let slots = self.lock();
        (slots.open - slots.idle.len(), slots.idle.len())
    }

    fn put_back(&self, item: T) {
        let mut slots = self.lock();
        if std::thread::panicking() {
            slots.open -= 1;
            drop(item);
        } else {
            slots.idle.push(item);
        }
        self.report(&slots);
        drop(slots);
        self.freed.notify_one();
    }
}

/// A connection taken from a [`Pool`]; handed back when dropped.
pub struct Pooled<'p, T, E> {
    pool: &'p Pool<T, E>,
    item: Option<T>,
}

impl<T, E> std::ops::Deref for Pooled<'_, T, E> {
    type Target = T;
    fn deref(&self) -> &T {
        self.item
            .as_ref()
            .expect("a pooled item is present until dropped")
    }
}

impl<T, E> std::ops::DerefMut for Pooled<'_, T, E> {
    fn deref_mut(&mut self) -> &mut T {
        self.item
            .as_mut()
            .expect("a pooled item is present until dropped")
    }
}

impl<T, E> Drop for Pooled<'_, T, E> {
    fn drop(&mut self) {
        if let Some(item) = self.item.take() {
            self.pool.put_back(item);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn pool(size: usize, wait_ms: u64) -> (Pool<usize, String>, Arc<AtomicUsize>) {
        let opened = Arc::new(AtomicUsize::new(1));
        let counter = opened.clone();
        let p = Pool::new(
            0,
            PoolLimits {
                size,
                acquire_timeout: Duration::from_millis(wait_ms),
            },
            move || Ok(counter.fetch_add(1, Ordering::SeqCst)),
        );
        (p, opened)
    }

    #[test]
    fn opens_up_to_its_size_then_reuses_and_refuses_after_the_wait() {
        let (p, opened) = pool(3, 150);
        let a = p.get().unwrap();
        let b = p.get().unwrap();
        let c = p.get().unwrap();
        assert_eq!((*a, *b, *c), (0, 1, 2));
        let started = Instant::now();
        match p.get() {
            Err(PoolError::Exhausted { size: 3, waited }) => {
                assert!(waited >= Duration::from_millis(150), "{waited:?}")
            }
            other => panic!("expected exhaustion, got {:?}", other.map(|x| *x)),
        }
        assert!(started.elapsed() < Duration::from_secs(2));
        drop(b);
        assert_eq!(*p.get().unwrap(), 1, "the idle connection is reused");
        assert_eq!(
            opened.load(Ordering::SeqCst),
            3,
            "no fourth connection opened"
        );
    }

    #[test]
    fn a_waiting_request_gets_the_connection_handed_back() {
        let (p, _) = pool(1, 5_000);
        let p = Arc::new(p);
        let held = p.get().unwrap();
        let other = {
            let p = p.clone();
            std::thread::spawn(move || {
                let started = Instant::now();
                let v = *p.get().unwrap();
                (v, started.elapsed())
            })
        };
        std::thread::sleep(Duration::from_millis(200));
        drop(held);
        let (v, waited) = other.join().unwrap();
        assert_eq!(v, 0);
        assert!(waited >= Duration::from_millis(150) && waited < Duration::from_secs(4));
    }

    #[test]
    fn a_failed_open_frees_its_slot_and_a_panicking_holder_closes_its_connection() {
        let tries = Arc::new(AtomicUsize::new(0));
        let t = tries.clone();
        let p: Pool<usize, String> = Pool::new(
            7,
            PoolLimits {
                size: 2,
                acquire_timeout: Duration::from_millis(50),
            },
            move || {
                if t.fetch_add(1, Ordering::SeqCst) == 0 {
                    Err("refused".into())
                } else {
                    Ok(8)
                }
            },
        );
        let first = p.get().unwrap();
        assert!(matches!(p.get(), Err(PoolError::Open(e)) if e == "refused"));
        assert_eq!(
            *p.get().unwrap(),
            8,
            "the slot of the failed open is free again"
        );
        drop(first);
        let p = Arc::new(p);
        let q = p.clone();
        let _ = std::thread::spawn(move || {
            let _c = q.get().unwrap();
            panic!("request failed while holding a connection");
        })
        .join();
        let slots = p.lock();
        assert_eq!(
            (slots.open, slots.idle.len()),
            (1, 1),
            "the panicked one is closed"
        );
    }
}
