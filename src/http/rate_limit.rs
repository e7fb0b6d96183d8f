//! Per-key token buckets, held in this process's memory.
//!
//! Each API key has a bucket of `burst` tokens that refills at `per_second`;
//! a request takes one token. Several servers sharing one PostgreSQL each
//! keep their own buckets, so behind a load balancer that spreads a key's
//! requests over N servers the key can reach N times the limit.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use crate::domain::api_key::KeyDigest;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Requests a key may make at once after being idle.
    pub burst: u32,
    /// Tokens added back each second.
    pub per_second: f64,
}

impl Default for RateLimit {
    /// Far above what an integration syncing or importing customers one
    /// request at a time reaches, low enough that one runaway client cannot
    /// take the whole server.
    fn default() -> Self {
        RateLimit {
            burst: 5000,
            per_second: 500.0,
        }
    }
}

/// What a request learns from its key's bucket; it is also what the
/// `RateLimit-*` headers say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the bucket is full again.
    pub reset_secs: u64,
    /// Seconds until the next token, when refused.
    pub retry_after_secs: u64,
}

struct Bucket {
    tokens: f64,
    refilled: Instant,
}

pub struct RateLimiter {
    limit: RateLimit,
    buckets: Mutex<HashMap<KeyDigest, Bucket>>,
}

impl RateLimiter {
    pub fn new(limit: RateLimit) -> RateLimiter {
        RateLimiter {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token from the key's bucket if there is one.
    pub fn check(&self, key: KeyDigest, now: Instant) -> Decision {
        let RateLimit { burst, per_second } = self.limit;
        let capacity = f64::from(burst);
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: capacity,
            refilled: now,
        });
        let elapsed = now.saturating_duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_second).min(capacity);
        bucket.refilled = now;

        let allowed = bucket.tokens >= 1.0;
        if allowed {
            bucket.tokens -= 1.0;
        }
        let missing = capacity - bucket.tokens;
        Decision {
            allowed,
            limit: burst,
            remaining: bucket.tokens.floor() as u32,
            reset_secs: (missing / per_second).ceil() as u64,
            retry_after_secs: ((1.0 - bucket.tokens) / per_second).ceil().max(1.0) as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_is_allowed_then_refused_then_refilled() {
        let limiter = RateLimiter::new(RateLimit {
            burst: 3,
            per_second: 1.0,
        });
        let key = KeyDigest([7; 32]);
        let start = Instant::now();
        let remaining: Vec<_> = (0..3)
            .map(|_| limiter.check(key, start).remaining)
            .collect();
        assert_eq!(remaining, [2, 1, 0]);
        let refused = limiter.check(key, start);
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after_secs, 1);
        assert_eq!(refused.reset_secs, 3);
        assert!(limiter.check(key, start + Duration::from_secs(1)).allowed);
    }

    #[test]
    fn keys_have_buckets_of_their_own() {
        let limiter = RateLimiter::new(RateLimit {
            burst: 1,
            per_second: 0.1,
        });
        let now = Instant::now();
        assert!(limiter.check(KeyDigest([1; 32]), now).allowed);
        assert!(limiter.check(KeyDigest([2; 32]), now).allowed);
        assert!(!limiter.check(KeyDigest([1; 32]), now).allowed);
    }
}
