//! Retries: how a failed executor call is classified, which failures a policy tries
//! again, how long the host waits before each attempt, and the `retry` tables of a
//! manifest (`[workflow.retry]` for every executor, `retry` of an executor over it)
//! laid over the defaults field by field.

use serde::Deserialize;
use std::time::Duration;

/// How an executor's call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The guest returned an error.
    Error,
    /// The guest trapped (a panic, an unreachable instruction, a bad memory access).
    Trap,
    /// The call ran past `limits.call_timeout_ms`.
    Timeout,
    /// The call broke a limit that would break again (memory, fuel, message or
    /// snapshot size): never retried.
    Limit,
    /// The run was interrupted: never retried.
    Interrupted,
}

impl FailureKind {
    /// The kind's name, as `retry.on` and events give it.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Error => "error",
            FailureKind::Trap => "trap",
            FailureKind::Timeout => "timeout",
            FailureKind::Limit => "limit",
            FailureKind::Interrupted => "interrupted",
        }
    }
}

/// A failed call: how it failed, and the last HTTP error status (400 or more) that an
/// outbound request of the call got back, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    /// How the call failed.
    pub kind: FailureKind,
    /// The last HTTP error status the call saw.
    pub http_status: Option<u16>,
}

/// A failure a policy retries: one entry of a `retry.on` list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryOn {
    /// `error`: the guest returned an error (whatever its HTTP calls got).
    Error,
    /// `trap`: the guest trapped.
    Trap,
    /// `timeout`: the call ran too long.
    Timeout,
    /// `http-503` or `http-5xx`: an error returned after an HTTP response with this
    /// status, or with a status of this class (its first digit, 4 or 5).
    Http {
        /// The status, or its class times 100 with `class` set.
        status: u16,
        /// Whether `status` stands for its whole class.
        class: bool,
    },
}

impl RetryOn {
    /// Parses one `retry.on` entry.
    pub fn parse(text: &str) -> Result<RetryOn, String> {
        let http = |code: &str| -> Option<RetryOn> {
            if let Some(class) = code.strip_suffix("xx")
                && let Ok(digit @ 4..=5) = class.parse::<u16>()
            {
                return Some(RetryOn::Http {
                    status: digit * 100,
                    class: true,
                });
            }
            let status = code
                .parse::<u16>()
                .ok()
                .filter(|s| (400..600).contains(s))?;
            Some(RetryOn::Http {
                status,
                class: false,
            })
        };
        match text {
            "error" => Ok(RetryOn::Error),
            "trap" => Ok(RetryOn::Trap),
            "timeout" => Ok(RetryOn::Timeout),
            _ => text.strip_prefix("http-").and_then(http).ok_or_else(|| {
                format!(
                    "'{text}' is not a failure to retry (error, trap, timeout, http-4xx, http-5xx, or an HTTP status from 400 to 599 such as http-429)"
                )
            }),
        }
    }

    /// Whether `failure` is one of these.
    fn matches(&self, failure: &Failure) -> bool {
        match (self, failure.kind) {
            (RetryOn::Error, FailureKind::Error) => true,
            (RetryOn::Trap, FailureKind::Trap) => true,
            (RetryOn::Timeout, FailureKind::Timeout) => true,
            (RetryOn::Http { status, class }, FailureKind::Error) => {
                failure.http_status.is_some_and(|seen| match class {
                    true => seen / 100 == status / 100,
                    false => seen == *status,
                })
            }
            _ => false,
        }
    }
}

/// How an executor's failed calls are retried. A retried superstep starts again on a
/// fresh instance restored to the state before it, with the same inbox.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included: 1 never retries.
    pub max_attempts: u32,
    /// The wait before the second attempt, in milliseconds.
    pub initial_backoff_ms: u64,
    /// The longest wait between attempts, in milliseconds.
    pub max_backoff_ms: u64,
    /// What each wait is multiplied by for the next.
    pub multiplier: f64,
    /// The failures that are retried.
    pub on: Vec<RetryOn>,
}

impl Default for RetryPolicy {
    /// No retries; a `retry` table that sets `max_attempts` retries errors, traps and
    /// timeouts after 100 ms, doubling up to 10 s.
    fn default() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 1,
            initial_backoff_ms: 100,
            max_backoff_ms: 10_000,
            multiplier: 2.0,
            on: vec![RetryOn::Error, RetryOn::Trap, RetryOn::Timeout],
        }
    }
}

impl RetryPolicy {
    /// Whether a call that failed as `failure` on attempt `attempt` (from 1) is tried
    /// again.
    pub fn retries(&self, attempt: u32, failure: &Failure) -> bool {
        attempt < self.max_attempts && self.on.iter().any(|on| on.matches(failure))
    }

    /// The wait after failed attempt `attempt` (from 1): the initial backoff times the
    /// multiplier once per earlier retry, at most the maximum.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = self.multiplier.powi(attempt.saturating_sub(1) as i32);
        let ms = (self.initial_backoff_ms as f64 * factor).min(self.max_backoff_ms as f64);
        Duration::from_millis(ms as u64)
    }
}

/// A `retry` table as a manifest gives it: every field optional.
#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRetry {
    max_attempts: Option<u32>,
    initial_backoff_ms: Option<u64>,
    max_backoff_ms: Option<u64>,
    multiplier: Option<f64>,
    on: Option<Vec<String>>,
}

