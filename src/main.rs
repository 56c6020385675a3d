//! The `needtag` command: a thin shell over the library (see `cli.rs`).

mod cli;
mod report;

fn main() -> std::process::ExitCode {
    needtag::limit_allocator_arenas(2);
    needtag::map_large_allocations(1 << 20);
    cli::run()
}
