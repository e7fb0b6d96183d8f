//! The command line: parsing, and calling the app or the store. No business
//! rules live here.

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};
use jiff::Timestamp;
use tokio::net::TcpListener;

use crate::app;
use crate::bulk::{self, Format, ImportOptions};
use crate::domain::api_key::ApiKey;
use crate::domain::time::now_millis;
use crate::http::{AppState, RateLimit, Settings};
use crate::store::{self, AccountId, Store};

/// Rekisteri: a Paylink-compatible customer registry API server.
#[derive(Debug, Parser)]
#[command(name = "rekisteri", version)]
pub struct Cli {
    /// Database URL: sqlite://PATH (embedded, one machine) or postgres://…
    #[arg(
        long,
        global = true,
        env = "REKISTERI_DATABASE_URL",
        default_value = "sqlite://rekisteri.db"
    )]
    pub database: String,

    /// PostgreSQL: the most connections this process opens.
    #[arg(long, global = true, env = "REKISTERI_POOL_SIZE", default_value_t = 16)]
    pub pool_size: usize,

    /// PostgreSQL: seconds a request waits for a free connection, and for a
    /// new one to open, before it answers 503.
    #[arg(
        long,
        global = true,
        env = "REKISTERI_POOL_TIMEOUT_SECS",
        default_value_t = 2.0
    )]
    pub pool_timeout_secs: f64,

    /// PostgreSQL: seconds one request's database work may take in all
    /// before it answers 503.
    #[arg(
        long,
        global = true,
        env = "REKISTERI_DATABASE_TIMEOUT_SECS",
        default_value_t = 5.0
    )]
    pub database_timeout_secs: f64,

    /// Log format on standard error: text or json (one object a line).
    #[arg(
        long,
        global = true,
        env = "REKISTERI_LOG_FORMAT",
        default_value = "text"
    )]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API.
    Serve(ServeArgs),
    /// Manage merchant accounts.
    #[command(subcommand)]
    Accounts(AccountsCommand),
    /// Manage API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Print the OpenAPI document on standard output.
    Openapi,
    /// Import and export an account's customers in bulk.
    #[command(subcommand)]
    Customers(CustomersCommand),
}

#[derive(Debug, Subcommand)]
pub enum CustomersCommand {
    /// Import customers from a CSV or JSON Lines file, in one transaction:
    /// by default every row or, if any is invalid, none.
    Import {
        #[arg(long)]
        account: String,
        /// The file: CSV with a header row of field names (`address.city`),
        /// or JSON Lines with one customer object a line.
        file: PathBuf,
        /// The file's format; by default its extension's.
        #[arg(long)]
        format: Option<Format>,
        /// Import the valid rows and reject the invalid ones.
        #[arg(long)]
        skip_invalid: bool,
        /// Write the rejected rows, with their line numbers and reasons,
        /// to this file, in the input's format.
        #[arg(long, requires = "skip_invalid")]
        rejects: Option<PathBuf>,
    },
    /// Export an account's customers in list order, as the API shows them.
    Export {
        #[arg(long)]
        account: String,
        /// Where to write; standard output when absent or `-`.
        file: Option<PathBuf>,
        /// The format; by default the file's extension's, else JSON Lines.
        #[arg(long)]
        format: Option<Format>,
        /// IANA time zone in which timestamps are shown.
        #[arg(long, env = "REKISTERI_TIMEZONE", default_value = "Europe/Helsinki")]
        timezone: String,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "REKISTERI_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,

    /// IANA time zone in which timestamps are shown.
    #[arg(long, env = "REKISTERI_TIMEZONE", default_value = "Europe/Helsinki")]
    pub timezone: String,

    /// Serve /metrics on this address instead of beside the API.
    #[arg(long, env = "REKISTERI_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,

    /// The largest request body, in bytes.
    #[arg(long, env = "REKISTERI_MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    pub max_body_bytes: usize,

    /// The largest total of request headers, in bytes.
    #[arg(long, env = "REKISTERI_MAX_HEADER_BYTES", default_value_t = 16 * 1024)]
    pub max_header_bytes: usize,

    /// Seconds a request may take before it is answered 503.
    #[arg(long, env = "REKISTERI_REQUEST_TIMEOUT_SECS", default_value_t = 30.0)]
    pub request_timeout_secs: f64,

    /// Requests answered at once; more are refused with 503 and Retry-After.
    #[arg(long, env = "REKISTERI_MAX_IN_FLIGHT", default_value_t = 1024)]
    pub max_in_flight: usize,

    /// Requests one key may make at once (its token bucket); 0 turns rate
    /// limiting off.
    #[arg(long, env = "REKISTERI_RATE_LIMIT_BURST", default_value_t = 5000)]
    pub rate_limit_burst: u32,

    /// Requests per second a key's bucket refills with.
    #[arg(long, env = "REKISTERI_RATE_LIMIT_PER_SECOND", default_value_t = 500.0)]
    pub rate_limit_per_second: f64,

    /// Seconds the answer of a request with an Idempotency-Key is kept.
    #[arg(
        long,
        env = "REKISTERI_IDEMPOTENCY_TTL_SECS",
        default_value_t = 86_400.0
    )]
    pub idempotency_ttl_secs: f64,

    /// Minutes a dashboard session may go unused before it ends.
    #[arg(long, env = "REKISTERI_SESSION_IDLE_MINUTES", default_value_t = 30.0)]
    pub session_idle_minutes: f64,

    /// Hours after signing in that a dashboard session ends, however busy.
    #[arg(long, env = "REKISTERI_SESSION_LIFETIME_HOURS", default_value_t = 12.0)]
    pub session_lifetime_hours: f64,

    /// Believe `X-Forwarded-Proto: https` from a TLS-terminating proxy in
    /// front, and mark the dashboard's cookies `Secure`. Only set this when
    /// every request comes through such a proxy.
    #[arg(long, env = "REKISTERI_TRUST_FORWARDED_PROTO")]
    pub trust_forwarded_proto: bool,

    /// The largest file the dashboard's import accepts, in bytes.
    #[arg(long, env = "REKISTERI_MAX_UPLOAD_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_upload_bytes: usize,

    /// Seconds that requests in flight at shutdown get to finish.
    #[arg(long, env = "REKISTERI_SHUTDOWN_GRACE_SECS", default_value_t = 20.0)]
    pub shutdown_grace_secs: f64,
}