impl RawRetry {
    /// This table over `base`, field by field; `field` names the table in errors.
    pub(crate) fn over(&self, base: &RetryPolicy, field: &str) -> Result<RetryPolicy, String> {
        let on = match &self.on {
            None => base.on.clone(),
            Some(entries) if entries.is_empty() => {
                return Err(format!(
                    "{field}.on: must name at least one failure (or leave it out)"
                ));
            }
            Some(entries) => entries
                .iter()
                .enumerate()
                .map(|(n, entry)| {
                    RetryOn::parse(entry).map_err(|why| format!("{field}.on[{n}]: {why}"))
                })
                .collect::<Result<_, _>>()?,
        };
        let policy = RetryPolicy {
            max_attempts: self.max_attempts.unwrap_or(base.max_attempts),
            initial_backoff_ms: self.initial_backoff_ms.unwrap_or(base.initial_backoff_ms),
            max_backoff_ms: self.max_backoff_ms.unwrap_or(base.max_backoff_ms),
            multiplier: self.multiplier.unwrap_or(base.multiplier),
            on,
        };
        if !(1..=100).contains(&policy.max_attempts) {
            return Err(format!("{field}.max_attempts: must be from 1 to 100"));
        }
        if policy.initial_backoff_ms > policy.max_backoff_ms {
            return Err(format!(
                "{field}.initial_backoff_ms: {} is more than max_backoff_ms = {}",
                policy.initial_backoff_ms, policy.max_backoff_ms
            ));
        }
        if policy.max_backoff_ms > 3_600_000 {
            return Err(format!("{field}.max_backoff_ms: at most 3600000 (an hour)"));
        }
        if !(1.0..=10.0).contains(&policy.multiplier) {
            return Err(format!("{field}.multiplier: must be from 1 to 10"));
        }
        Ok(policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(kind: FailureKind, http_status: Option<u16>) -> Failure {
        Failure { kind, http_status }
    }

    fn policy(toml: &str) -> Result<RetryPolicy, String> {
        let raw: RawRetry = toml::from_str(toml).map_err(|e| e.to_string())?;
        raw.over(&RetryPolicy::default(), "retry")
    }

    #[test]
    fn a_policy_retries_the_failures_it_names_until_its_attempts_are_spent() {
        let all = policy("max_attempts = 3").unwrap();
        let error = failure(FailureKind::Error, None);
        assert!(all.retries(1, &error) && all.retries(2, &error));
        assert!(!all.retries(3, &error), "three attempts in all");
        assert!(all.retries(1, &failure(FailureKind::Trap, None)));
        assert!(all.retries(1, &failure(FailureKind::Timeout, None)));
        assert!(!all.retries(1, &failure(FailureKind::Limit, None)));
        assert!(!all.retries(1, &failure(FailureKind::Interrupted, None)));
        assert!(
            !RetryPolicy::default().retries(1, &error),
            "no retries by default"
        );

        let http = policy(
            r#"max_attempts = 2
on = ["http-5xx", "http-429"]"#,
        )
        .unwrap();
        assert!(http.retries(1, &failure(FailureKind::Error, Some(503))));
        assert!(http.retries(1, &failure(FailureKind::Error, Some(429))));
        assert!(!http.retries(1, &failure(FailureKind::Error, Some(400))));
        assert!(!http.retries(1, &error), "an error without an HTTP status");
        assert!(!http.retries(1, &failure(FailureKind::Trap, Some(503))));
    }

    #[test]
    fn backoff_grows_by_the_multiplier_up_to_the_maximum() {
        let p = policy(
            "max_attempts = 9\ninitial_backoff_ms = 100\nmax_backoff_ms = 1000\nmultiplier = 3.0",
        )
        .unwrap();
        let ms: Vec<u128> = (1..=4).map(|n| p.backoff(n).as_millis()).collect();
        assert_eq!(ms, [100, 300, 900, 1000]);
        let flat = policy("max_attempts = 3\nmultiplier = 1.0").unwrap();
        assert_eq!(flat.backoff(5), Duration::from_millis(100));
    }

    #[test]
    fn bad_tables_name_the_field() {
        let refused = |toml: &str| policy(toml).unwrap_err();
        assert_eq!(
            refused("max_attempts = 0"),
            "retry.max_attempts: must be from 1 to 100"
        );
        assert_eq!(
            refused("initial_backoff_ms = 500\nmax_backoff_ms = 100"),
            "retry.initial_backoff_ms: 500 is more than max_backoff_ms = 100"
        );
        assert_eq!(
            refused("multiplier = 0.5"),
            "retry.multiplier: must be from 1 to 10"
        );
        assert_eq!(
            refused("on = []"),
            "retry.on: must name at least one failure (or leave it out)"
        );
        assert!(
            refused(r#"on = ["trap", "http-6xx"]"#)
                .starts_with("retry.on[1]: 'http-6xx' is not a failure to retry")
        );
        assert!(refused(r#"on = ["http-200"]"#).starts_with("retry.on[0]: 'http-200'"));
        assert!(refused("attempts = 2").contains("unknown field `attempts`"));
    }
}
