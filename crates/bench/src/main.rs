//! `pushwarden-bench`: a load generator for SignalR hubs, built on the project's own client,
//! and for the push gateway (`push`, [`push`]; `push-org`, [`push_org`]).
//!
//! The parent process starts `--processes` copies of itself as workers; each opens its share
//! of the connections (one task per connection) and reports JSON lines on stdout; the parent
//! drives the measurement and prints one JSON result (and a human summary on stderr).

mod cli;
mod coordinator;
mod ids;
mod marker;
mod push;
mod push_org;
mod raw;
mod stats;
mod worker;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    stats::raise_nofile_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.common.threads.max(1))
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("pushwarden-bench: starting the runtime: {e}");
            std::process::exit(2);
        }
    };
    let worker = cli.worker_index.is_some();
    let result = runtime.block_on(async move {
        if worker {
            worker::run(cli).await
        } else if let cli::Mode::Push(_) = cli.mode {
            push::run(cli).await
        } else if let cli::Mode::PushOrg(_) = cli.mode {
            push_org::run(cli).await
        } else {
            coordinator::run(cli).await
        }
    });
    // Connection tasks may still be running: leave without waiting for them.
    let code = match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("pushwarden-bench: {e:#}");
            1
        }
    };
    std::process::exit(code);
}
