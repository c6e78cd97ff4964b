//! A circuit breaker for the store: after `threshold` consecutive failures it opens, and
//! requests skip the store (straight to the fallback) instead of each paying its timeout.
//! After `open_for`, one request is let through as a probe: success closes the circuit,
//! failure opens it again.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Requests go through; `failures` in a row so far.
    Closed { failures: u32 },
    /// Requests are refused until `until`.
    Open { until: Instant },
    /// One probe went through at `since`; others are refused until it reports. A probe that
    /// never reports (its request was dropped) is replaced after `open_for`.
    HalfOpen { since: Instant },
}

/// A consecutive-failure circuit breaker. `threshold` 0 disables it.
#[derive(Debug)]
pub struct CircuitBreaker {
    threshold: u32,
    open_for: Duration,
    state: Mutex<State>,
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(threshold: u32, open_for: Duration) -> Self {
        Self {
            threshold,
            open_for,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    /// May a request go to the store now? Moves an expired open circuit to half-open and
    /// lets this caller be its probe.
    pub fn admit(&self, now: Instant) -> bool {
        if self.threshold == 0 {
            return true;
        }
        let Ok(mut state) = self.state.lock() else {
            return true;
        };
        match *state {
            State::Closed { .. } => true,
            State::Open { until } if now < until => false,
            State::HalfOpen { since } if now.saturating_duration_since(since) < self.open_for => {
                false
            }
            State::Open { .. } | State::HalfOpen { .. } => {
                *state = State::HalfOpen { since: now };
                true
            }
        }
    }

    /// The store answered (an object, or "no such object").
    pub fn success(&self) {
        if let Ok(mut state) = self.state.lock() {
            *state = State::Closed { failures: 0 };
        }
    }

    /// The store failed or timed out. Returns true when this failure opened the circuit.
    pub fn failure(&self, now: Instant) -> bool {
        if self.threshold == 0 {
            return false;
        }
        let Ok(mut state) = self.state.lock() else {
            return false;
        };
        let open = State::Open {
            until: now + self.open_for,
        };
        match *state {
            State::Closed { failures } if failures + 1 < self.threshold => {
                *state = State::Closed {
                    failures: failures + 1,
                };
                false
            }
            State::Open { .. } => false,
            State::Closed { .. } | State::HalfOpen { .. } => {
                *state = open;
                true
            }
        }
    }

    /// True while requests are kept from the store.
    pub fn is_open(&self, now: Instant) -> bool {
        self.state.lock().is_ok_and(|state| match *state {
            State::Closed { .. } => false,
            State::Open { until } => now < until,
            State::HalfOpen { .. } => true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPEN_FOR: Duration = Duration::from_secs(30);

    #[test]
    fn opens_after_threshold_consecutive_failures() {
        let breaker = CircuitBreaker::new(3, OPEN_FOR);
        let t0 = Instant::now();
        assert!(breaker.admit(t0));
        assert!(!breaker.failure(t0));
        assert!(!breaker.failure(t0));
        // A success in between starts the count again.
        breaker.success();
        assert!(!breaker.failure(t0));
        assert!(!breaker.failure(t0));
        assert!(breaker.admit(t0));
        assert!(breaker.failure(t0), "the third failure in a row opens it");
        assert!(breaker.is_open(t0));
        assert!(!breaker.admit(t0 + Duration::from_secs(29)));
    }

    #[test]
    fn one_probe_after_open_for_then_close_or_reopen() {
        let breaker = CircuitBreaker::new(1, OPEN_FOR);
        let t0 = Instant::now();
        assert!(breaker.failure(t0));
        let t1 = t0 + OPEN_FOR;
        assert!(breaker.admit(t1), "the probe goes through");
        assert!(!breaker.admit(t1), "only one probe at a time");
        assert!(breaker.failure(t1), "a failed probe opens it again");
        assert!(!breaker.admit(t1 + Duration::from_secs(1)));
        let t2 = t1 + OPEN_FOR;
        assert!(breaker.admit(t2));
        breaker.success();
        assert!(!breaker.is_open(t2));
        assert!(breaker.admit(t2) && breaker.admit(t2));
    }

    #[test]
    fn a_lost_probe_is_replaced() {
        let breaker = CircuitBreaker::new(1, OPEN_FOR);
        let t0 = Instant::now();
        breaker.failure(t0);
        assert!(breaker.admit(t0 + OPEN_FOR));
        // The probe's request was dropped and never reported.
        assert!(!breaker.admit(t0 + OPEN_FOR + Duration::from_secs(1)));
        assert!(breaker.admit(t0 + OPEN_FOR * 2));
    }

    #[test]
    fn threshold_zero_never_opens() {
        let breaker = CircuitBreaker::new(0, OPEN_FOR);
        let t0 = Instant::now();
        for _ in 0..100 {
            assert!(!breaker.failure(t0));
        }
        assert!(breaker.admit(t0));
        assert!(!breaker.is_open(t0));
    }
}