/// A positive number of seconds from a flag.
fn seconds(name: &str, value: f64) -> anyhow::Result<Duration> {
    positive(name, value, 1.0, "seconds")
}

/// A positive number of `unit`s, each `unit_secs` long, from a flag.
fn positive(name: &str, value: f64, unit_secs: f64, unit: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value * unit_secs)
        .ok()
        .filter(|d| !d.is_zero())
        .with_context(|| format!("{name} must be a positive number of {unit}"))
}

impl Cli {
    fn store_options(&self) -> anyhow::Result<store::OpenOptions> {
        let pool_timeout = seconds("--pool-timeout-secs", self.pool_timeout_secs)?;
        let postgres = store::postgres::Options {
            max_connections: self.pool_size.max(1),
            connect_timeout: pool_timeout,
            wait_timeout: pool_timeout,
            operation_timeout: seconds("--database-timeout-secs", self.database_timeout_secs)?,
            ..store::postgres::Options::default()
        };
        Ok(store::OpenOptions {
            postgres,
            ..store::OpenOptions::default()
        })
    }
}

impl ServeArgs {
    fn settings(&self) -> anyhow::Result<Settings> {
        let rate_limit = (self.rate_limit_burst > 0).then_some(RateLimit {
            burst: self.rate_limit_burst,
            per_second: self.rate_limit_per_second,
        });
        if rate_limit.is_some()
            && (self.rate_limit_per_second.is_nan() || self.rate_limit_per_second <= 0.0)
        {
            bail!("--rate-limit-per-second must be positive (or the burst 0 to turn limits off)");
        }
        Ok(Settings {
            max_body_bytes: self.max_body_bytes,
            max_header_bytes: self.max_header_bytes,
            request_timeout: seconds("--request-timeout-secs", self.request_timeout_secs)?,
            max_in_flight: self.max_in_flight.max(1),
            rate_limit,
            metrics_on_api: self.metrics_listen.is_none(),
            idempotency_ttl: seconds("--idempotency-ttl-secs", self.idempotency_ttl_secs)?,
            session_idle: positive(
                "--session-idle-minutes",
                self.session_idle_minutes,
                60.0,
                "minutes",
            )?,
            session_lifetime: positive(
                "--session-lifetime-hours",
                self.session_lifetime_hours,
                3600.0,
                "hours",
            )?,
            trust_forwarded_proto: self.trust_forwarded_proto,
            max_upload_bytes: self.max_upload_bytes,
        })
    }
}

