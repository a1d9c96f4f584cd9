//! `sshttp`: the command-line front end of the sshttp crates.
//!
//! A thin clap layer: each subcommand builds a configuration and calls a library crate.
//! The subcommands arrive with the crates behind them (`serve` with the gateway, `get`
//! and friends with the client, `proxy` with the local proxy).

use clap::{Parser, Subcommand};

/// HTTP carried over SSH: one encrypted, key-authenticated connection, one SSH channel
/// per request, virtual hosts through a `header` channel.
///
/// The wire protocol is specified in spec/protocol.md.
#[derive(Debug, Parser)]
#[command(name = "sshttp", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway: an SSH server in front of HTTP services (not built yet).
    ///
    /// Example: sshttp serve
    Serve,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve => anyhow::bail!(
            "the gateway is not built yet; this release only has the protocol crate \
             (spec/protocol.md)"
        ),
    }
}
