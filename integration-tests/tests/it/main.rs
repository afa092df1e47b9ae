//! End-to-end tests: one test binary with modules, to keep link time down.

mod agola_run;
mod common;
mod executor;
mod gateway;
mod infra;
mod python_client;
mod runservice;
mod scheduler;
mod serve;