#[derive(Debug, Subcommand)]
pub enum AccountsCommand {
    /// Create a merchant account.
    Create {
        /// The account's name, used by the other commands.
        name: String,
    },
    /// List accounts.
    List,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create an API key and print it, alone, on standard output.
    Create {
        /// The account the key acts for.
        #[arg(long)]
        account: String,
        /// A note saying what the key is for.
        #[arg(long)]
        label: Option<String>,
    },
    /// List an account's keys; never their secrets.
    List {
        #[arg(long)]
        account: String,
    },
    /// Revoke a key at once.
    Revoke {
        /// The key's id from `keys list`, its eight-digit prefix when no
        /// other key shares it, or the whole key.
        key_id: String,
    },
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    // The document needs no database; opening one would create its file.
    if let Command::Openapi = cli.command {
        let mut out = std::io::stdout().lock();
        out.write_all(crate::http::openapi::document_string().as_bytes())?;
        out.flush()?;
        return Ok(());
    }
    let store = store::open_with(&cli.database, &cli.store_options()?)
        .await
        .with_context(|| format!("failed to open the database {}", redact(&cli.database)))?;
    match cli.command {
        Command::Serve(args) => serve(store, args, &cli.database).await,
        Command::Accounts(AccountsCommand::Create { name }) => {
            let name = name.trim();
            if name.is_empty() {
                bail!("an account needs a name");
            }
            let account = store.create_account(name, now_millis()).await?;
            println!("created account {} (id {})", account.name, account.id.0);
            Ok(())
        }
        Command::Accounts(AccountsCommand::List) => {
            let mut out = std::io::stdout().lock();
            writeln!(out, "ID\tNAME\tCREATED")?;
            for a in store.list_accounts().await? {
                writeln!(out, "{}\t{}\t{}", a.id.0, a.name, instant(a.created_at))?;
            }
            Ok(())
        }
        Command::Keys(KeysCommand::Create { account, label }) => {
            let account = account_named(&*store, &account).await?;
            let (key, stored) = app::new_key(label)?;
            store.create_key(account, stored, now_millis()).await?;
            println!("{}", key.expose());
            Ok(())
        }
        Command::Keys(KeysCommand::List { account }) => {
            let account = account_named(&*store, &account).await?;
            let mut out = std::io::stdout().lock();
            writeln!(out, "ID\tPREFIX\tLABEL\tCREATED\tLAST USED\tREVOKED")?;
            for k in store.list_keys(account).await? {
                writeln!(
                    out,
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    k.id,
                    k.prefix,
                    k.label.as_deref().unwrap_or("-"),
                    instant(k.created_at),
                    k.last_used_at.map_or("never".into(), instant),
                    k.revoked_at.map_or("-".into(), instant),
                )?;
            }
            Ok(())
        }
        Command::Openapi => unreachable!("answered before the store opens"),
        Command::Customers(command) => customers(store, command).await,
        Command::Keys(KeysCommand::Revoke { key_id }) => {
            let id = key_to_revoke(&*store, &key_id).await?;
            let revoked = store.revoke_key(id, now_millis()).await?.with_context(|| {
                format!("no key with the id {key_id:?}; see `rekisteri keys list`")
            })?;
            println!("revoked key {} ({})", revoked.id, revoked.prefix);
            Ok(())
        }
    }
}

async fn customers(store: Arc<dyn Store>, command: CustomersCommand) -> anyhow::Result<()> {
    let terminal = std::io::stderr().is_terminal();
    match command {
        CustomersCommand::Import {
            account,
            file,
            format,
            skip_invalid,
            rejects,
        } => {
            let format = format.or_else(|| Format::of_path(&file)).with_context(|| {
                format!(
                    "cannot tell the format of {} from its name: give --format csv or jsonl",
                    file.display()
                )
            })?;
            let account = account_named(&*store, &account).await?;
            let size = std::fs::metadata(&file).map(|m| m.len()).ok();
            let progress = bulk::progress_bar(size, terminal);
            let report = bulk::import(
                store,
                account,
                &file,
                format,
                ImportOptions { skip_invalid },
                progress,
            )
            .await?;
            let written = match &rejects {
                Some(path) if !report.rejected.is_empty() => {
                    let header = match format {
                        Format::Csv => Some(bulk::csv_header(&file)?),
                        Format::Jsonl => None,
                    };
                    bulk::write_rejects(path, format, header.as_deref(), &report.rejected)?;
                    true
                }
                _ => false,
            };
            if !written {
                for rejected in &report.rejected {
                    eprintln!("{rejected}");
                }
            }
            let seconds = report.elapsed.as_secs_f64();
            if !skip_invalid && !report.rejected.is_empty() {
                bail!(
                    "nothing imported: {} of {} rows are invalid",
                    report.rejected.len(),
                    report.rows
                );
            }
            let mut summary = format!("imported {} customers in {seconds:.1} s", report.imported);
            if !report.rejected.is_empty() {
                summary.push_str(&format!("; rejected {} rows", report.rejected.len()));
                if let Some(path) = rejects.filter(|_| written) {
                    summary.push_str(&format!(", listed in {}", path.display()));
                }
            }
            println!("{summary}");
            Ok(())
        }
        CustomersCommand::Export {
            account,
            file,
            format,
            timezone,
        } => {
            let zone = app::time_zone(&timezone)?;
            let account = account_named(&*store, &account).await?;
            let file = bulk::output_path(file);
            let format = format
                .or_else(|| file.as_deref().and_then(Format::of_path))
                .unwrap_or(Format::Jsonl);
            let out: Box<dyn std::io::Write + Send> = match &file {
                Some(path) => Box::new(
                    std::fs::File::create(path)
                        .with_context(|| format!("cannot create {}", path.display()))?,
                ),
                None => Box::new(std::io::stdout()),
            };
            let started = std::time::Instant::now();
            let progress = bulk::progress_bar(None, terminal);
            let count = bulk::export(store, account, out, format, zone, progress).await?;
            // The summary goes to standard error when the customers
            // themselves are on standard output.
            let summary = format!(
                "exported {count} customers in {:.1} s",
                started.elapsed().as_secs_f64()
            );
            match file {
                Some(_) => println!("{summary}"),
                None => eprintln!("{summary}"),
            }
            Ok(())
        }
    }
}

