//! `cairn-chaos`: run fault campaigns against Cairn and check their histories.

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cairn-chaos", version, about = "Fault campaigns against Cairn")]
struct Cli {
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Subcommand)]
enum Command {}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {}
}
