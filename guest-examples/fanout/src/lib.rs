//! `fanout`: the three roles of the W3 fan-out/fan-in benchmark
//! (`bench/WORKLOADS.md`), chosen by config `{"role": …}`.
//!
//! - `dispatch`: on any message `{"round": r}` (the run's input is round 0), sends every
//!   worker (along its edges) the list `[r*1000 .. r*1000+999]` as kind `numbers`.
//! - `worker`: sends `gather` the sum of the list it gets, as kind `sum`.
//! - `gather`: collects `workers` sums per round into its running total; then sends
//!   `dispatch` the next round, or after `rounds` rounds yields the total.
//!
//! Config: `{ "role": "gather", "workers": 64, "rounds": 50 }`.
use serde::de::{Deserializer, Error as _, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::fmt;
use superstep_guest::{Context, Executor, Incoming};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    role: String,
    #[serde(default = "default_workers")]
    workers: u64,
    #[serde(default = "default_rounds")]
    rounds: u64,
}

fn default_workers() -> u64 {
    64
}

fn default_rounds() -> u64 {
    50
}

#[derive(Serialize, Deserialize)]
struct Round {
    round: u64,
}

#[derive(Serialize, Deserialize)]
struct Sum {
    round: u64,
    sum: u64,
}

/// A JSON list of integers, summed as it is read: no list is built.
struct ListSum {
    first: Option<u64>,
    sum: u64,
}

impl<'de> Deserialize<'de> for ListSum {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ListSum, D::Error> {
        deserializer.deserialize_seq(ListSumVisitor)
    }
}

struct ListSumVisitor;

impl<'de> Visitor<'de> for ListSumVisitor {
    type Value = ListSum;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of integers")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut list: A) -> Result<ListSum, A::Error> {
        let mut sum = ListSum {
            first: None,
            sum: 0,
        };
        while let Some(n) = list.next_element::<u64>()? {
            sum.first.get_or_insert(n);
            sum.sum = sum
                .sum
                .checked_add(n)
                .ok_or_else(|| A::Error::custom("the sum overflows 64 bits"))?;
        }
        Ok(sum)
    }
}

#[derive(Default, Serialize, Deserialize)]
struct Fanout {
    handled: u64,
    round: u64,
    received: u64,
    total: u64,
}

impl Executor for Fanout {
    fn handle(&mut self, ctx: &Context, message: Incoming) -> Result<(), String> {
        let config: Config = ctx.config()?;
        self.handled += 1;
        match config.role.as_str() {
            "dispatch" => {
                let Round { round } = message.json()?;
                let numbers: Vec<u64> = (round * 1000..round * 1000 + 1000).collect();
                self.round = round;
                ctx.send("numbers", &numbers)
            }
            "worker" => {
                let numbers: ListSum = message.json()?;
                let sum = Sum {
                    round: numbers.first.map_or(0, |n| n / 1000),
                    sum: numbers.sum,
                };
                ctx.send("sum", &sum)
            }
            "gather" => {
                let sum: Sum = message.json()?;
                self.total += sum.sum;
                self.received += 1;
                if self.received < config.workers {
                    return Ok(());
                }
                self.received = 0;
                self.round = sum.round + 1;
                if self.round == config.rounds {
                    ctx.yield_output("total", &self.total)
                } else {
                    ctx.send("round", &Round { round: self.round })
                }
            }
            other => Err(format!("unknown role '{other}'")),
        }
    }
}

superstep_guest::export_executor!(Fanout);
