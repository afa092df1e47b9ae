//! The `agola` binary's library: command line, the layered configuration of the whole binary,
//! and the wiring that serves any set of components in one process (`agola serve`).

pub mod cli;
pub mod config;
pub mod serve;
