//! `clever-auth-bench`: the measuring tools behind `cargo xtask bench`.
//!
//! - `load`: a closed-loop HTTP/1.1 load generator (keep-alive, C connections sending back to
//!   back, bounded by time and by a request count, loopback only); prints one JSON line.
//! - `baseline`: plain hyper serving `GET /health/clever-auth` natively, doing per request what
//!   the component does (store read, deserialise, report, serialise, headers): the denominator
//!   of the host's throughput.
//! - `handout`: the cost of one token hand-out from the cache, timed natively.
//! - `abuse`: slowloris and non-reading clients around one well-behaved health client.
//! - `upstream`: a fast stand-in for Clever's data API, behind the gateway in the bench.

mod abuse;
mod baseline;
mod handout;
mod load;
mod proc_stat;
mod seed;
mod upstream;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "clever-auth-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Closed-loop load against one URL on loopback; prints the result as one JSON line.
    Load(load::Args),
    /// The native baseline server; prints `listening <addr>` first.
    Baseline(baseline::Args),
    /// Times store read + deserialise `TokenEntry` + `lifecycle::hand_out`; prints JSON.
    Handout(handout::Args),
    /// Slowloris and non-reading clients around one well-behaved health client; prints JSON.
    Abuse(abuse::Args),
    /// A fast stand-in for Clever's data API (`/{version}/bytes/{n}`), the gateway bench's
    /// upstream; prints `listening <addr>` first.
    Upstream(upstream::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Load(args) => load::main(args),
        Cmd::Baseline(args) => baseline::main(args),
        Cmd::Handout(args) => handout::main(args),
        Cmd::Abuse(args) => abuse::main(args),
        Cmd::Upstream(args) => upstream::main(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("clever-auth-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
