//! The dashboard under `/app` in a real browser, once per store: headless
//! Chromium, driven by `e2e/dashboard.mjs` through playwright-core, signs in
//! with a key (after a wrong one), creates a customer (after a refused
//! email), finds it on the list's second page and by search, edits it, has
//! an edit without its CSRF token refused, deletes it, imports a file that
//! is refused whole and then the corrected one, downloads both exports,
//! switches to Finnish and back, and signs out, after which the old session cookie opens
//! nothing. Along the way it checks that no page holds the API key, that
//! the pages fit a phone's screen and that keyboard focus is visible, and
//! leaves screenshots in `target/e2e-screenshots/<store>/`.
//!
//! Node.js and Chromium come from the machine, not from this crate; the one
//! npm package is installed from `e2e/package-lock.json` when it is missing.
//! Where any of them cannot be had the test says so and passes, unless
//! `REKISTERI_REQUIRE_BROWSER=1`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncReadExt as _;
use tokio::process::Command;
use tokio::sync::OnceCell;

use crate::support::{Backend, TestApp, named};

const REQUIRE_VARIABLE: &str = "REKISTERI_REQUIRE_BROWSER";
const CHROMIUM_VARIABLE: &str = "REKISTERI_CHROMIUM";
/// The script's own deadline is shorter, so that it normally ends by itself
/// and closes its browser; this one catches a script that cannot.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);
/// More than one page of the list (50), so that paging is exercised.
const SEEDED: usize = 60;

mod sqlite {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dashboard_in_a_browser() {
        super::dashboard_in_a_browser(super::Backend::Sqlite).await;
    }
}

mod postgres {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dashboard_in_a_browser() {
        super::dashboard_in_a_browser(super::Backend::Postgres).await;
    }
}

async fn dashboard_in_a_browser(backend: Backend) {
    let test = "dashboard_in_a_browser";
    let store = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    // The tools come first: without them there is no point in a database.
    let tools = match BrowserTools::find().await {
        Ok(tools) => tools,
        Err(missing) => {
            skip_or_fail(&format!("{store}::{test}"), &missing);
            return;
        }
    };
    let Some(app) = TestApp::start(backend).await else {
        crate::support::postgres::skipped(test);
        return;
    };
    // "Aalto" sorts before "Virtanen", so the customer the script creates
    // lands on the second page.
    for n in 1..=SEEDED {
        app.create(&named(
            "Aalto",
            &format!("Asiakas{n:02}"),
            &format!("aalto{n}@example.com"),
        ))
        .await;
    }

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let shots = root.join("target/e2e-screenshots").join(store);
    // Pictures left by an earlier run would pass for this run's.
    let _ = std::fs::remove_dir_all(&shots);
    let outcome = run_script(&tools, root, &app, &shots).await;
    match outcome {
        Ok(output) => println!("{output}"),
        Err(output) => panic!("the browser test failed on {store}:\n{output}"),
    }
}

/// Runs the script to its end and returns what it printed, as `Err` when it
/// failed or ran out of time.
async fn run_script(
    tools: &BrowserTools,
    root: &Path,
    app: &TestApp,
    shots: &Path,
) -> Result<String, String> {
    let mut command = Command::new(&tools.node);
    command
        .arg("e2e/dashboard.mjs")
        .current_dir(root)
        .env("BASE_URL", &app.base)
        .env("API_KEY", &app.key)
        .env("SHOTS_DIR", shots)
        .env("CHROMIUM", &tools.chromium)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A group of its own, so that a timeout can end Chromium's processes
        // too and not only node.
        .process_group(0)
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", tools.node.display()))?;
    let stdout = Captured::start(child.stdout.take());
    let stderr = Captured::start(child.stderr.take());
    let status = tokio::time::timeout(SCRIPT_TIMEOUT, child.wait()).await;
    let ended = match status {
        Ok(Ok(status)) => Ok(status),
        Ok(Err(e)) => Err(format!("waiting for node failed: {e}")),
        Err(_) => {
            if let Some(pid) = child.id() {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", &format!("-{pid}")])
                    .status();
            }
            let _ = child.kill().await;
            Err(format!(
                "the script did not end within {} s",
                SCRIPT_TIMEOUT.as_secs()
            ))
        }
    };
    let printed = format!(
        "--- stdout\n{}\n--- stderr\n{}",
        stdout.finish().await,
        stderr.finish().await
    );
    match ended {
        Ok(status) if status.success() => Ok(printed),
        Ok(status) => Err(format!("node exited with {status}\n{printed}")),
        Err(why) => Err(format!("{why}\n{printed}")),
    }
}

/// A child's pipe, read to its end in a task of its own, so that a full
/// pipe never stalls the child while it is waited for.
struct Captured {
    bytes: Arc<Mutex<Vec<u8>>>,
    reader: tokio::task::JoinHandle<()>,
}

