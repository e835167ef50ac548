//! `lossy`: an executor whose `snapshot` and `restore` do not agree, for snapshot
//! verification. Its snapshot holds how many messages it has seen and the last one,
//! but `restore` forgets the count.
use serde::{Deserialize, Serialize};
use superstep_guest::{Context, Executor, Incoming};

#[derive(Default, Serialize, Deserialize)]
struct Lossy {
    #[serde(skip_deserializing)]
    count: u64,
    last: Option<serde_json::Value>,
}

impl Executor for Lossy {
    fn handle(&mut self, ctx: &Context, message: Incoming) -> Result<(), String> {
        self.count += 1;
        self.last = Some(message.json()?);
        ctx.yield_output("seen", &serde_json::json!({ "count": self.count }))
    }
}

superstep_guest::export_executor!(Lossy);
