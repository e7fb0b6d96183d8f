//! PostgreSQL for the tests: each test gets a database of its own, on the
//! first server that can be had of
//!
//! 1. the one `REKISTERI_TEST_POSTGRES_URL` names (a URL of an admin
//!    database, such as `postgres://postgres@127.0.0.1:5432/postgres`);
//! 2. a throwaway cluster, one per test process, started from PostgreSQL's
//!    server binaries when they are installed;
//!
//! and otherwise the PostgreSQL tests report themselves skipped, or fail
//! when `REKISTERI_REQUIRE_POSTGRES=1`.

use std::os::unix::fs::chown;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio_postgres::NoTls;

const URL_VARIABLE: &str = "REKISTERI_TEST_POSTGRES_URL";
const REQUIRE_VARIABLE: &str = "REKISTERI_REQUIRE_POSTGRES";

/// A database of one test's own, removed when dropped.
pub struct TestDatabase {
    pub url: String,
    name: String,
    admin_url: String,
}

impl TestDatabase {
    /// A new, empty database, or `None` when no PostgreSQL can be had.
    pub async fn create() -> Option<TestDatabase> {
        let Some(admin_url) = shared_server().await else {
            require_or_skip("no PostgreSQL server can be had");
            return None;
        };
        Some(TestDatabase::create_on(&admin_url).await)
    }

    /// A new, empty database on the server of `admin_url`.
    pub async fn create_on(admin_url: &str) -> TestDatabase {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "rekisteri_test_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let admin = connect(admin_url).await.unwrap_or_else(|e| {
            panic!("cannot connect to the test PostgreSQL at {admin_url}: {e}")
        });
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("cannot create the test database {name}: {e:?}"));
        TestDatabase {
            url: with_database(admin_url, &name),
            name,
            admin_url: admin_url.to_owned(),
        }
    }
}

impl Drop for TestDatabase {
    /// Drops the database even when the test panicked. The server under test
    /// may still hold connections to it, hence FORCE. This runs inside the
    /// test's runtime, which cannot be blocked on, so the work gets a thread
    /// and a runtime of its own.
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let outcome = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let admin = connect(&admin_url).await.map_err(|e| e.to_string())?;
                admin
                    .batch_execute(&sql)
                    .await
                    .map_err(|e| format!("{e:?}"))
            })
        })
        .join();
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not drop the test database {}: {e}", self.name),
            Err(_) => eprintln!("dropping the test database {} panicked", self.name),
        }
    }
}

/// Says plainly that a PostgreSQL test did not run.
pub fn skipped(test: &str) {
    use std::io::Write as _;
    // Straight to the process's standard error: the test harness captures
    // `eprintln!` of a passing test, and a skip must be seen.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED postgres::{test}: no PostgreSQL (set {URL_VARIABLE} or install PostgreSQL)"
    );
}

/// Panics when PostgreSQL is required; otherwise the caller skips.
fn require_or_skip(why: &str) {
    if std::env::var(REQUIRE_VARIABLE).is_ok_and(|v| v == "1") {
        panic!(
            "{REQUIRE_VARIABLE}=1 but {why}: set {URL_VARIABLE} to the URL of an admin database \
             (postgres://postgres@127.0.0.1:5432/postgres) or install PostgreSQL's server \
             binaries (/usr/lib/postgresql/*/bin)"
        );
    }
}

/// The admin URL of the server this process's tests share.
async fn shared_server() -> Option<String> {
    if let Some(url) = std::env::var(URL_VARIABLE).ok().filter(|u| !u.is_empty()) {
        return Some(url);
    }
    // The cluster outlives every test's runtime, so it holds nothing bound
    // to one: only processes and files. It is never dropped; its watchdog
    // stops it when this process ends.
    static SHARED: OnceLock<Result<Option<ThrowawayCluster>, String>> = OnceLock::new();
    let cluster = tokio::task::spawn_blocking(|| SHARED.get_or_init(ThrowawayCluster::launch))
        .await
        .expect("starting the throwaway cluster panicked");
    match cluster {
        Ok(cluster) => cluster.as_ref().map(|c| c.url("postgres")),
        Err(e) => panic!("{e}"),
    }
}

