//! The `needtag` command: a thin shell over the library (see `cli.rs`).

mod cli;

fn main() -> std::process::ExitCode {
    cli::run()
}
