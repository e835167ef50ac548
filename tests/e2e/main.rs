//! End-to-end tests: real guest components, the real `superstep` binary, resumes in
//! fresh processes.

mod common;

mod agents;
mod cli;
mod crash;
mod failures;
mod faults;
mod hardening;
mod hitl;
mod integrity;
mod journal;
mod library;
mod manage;
mod many_runs;
mod new;
mod pipeline;
mod polyglot;
mod postgres;
mod postgres_server;
mod replay;
mod retries;
mod routing;
mod sandbox;
mod sdks;
mod serve;
mod stores;
mod telemetry;
mod time_travel;
mod verify;
mod workers;
