//! Start-up and shutdown: opening the store, the first-start key, serving on
//! a listener, stopping gracefully.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use jiff::tz::TimeZone;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::domain::api_key::ApiKey;
use crate::domain::time::now_millis;
use crate::http::{AppState, Settings, router};
use crate::store::{NewKey, Store};

/// The account that a first start creates.
pub const DEFAULT_ACCOUNT: &str = "default";

/// Reads a display zone by its IANA name, from the data built into the
/// binary.
pub fn time_zone(name: &str) -> anyhow::Result<TimeZone> {
    TimeZone::get(name).with_context(|| {
        format!("unknown time zone {name:?} (an IANA name such as Europe/Helsinki)")
    })
}

/// A fresh key, ready to be stored.
pub fn new_key(label: Option<String>) -> anyhow::Result<(ApiKey, NewKey)> {
    let key = ApiKey::generate().context("failed to read the operating system's random source")?;
    let stored = NewKey {
        prefix: key.prefix().to_owned(),
        digest: key.digest(),
        label,
    };
    Ok((key, stored))
}

/// On a database without accounts, creates the default account and returns
/// its first key, so that a new user can call the API at once.
pub async fn bootstrap(store: &dyn Store) -> anyhow::Result<Option<ApiKey>> {
    let (key, stored) = new_key(Some("created at first start".into()))?;
    let created = store
        .bootstrap(DEFAULT_ACCOUNT, stored, now_millis())
        .await
        .context("failed to create the default account")?;
    Ok(created.then_some(key))
}

/// Serves the API on `listener` until `shutdown` completes, then finishes
/// the requests in flight.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let purge = tokio::spawn(purge_expired(
        Arc::clone(&state.store),
        state.settings.idempotency_ttl,
        state.settings.session_idle,
        state.settings.session_lifetime,
    ));
    let served = axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await;
    purge.abort();
    served
}

/// Removes expired idempotency records and dashboard sessions once a
/// minute, in small batches, beside the requests rather than in their way.
/// Lookups already ignore what has expired; this only reclaims its space.
async fn purge_expired(
    store: Arc<dyn Store>,
    ttl: std::time::Duration,
    idle: std::time::Duration,
    lifetime: std::time::Duration,
) {
    let millis = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    let mut every_minute = tokio::time::interval(std::time::Duration::from_secs(60));
    loop {
        every_minute.tick().await;
        let now = now_millis();
        let before = now.saturating_sub(millis(ttl));
        loop {
            match store.purge_idempotency(before).await {
                Ok(n) if n >= 1000 => tokio::task::yield_now().await,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "could not purge expired idempotency records");
                    break;
                }
            }
        }
        let cutoffs = crate::store::SessionCutoffs::at(now, idle, lifetime);
        loop {
            match store.purge_sessions(cutoffs).await {
                Ok(n) if n >= 1000 => tokio::task::yield_now().await,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "could not purge expired dashboard sessions");
                    break;
                }
            }
        }
    }
}

/// A server running in the background, as the tests use it.
pub struct RunningServer {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl RunningServer {
    /// Starts serving on `listener` in a task of the current runtime, with
    /// the default limits.
    pub fn spawn(
        listener: TcpListener,
        store: Arc<dyn Store>,
        zone: TimeZone,
    ) -> anyhow::Result<RunningServer> {
        Self::spawn_with(listener, AppState::new(store, zone, Settings::default()))
    }

    /// Starts serving with the given state and limits.
    pub fn spawn_with(listener: TcpListener, state: AppState) -> anyhow::Result<RunningServer> {
        let addr = listener
            .local_addr()
            .context("the listener has no address")?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, state, async move {
            let _ = stopped.await;
        }));
        Ok(RunningServer {
            addr,
            stop: Some(stop),
            task,
        })
    }

    /// Stops accepting, waits for requests in flight, and releases the store.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task)
            .await
            .context("the server task panicked")??;
        Ok(())
    }
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}
