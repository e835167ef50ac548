//! The server's workloads, against the real binary over loopback HTTP with the file
//! store: W6 over HTTP (1,000 W1 runs started through the API by 32 clients, each
//! waiting on the run's event stream for its completion) and 1,000 runs paused on a
//! pending request (the server's resident memory, and the time to answer them all).

use super::{Bench, repo, report};
use anyhow::{Context as _, Result, bail, ensure};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TOKEN: &str = "bench-token-0123456789abcdef";
const RUNS: usize = 1000;
const CLIENTS: usize = 32;

/// A `superstep serve` of `guest-examples/`, killed when dropped.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(bench: &Bench, name: &str) -> Result<Server> {
        let store = bench.fresh_dir(name)?;
        let mut child = Command::new(env!("CARGO_BIN_EXE_superstep"))
            .args(["serve", "--listen", "127.0.0.1:0", "--workflows"])
            .arg(repo().join("guest-examples"))
            .arg("--store")
            .arg(&store)
            .env("SUPERSTEP_TOKEN", TOKEN)
            .env(
                superstep::COMPILE_CACHE_ENV,
                bench.dir.join("compile-cache"),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = BufReader::new(child.stdout.take().context("stdout")?);
        let mut lines = stdout.lines();
        let url = lines
            .by_ref()
            .map_while(std::result::Result::ok)
            .find_map(|line| line.strip_prefix("open ").map(str::to_string))
            .context("the server printed no URL")?;
        std::thread::spawn(move || lines.for_each(drop));
        Ok(Server {
            child,
            base: url.trim_end_matches('/').to_string(),
        })
    }

    /// The server's resident memory now and at its peak, in MiB.
    fn memory(&self) -> Result<(f64, f64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let kib = |field: &str| -> Result<f64> {
            let line = status
                .lines()
                .find(|l| l.starts_with(field))
                .with_context(|| format!("{field} in /proc/<pid>/status"))?;
            let number = line.split_whitespace().nth(1).context("a number")?;
            Ok(number.parse::<f64>()? / 1024.0)
        };
        Ok((kib("VmRSS:")?, kib("VmHWM:")?))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(300)))
        .build()
        .into()
}

/// POSTs `body` to `path`; the JSON reply, which must have `status`.
fn post(
    agent: &ureq::Agent,
    base: &str,
    path: &str,
    body: &str,
    status: u16,
) -> Result<serde_json::Value> {
    let mut reply = agent
        .post(format!("{base}{path}"))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .header("Content-Type", "application/json")
        .send(body)?;
    let text = reply.body_mut().read_to_string()?;
    ensure!(
        reply.status() == status,
        "{path}: {} {text}",
        reply.status()
    );
    Ok(serde_json::from_str(&text)?)
}

/// Reads the run's event stream until an event named `name`; the body of the last
/// `output` event before it, if there was one.
fn until_event(
    agent: &ureq::Agent,
    base: &str,
    run: &str,
    name: &str,
) -> Result<Option<serde_json::Value>> {
    let response = agent
        .get(format!("{base}/v1/runs/{run}/events"))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .call()?;
    let marker = format!("\"event\":\"{name}\"");
    let reader = BufReader::new(response.into_body().into_reader());
    let mut last_output = None;
    for line in reader.lines() {
        let line = line?;
        let Some(data) = line.strip_prefix("data:") else {
            continue;
        };
        if data.contains("\"event\":\"output\"") {
            let event: serde_json::Value = serde_json::from_str(data.trim())?;
            last_output = Some(event["body"]["json"].clone());
        }
        if data.contains(&marker) {
            return Ok(last_output);
        }
    }
    bail!("run {run}: the stream ended before {name}")
}

/// Runs `work(i)` for i in 0..RUNS on CLIENTS threads; the seconds each took.
fn clients(work: impl Fn(&ureq::Agent, usize) -> Result<()> + Sync) -> Result<Vec<f64>> {
    let next = AtomicUsize::new(0);
    let latencies = Mutex::new(Vec::with_capacity(RUNS));
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|_| {
                scope.spawn(|| -> Result<()> {
                    let agent = agent();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= RUNS {
                            return Ok(());
                        }
                        let started = Instant::now();
                        work(&agent, i)?;
                        let took = started.elapsed().as_secs_f64();
                        latencies.lock().unwrap().push(took);
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().expect("a client thread"))
    })?;
    Ok(latencies.into_inner().unwrap())
}