async fn serve(store: Arc<dyn Store>, args: ServeArgs, database: &str) -> anyhow::Result<()> {
    let zone = app::time_zone(&args.timezone)?;
    let settings = args.settings()?;
    let grace = Duration::try_from_secs_f64(args.shutdown_grace_secs)
        .context("--shutdown-grace-secs must be a number of seconds")?;
    if let Some(key) = app::bootstrap(&*store).await? {
        println!(
            "Created the account \"{}\" with this API key; it is shown only once:",
            app::DEFAULT_ACCOUNT
        );
        println!("{}", key.expose());
    }
    let listener = TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("failed to listen on {}", args.listen))?;
    let state = AppState::new(store, zone, settings);

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until_stopped = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|&s| s).await;
    };
    if let Some(address) = &args.metrics_listen {
        let metrics = TcpListener::bind(address)
            .await
            .with_context(|| format!("failed to listen for metrics on {address}"))?;
        tracing::info!(listen = %metrics.local_addr()?, "serving metrics");
        let router = crate::http::metrics_router(state.clone());
        let shutdown = until_stopped(stopped.clone());
        tokio::spawn(async move {
            let _ = axum::serve(metrics, router)
                .with_graceful_shutdown(shutdown)
                .await;
        });
    }
    tracing::info!(
        listen = %listener.local_addr()?,
        database = %redact(database),
        timezone = %args.timezone,
        "serving"
    );

    let mut server = tokio::spawn(app::serve(listener, state, until_stopped(stopped.clone())));
    tokio::select! {
        finished = &mut server => {
            return finished.context("the server task panicked")?.context("the server stopped with an error");
        }
        () = app::shutdown_signal() => {}
    }
    let _ = stop.send(true);
    match tokio::time::timeout(grace, &mut server).await {
        Ok(finished) => finished
            .context("the server task panicked")?
            .context("the server stopped with an error")?,
        Err(_) => {
            tracing::warn!(
                grace_secs = grace.as_secs_f64(),
                "requests still in flight after the grace period were abandoned"
            );
            server.abort();
        }
    }
    tracing::info!("stopped");
    Ok(())
}

async fn account_named(store: &dyn Store, name: &str) -> anyhow::Result<AccountId> {
    match store.find_account(name).await? {
        Some(account) => Ok(account.id),
        None => bail!("no account named {name:?}; see `rekisteri accounts list`"),
    }
}

/// The id of the key an operator named: by the whole key, by its
/// eight-digit prefix when no other key shares it, or by its id.
async fn key_to_revoke(store: &dyn Store, given: &str) -> anyhow::Result<i64> {
    if let Some(key) = ApiKey::parse(given) {
        let found = store.find_key(key.digest()).await?.context("no such key")?;
        return Ok(found.id);
    }
    let is_prefix = given.len() == 8 && given.bytes().all(|b| b.is_ascii_hexdigit());
    if !is_prefix {
        return given
            .parse::<i64>()
            .with_context(|| format!("{given:?} is neither a key id, a key prefix nor a key"));
    }
    let matches = store.find_keys_by_prefix(given).await?;
    match matches.as_slice() {
        [] => bail!("no key with the prefix {given:?}; see `rekisteri keys list`"),
        [key] => Ok(key.id),
        _ => bail!(
            "{} keys share the prefix {given:?}: revoke one by its id",
            matches.len()
        ),
    }
}

fn instant(millis: i64) -> String {
    Timestamp::from_millisecond(millis)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| millis.to_string())
}

/// A database URL without its password, for messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_database_flag_is_accepted_after_the_subcommand_arguments() {
        let cli = Cli::try_parse_from([
            "rekisteri",
            "keys",
            "create",
            "--account",
            "shop",
            "--database",
            "sqlite://x.db",
        ])
        .unwrap();
        assert_eq!(cli.database, "sqlite://x.db");
    }

    #[test]
    fn passwords_are_redacted_from_database_urls() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("sqlite://rekisteri.db"), "sqlite://rekisteri.db");
    }
}
