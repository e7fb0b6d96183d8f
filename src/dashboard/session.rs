//! Signing in and out, the session every other page requires, and the
//! checks a form that changes something must pass.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Query, Request, State};
use axum::http::header::{COOKIE, HOST, ORIGIN, SET_COOKIE};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::cookies::{cookie, secure, set_cookie};
use super::text::{LANG_COOKIE, Lang};
use super::{Ctx, field, form_fields, page, see_other, unavailable, views};
use crate::domain::api_key::ApiKey;
use crate::domain::session::{SessionDigest, SessionId, is_token, random_hex, same_secret};
use crate::domain::time::now_millis;
use crate::http::AppState;
use crate::store::{AccountId, NewSession, SessionCutoffs, StoreError};

/// The cookie that holds the session id.
pub const SESSION_COOKIE: &str = "rekisteri_session";
/// The cookie that pairs with the sign-in form's token, before there is a
/// session to hold one.
const SIGN_IN_COOKIE: &str = "rekisteri_signin";
const SIGN_IN_COOKIE_AGE: Duration = Duration::from_secs(60 * 60);
const LANG_COOKIE_AGE: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// A signed-in request.
#[derive(Debug, Clone)]
pub struct Live {
    pub account: AccountId,
    pub digest: SessionDigest,
    pub csrf: String,
}

/// The cutoffs of the settings as of `now`.
pub fn cutoffs(state: &AppState, now: i64) -> SessionCutoffs {
    let settings = &state.settings;
    SessionCutoffs::at(now, settings.session_idle, settings.session_lifetime)
}

fn session_id(headers: &HeaderMap) -> Option<SessionId> {
    cookie(headers.get_all(COOKIE), SESSION_COOKIE).and_then(SessionId::parse)
}

/// The live session of this request, if it has one.
pub async fn current(state: &AppState, headers: &HeaderMap) -> Result<Option<Live>, StoreError> {
    let Some(id) = session_id(headers) else {
        return Ok(None);
    };
    let digest = id.digest();
    let now = now_millis();
    let found = state
        .store
        .find_session(digest, now, cutoffs(state, now))
        .await?;
    Ok(found.map(|s| Live {
        account: s.account,
        digest,
        csrf: s.csrf,
    }))
}

tokio::task_local! {
    /// The account the request being answered acts for, once its session is
    /// known, for the request log.
    static ACCOUNT: std::cell::Cell<Option<AccountId>>;
}

/// Answers a dashboard request and says on the answer which account it
/// acted for, as the API's authentication does, so that the request log
/// names the account.
pub async fn record_account(request: Request, next: Next) -> Response {
    let (account, mut response) = ACCOUNT
        .scope(std::cell::Cell::new(None), async {
            let response = next.run(request).await;
            (ACCOUNT.with(std::cell::Cell::get), response)
        })
        .await;
    if let Some(account) = account {
        response.extensions_mut().insert(account);
    }
    response
}

/// The live session, or the answer for a request without one: back to the
/// sign-in page, saying that the session ended when there was one.
pub async fn require(state: &AppState, headers: &HeaderMap, uri: &Uri) -> Result<Live, Response> {
    match current(state, headers).await {
        Ok(Some(live)) => {
            let _ = ACCOUNT.try_with(|a| a.set(Some(live.account)));
            Ok(live)
        }
        Ok(None) if cookie(headers.get_all(COOKIE), SESSION_COOKIE).is_some() => {
            Err(see_other("/app/sign-in?expired=1"))
        }
        Ok(None) => Err(see_other("/app/sign-in")),
        Err(e) => Err(unavailable(&Ctx::new(headers, uri, None), e)),
    }
}

/// Refuses a form that another site could have sent: one from a foreign
/// `Origin`, or without this session's token. `SameSite=Strict` already keeps
/// the cookie off such requests in current browsers; this holds for the rest.
pub fn check_form(
    headers: &HeaderMap,
    uri: &Uri,
    sent: Option<&str>,
    expected: &str,
) -> Result<(), Response> {
    let token_ok = sent.is_some_and(|sent| same_secret(sent, expected));
    if token_ok && same_origin(headers) {
        return Ok(());
    }
    Err(refused(headers, uri))
}

/// The fields of a form sent in a live session, once [`check_form`] has
/// passed them.
pub fn session_form(
    headers: &HeaderMap,
    uri: &Uri,
    body: &Bytes,
    live: &Live,
) -> Result<Vec<(String, String)>, Response> {
    let fields = form_fields(body);
    check_form(headers, uri, field(&fields, "csrf"), &live.csrf)?;
    Ok(fields)
}

