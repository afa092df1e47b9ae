//! Sequences: `{epoch, counter}` ids that sort lexicographically in time order (spec 40 §4).
//!
//! The epoch is the unix time (s) of the first increment on a store where the key is absent
//! (new or reset store); readers comparing epochs detect a KV reset and resync. The string
//! form is both values in base 32 (`0-9a-v`), zero-padded to 13 characters, joined by `-`.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::{Compare, CompareOp, Error, Kv, KvExt, Op, Result, Txn};

const DIGITS: &[u8; 32] = b"0123456789abcdefghijklmnopqrstuv";
const WIDTH: usize = 13;

/// An epoch-sortable id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sequence {
    pub epoch: u64,
    pub counter: u64,
}

fn encode(mut v: u64, out: &mut String) {
    let mut buf = [b'0'; WIDTH];
    for slot in buf.iter_mut().rev() {
        *slot = DIGITS[(v % 32) as usize];
        v /= 32;
    }
    out.extend(buf.iter().map(|b| *b as char));
}

fn decode(s: &str) -> Option<u64> {
    if s.len() != WIDTH {
        return None;
    }
    s.bytes().try_fold(0u64, |acc, b| {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'v' => b - b'a' + 10,
            _ => return None,
        };
        acc.checked_mul(32)?.checked_add(u64::from(d))
    })
}

impl fmt::Display for Sequence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::with_capacity(2 * WIDTH + 1);
        encode(self.epoch, &mut s);
        s.push('-');
        encode(self.counter, &mut s);
        f.write_str(&s)
    }
}

/// A string that is not a sequence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid sequence {0:?}: expected two 13-character base-32 numbers joined by '-'")]
pub struct ParseSequenceError(pub String);

impl FromStr for Sequence {
    type Err = ParseSequenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseSequenceError(s.chars().take(64).collect());
        let (e, c) = s.split_once('-').ok_or_else(err)?;
        Ok(Sequence {
            epoch: decode(e).ok_or_else(err)?,
            counter: decode(c).ok_or_else(err)?,
        })
    }
}

/// Jittered exponential backoff: 10 ms doubling to 500 ms (spec 40 §4 improvement).
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
    deadline: Instant,
}

impl Backoff {
    pub fn new(give_up_after: Duration) -> Self {
        Backoff {
            next: Duration::from_millis(10),
            deadline: Instant::now() + give_up_after,
        }
    }

    /// Sleeps before the next attempt; `false` once the deadline passed.
    pub async fn wait(&mut self) -> bool {
        if Instant::now() >= self.deadline {
            return false;
        }
        // Jitter from the clock's sub-millisecond noise: no RNG dependency for this.
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let jitter =
            Duration::from_micros(u64::from(nanos % 1000) * self.next.as_millis() as u64 / 2);
        tokio::time::sleep(self.next + jitter).await;
        self.next = (self.next * 2).min(Duration::from_millis(500));
        true
    }
}

/// Increments the sequence stored at `key` (read + CAS, retried with backoff for up to 10 s).
pub async fn increment(kv: &dyn Kv, key: &str) -> Result<Sequence> {
    let mut backoff = Backoff::new(Duration::from_secs(10));
    loop {
        let current = kv.get(key).await?;
        let (next, guard) = match &current {
            Some(cur) => {
                let text = std::str::from_utf8(&cur.value)
                    .map_err(|_| Error::Corrupted(format!("sequence {key} is not utf-8")))?;
                let seq: Sequence = text
                    .parse()
                    .map_err(|e: ParseSequenceError| Error::Corrupted(e.to_string()))?;
                (
                    Sequence {
                        epoch: seq.epoch,
                        counter: seq.counter + 1,
                    },
                    Compare::mod_revision(key, CompareOp::Equal, cur.mod_revision),
                )
            }
            None => {
                let epoch = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                (Sequence { epoch, counter: 1 }, Compare::absent(key))
            }
        };
        let resp = kv
            .txn(
                Txn::new()
                    .when([guard])
                    .and_then([Op::put(key, next.to_string())]),
            )
            .await?;
        if resp.succeeded {
            return Ok(next);
        }
        if !backoff.wait().await {
            return Err(Error::Concurrency(format!(
                "sequence {key}: too many concurrent increments"
            )));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_form_round_trips_and_sorts() {
        let a = Sequence {
            epoch: 1_700_000_000,
            counter: 9,
        };
        let b = Sequence {
            epoch: 1_700_000_000,
            counter: 10,
        };
        let c = Sequence {
            epoch: 1_700_000_001,
            counter: 1,
        };
        let (sa, sb, sc) = (a.to_string(), b.to_string(), c.to_string());
        assert_eq!(sa.len(), 27);
        assert!(sa < sb && sb < sc);
        assert_eq!(sa.parse::<Sequence>(), Ok(a));
        let max = Sequence {
            epoch: u64::MAX,
            counter: u64::MAX,
        };
        assert_eq!(max.to_string().parse::<Sequence>(), Ok(max));
        for bad in [
            "",
            "x",
            "0000000000000-000000000000w",
            "00-00",
            "0000000000000_0000000000000",
        ] {
            assert!(bad.parse::<Sequence>().is_err(), "{bad}");
        }
    }
}
