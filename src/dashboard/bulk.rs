//! Import and export from the dashboard: the same code as the command
//! line's `customers import` and `customers export`, fed from an upload and
//! streamed into a download.

use std::io::{self, Write};

use axum::body::{Body, Bytes};
use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, Query, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::sync::mpsc;

use super::customers::field_of_path;
use super::session::{check_form, refused, require};
use super::text::{Lang, problem};
use super::{Ctx, page, unavailable, views};
use crate::bulk::{self, Format, ImportOptions};
use crate::http::AppState;
use crate::store::StoreError;

/// Problems listed on the page after a refused import; the rest are
/// counted.
const PROBLEMS_SHOWN: usize = 100;

#[derive(Debug, Deserialize)]
pub struct ExportQuery {
    format: Option<String>,
}

pub async fn export(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Query(query): Query<ExportQuery>,
) -> Response {
    let live = match require(&state, &headers, &uri).await {
        Ok(live) => live,
        Err(answer) => return answer,
    };
    let (format, content_type, extension) = match query.format.as_deref() {
        Some("jsonl") => (Format::Jsonl, "application/x-ndjson", "jsonl"),
        _ => (Format::Csv, "text/csv; charset=utf-8", "csv"),
    };
    let (chunks, received) = mpsc::channel::<io::Result<Bytes>>(4);
    let out = Box::new(ChannelWriter(chunks.clone()));
    let store = state.store.clone();
    let zone = state.zone.clone();
    let account = live.account;
    tokio::spawn(async move {
        let hidden = indicatif::ProgressBar::hidden();
        if let Err(e) = bulk::export(store, account, out, format, zone, hidden).await {
            tracing::warn!(error = %e, "a dashboard export failed part way");
            // An error in the body aborts the download, so that a cut-off
            // file is not taken for a whole one.
            let _ = chunks.send(Err(io::Error::other(e.to_string()))).await;
        }
    });
    let body = Body::from_stream(futures_util::stream::unfold(
        received,
        |mut received| async move { received.recv().await.map(|chunk| (chunk, received)) },
    ));
    let today = jiff::Timestamp::now()
        .to_zoned_datetime(state.zone.clone())
        .strftime("%Y-%m-%d")
        .to_string();
    let disposition = format!("attachment; filename=\"customers-{today}.{extension}\"");
    (
        [
            (CONTENT_TYPE, content_type.to_owned()),
            (CONTENT_DISPOSITION, disposition),
            (CACHE_CONTROL, "no-store".to_owned()),
        ],
        body,
    )
        .into_response()
}

/// Hands what the exporter writes to the response body, a buffer at a
/// time; fails once the browser has gone, which stops the export.
struct ChannelWriter(mpsc::Sender<io::Result<Bytes>>);

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the download was abandoned"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

pub async fn import_page(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let live = match require(&state, &headers, &uri).await {
        Ok(live) => live,
        Err(answer) => return answer,
    };
    let ctx = Ctx::new(&headers, &uri, Some(live.csrf));
    page(StatusCode::OK, views::import(&ctx, None))
}

/// What an import came to, for its page.
pub enum Outcome {
    Imported(u64),
    Refused { problems: Vec<String>, more: usize },
    Failed(String),
}

pub async fn import(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    upload: Result<Multipart, MultipartRejection>,
) -> Response {
    let live = match require(&state, &headers, &uri).await {
        Ok(live) => live,
        Err(answer) => return answer,
    };
    let ctx = Ctx::new(&headers, &uri, Some(live.csrf.clone()));
    let t = ctx.lang;
    let show = |status, outcome: Outcome| page(status, views::import(&ctx, Some(&outcome)));

    // A body that is not a form upload is not from the import page.
    let Ok(mut upload) = upload else {
        return refused(&headers, &uri);
    };
    // The page puts the token before the file, so the token is checked
    // before a byte of the file is kept.
    let mut csrf = None;
    let mut saved = None;
    loop {
        let part = match upload.next_field().await {
            Ok(Some(part)) => part,
            Ok(None) => break,
            Err(e) => return show(e.status(), Outcome::Failed(upload_failure(t, e.status()))),
        };
        match part.name() {
            Some("csrf") => csrf = part.text().await.ok(),
            Some("file") => {
                if let Err(refused) = check_form(&headers, &uri, csrf.as_deref(), &live.csrf) {
                    return refused;
                }
                let name = part.file_name().unwrap_or("").to_owned();
                match keep(part).await {
                    Ok(file) => saved = Some((name, file)),
                    Err(status) => {
                        return show(status, Outcome::Failed(upload_failure(t, status)));
                    }
                }
            }
            _ => {}
        }
    }
    if let Err(refused) = check_form(&headers, &uri, csrf.as_deref(), &live.csrf) {
        return refused;
    }
    let Some((name, file)) =
        saved.filter(|(_, f)| f.as_file().metadata().is_ok_and(|m| m.len() > 0))
    else {
        let message = t.pick("Valitse tuotava tiedosto.", "Choose a file to import.");
        return show(
            StatusCode::UNPROCESSABLE_ENTITY,
            Outcome::Failed(message.to_owned()),
        );
    };

    let format = format_of(&name, file.path());
    let report = bulk::import(
        state.store.clone(),
        live.account,
        file.path(),
        format,
        ImportOptions::default(),
        indicatif::ProgressBar::hidden(),
    )
    .await;
    match report {
        Ok(report) if report.rejected.is_empty() => {
            show(StatusCode::OK, Outcome::Imported(report.imported))
        }
        Ok(report) => {
            let mut problems = Vec::new();
            for rejected in &report.rejected {
                for p in &rejected.problems {
                    problems.push(problem_line(t, rejected.line, &p.field, &p.message));
                }
            }
            let more = problems.len().saturating_sub(PROBLEMS_SHOWN);
            problems.truncate(PROBLEMS_SHOWN);
            show(
                StatusCode::UNPROCESSABLE_ENTITY,
                Outcome::Refused { problems, more },
            )
        }
        Err(e) => {
            // The store's own failures are the server's, not the file's.
            let store = e.chain().find_map(|c| c.downcast_ref::<StoreError>());
            match store {
                Some(StoreError::Unavailable(m)) => {
                    unavailable(&ctx, StoreError::Unavailable(m.clone()))
                }
                Some(other) => unavailable(&ctx, StoreError::Internal(other.to_string())),
                None => {
                    // What is wrong with the file as a whole (its header,
                    // its encoding), in the reader's own words.
                    let lead = t.pick("Tiedostoa ei voitu lukea:", "The file could not be read:");
                    show(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        Outcome::Failed(format!("{lead} {e:#}")),
                    )
                }
            }
        }
    }
}

