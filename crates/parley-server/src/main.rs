use clap::Parser;
use parley_server::cli::{self, Cli};
use parley_server::config::Config;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let cfg = match Config::load(cli.config.as_deref(), std::env::vars()) {
        Ok(c) => c,
        Err(e) => {
            say(&format!("parley: configuration error: {e}"));
            return ExitCode::from(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&cfg.log.level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi)
        .with_writer(|| LogOut)
        // Its default reports a failed write with eprintln!, which panics
        // when stderr is the same closed pipe.
        .log_internal_errors(false)
        .init();
    let result = actix_web::rt::System::new().block_on(cli::run(cli, cfg));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            say(&format!("parley: {e}"));
            ExitCode::FAILURE
        }
    }
}

/// The log's destination, standard output, written so that it never fails:
/// when whatever reads it has gone (a `tee` killed with its process group,
/// a closed pipe), lines are lost but requests, the log mail transport and
/// shutdown go on.
struct LogOut;

impl std::io::Write for LogOut {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stdout().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stdout().flush();
        Ok(())
    }
}

/// A last word on standard error; `eprintln!` would panic on a closed pipe.
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}
