//! `agola-toolbox`: the helper binary injected at `/mnt/agola` into every task container. All
//! logic lives in the library; this only maps the outcome to an exit code.

use std::process::ExitCode;

fn main() -> ExitCode {
    match agola_toolbox::cli::run(std::env::args_os().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("agola-toolbox: {err}");
            ExitCode::from(err.exit_code())
        }
    }
}
