//! `{{name}}`: counts the words of each text it receives and yields the counts so far.

use serde::{Deserialize, Serialize};
use superstep_guest::{Context, Executor, Incoming, serde_json};

/// The executor's state: saved in every checkpoint (as JSON), restored on resume.
#[derive(Default, Serialize, Deserialize)]
struct Counter {
    messages: u64,
    words: u64,
}

impl Executor for Counter {
    fn handle(&mut self, ctx: &Context, message: Incoming) -> Result<(), String> {
        let text: String = message.json()?;
        self.messages += 1;
        self.words += text.split_whitespace().count() as u64;
        let counts = serde_json::json!({ "messages": self.messages, "words": self.words });
        ctx.yield_output("counts", &counts)
    }
}

superstep_guest::export_executor!(Counter);