impl Bench {
    /// The server's workloads.
    pub(super) fn serve(&self) -> Result<()> {
        self.w6_http()?;
        self.paused_runs()
    }

    /// W6 over HTTP: POST a W1 run, follow its events to `run_completed`.
    fn w6_http(&self) -> Result<()> {
        let (mut rates, mut p50, mut p99) = (Vec::new(), Vec::new(), Vec::new());
        for sample in 0..self.samples {
            let server = Server::start(self, &format!("w6-http-{sample}"))?;
            let base = server.base.clone();
            // A first run compiles the workflow; it is not measured.
            let warm = post(
                &agent(),
                &base,
                "/v1/runs",
                r#"{"workflow":"pipeline","input":"warm"}"#,
                201,
            )?;
            until_event(
                &agent(),
                &base,
                warm["run_id"].as_str().context("run id")?,
                "run_completed",
            )?;
            let started = Instant::now();
            let mut latencies = clients(|agent, i| {
                let body = format!(r#"{{"workflow":"pipeline","input":"hello world {i}"}}"#);
                let started = post(agent, &base, "/v1/runs", &body, 201)?;
                let run = started["run_id"].as_str().context("run id")?;
                let output = until_event(agent, &base, run, "run_completed")?;
                let expected: String = format!("hello world {i}").chars().rev().collect();
                ensure!(
                    output == Some(expected.clone().into()),
                    "run {run}: {output:?}, not {expected}"
                );
                Ok(())
            })?;
            rates.push(RUNS as f64 / started.elapsed().as_secs_f64());
            latencies.sort_by(f64::total_cmp);
            p50.push(latencies[RUNS / 2] * 1e3);
            p99.push(latencies[RUNS * 99 / 100] * 1e3);
        }
        let what = format!("W6 over HTTP, {CLIENTS} clients, POST to completion event");
        report(&what, "runs/s", rates);
        report(&format!("{what}, p50"), "ms", p50);
        report(&format!("{what}, p99"), "ms", p99);
        Ok(())
    }

    /// 1,000 plan-review runs paused on their first review: the server's memory, then
    /// the time to approve them all and see each complete.
    fn paused_runs(&self) -> Result<()> {
        let (mut resident, mut answer_rates) = (Vec::new(), Vec::new());
        let mut idle = Vec::new();
        for sample in 0..self.samples {
            let server = Server::start(self, &format!("paused-{sample}"))?;
            let base = server.base.clone();
            idle.push(server.memory()?.0);
            let runs = Arc::new(Mutex::new(vec![String::new(); RUNS]));
            clients(|agent, i| {
                let body = format!(r#"{{"workflow":"plan_review","input":"task {i}"}}"#);
                let started = post(agent, &base, "/v1/runs", &body, 201)?;
                let run = started["run_id"].as_str().context("run id")?.to_string();
                until_event(agent, &base, &run, "run_paused")?;
                runs.lock().unwrap()[i] = run;
                Ok(())
            })?;
            resident.push(server.memory()?.0);
            let runs = runs.lock().unwrap().clone();
            let started = Instant::now();
            clients(|agent, i| {
                let run = &runs[i];
                let path = format!("/v1/runs/{run}/requests/planner:0:1");
                post(
                    agent,
                    &base,
                    &path,
                    r#"{"response":{"approved":true}}"#,
                    202,
                )?;
                let report = until_event(agent, &base, run, "run_completed")?;
                let task = report.as_ref().map(|r| r["task"].clone());
                ensure!(
                    task == Some(format!("task {i}").into()),
                    "run {run}: {report:?}"
                );
                Ok(())
            })?;
            answer_rates.push(started.elapsed().as_secs_f64());
        }
        report("Server idle, resident memory", "MiB", idle);
        report(
            &format!("{RUNS} runs paused on a request, server resident memory"),
            "MiB",
            resident,
        );
        report(
            &format!("{RUNS} paused runs approved and completed, {CLIENTS} clients"),
            "s",
            answer_rates,
        );
        Ok(())
    }
}