/// The answer to a form that failed [`check_form`].
pub fn refused(headers: &HeaderMap, uri: &Uri) -> Response {
    let ctx = Ctx::new(headers, uri, None);
    let t = ctx.lang;
    page(
        StatusCode::FORBIDDEN,
        views::message_page(
            &ctx,
            t.pick("Lomake hylättiin", "The form was refused"),
            t.pick(
                "Lomake on vanhentunut tai se ei tullut tältä sivustolta. Mitään ei muutettu. Lataa sivu uudelleen ja yritä uudestaan.",
                "This form has expired or did not come from this site. Nothing was changed. Reload the page and try again.",
            ),
        ),
    )
}

/// Whether a form was sent from one of our own pages. A browser that says
/// where a request comes from (`Sec-Fetch-Site`, sent by every current one)
/// is believed: a proxy in front may have rewritten `Host`, so that header
/// is not compared then. Otherwise an `Origin`, when sent, must name the
/// host the request was made to, over either scheme (a proxy in front may
/// have spoken TLS), as `Host` or a proxy's `X-Forwarded-Host` says; a page
/// on another site cannot set either header on a form it sends.
fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return site == "same-origin" || site == "none";
    }
    let Some(origin) = headers.get(ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let hosts = [headers.get(HOST), headers.get("x-forwarded-host")];
    hosts
        .into_iter()
        .flatten()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(',').next())
        .any(|host| {
            ["http://", "https://"]
                .iter()
                .any(|scheme| origin.strip_prefix(scheme) == Some(host.trim()))
        })
}

#[derive(Debug, Default, Deserialize)]
pub struct SignInQuery {
    expired: Option<String>,
    signed_out: Option<String>,
}

pub async fn sign_in_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Query(query): Query<SignInQuery>,
) -> Response {
    match current(&state, &headers).await {
        Ok(Some(_)) => return see_other("/app/customers"),
        Ok(None) => {}
        Err(e) => return unavailable(&Ctx::new(&headers, &uri, None), e),
    }
    let ctx = Ctx::new(&headers, &uri, None);
    let t = ctx.lang;
    let notice = if query.signed_out.is_some() {
        Some(t.pick("Olet kirjautunut ulos.", "You have signed out."))
    } else if query.expired.is_some() {
        Some(t.pick(
            "Istuntosi on päättynyt. Kirjaudu uudelleen.",
            "Your session has ended. Sign in again.",
        ))
    } else {
        None
    };
    sign_in_form(&state, &headers, &ctx, StatusCode::OK, notice, None)
}

/// The sign-in form, with the token that pairs with its cookie (made now
/// when the browser has none yet). The key field is never filled in.
fn sign_in_form(
    state: &AppState,
    headers: &HeaderMap,
    ctx: &Ctx,
    status: StatusCode,
    notice: Option<&str>,
    error: Option<&str>,
) -> Response {
    let existing = cookie(headers.get_all(COOKIE), SIGN_IN_COOKIE)
        .filter(|v| is_token(v))
        .map(str::to_owned);
    let token = match existing.map_or_else(random_hex, Ok) {
        Ok(token) => token,
        Err(e) => return unavailable(ctx, StoreError::Internal(e.to_string())),
    };
    let mut response = page(status, views::sign_in(ctx, &token, notice, error));
    // Set again each time, so that a form just served never outlives its
    // cookie.
    let secure = secure(headers, state.settings.trust_forwarded_proto);
    response.headers_mut().append(
        SET_COOKIE,
        set_cookie(SIGN_IN_COOKIE, &token, SIGN_IN_COOKIE_AGE, secure),
    );
    response
}

pub async fn sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let fields = form_fields(&body);
    let Some(paired) = cookie(headers.get_all(COOKIE), SIGN_IN_COOKIE).filter(|v| !v.is_empty())
    else {
        return refused(&headers, &uri);
    };
    if let Err(refused) = check_form(&headers, &uri, field(&fields, "csrf"), paired) {
        return refused;
    }
    let ctx = Ctx::new(&headers, &uri, None);
    let t = ctx.lang;

    let key = field(&fields, "key").map(str::trim).and_then(ApiKey::parse);
    let found = match key {
        Some(key) => find_live_key(&state, &key).await,
        None => Ok(None),
    };
    let key = match found {
        Ok(Some(info)) if info.revoked_at.is_none() => info,
        Ok(_) => {
            let error = t.pick("API-avain ei kelpaa.", "That API key is not valid.");
            return sign_in_form(
                &state,
                &headers,
                &ctx,
                StatusCode::UNAUTHORIZED,
                None,
                Some(error),
            );
        }
        Err(e) => return unavailable(&ctx, e),
    };

    let made = SessionId::generate().and_then(|id| Ok((id, random_hex()?)));
    let (id, csrf) = match made {
        Ok(made) => made,
        Err(e) => return unavailable(&ctx, StoreError::Internal(e.to_string())),
    };
    let session = NewSession {
        digest: id.digest(),
        account: key.account,
        key_id: key.id,
        csrf,
    };
    if let Err(e) = state.store.create_session(session, now_millis()).await {
        return unavailable(&ctx, e);
    }
    // A browser that signs in again, with its old session still live, has
    // no more use for that one.
    if let Some(old) = session_id(&headers) {
        let _ = state.store.end_session(old.digest()).await;
    }
    tracing::info!(account.id = key.account.0, key.prefix = %key.prefix, "dashboard sign-in");

    let secure = secure(&headers, state.settings.trust_forwarded_proto);
    let mut response = see_other("/app/customers");
    let cookies = response.headers_mut();
    cookies.append(
        SET_COOKIE,
        set_cookie(
            SESSION_COOKIE,
            id.expose(),
            state.settings.session_lifetime,
            secure,
        ),
    );
    cookies.append(
        SET_COOKIE,
        set_cookie(SIGN_IN_COOKIE, "", Duration::ZERO, secure),
    );
    response
}

