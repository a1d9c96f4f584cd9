//! A vhost's per-caller request limits (`[vhost.rate_limit]`, spec §11.3): a rate in
//! requests per second with a burst, and a cap on requests in flight.
//!
//! The rate is governor's GCRA (a token bucket without a timer per key); the cap on
//! requests in flight is a count per caller that a guard gives back when the response
//! body has been sent or dropped, which governor does not do. Whose requests count
//! together is [`crate::identity::limit_key`]: a key fingerprint, a certificate key id,
//! or an anonymous caller's source address.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{Quota, RateLimiter};

use crate::config::RateLimitConfig;
use crate::limits::RATE_LIMIT_SWEEP_EVERY;

type Keyed = RateLimiter<
    String,
    governor::state::keyed::HashMapStateStore<String>,
    DefaultClock,
    governor::middleware::NoOpMiddleware<<DefaultClock as Clock>::Instant>,
>;

/// One vhost's per-caller limits. Replaced with the vhost on a reload, which starts
/// every caller's counts afresh.
pub(crate) struct KeyLimits {
    config: RateLimitConfig,
    rate: Option<Keyed>,
    in_flight: Arc<Mutex<HashMap<String, usize>>>,
    /// Checks since callers whose bucket is full again were last forgotten.
    checks: AtomicU64,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Over the rate: the caller may try again after this long.
    Rate {
        /// How long until the bucket holds a request again.
        retry_after: Duration,
    },
    /// The caller already has its maximum of requests in flight.
    InFlight,
}

impl Refusal {
    /// The label of `sshttp_rate_limited_total{reason}`.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Refusal::Rate { .. } => "rate",
            Refusal::InFlight => "in_flight",
        }
    }

    /// The `retry-after` value, in whole seconds, at least 1.
    pub(crate) fn retry_after_secs(&self) -> u64 {
        match self {
            Refusal::Rate { retry_after } => {
                let secs = retry_after.as_secs();
                if retry_after.subsec_nanos() > 0 || secs == 0 {
                    secs.saturating_add(1)
                } else {
                    secs
                }
            }
            Refusal::InFlight => 1,
        }
    }
}

/// A request in flight, counted against its caller until dropped.
pub(crate) struct InFlight {
    counts: Arc<Mutex<HashMap<String, usize>>>,
    key: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

impl KeyLimits {
    /// The limits `config` sets.
    pub(crate) fn new(config: RateLimitConfig) -> Self {
        // The configuration bounds the rate, so the period is at least a microsecond.
        let rate = config
            .requests_per_second
            .and_then(|per_second| Quota::with_period(Duration::from_secs_f64(1.0 / per_second)))
            .map(|quota| RateLimiter::hashmap(quota.allow_burst(config.burst_or_default())));
        Self {
            config,
            rate,
            in_flight: Arc::default(),
            checks: AtomicU64::new(0),
        }
    }

    /// The configuration these limits enforce.
    pub(crate) fn config(&self) -> &RateLimitConfig {
        &self.config
    }

    /// Admits one request of the caller `key`, or says why not. The request counts
    /// as in flight until the returned guard is dropped.
    pub(crate) fn admit(&self, key: &str) -> Result<InFlight, Refusal> {
        let guard = {
            let mut counts = self
                .in_flight
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let count = counts.entry(key.to_owned()).or_default();
            if *count >= self.config.max_in_flight {
                return Err(Refusal::InFlight);
            }
            *count = count.saturating_add(1);
            InFlight {
                counts: self.in_flight.clone(),
                key: key.to_owned(),
            }
        };
        let Some(rate) = &self.rate else {
            return Ok(guard);
        };
        // The check takes a String key; the caller's key is cloned once per request.
        let checked = rate.check_key(&key.to_owned());
        self.sweep(rate);
        match checked {
            Ok(()) => Ok(guard),
            // `guard` drops here: a refused request is not in flight.
            Err(not_until) => Err(Refusal::Rate {
                retry_after: not_until.wait_time_from(rate.clock().now()),
            }),
        }
    }

