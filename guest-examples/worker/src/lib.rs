//! `worker`: carries out an approved plan from `planner`, one result per step, and
//! sends the results to `report`.
use serde::{Deserialize, Serialize};
use superstep_guest::{Context, Executor, Incoming};

#[derive(Deserialize)]
struct Plan {
    task: String,
    plan: Vec<String>,
    rounds: u32,
}

#[derive(Default, Serialize, Deserialize)]
struct Worker {
    plans_done: u64,
}

impl Executor for Worker {
    fn handle(&mut self, ctx: &Context, message: Incoming) -> Result<(), String> {
        let plan: Plan = message.json()?;
        let results: Vec<String> = plan
            .plan
            .iter()
            .map(|step| format!("done: {step}"))
            .collect();
        self.plans_done += 1;
        let report = serde_json::json!({
            "task": plan.task,
            "rounds": plan.rounds,
            "results": results,
        });
        ctx.send("results", &report)
    }
}

superstep_guest::export_executor!(Worker);
