//! The `printbell` command line: parses arguments, sets up logging, and calls the library.

use clap::{Parser, Subcommand, ValueEnum};
use printbell::commands::{self, CommandResult, Failure};
use printbell::config;
use printbell::store::{Backend, PostgresUrl};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "printbell",
    version,
    about = "all-images.ai webhooks → Slack and Discord messages"
)]
struct Cli {
    /// Config file [default: $PRINTBELL_CONFIG, else ./notifier.toml]
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log format on stderr
    #[arg(
        long,
        global = true,
        value_enum,
        ignore_case = true,
        env = "PRINTBELL_LOG_FORMAT"
    )]
    log_format: Option<LogFormat>,
    /// Log level or filter (overrides RUST_LOG), e.g. debug or printbell=trace
    #[arg(long, global = true, value_name = "LEVEL")]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the receiver and the delivery workers (the default)
    Serve,
    /// Validate the config; exit 1 listing every problem
    Check,
    /// Print the destinations an event reaches and the exact body each would get (no network)
    Preview {
        /// An event JSON file, or an event type for a built-in sample
        #[arg(long, default_value = "print.completed", value_name = "FILE or TYPE")]
        event: String,
        /// Also print, per destination, a link that shows the message as the platform draws it
        /// (Slack's Block Kit Builder, Discohook); it holds no webhook URL or token
        #[arg(long)]
        links: bool,
    },
    /// Inspect and replay the durable queue
    Deliveries {
        /// Store file, or PostgreSQL URL [default: store.path / store.url from the config]
        #[arg(long, global = true, value_name = "FILE or URL")]
        store: Option<String>,
        #[command(subcommand)]
        action: DeliveriesAction,
    },
    /// Post a sample message to one destination for real and print the platform's answer
    SendTest {
        /// Destination name from the config
        #[arg(long, value_name = "DEST")]
        to: String,
        /// Event type of the sample
        #[arg(long, default_value = "print.completed", value_name = "TYPE")]
        event: String,
    },
    /// Send an event through the real routing and templates to every destination it reaches,
    /// for real (bypassing the queue), with one confirmation line per destination
    Send {
        /// An event JSON file, or an event type for a built-in sample
        #[arg(long, value_name = "FILE or TYPE")]
        event: String,
        /// Also ping the routes' mentions (without it, nobody is pinged)
        #[arg(long)]
        mention: bool,
    },
    /// Register this receiver with the all-images.ai API (ALLIMAGES_API_KEY, ALLIMAGES_API_BASE)
    Subscribe {
        /// The public URL of this receiver's webhook path
        #[arg(long)]
        url: String,
        /// Event types to receive [default: all five]
        #[arg(long, num_args = 1.., value_delimiter = ',')]
        events: Vec<String>,
    },
    /// Remove a registration made with `subscribe`
    Unsubscribe {
        /// The webhook id `subscribe` printed
        id: String,
    },
    /// Exit 0 when the health URL answers 200, else 1
    Healthcheck {
        /// Full health URL [default: http://127.0.0.1:PORT/healthz with the configured port]
        #[arg(long)]
        url: Option<String>,
    },
}

#[derive(Subcommand)]
enum DeliveriesAction {
    /// A table of deliveries, newest first
    List {
        /// Only deliveries in this state
        #[arg(long, value_name = "pending|dead|done|superseded")]
        state: Option<String>,
        /// Only deliveries to this destination
        #[arg(long, value_name = "NAME")]
        destination: Option<String>,
        /// At most this many rows, newest first
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// A JSON array instead of the table
        #[arg(long)]
        json: bool,
    },
    /// Everything stored about one delivery: body, attempts, last error, message id
    Show {
        /// The delivery's id, as `deliveries list` shows it
        id: i64,
    },
    /// Send a dead (or pending) delivery again; a done one only with --force
    Retry {
        /// The delivery's id, as `deliveries list` shows it
        id: Option<i64>,
        /// Every dead delivery
        #[arg(long, conflicts_with = "id")]
        all_dead: bool,
        /// Also resend a delivery that was already delivered (done): it is posted again
        #[arg(long, conflicts_with = "all_dead")]
        force: bool,
    },
    /// Delete done and dead deliveries (and old event ids) older than a duration
    Purge {
        /// Age of the last update, e.g. 30d or 12h
        #[arg(long, value_name = "DURATION")]
        older_than: String,
    },
}

