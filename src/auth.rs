//! Bearer-token authentication (SPEC §2.4, §2.7): tokens compared in constant time, and the
//! slowdown of addresses that keep presenting wrong ones. No HTTP here: the admin layer in
//! `handlers::admin` and the private channels (`crate::access`) ask these two.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::clock::Clock;
use crate::config::AdminToken;

/// Bearer tokens held as SHA-256 digests, each with what it stands for (`L`: its holder's
/// name, a channel and a name, ...). The comparison the admin API and the private channels
/// share.
pub struct TokenDigests<L> {
    tokens: Vec<(L, [u8; 32])>,
}

impl<L> TokenDigests<L> {
    /// From `(label, token)` pairs.
    pub fn new<'a>(tokens: impl IntoIterator<Item = (L, &'a SecretString)>) -> Self {
        Self {
            tokens: tokens
                .into_iter()
                .map(|(label, token)| {
                    (
                        label,
                        Sha256::digest(token.expose_secret().as_bytes()).into(),
                    )
                })
                .collect(),
        }
    }

    /// True when there is no token.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Every label of `presented` (one token may be listed several times, for several
    /// channels). Every token is compared, in constant time, over digests of equal length:
    /// how long this takes says nothing about how much of a token was right, nor about the
    /// tokens' lengths.
    pub fn labels_of(&self, presented: &str) -> impl Iterator<Item = &L> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let matches: Vec<bool> = self
            .tokens
            .iter()
            .map(|(_, token)| bool::from(token.ct_eq(&digest)))
            .collect();
        self.tokens
            .iter()
            .zip(matches)
            .filter_map(|((label, _), matched)| matched.then_some(label))
    }
}

/// The admin tokens, with their holders' names.
pub struct AdminTokens {
    tokens: TokenDigests<String>,
}

impl AdminTokens {
    /// From the secrets.
    pub fn new(tokens: &[AdminToken]) -> Self {
        Self {
            tokens: TokenDigests::new(tokens.iter().map(|t| (t.name.clone(), &t.token))),
        }
    }

    /// True when no token is set: the admin API is off.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The name of the holder of `presented`, if it is a token (compared in constant time,
    /// see [`TokenDigests::labels_of`]).
    pub fn holder(&self, presented: &str) -> Option<&str> {
        self.tokens.labels_of(presented).next().map(String::as_str)
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
