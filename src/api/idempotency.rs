//! `Idempotency-Key`: a retried request (same key, same API key, same body) gets the stored
//! response instead of being processed twice. The store is bounded (oldest entries go first)
//! and entries expire. A retry that arrives while the first attempt still runs waits for it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use tokio::sync::Notify;

#[derive(Clone)]
pub struct Stored {
    pub status: u16,
    pub body: Bytes,
}

enum Entry {
    InFlight {
        fingerprint: [u8; 32],
        done: Arc<Notify>,
    },
    Done {
        fingerprint: [u8; 32],
        response: Stored,
        at: Instant,
    },
}

pub enum Begin {
    /// First time: process it, then call `finish` or `abandon`.
    New,
    /// Seen before with the same request: here is the response.
    Replay(Stored),
    /// The same key with a different request.
    Mismatch,
    /// The first attempt is still running: wait on this, then ask again.
    Wait(Arc<Notify>),
}

/// An entry's key: the caller's id (a hash of its API key) and its Idempotency-Key.
pub type Key = ([u8; 32], String);

pub struct IdempotencyStore {
    inner: Mutex<(HashMap<Key, Entry>, VecDeque<Key>)>,
    capacity: usize,
    ttl: Duration,
}

impl IdempotencyStore {
    pub fn new(capacity: usize, ttl: Duration) -> IdempotencyStore {
        IdempotencyStore {
            inner: Mutex::new((HashMap::new(), VecDeque::new())),
            capacity: capacity.max(1),
            ttl,
        }
    }

    pub fn begin(&self, key: &Key, fingerprint: [u8; 32]) -> Begin {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (map, order) = &mut *guard;
        match map.get(key) {
            Some(Entry::Done { at, .. }) if at.elapsed() > self.ttl => {
                map.remove(key);
            }
            Some(Entry::Done {
                fingerprint: f,
                response,
                ..
            }) => {
                return if *f == fingerprint {
                    Begin::Replay(response.clone())
                } else {
                    Begin::Mismatch
                };
            }
            Some(Entry::InFlight {
                fingerprint: f,
                done,
            }) => {
                return if *f == fingerprint {
                    Begin::Wait(done.clone())
                } else {
                    Begin::Mismatch
                };
            }
            None => {}
        }
        // Make room: drop the oldest finished entries; running ones stay (the store may then
        // briefly exceed its capacity).
        let mut rotations = order.len();
        while map.len() >= self.capacity && rotations > 0 {
            rotations -= 1;
            let Some(oldest) = order.pop_front() else {
                break;
            };
            match map.get(&oldest) {
                Some(Entry::InFlight { .. }) => order.push_back(oldest),
                Some(Entry::Done { .. }) => {
                    map.remove(&oldest);
                }
                None => {}
            }
        }
        map.insert(
            key.clone(),
            Entry::InFlight {
                fingerprint,
                done: Arc::new(Notify::new()),
            },
        );
        order.push_back(key.clone());
        Begin::New
    }

    /// Store the response of a finished first attempt.
    pub fn finish(&self, key: &Key, fingerprint: [u8; 32], response: Stored) {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(Entry::InFlight { done, .. }) = guard.0.insert(
            key.clone(),
            Entry::Done {
                fingerprint,
                response,
                at: Instant::now(),
            },
        ) {
            done.notify_waiters();
        }
    }

    /// Forget a first attempt that ended in a retryable error, so a retry runs again.
    pub fn abandon(&self, key: &Key) {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(Entry::InFlight { done, .. }) = guard.0.remove(key) {
            done.notify_waiters();
        }
    }

    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).0.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(name: &str) -> Key {
        ([1; 32], name.to_string())
    }

    fn stored(s: &str) -> Stored {
        Stored {
            status: 200,
            body: Bytes::from(s.to_string()),
        }
    }

    #[test]
    fn replay_mismatch_and_bounds() {
        let store = IdempotencyStore::new(2, Duration::from_secs(60));
        assert!(matches!(store.begin(&k("a"), [1; 32]), Begin::New));
        assert!(matches!(store.begin(&k("a"), [1; 32]), Begin::Wait(_)));
        store.finish(&k("a"), [1; 32], stored("first"));
        assert!(matches!(store.begin(&k("a"), [1; 32]), Begin::Replay(r) if r.body == "first"));
        assert!(matches!(store.begin(&k("a"), [2; 32]), Begin::Mismatch));
        assert!(matches!(store.begin(&k("b"), [1; 32]), Begin::New));
        store.finish(&k("b"), [1; 32], stored("b"));
        assert!(matches!(store.begin(&k("c"), [1; 32]), Begin::New));
        assert!(store.len() <= 2, "store grew to {}", store.len());
        // "a" was the oldest and is gone.
        assert!(matches!(store.begin(&k("a"), [9; 32]), Begin::New));
    }

    #[test]
    fn entries_expire_and_abandoned_attempts_run_again() {
        let store = IdempotencyStore::new(10, Duration::from_millis(1));
        assert!(matches!(store.begin(&k("a"), [1; 32]), Begin::New));
        store.finish(&k("a"), [1; 32], stored("x"));
        std::thread::sleep(Duration::from_millis(5));
        assert!(matches!(store.begin(&k("a"), [1; 32]), Begin::New));
        store.abandon(&k("a"));
        assert!(matches!(store.begin(&k("a"), [1; 32]), Begin::New));
    }

    #[test]
    fn the_same_idempotency_key_of_two_callers_is_two_entries() {
        let store = IdempotencyStore::new(10, Duration::from_secs(60));
        let (a, b) = (([1; 32], "k".to_string()), ([2; 32], "k".to_string()));
        assert!(matches!(store.begin(&a, [1; 32]), Begin::New));
        store.finish(&a, [1; 32], stored("a's"));
        assert!(matches!(store.begin(&b, [1; 32]), Begin::New));
        assert!(matches!(
            store.begin(&b, [9; 32]),
            Begin::Wait(_) | Begin::Mismatch
        ));
        store.finish(&b, [1; 32], stored("b's"));
        assert!(matches!(store.begin(&a, [1; 32]), Begin::Replay(r) if r.body == "a's"));
    }
}