impl Captured {
    fn start<R>(pipe: Option<R>) -> Captured
    where
        R: tokio::io::AsyncRead + Unpin + Send + 'static,
    {
        let bytes = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&bytes);
        let reader = tokio::spawn(async move {
            let Some(mut pipe) = pipe else { return };
            let mut chunk = [0u8; 8192];
            while let Ok(n @ 1..) = pipe.read(&mut chunk).await {
                sink.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        });
        Captured { bytes, reader }
    }

    /// What was read, once the pipe closed or, should a process the child
    /// left behind hold it open, a few seconds after the child ended.
    async fn finish(self) -> String {
        let _ = tokio::time::timeout(Duration::from_secs(5), self.reader).await;
        String::from_utf8_lossy(&self.bytes.lock().unwrap()).into_owned()
    }
}

/// What the script needs from the machine.
struct BrowserTools {
    node: PathBuf,
    chromium: PathBuf,
}

impl BrowserTools {
    /// The tools, with playwright-core installed, or what is missing.
    async fn find() -> Result<BrowserTools, String> {
        let mut missing = Vec::new();
        let node = on_path("node");
        if node.is_none() {
            missing.push("Node.js (node) is not on PATH: install Node.js 20 or later".to_owned());
        }
        let chromium = chromium();
        if let Err(why) = &chromium {
            missing.push(why.clone());
        }
        if let (Some(node), Ok(chromium)) = (node, chromium) {
            install_playwright().await?;
            return Ok(BrowserTools { node, chromium });
        }
        Err(missing.join("; "))
    }
}

/// Chromium as `REKISTERI_CHROMIUM` names it, or Debian's, or the first on
/// PATH.
fn chromium() -> Result<PathBuf, String> {
    if let Some(named) = std::env::var_os(CHROMIUM_VARIABLE).filter(|v| !v.is_empty()) {
        let named = PathBuf::from(named);
        return if is_executable(&named) {
            Ok(named)
        } else {
            Err(format!(
                "{CHROMIUM_VARIABLE}={} is not an executable file",
                named.display()
            ))
        };
    }
    let debian = PathBuf::from("/usr/bin/chromium");
    if is_executable(&debian) {
        return Ok(debian);
    }
    on_path("chromium").ok_or_else(|| {
        format!(
            "Chromium is not installed: apt-get install chromium, or set {CHROMIUM_VARIABLE} \
             to a Chromium or Chrome binary"
        )
    })
}

/// Installs the script's one package from `e2e/package-lock.json`, once per
/// test process, when it is not there yet.
async fn install_playwright() -> Result<(), String> {
    // Both store tests may get here at once; two `npm ci` in one folder
    // would remove each other's files.
    static INSTALLED: OnceCell<Result<(), String>> = OnceCell::const_new();
    INSTALLED
        .get_or_init(|| async {
            let root = Path::new(env!("CARGO_MANIFEST_DIR"));
            if root
                .join("e2e/node_modules/playwright-core/package.json")
                .is_file()
            {
                return Ok(());
            }
            let npm = on_path("npm").ok_or(
                "npm is not on PATH, and e2e/node_modules lacks playwright-core: install \
                 Node.js with npm, or run `npm ci --prefix e2e` where npm is",
            )?;
            let output = Command::new(npm)
                .args(["ci", "--prefix", "e2e", "--no-audit", "--no-fund"])
                .current_dir(root)
                .stdin(Stdio::null())
                .kill_on_drop(true)
                .output();
            match tokio::time::timeout(SCRIPT_TIMEOUT, output).await {
                Ok(Ok(output)) if output.status.success() => Ok(()),
                Ok(Ok(output)) => Err(format!(
                    "`npm ci --prefix e2e` failed ({}): {}{}",
                    output.status,
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                )),
                Ok(Err(e)) => Err(format!("cannot run npm: {e}")),
                Err(_) => Err(format!(
                    "`npm ci --prefix e2e` did not end within {} s",
                    SCRIPT_TIMEOUT.as_secs()
                )),
            }
        })
        .await
        .clone()
}

fn on_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Fails when a browser is required; otherwise says plainly that the test
/// did not run.
fn skip_or_fail(test: &str, missing: &str) {
    use std::io::Write as _;
    if std::env::var(REQUIRE_VARIABLE).is_ok_and(|v| v == "1") {
        panic!(
            "{REQUIRE_VARIABLE}=1 but the browser test cannot run: {missing}. \
             Install Chromium (apt-get install chromium) and Node.js with npm."
        );
    }
    // Straight to the process's standard error: the test harness captures
    // `eprintln!` of a passing test, and a skip must be seen.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED browser::{test}: {missing} (set {REQUIRE_VARIABLE}=1 to make this a failure)"
    );
}
