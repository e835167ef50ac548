//! `submit`: the SubmitToLowerAgent step of Agent Framework's
//! "Checkpoint with Resume" sample notebook. Reads the shared state that `upper`
//! published, logs it, and sends the agent a prompt built from its config's `prompt`
//! (`{text}` stands for the incoming text) as kind `text`.
use serde::{Deserialize, Serialize};
use superstep_guest::{Context, Executor, Incoming, Level};

#[derive(Deserialize)]
struct Config {
    prompt: String,
}

#[derive(Default, Serialize, Deserialize)]
struct Submit {
    count: u64,
    last_input: Option<String>,
}

impl Executor for Submit {
    fn handle(&mut self, ctx: &Context, message: Incoming) -> Result<(), String> {
        let config: Config = ctx.config()?;
        let text: String = message.json()?;
        let original: Option<String> = ctx.get_shared("original_input")?;
        let upper: Option<String> = ctx.get_shared("upper_output")?;
        ctx.log(
            Level::Info,
            &format!(
                "shared state: original_input='{}', upper_output='{}'",
                original.unwrap_or_default(),
                upper.unwrap_or_default()
            ),
        );
        ctx.send("text", &config.prompt.replace("{text}", &text))?;
        self.count += 1;
        self.last_input = Some(text);
        Ok(())
    }
}

superstep_guest::export_executor!(Submit);
