//! `planner`: the plan-review pattern of Agent Framework's "Magentic Workflow with
//! Checkpointing" sample notebook. It proposes a plan for
//! the task it receives and asks a person to approve it (`request-info`, kind
//! `plan-review`). An approval sends the plan to the worker; a rejection's feedback goes
//! into a revised plan that is put up for review again, for at most `max_rounds`
//! rounds, after which the planner yields `rejected` instead.
//!
//! Input: the task as a JSON string. Response: `{"approved": bool, "feedback": "…"}`.
//! Config (optional): `{ "max_rounds": 3 }`.
use serde::{Deserialize, Serialize};
use superstep_guest::{Context, Executor, Incoming};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_max_rounds")]
    max_rounds: u32,
}

fn default_max_rounds() -> u32 {
    3
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Review {
    approved: bool,
    #[serde(default)]
    feedback: Option<String>,
}

#[derive(Default, Serialize, Deserialize)]
struct Planner {
    task: String,
    round: u32,
    plan: Vec<String>,
    feedback: Vec<String>,
    /// The request id of the review in progress.
    awaiting: Option<String>,
}

impl Planner {
    fn propose(&mut self, ctx: &Context) -> Result<(), String> {
        self.round += 1;
        self.plan = vec![
            format!("research {}", self.task),
            format!("draft {}", self.task),
        ];
        self.plan
            .extend(self.feedback.iter().map(|f| format!("address: {f}")));
        self.plan.push(format!("review {}", self.task));
        let review = serde_json::json!({
            "task": self.task,
            "round": self.round,
            "plan": self.plan,
        });
        self.awaiting = Some(ctx.request_info("plan-review", &review)?);
        Ok(())
    }
}

impl Executor for Planner {
    fn handle(&mut self, ctx: &Context, message: Incoming) -> Result<(), String> {
        self.task = message.json()?;
        self.round = 0;
        self.feedback.clear();
        self.propose(ctx)
    }

    fn on_response(&mut self, ctx: &Context, response: Incoming) -> Result<(), String> {
        if self.awaiting.as_deref() != Some(response.source.as_str()) {
            return Err(format!(
                "response to '{}', but the review in progress is {:?}",
                response.source, self.awaiting
            ));
        }
        self.awaiting = None;
        let review: Review = response.json()?;
        if review.approved {
            let plan = serde_json::json!({
                "task": self.task,
                "plan": self.plan,
                "rounds": self.round,
            });
            return ctx.send("plan", &plan);
        }
        self.feedback
            .push(review.feedback.unwrap_or_else(|| "no reason given".into()));
        let config: Config = ctx.config::<Option<Config>>()?.unwrap_or(Config {
            max_rounds: default_max_rounds(),
        });
        if self.round >= config.max_rounds {
            let verdict = serde_json::json!({
                "task": self.task,
                "rounds": self.round,
                "feedback": self.feedback,
            });
            return ctx.yield_output("rejected", &verdict);
        }
        self.propose(ctx)
    }
}

superstep_guest::export_executor!(Planner);
