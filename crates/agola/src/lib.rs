//! The `agola` binary's library: command line, the layered configuration of the whole binary,
//! the wiring that serves any set of components in one process (`agola serve`), and the
//! server-less pipeline run (`agola run`).

pub mod cli;
pub mod config;
pub mod run;
pub mod serve;
