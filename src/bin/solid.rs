//! `solid`: the solidgrid node server.
//!
//! `solid [-c DIR] [-x gridnode] [-U user -P password]` — see `solid --help` and
//! `solid.ini.example`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use solidgrid::server::{NodeOptions, StartError, run};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum StartMode {
    /// Start with no database and wait to be added to a grid by its leader.
    Gridnode,
}

/// The solidgrid node server.
#[derive(Debug, Parser)]
#[command(name = "solid", version, about)]
struct Args {
    /// Working directory: solid.ini, the database, the transaction log and solmsg.out.
    #[arg(short = 'c', long = "dir", env = "SOLIDDIR", default_value = ".")]
    dir: PathBuf,
    /// Start mode; `-x gridnode` starts an empty node waiting to be added to a grid.
    #[arg(short = 'x', value_enum)]
    mode: Option<StartMode>,
    /// Admin user to create when the directory has no database (with -P).
    #[arg(short = 'U', requires = "password")]
    user: Option<String>,
    /// Password of the admin user created with -U.
    #[arg(short = 'P', requires = "user")]
    password: Option<String>,
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot install the SIGTERM handler: {e}");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received, stopping"),
        _ = term.recv() => tracing::info!("SIGTERM received, stopping"),
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if !args.dir.is_dir() {
        eprintln!(
            "solid: the working directory {} does not exist",
            args.dir.display()
        );
        return ExitCode::from(2);
    }
    let opts = NodeOptions {
        workdir: args.dir,
        gridnode: args.mode == Some(StartMode::Gridnode),
        admin_user: args.user,
        admin_password: args.password,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("solid: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(opts, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ StartError::Config(_)) => {
            eprintln!("solid: configuration error: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("solid: {e}");
            ExitCode::FAILURE
        }
    }
}
