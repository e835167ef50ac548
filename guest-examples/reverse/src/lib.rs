//! `reverse`: reverses the text.
use serde::{Deserialize, Serialize};
use superstep_guest::{Context, Executor, Incoming};

#[derive(Default, Serialize, Deserialize)]
struct Reverse {
    count: u64,
    last_input: Option<String>,
    last_output: Option<String>,
}

impl Executor for Reverse {
    fn handle(&mut self, ctx: &Context, message: Incoming) -> Result<(), String> {
        let text: String = message.json()?;
        let result: String = text.chars().rev().collect();
        self.count += 1;
        ctx.send("text", &result)?;
        self.last_input = Some(text);
        self.last_output = Some(result);
        Ok(())
    }
}

superstep_guest::export_executor!(Reverse);
