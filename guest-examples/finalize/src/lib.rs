//! `finalize`: yields the text as the workflow's output.
use serde::{Deserialize, Serialize};
use superstep_guest::{Context, Executor, Incoming};

#[derive(Default, Serialize, Deserialize)]
struct Finalize {
    count: u64,
    last_output: Option<String>,
    #[serde(rename = "final")]
    done: bool,
}

impl Executor for Finalize {
    fn handle(&mut self, ctx: &Context, message: Incoming) -> Result<(), String> {
        let text: String = message.json()?;
        self.count += 1;
        ctx.yield_output("text", &text)?;
        self.last_output = Some(text);
        self.done = true;
        Ok(())
    }
}

superstep_guest::export_executor!(Finalize);
