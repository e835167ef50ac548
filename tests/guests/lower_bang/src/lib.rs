//! `lower_bang`: the example pipeline's `lower` as a changed version of it would be:
//! the same state, but its text ends in "!". For replay, which must find the superstep
//! where its results part from those the original recorded.
use serde::{Deserialize, Serialize};
use superstep_guest::{Context, Executor, Incoming};

#[derive(Default, Serialize, Deserialize)]
struct LowerBang {
    count: u64,
    last_input: Option<String>,
    last_output: Option<String>,
}

impl Executor for LowerBang {
    fn handle(&mut self, ctx: &Context, message: Incoming) -> Result<(), String> {
        let text: String = message.json()?;
        let result = format!("{}!", text.to_lowercase());
        self.count += 1;
        ctx.send("text", &result)?;
        self.last_input = Some(text);
        self.last_output = Some(result);
        Ok(())
    }
}

superstep_guest::export_executor!(LowerBang);