/// The key, when it exists and is not revoked. Going through the API's own
/// check records the key's use, so that a key used only to sign in does not
/// look unused to an operator deciding which keys to revoke.
async fn find_live_key(
    state: &AppState,
    key: &ApiKey,
) -> Result<Option<crate::store::KeyInfo>, StoreError> {
    let digest = key.digest();
    if state
        .store
        .authenticate(digest, now_millis())
        .await?
        .is_none()
    {
        return Ok(None);
    }
    state.store.find_key(digest).await
}

pub async fn sign_out(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let live = match require(&state, &headers, &uri).await {
        Ok(live) => live,
        Err(answer) => return answer,
    };
    if let Err(refused) = session_form(&headers, &uri, &body, &live) {
        return refused;
    }
    if let Err(e) = state.store.end_session(live.digest).await {
        return unavailable(&Ctx::new(&headers, &uri, None), e);
    }
    let secure = secure(&headers, state.settings.trust_forwarded_proto);
    let mut response = see_other("/app/sign-in?signed_out=1");
    response.headers_mut().append(
        SET_COOKIE,
        set_cookie(SESSION_COOKIE, "", Duration::ZERO, secure),
    );
    response
}

#[derive(Debug, Deserialize)]
pub struct LanguageQuery {
    set: Option<String>,
    back: Option<String>,
}

/// The language switch: remembers the choice and goes back to the page it
/// was made on, which must be one of the dashboard's own.
pub async fn language(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<LanguageQuery>,
) -> Response {
    let back = query
        .back
        .filter(|b| is_own_page(b))
        .unwrap_or_else(|| "/app".to_owned());
    let mut response = see_other(&back);
    if let Some(lang) = query.set.as_deref().and_then(Lang::parse) {
        let secure = secure(&headers, state.settings.trust_forwarded_proto);
        response.headers_mut().append(
            SET_COOKIE,
            set_cookie(LANG_COOKIE, lang.code(), LANG_COOKIE_AGE, secure),
        );
    }
    response.into_response()
}

/// `/app` or a path below it, and nothing a browser could read as another
/// host (`//evil`, `/app\…`); what follows the `?` may hold anything.
fn is_own_page(path: &str) -> bool {
    let route = path.split('?').next().unwrap_or("");
    (route == "/app" || route.starts_with("/app/"))
        && !route.contains("//")
        && !path.contains('\\')
        && path.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn only_the_dashboards_own_pages_are_gone_back_to() {
        assert!(is_own_page("/app/customers?page=2"));
        assert!(is_own_page("/app"));
        assert!(!is_own_page("https://evil.example/app"));
        assert!(!is_own_page("//evil.example"));
        assert!(!is_own_page("/app//evil.example"));
        assert!(!is_own_page("/application"));
        assert!(!is_own_page("/app\\evil"));
        assert!(is_own_page("/app/customers?q=http%3A//x"));
        assert!(is_own_page("/app?x=1"));
    }

    #[test]
    fn a_foreign_origin_is_refused() {
        let mut headers = HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(same_origin(&headers));
        headers.insert(ORIGIN, HeaderValue::from_static("http://127.0.0.1:8080"));
        assert!(same_origin(&headers));
        headers.insert(ORIGIN, HeaderValue::from_static("http://evil.example"));
        assert!(!same_origin(&headers));
        headers.insert(ORIGIN, HeaderValue::from_static("null"));
        assert!(!same_origin(&headers));
        headers.remove(ORIGIN);
        headers.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(!same_origin(&headers));
        headers.insert("sec-fetch-site", HeaderValue::from_static("same-site"));
        assert!(!same_origin(&headers));
    }

    #[test]
    fn behind_a_proxy_that_rewrites_host_our_own_forms_pass() {
        let mut headers = HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_static("127.0.0.1:8080"));
        headers.insert(
            ORIGIN,
            HeaderValue::from_static("https://rekisteri.example.fi"),
        );
        assert!(!same_origin(&headers));
        headers.insert(
            "x-forwarded-host",
            HeaderValue::from_static("rekisteri.example.fi"),
        );
        assert!(same_origin(&headers));
        headers.remove("x-forwarded-host");
        headers.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert!(same_origin(&headers));
    }
}