async fn connect(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// `url` with its database replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let server = match base[authority_start..].find('/') {
        Some(i) => &base[..authority_start + i],
        None => base,
    };
    match query {
        Some(query) => format!("{server}/{database}?{query}"),
        None => format!("{server}/{database}"),
    }
}

/// A PostgreSQL cluster of its own in a temporary directory, on a free port
/// of 127.0.0.1, trusting every local connection. A watchdog process stops
/// it and removes its files when the test process ends in any way, so that
/// even a killed test run leaves nothing behind.
pub struct ThrowawayCluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    /// The unprivileged user to run as: PostgreSQL refuses to run as root.
    run_as: Option<(u32, u32)>,
    watchdog: Option<Child>,
}

impl ThrowawayCluster {
    /// Starts a cluster, or `None` when PostgreSQL's server binaries are not
    /// installed.
    pub fn start() -> Option<ThrowawayCluster> {
        match ThrowawayCluster::launch() {
            Ok(Some(cluster)) => Some(cluster),
            Ok(None) => {
                require_or_skip("PostgreSQL's server binaries are not installed");
                None
            }
            Err(e) => panic!("{e}"),
        }
    }

    /// The URL of database `database` on this cluster.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Stops the server as an operator would (fast shutdown: sessions are
    /// cut, committed data stays).
    pub fn stop(&self) {
        self.pg_ctl(&["stop", "-w", "-m", "fast"])
            .expect("the throwaway cluster stops");
    }

    /// Starts the server again on the same port and data.
    pub fn start_again(&self) {
        self.pg_ctl(&self.start_arguments())
            .expect("the throwaway cluster starts again");
    }

    /// Freezes the server and every session of it (SIGSTOP), as a host that
    /// stopped answering without closing its connections would look.
    pub fn freeze(&self) {
        self.signal_all("STOP");
    }

    /// Lets a frozen server run again.
    pub fn thaw(&self) {
        self.signal_all("CONT");
    }

    fn signal_all(&self, signal: &str) {
        let pids = self.server_processes();
        assert!(!pids.is_empty(), "the throwaway cluster is not running");
        assert!(send_signal(signal, &pids), "kill -{signal} {pids:?}");
    }

