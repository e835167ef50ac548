//! `lower`: lower-cases the text (the agent step of Agent Framework's
//! "Checkpoint with Resume" sample, made deterministic) after
//! reading the shared state that `upper` published.
use serde::{Deserialize, Serialize};
use superstep_guest::{Context, Executor, Incoming, Level};

#[derive(Default, Serialize, Deserialize)]
struct Lower {
    count: u64,
    last_input: Option<String>,
    last_output: Option<String>,
}

impl Executor for Lower {
    fn handle(&mut self, ctx: &Context, message: Incoming) -> Result<(), String> {
        let text: String = message.json()?;
        let original: String = ctx
            .get_shared("original_input")?
            .ok_or("shared state 'original_input' is missing")?;
        let upper: String = ctx
            .get_shared("upper_output")?
            .ok_or("shared state 'upper_output' is missing")?;
        ctx.log(
            Level::Info,
            &format!("shared state: original_input='{original}', upper_output='{upper}'"),
        );
        let result = text.to_lowercase();
        self.count += 1;
        ctx.send("text", &result)?;
        self.last_input = Some(text);
        self.last_output = Some(result);
        Ok(())
    }
}

superstep_guest::export_executor!(Lower);
