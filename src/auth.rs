//! Admin API authentication (SPEC §2.4): bearer tokens compared in constant time, and the
//! slowdown of addresses that keep presenting wrong ones. No HTTP here: the admin layer in
//! `handlers::admin` asks these two.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::clock::Clock;
use crate::config::AdminToken;

/// The admin tokens, held as SHA-256 digests with their holders' names.
pub struct AdminTokens {
    tokens: Vec<(String, [u8; 32])>,
}

impl AdminTokens {
    /// From the secrets.
    pub fn new(tokens: &[AdminToken]) -> Self {
        Self {
            tokens: tokens
                .iter()
                .map(|t| {
                    (
                        t.name.clone(),
                        Sha256::digest(t.token.expose_secret().as_bytes()).into(),
                    )
                })
                .collect(),
        }
    }

    /// True when no token is set: the admin API is off.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The name of the holder of `presented`, if it is a token. Every token is compared, in
    /// constant time, over digests of equal length: how long this takes says nothing about
    /// how much of a token was right, nor about the tokens' lengths.
    pub fn holder(&self, presented: &str) -> Option<&str> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for (name, token) in &self.tokens {
            if bool::from(token.ct_eq(&digest)) {
                found = Some(name.as_str());
            }
        }
        found
    }
}

/// Wrong tokens an address may present before it is slowed down.
const FREE_FAILURES: u32 = 5;
/// The first wait after [`FREE_FAILURES`]; it doubles with every further failure...
const FIRST_WAIT: Duration = Duration::from_secs(1);
/// ...up to this.
const MAX_WAIT: Duration = Duration::from_secs(15 * 60);
/// An address without a failure for this long starts afresh.
const FORGET_AFTER: Duration = Duration::from_secs(3600);
/// Addresses remembered at most (beyond, the ones quiet longest are forgotten first).
const MAX_ADDRESSES: usize = 10_000;

/// The failures of one address.
#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
    blocked_until: Option<Instant>,
}

/// Slows down addresses that present wrong tokens: after [`FREE_FAILURES`], every further
/// failure makes the address wait (1 s, 2 s, 4 s, ... up to 15 min) before its next
/// attempt is even looked at; a request in that time is refused (`429` with
/// `Retry-After`) without its token being compared. Guessing a 128-bit token this way is
/// hopeless, and the addresses of a guessing attack do not cost the server a comparison
/// each. A right token forgets the address's failures. Time is the injected clock's.
pub struct FailureLimiter {
    clock: Clock,
    addresses: Mutex<HashMap<IpAddr, Failures>>,
}

impl FailureLimiter {
    /// An empty limiter on `clock`.
    pub fn new(clock: Clock) -> Self {
        Self {
            clock,
            addresses: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(wait)` while `address` must wait before its next attempt.
    pub fn admit(&self, address: IpAddr) -> Result<(), Duration> {
        let now = self.clock.now();
        let Ok(addresses) = self.addresses.lock() else {
            return Ok(());
        };
        match addresses.get(&address).and_then(|f| f.blocked_until) {
            Some(until) if until > now => Err(until.duration_since(now)),
            _ => Ok(()),
        }
    }

    /// Records a wrong token from `address`; the wait it must now observe, if any.
    pub fn failed(&self, address: IpAddr) -> Option<Duration> {
        let now = self.clock.now();
        let Ok(mut addresses) = self.addresses.lock() else {
            return None;
        };
        if addresses.len() >= MAX_ADDRESSES && !addresses.contains_key(&address) {
            addresses.retain(|_, f| now.saturating_duration_since(f.last) < FORGET_AFTER);
            if addresses.len() >= MAX_ADDRESSES
                && let Some(quietest) = addresses
                    .iter()
                    .min_by_key(|(_, f)| f.last)
                    .map(|(ip, _)| *ip)
            {
                addresses.remove(&quietest);
            }
        }
        let entry = addresses.entry(address).or_insert(Failures {
            count: 0,
            last: now,
            blocked_until: None,
        });
        if now.saturating_duration_since(entry.last) >= FORGET_AFTER {
            entry.count = 0;
        }
        entry.count = entry.count.saturating_add(1);
        entry.last = now;
        let over = entry.count.checked_sub(FREE_FAILURES + 1)?;
        let wait = FIRST_WAIT
            .checked_mul(1u32 << over.min(20))
            .map_or(MAX_WAIT, |w| w.min(MAX_WAIT));
        entry.blocked_until = Some(now + wait);
        Some(wait)
    }

    /// A right token from `address`: its failures are forgotten.
    pub fn succeeded(&self, address: IpAddr) {
        if let Ok(mut addresses) = self.addresses.lock() {
            addresses.remove(&address);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn tokens(list: &[(&str, &str)]) -> AdminTokens {
        AdminTokens::new(
            &list
                .iter()
                .map(|(name, token)| AdminToken {
                    name: (*name).into(),
                    token: SecretString::from((*token).to_owned()),
                })
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn tokens_name_their_holder() {
        let t = tokens(&[("alice", "a-long-secret"), ("ci", "another-secret")]);
        assert_eq!(t.holder("a-long-secret"), Some("alice"));
        assert_eq!(t.holder("another-secret"), Some("ci"));
        for wrong in ["", "a-long-secre", "a-long-secret ", "A-LONG-SECRET"] {
            assert_eq!(t.holder(wrong), None, "{wrong:?}");
        }
        assert!(tokens(&[]).is_empty() && tokens(&[]).holder("").is_none());
    }

    #[test]
    fn repeated_failures_wait_longer_and_longer() {
        let clock = Clock::manual();
        let limiter = FailureLimiter::new(clock.clone());
        let attacker: IpAddr = "203.0.113.9".parse().unwrap();
        let neighbour: IpAddr = "203.0.113.10".parse().unwrap();
        for _ in 0..FREE_FAILURES {
            assert_eq!(limiter.admit(attacker), Ok(()));
            assert_eq!(limiter.failed(attacker), None);
        }
        assert_eq!(limiter.failed(attacker), Some(Duration::from_secs(1)));
        assert_eq!(limiter.admit(attacker), Err(Duration::from_secs(1)));
        assert_eq!(limiter.admit(neighbour), Ok(()), "per address");
        clock.advance(Duration::from_millis(400));
        assert_eq!(limiter.admit(attacker), Err(Duration::from_millis(600)));
        clock.advance(Duration::from_millis(600));
        assert_eq!(limiter.admit(attacker), Ok(()));
        assert_eq!(limiter.failed(attacker), Some(Duration::from_secs(2)));
        clock.advance(Duration::from_secs(2));
        assert_eq!(limiter.failed(attacker), Some(Duration::from_secs(4)));
        for _ in 0..30 {
            clock.advance(MAX_WAIT);
            limiter.failed(attacker);
        }
        assert_eq!(limiter.admit(attacker), Err(MAX_WAIT), "capped");
        // A right token (after the wait) forgets the failures.
        clock.advance(MAX_WAIT);
        limiter.succeeded(attacker);
        assert_eq!(limiter.failed(attacker), None);
        // An hour without failures starts afresh.
        for _ in 0..FREE_FAILURES {
            limiter.failed(neighbour);
        }
        clock.advance(FORGET_AFTER);
        assert_eq!(limiter.failed(neighbour), None);
    }
}
