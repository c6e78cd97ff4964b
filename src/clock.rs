//! The clock that every time-based decision reads: TTLs, stale-while-revalidate, the circuit
//! breaker, GitHub's back-off and retry gaps. The system clock in production; a manual one
//! in tests, which move time forward by calling [`Clock::advance`] instead of sleeping.
//!
//! Only decisions read this clock. Time limits on I/O (`store.timeout`, connection
//! timeouts) stay on Tokio's timers: they bound real waits.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// A source of "now". Cheap to clone; clones share the same time.
#[derive(Clone, Default)]
pub struct Clock {
    manual: Option<Arc<Manual>>,
}

/// A clock that stands still until it is advanced.
struct Manual {
    start: Instant,
    start_system: SystemTime,
    /// Nanoseconds advanced since `start`.
    offset: AtomicU64,
    /// Wakes [`Clock::sleep`]ers when the clock moves.
    moved: tokio::sync::Notify,
    /// The duration of every [`Clock::sleep`] begun, in order.
    sleeps: tokio::sync::watch::Sender<Vec<Duration>>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self::default()
    }

    /// A clock that stands still until [`Clock::advance`] moves it.
    pub fn manual() -> Self {
        Self {
            manual: Some(Arc::new(Manual {
                start: Instant::now(),
                start_system: SystemTime::now(),
                offset: AtomicU64::new(0),
                moved: tokio::sync::Notify::new(),
                sleeps: tokio::sync::watch::Sender::new(Vec::new()),
            })),
        }
    }

    /// The current instant.
    pub fn now(&self) -> Instant {
        match &self.manual {
            None => Instant::now(),
            Some(manual) => manual.start + manual.offset(),
        }
    }

    /// The current wall-clock time (for times other systems send, like GitHub's rate-limit
    /// reset).
    pub fn system_time(&self) -> SystemTime {
        match &self.manual {
            None => SystemTime::now(),
            Some(manual) => manual.start_system + manual.offset(),
        }
    }

    /// Time since `earlier`, by this clock (zero when `earlier` is in the future).
    pub fn since(&self, earlier: Instant) -> Duration {
        self.now().saturating_duration_since(earlier)
    }

    /// Moves a manual clock forward. The system clock cannot be moved: a no-op there.
    pub fn advance(&self, by: Duration) {
        if let Some(manual) = &self.manual {
            let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
            manual.offset.fetch_add(nanos, Ordering::SeqCst);
            manual.moved.notify_waiters();
        }
    }

    /// Waits until `duration` has passed by this clock (a back-off between retries): a Tokio
    /// sleep on the system clock; on a manual clock, until a test has advanced it that far.
    pub async fn sleep(&self, duration: Duration) {
        let Some(manual) = &self.manual else {
            tokio::time::sleep(duration).await;
            return;
        };
        let deadline = self.now() + duration;
        manual.sleeps.send_modify(|sleeps| sleeps.push(duration));
        loop {
            let moved = manual.moved.notified();
            tokio::pin!(moved);
            // Registered before the check, so an advance between the two is not missed.
            moved.as_mut().enable();
            if self.now() >= deadline {
                return;
            }
            moved.await;
        }
    }

    /// On a manual clock, waits until `n` sleeps have begun on it: a test then knows that
    /// the sleeper's deadline is set before it advances the clock. At once on the system
    /// clock.
    pub async fn until_sleeps(&self, n: usize) {
        if let Some(manual) = &self.manual {
            let mut sleeps = manual.sleeps.subscribe();
            // The sender lives as long as `manual`: this ends when `n` have begun.
            let _ = sleeps.wait_for(|sleeps| sleeps.len() >= n).await;
        }
    }

    /// On a manual clock, the duration of every sleep begun so far (what a back-off
    /// decided); empty on the system clock.
    pub fn sleeps(&self) -> Vec<Duration> {
        self.manual
            .as_ref()
            .map(|manual| manual.sleeps.borrow().clone())
            .unwrap_or_default()
    }
}

impl Manual {
    fn offset(&self) -> Duration {
        Duration::from_nanos(self.offset.load(Ordering::SeqCst))
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.manual {
            None => f.write_str("Clock::system"),
            Some(manual) => write!(f, "Clock::manual(+{:?})", manual.offset()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_advanced() {
        let clock = Clock::manual();
        let t0 = clock.now();
        let wall = clock.system_time();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(clock.now(), t0, "stands still");
        let copy = clock.clone();
        copy.advance(Duration::from_secs(90));
        assert_eq!(
            clock.since(t0),
            Duration::from_secs(90),
            "clones share time"
        );
        assert_eq!(
            clock.system_time().duration_since(wall).ok(),
            Some(Duration::from_secs(90))
        );
        assert_eq!(clock.since(t0 + Duration::from_secs(100)), Duration::ZERO);
    }

    #[tokio::test]
    async fn a_sleep_on_a_manual_clock_ends_when_the_clock_has_moved_far_enough() {
        let clock = Clock::manual();
        let sleeper = tokio::spawn({
            let clock = clock.clone();
            async move { clock.sleep(Duration::from_secs(10)).await }
        });
        clock.until_sleeps(1).await;
        assert_eq!(clock.sleeps(), [Duration::from_secs(10)]);
        clock.advance(Duration::from_secs(4));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished(), "4 s of 10");
        clock.advance(Duration::from_secs(6));
        tokio::time::timeout(Duration::from_secs(5), sleeper)
            .await
            .expect("woken by the advance")
            .unwrap();
        clock.sleep(Duration::ZERO).await;
    }

    #[test]
    fn the_system_clock_follows_real_time_and_ignores_advance() {
        let clock = Clock::system();
        let t0 = clock.now();
        clock.advance(Duration::from_secs(3600));
        assert!(clock.since(t0) < Duration::from_secs(60));
    }
}
