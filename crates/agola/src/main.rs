//! The `agola` binary: stays tiny; everything lives in the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = agola::cli::Cli::parse();
    // Multi-thread runtime: the OTLP batch exporter must never flush on a runtime's only thread.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("agola: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli.run()) {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("agola: {e:#}");
            // Bad input or a broken setup: the same code as a run with a setup error.
            std::process::ExitCode::from(2)
        }
    }
}