    /// The postmaster of this cluster and its children, by their ids.
    fn server_processes(&self) -> Vec<u32> {
        let Some(postmaster) = std::fs::read_to_string(self.dir.join("data/postmaster.pid"))
            .ok()
            .and_then(|s| s.lines().next()?.trim().parse::<u32>().ok())
        else {
            return Vec::new();
        };
        let mut pids = vec![postmaster];
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            // The parent is the fourth field, after a name in parentheses.
            let parent = std::fs::read_to_string(entry.path().join("stat"))
                .ok()
                .and_then(|stat| {
                    let after_name = &stat[stat.rfind(')')? + 1..];
                    after_name.split_whitespace().nth(1)?.parse::<u32>().ok()
                });
            if parent == Some(postmaster) {
                pids.push(pid);
            }
        }
        pids
    }

    fn launch() -> Result<Option<ThrowawayCluster>, String> {
        let Some(bin) = server_binaries() else {
            return Ok(None);
        };
        let run_as = if running_as_root() {
            Some(
                unprivileged_user()
                    .ok_or("no unprivileged user (postgres or nobody) to run PostgreSQL as")?,
            )
        } else {
            None
        };
        let dir = tempfile::Builder::new()
            .prefix("rekisteri-pg-")
            .tempdir()
            .map_err(|e| format!("no temporary directory for PostgreSQL: {e}"))?
            .keep();
        if let Some((uid, gid)) = run_as {
            chown(&dir, Some(uid), Some(gid))
                .map_err(|e| format!("cannot hand {} to PostgreSQL's user: {e}", dir.display()))?;
        }
        let mut cluster = ThrowawayCluster {
            bin,
            dir,
            port: 0,
            run_as,
            watchdog: None,
        };
        // The watchdog comes first, so that it removes the directory even if
        // a later step fails.
        cluster.watchdog = Some(cluster.spawn_watchdog()?);

        let data = cluster.dir.join("data");
        let mut initdb = cluster.command("initdb");
        initdb.arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
        ]);
        run(initdb, "initdb")?;

        // A port found free may be taken before the server binds it; then
        // another try with another port.
        let mut last_error = String::new();
        for _ in 0..5 {
            cluster.port = free_port()?;
            match cluster.pg_ctl(&cluster.start_arguments()) {
                Ok(()) => return Ok(Some(cluster)),
                Err(e) => last_error = e,
            }
        }
        Err(last_error)
    }

    fn start_arguments(&self) -> Vec<String> {
        // fsync is off because the cluster is thrown away with its files; the
        // store asks for nothing weaker than the server's defaults, so a real
        // server keeps its durable commits.
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c max_connections=300 -c fsync=off \
             -c full_page_writes=off",
            self.port,
            self.dir.display()
        );
        vec![
            "start".into(),
            "-w".into(),
            "-t".into(),
            "60".into(),
            "-l".into(),
            self.dir.join("server.log").display().to_string(),
            "-o".into(),
            options,
        ]
    }

    fn pg_ctl(&self, arguments: &[impl AsRef<std::ffi::OsStr>]) -> Result<(), String> {
        let mut pg_ctl = self.command("pg_ctl");
        pg_ctl.arg("-D").arg(self.dir.join("data")).args(arguments);
        run(pg_ctl, "pg_ctl").map_err(|e| {
            let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            format!("{e}\nthe server's log ends:\n{}", tail.join("\n"))
        })
    }

    /// A command of PostgreSQL's, run as its user, in the cluster's directory
    /// (the test's own may be closed to that user).
    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin.join(program));
        command.current_dir(&self.dir).stdin(Stdio::null());
        if let Some((uid, gid)) = self.run_as {
            command.uid(uid).gid(gid);
        }
        command
    }

    /// A shell that waits for this process to end, then stops the server at
    /// once and removes its files. It runs in a process group of its own, so
    /// that a Ctrl-C meant for the tests does not end it first, and holds
    /// none of the test's output open, so that whoever reads that output is
    /// not kept waiting.
    fn spawn_watchdog(&self) -> Result<Child, String> {
        let script = r#"
            while kill -0 "$1" 2>/dev/null; do sleep 1; done
            pid=$(head -n 1 "$2/data/postmaster.pid" 2>/dev/null)
            if [ -n "$pid" ]; then
                kill -QUIT "$pid" 2>/dev/null
                for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
                kill -KILL "$pid" 2>/dev/null
            fi
            rm -rf "$2"
        "#;
        Command::new("sh")
            .args(["-c", script, "watchdog"])
            .arg(std::process::id().to_string())
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot start the throwaway cluster's watchdog: {e}"))
    }
}

impl Drop for ThrowawayCluster {
    fn drop(&mut self) {
        if self.port != 0 {
            // A test that failed while the server was frozen must not leave
            // it frozen, where no stop signal would reach it.
            send_signal("CONT", &self.server_processes());
            let _ = self.pg_ctl(&["stop", "-w", "-m", "immediate"]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
    }
}

/// The bin directory of the newest installed PostgreSQL.
fn server_binaries() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}

/// The uid and gid of `postgres`, or else of `nobody`.
fn unprivileged_user() -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let find = |name: &str| {
        passwd.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.len() > 3 && fields[0] == name)
                .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
                .flatten()
        })
    };
    find("postgres").or_else(|| find("nobody"))
}

fn send_signal(signal: &str, pids: &[u32]) -> bool {
    !pids.is_empty()
        && Command::new("kill")
            .arg(format!("-{signal}"))
            .args(pids.iter().map(u32::to_string))
            .status()
            .is_ok_and(|s| s.success())
}

fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| format!("no free port for PostgreSQL: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

fn run(mut command: Command, what: &str) -> Result<(), String> {
    let output = command
        .output()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "{what} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}

#[test]
fn a_database_replaces_the_one_in_the_url() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/postgres", "t1"),
        "postgres://postgres@127.0.0.1:5432/t1"
    );
    assert_eq!(
        with_database("postgresql://u:p@h:1/postgres?sslmode=disable", "t1"),
        "postgresql://u:p@h:1/t1?sslmode=disable"
    );
    assert_eq!(with_database("postgres://h", "t1"), "postgres://h/t1");
}