/// The log filter: `--log-level`, else `RUST_LOG`, else info. A value that is not a filter is
/// an error, not a silently different level; a bare word must be a level (`verbose` would
/// otherwise be read as a target name and log nothing).
fn log_filter(level: Option<&str>) -> Result<tracing_subscriber::EnvFilter, Failure> {
    use tracing_subscriber::EnvFilter;
    let (text, from) = match (level, std::env::var("RUST_LOG").ok()) {
        (Some(l), _) => (l.to_string(), "--log-level"),
        (None, Some(env)) if !env.trim().is_empty() => (env, "RUST_LOG"),
        (None, _) => return Ok(EnvFilter::new("info")),
    };
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    let word = !text.contains(['=', ',', '[', ':']);
    let lower = text.trim().to_ascii_lowercase();
    let numeric = matches!(lower.as_str(), "0" | "1" | "2" | "3" | "4" | "5");
    if word && !numeric && !LEVELS.contains(&lower.as_str()) {
        return Err(Failure::invalid(format!(
            "{from} = `{text}` is not a log level; use one of {} or a filter like printbell=debug",
            LEVELS.join(", ")
        )));
    }
    EnvFilter::try_new(text.trim())
        .map_err(|e| Failure::invalid(format!("{from} = `{text}` is not a log filter: {e}")))
}

/// Colour only for a person at a terminal, and never with `NO_COLOR` set (no-color.org):
/// escape codes in a file or journald are noise.
fn colour() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn init_logging(format: Option<LogFormat>, level: Option<&str>) -> Result<(), Failure> {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(log_filter(level)?)
        .with_ansi(colour())
        .with_writer(std::io::stderr);
    match format {
        Some(LogFormat::Json) => builder.json().flatten_event(true).init(),
        _ => builder.init(),
    }
    Ok(())
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::runtime(format!("cannot start the async runtime: {e}")))
}

fn store_backend(config_path: &Path, given: Option<String>) -> Result<Backend, Failure> {
    match given {
        Some(url) if PostgresUrl::is_postgres(&url) => match PostgresUrl::parse(&url) {
            Ok(url) => Ok(Backend::Postgres { url }),
            Err(why) => Err(Failure::invalid(format!("--store {why}"))),
        },
        Some(path) => Ok(Backend::Sqlite {
            path: PathBuf::from(path),
        }),
        // Only [store] is needed: a config whose webhook env vars are unset still names it.
        None => match config::load_partial(config_path) {
            (Some(c), _) => Ok(c.store.backend),
            (None, problems) => Err(Failure::from(config::ConfigError { problems })),
        },
    }
}

fn run(cli: Cli) -> CommandResult {
    let config_path = cli.config.clone().unwrap_or_else(config::default_path);
    // Not locked for `serve`: its console destination prints from the delivery lanes.
    let out = &mut std::io::stdout();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let loaded = commands::load(&config_path)?;
            runtime()?
                .block_on(printbell::app::serve(&config_path, loaded))
                .map_err(Failure::runtime)
        }
        Command::Check => commands::check::run(&config_path, out),
        Command::Preview { event, links } => {
            commands::preview::run(&config_path, &event, links, out)
        }
        Command::Deliveries { store, action } => {
            let store = store_backend(&config_path, store)?;
            match action {
                DeliveriesAction::List {
                    state,
                    destination,
                    limit,
                    json,
                } => runtime()?.block_on(commands::deliveries::list(
                    &store,
                    state.as_deref(),
                    destination.as_deref(),
                    limit,
                    json,
                    out,
                )),
                DeliveriesAction::Show { id } => {
                    runtime()?.block_on(commands::deliveries::show(&store, id, out))
                }
                DeliveriesAction::Retry {
                    id,
                    all_dead,
                    force,
                } => runtime()?.block_on(commands::deliveries::retry(
                    &store, id, all_dead, force, out,
                )),
                DeliveriesAction::Purge { older_than } => {
                    runtime()?.block_on(commands::deliveries::purge(&store, &older_than, out))
                }
            }
        }
        Command::Send { event, mention } => {
            runtime()?.block_on(commands::send::run(&config_path, &event, mention, out))
        }
        Command::SendTest { to, event } => {
            runtime()?.block_on(commands::send_test::run(&config_path, &to, &event, out))
        }
        Command::Subscribe { url, events } => {
            let config = config::load(&config_path).map_err(Failure::from)?;
            runtime()?.block_on(commands::subscribe::subscribe(&config, &url, &events, out))
        }
        Command::Unsubscribe { id } => {
            runtime()?.block_on(commands::subscribe::unsubscribe(&id, out))
        }
        Command::Healthcheck { url } => {
            let url = match url {
                Some(u) => u,
                None => {
                    let listen = std::env::var("PRINTBELL_LISTEN")
                        .ok()
                        .or_else(|| config::load(&config_path).ok().map(|c| c.server.listen))
                        .unwrap_or_else(|| config::DEFAULT_LISTEN.to_string());
                    commands::healthcheck::default_url(&listen)
                }
            };
            runtime()?.block_on(commands::healthcheck::run(&url))
        }
    }
}

fn main() -> ExitCode {
    // Usage errors are invalid input: exit 1 (SPEC §1), not clap's default 2.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::from(1),
            };
        }
    };
    if let Err(f) = init_logging(cli.log_format, cli.log_level.as_deref()) {
        eprintln!("printbell: {}", f.message);
        return ExitCode::from(f.code);
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            let _ = std::io::stdout().flush();
            eprintln!("printbell: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}
