//! The `needtag` command: a thin shell over the library (see `cli.rs`).

mod cli;
mod report;

fn main() -> std::process::ExitCode {
    cli::run()
}
