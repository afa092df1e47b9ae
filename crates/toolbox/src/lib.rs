//! The agola toolbox: a small, dependency-light binary that the executor copies into every task
//! container (at `/mnt/agola/agola-toolbox`) and through which every step command goes. It runs
//! as PID 1 of the main container (`sleeper`, reaping zombies), wraps each exec with its
//! environment, working directory and user (`exec`), writes step scripts (`createfile`), resolves
//! `~` as the container user (`expanddir`, `mkdir`), packs and unpacks workspaces and caches
//! (`archive`, `unarchive`, hardened against archives that try to write outside their
//! destination) and renders cache-key templates (`template`). It depends on no other agola crate
//! and has no async runtime, so it can be built as a static musl binary per architecture.
//!
//! The library holds the logic so that it can be unit tested; `main.rs` only calls
//! [`cli::run`].

pub mod archive;
pub mod cli;
pub mod error;
pub mod exec;
pub mod files;
pub mod glob;
pub mod paths;
pub mod sleeper;
pub mod template;
pub mod unarchive;
pub mod user;

pub use error::{Error, Result};