/// `Line 3: Postcode is required`, in the page's language: a column the
/// form has is named by the form's label, any other by its path.
fn problem_line(lang: Lang, line: u64, field: &str, message: &str) -> String {
    let subject = match (field_of_path(field), field) {
        (Some(f), _) => format!("{} ", f.label(lang)),
        (None, "row" | "body") => lang.pick("Rivi ", "The row ").to_owned(),
        (None, "address") => lang.pick("Osoite ", "The address ").to_owned(),
        (None, other) => format!("{other} "),
    };
    let message = problem(lang, message);
    match lang {
        Lang::Fi => format!("Rivi {line}: {subject}{message}"),
        Lang::En => format!("Line {line}: {subject}{message}"),
    }
}

fn upload_failure(lang: Lang, status: StatusCode) -> String {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        lang.pick(
            "Tiedosto on liian suuri tuotavaksi täältä; tuo se komentoriviltä (rekisteri customers import).",
            "The file is too large to import here; import it from the command line (rekisteri customers import).",
        )
        .to_owned()
    } else {
        lang.pick(
            "Tiedoston lähetys katkesi. Yritä uudelleen.",
            "The upload was cut off. Try again.",
        )
        .to_owned()
    }
}

/// Writes an uploaded file to a temporary file, which is removed when
/// dropped. The writes go to the page cache, so they are left on the
/// runtime's thread.
async fn keep(
    mut part: axum::extract::multipart::Field<'_>,
) -> Result<tempfile::NamedTempFile, StatusCode> {
    let mut file = tempfile::NamedTempFile::new().map_err(|e| {
        tracing::warn!(error = %e, "cannot make a temporary file for an upload");
        StatusCode::INTERNAL_SERVER_ERROR
    })?;
    loop {
        match part.chunk().await {
            Ok(Some(chunk)) => file
                .write_all(&chunk)
                .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?,
            Ok(None) => return Ok(file),
            Err(e) => return Err(e.status()),
        }
    }
}

/// The upload's format by its name's extension, else by its first
/// character: JSON Lines start with `{`.
fn format_of(name: &str, path: &std::path::Path) -> Format {
    if let Some(format) = Format::of_path(std::path::Path::new(name)) {
        return format;
    }
    use std::io::Read as _;
    let mut head = [0u8; 4096];
    let read = std::fs::File::open(path).and_then(|mut f| f.read(&mut head));
    let start = read
        .ok()
        .and_then(|n| head[..n].iter().find(|b| !b.is_ascii_whitespace()).copied());
    if start == Some(b'{') {
        Format::Jsonl
    } else {
        Format::Csv
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_names_its_column_as_the_form_does() {
        assert_eq!(
            problem_line(Lang::En, 3, "address.postcode", "is required"),
            "Line 3: Postcode is required"
        );
        assert_eq!(
            problem_line(Lang::Fi, 3, "email", "is not a valid email address"),
            "Rivi 3: Sähköposti ei ole kelvollinen sähköpostiosoite"
        );
        assert_eq!(
            problem_line(Lang::En, 9, "row", "has 3 cells where the header has 7"),
            "Line 9: The row has 3 cells where the header has 7"
        );
        assert_eq!(
            problem_line(Lang::Fi, 9, "row", "has 3 cells where the header has 7"),
            "Rivi 9: Rivi sisältää 3 solua, otsikkorivi 7"
        );
        assert_eq!(
            problem_line(Lang::En, 4, "address", "is required"),
            "Line 4: The address is required"
        );
        assert_eq!(
            problem_line(Lang::En, 2, "nickname", "is not a known field"),
            "Line 2: nickname is not a known field"
        );
    }
}