    /// Every [`RATE_LIMIT_SWEEP_EVERY`] checks, forgets the callers whose bucket is
    /// full again: their next request is judged as if they were new, so keeping them
    /// would only hold memory. What stays is bounded by the callers seen within the
    /// time a bucket takes to refill.
    fn sweep(&self, rate: &Keyed) {
        let checks = self
            .checks
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        if checks.is_multiple_of(RATE_LIMIT_SWEEP_EVERY) {
            rate.retain_recent();
            rate.shrink_to_fit();
        }
    }

    /// Callers the rate limiter remembers (for the tests of the sweep).
    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.rate.as_ref().map_or(0, RateLimiter::len)
    }

    /// Callers with requests in flight.
    #[cfg(test)]
    fn callers_in_flight(&self) -> usize {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;
    use crate::limits::DEFAULT_MAX_IN_FLIGHT_PER_KEY;

    fn limits(per_second: Option<f64>, burst: Option<u32>, max_in_flight: usize) -> KeyLimits {
        KeyLimits::new(RateLimitConfig {
            requests_per_second: per_second,
            burst: burst.and_then(NonZeroU32::new),
            max_in_flight,
        })
    }

    #[test]
    fn a_burst_is_admitted_then_the_rate_refuses_with_a_retry_after() {
        let limits = limits(Some(1.0), Some(3), DEFAULT_MAX_IN_FLIGHT_PER_KEY);
        for _ in 0..3 {
            drop(limits.admit("SHA256:a").unwrap());
        }
        let refused = limits.admit("SHA256:a").err().unwrap();
        assert!(matches!(refused, Refusal::Rate { .. }), "{refused:?}");
        assert_eq!(refused.retry_after_secs(), 1);
        assert_eq!(refused.reason(), "rate");
        // Another caller has a bucket of its own.
        assert!(limits.admit("SHA256:b").is_ok());
        // A refused request is not left in flight.
        assert_eq!(limits.callers_in_flight(), 0);
    }

    #[test]
    fn requests_in_flight_are_capped_per_caller_and_released_by_the_guard() {
        let limits = limits(None, None, 2);
        let first = limits.admit("k").unwrap();
        let second = limits.admit("k").unwrap();
        assert_eq!(limits.admit("k").err(), Some(Refusal::InFlight));
        let other = limits.admit("other").unwrap();
        drop(first);
        let third = limits.admit("k").unwrap();
        drop((second, third, other));
        assert_eq!(limits.callers_in_flight(), 0, "every count was released");
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let rate = |millis| Refusal::Rate {
            retry_after: Duration::from_millis(millis),
        };
        assert_eq!(rate(0).retry_after_secs(), 1);
        assert_eq!(rate(1).retry_after_secs(), 1);
        assert_eq!(rate(1000).retry_after_secs(), 1);
        assert_eq!(rate(1001).retry_after_secs(), 2);
        assert_eq!(Refusal::InFlight.retry_after_secs(), 1);
    }

    #[test]
    fn callers_whose_bucket_refilled_are_forgotten() {
        // A bucket of one request that refills in a millisecond.
        let limits = limits(Some(1000.0), Some(1), DEFAULT_MAX_IN_FLIGHT_PER_KEY);
        let many = usize::try_from(RATE_LIMIT_SWEEP_EVERY).unwrap() - 1;
        for n in 0..many {
            drop(limits.admit(&format!("caller {n}")).unwrap());
        }
        assert_eq!(limits.remembered(), many);
        std::thread::sleep(Duration::from_millis(20));
        drop(limits.admit("the check that sweeps").unwrap());
        assert!(
            limits.remembered() <= 1,
            "{} callers still remembered after their buckets refilled",
            limits.remembered()
        );
    }
}
