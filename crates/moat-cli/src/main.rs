//! The `moat` binary: parses the command line, sets up Ctrl-C handling and maps errors to exit
//! codes. Each subcommand lives in its own module; this file only dispatches.

/// `println!` that ends the process quietly when stdout is closed (`moat ls | head`), where
/// the standard one panics.
macro_rules! println {
    () => { println!("") };
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout(), $($arg)*).is_err() {
            std::process::exit(0);
        }
    }};
}

mod audit;
mod embed;
mod gateway;
mod kb;
mod keys;
mod knowledge;
mod license;
mod models;
mod observability;
mod progress;
mod run;
mod serve;
mod trust;
mod usage;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Parser, Subcommand};

/// Set by the Ctrl-C handler; long copies check it and stop cleanly.
pub static CANCEL: AtomicBool = AtomicBool::new(false);

/// Exit code for a failed command (a usage error exits 2, from clap).
pub const EXIT_ERROR: u8 = 1;
/// Exit code after Ctrl-C.
pub const EXIT_INTERRUPTED: u8 = 130;

#[derive(Parser)]
#[command(name = "moat", version, about = "The self-hosted stack for open-weights models", long_about = None)]
struct Cli {
    /// Data folder (models, database); default $MOAT_HOME or ~/.moat.
    #[arg(long, global = true, value_name = "DIR")]
    home: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Pull a model into the store (default: the default model, SmolLM2-135M-Instruct).
    Pull(models::PullArgs),
    /// List the models in the store.
    #[command(alias = "list")]
    Ls(models::LsArgs),
    /// Show what a model is: architecture, size, quantization, context, memory, license.
    Show(models::ShowArgs),
    /// Give a model a second name (the files are shared, not copied).
    Cp(models::CpArgs),
    /// Remove models; files no other model uses are deleted.
    Rm(models::RmArgs),
    /// What a model's license allows for your deployment.
    License {
        #[command(subcommand)]
        command: license::LicenseCommand,
    },
    /// Serve models over an OpenAI-compatible HTTP API (default: the default model on
    /// 127.0.0.1:8080).
    Serve(serve::ServeArgs),
    /// Chat with a model in the terminal, or answer one prompt (also from stdin).
    Run(run::RunArgs),
    /// Embed texts (arguments, or lines of stdin) and print one JSON vector per line.
    Embed(embed::EmbedArgs),
    /// Knowledge bases: create, add documents, list, show, remove, query.
    Kb {
        #[command(subcommand)]
        command: kb::KbCommand,
    },
    /// API keys for the server: create (the secret is shown once), list, revoke.
    Keys {
        #[command(subcommand)]
        command: keys::KeysCommand,
    },
    /// Query or export (--jsonl) the audit log of API requests.
    Audit(audit::AuditArgs),
    /// Usage and cost per key, alias or model; `usage compare` against closed models.
    Usage(usage::UsageArgs),
}

/// mimalloc for Rust's allocations: a request through the gateway allocates and frees many small
/// buffers (JSON values, HTTP heads, SSE chunks), and with glibc's allocator about a fifth of
/// `moat serve`'s CPU went to malloc and free (docs/PERFORMANCE.md, "Gateway overhead").
/// llama.cpp's own allocations still use the C allocator. Built without transparent huge pages
/// (feature `no_thp`): with them, each fresh multi-megabyte buffer (a host prompt-cache copy)
/// made the kernel zero 2 MiB pages on the request's time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The server handles SIGINT itself: it drains requests in flight instead of exiting.
    if !matches!(cli.command, Command::Serve(_)) {
        install_ctrl_c();
    }
    let home = cli.home.unwrap_or_else(moat_store::Store::default_root);
    // Absolute from here on: the store links an embedder's files to their blobs, and a link
    // made from a relative home (`--home data`) would point nowhere.
    let home = std::path::absolute(&home).unwrap_or(home);
    let result = match cli.command {
        Command::Pull(args) => models::pull(&home, args),
        Command::Ls(args) => models::ls(&home, args),
        Command::Show(args) => models::show(&home, args),
        Command::Cp(args) => models::cp(&home, args),
        Command::Rm(args) => models::rm(&home, args),
        Command::License { command } => license::run(&home, command),
        Command::Serve(args) => serve::run(&home, args),
        Command::Run(args) => run::run(&home, args),
        Command::Embed(args) => embed::run(&home, args),
        Command::Kb { command } => kb::run(&home, command),
        Command::Keys { command } => keys::run(&home, command),
        Command::Audit(args) => audit::run(&home, args),
        Command::Usage(args) => usage::run(&home, args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            let interrupted = error
                .downcast_ref::<moat_store::StoreError>()
                .is_some_and(|e| e.kind() == moat_store::ErrorKind::Interrupted);
            eprintln!("error: {error:#}");
            ExitCode::from(if interrupted {
                EXIT_INTERRUPTED
            } else {
                EXIT_ERROR
            })
        }
    }
}

/// The first Ctrl-C asks running copies and downloads to stop and clean up; if the process is
/// still alive two seconds later (a read waiting on a stalled connection, say), or on a second
/// Ctrl-C, it exits. Partial files left then are removed by the next store open (a hub
/// download's part in the Hugging Face cache is kept for the next pull to resume).
fn install_ctrl_c() {
    let _ = ctrlc::set_handler(|| {
        if CANCEL.swap(true, Ordering::SeqCst) {
            std::process::exit(i32::from(EXIT_INTERRUPTED));
        }
        std::thread::spawn(|| {
            std::thread::sleep(std::time::Duration::from_secs(2));
            std::process::exit(i32::from(EXIT_INTERRUPTED));
        });
    });
}
