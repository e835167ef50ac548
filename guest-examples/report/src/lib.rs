//! `report`: yields the worker's results as the workflow's `report` output.
use serde::{Deserialize, Serialize};
use superstep_guest::{Context, Executor, Incoming};

#[derive(Default, Serialize, Deserialize)]
struct Report {
    reports: u64,
}

impl Executor for Report {
    fn handle(&mut self, ctx: &Context, message: Incoming) -> Result<(), String> {
        let results: serde_json::Value = message.json()?;
        self.reports += 1;
        ctx.yield_output("report", &results)
    }
}

superstep_guest::export_executor!(Report);
