//! `upper`: upper-cases the text and publishes the input and the result as shared state.
use serde::{Deserialize, Serialize};
use superstep_guest::{Context, Executor, Incoming};

#[derive(Default, Serialize, Deserialize)]
struct Upper {
    count: u64,
    last_input: Option<String>,
    last_output: Option<String>,
}

impl Executor for Upper {
    fn handle(&mut self, ctx: &Context, message: Incoming) -> Result<(), String> {
        let text: String = message.json()?;
        let result = text.to_uppercase();
        self.count += 1;
        ctx.set_shared("original_input", &text)?;
        ctx.set_shared("upper_output", &result)?;
        ctx.send("text", &result)?;
        self.last_input = Some(text);
        self.last_output = Some(result);
        Ok(())
    }
}

superstep_guest::export_executor!(Upper);
