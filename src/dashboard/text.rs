//! The dashboard's words in Finnish and English. Customer data is never
//! translated: it is shown as stored.

use axum::http::HeaderMap;
use axum::http::header::{ACCEPT_LANGUAGE, COOKIE};

use super::cookies::cookie;

/// The cookie that keeps a language chosen with the switch.
pub const LANG_COOKIE: &str = "rekisteri_lang";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Fi,
    En,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::Fi => "fi",
            Lang::En => "en",
        }
    }

    pub fn parse(code: &str) -> Option<Lang> {
        match code {
            "fi" => Some(Lang::Fi),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    /// The language switch's cookie, else the browser's first preference
    /// among the two, else English.
    pub fn of(headers: &HeaderMap) -> Lang {
        if let Some(lang) = cookie(headers.get_all(COOKIE), LANG_COOKIE).and_then(Lang::parse) {
            return lang;
        }
        let accepted = headers
            .get(ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        preferred(accepted).unwrap_or(Lang::En)
    }

    /// The one a phrase is in, picked from its two translations.
    pub fn pick(self, fi: &'static str, en: &'static str) -> &'static str {
        match self {
            Lang::Fi => fi,
            Lang::En => en,
        }
    }
}

/// The first of Finnish and English by the weights of an `Accept-Language`
/// header (`fi-FI,fi;q=0.9,en;q=0.8`).
fn preferred(header: &str) -> Option<Lang> {
    let mut best: Option<(f32, Lang)> = None;
    for item in header.split(',') {
        let mut parts = item.split(';');
        let tag = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let primary = tag.split('-').next().unwrap_or("");
        let Some(lang) = Lang::parse(primary) else {
            continue;
        };
        let weight = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        if weight > 0.0 && best.is_none_or(|(w, _)| weight > w) {
            best = Some((weight, lang));
        }
    }
    best.map(|(_, lang)| lang)
}

/// A validation message of the API (`is not a valid email address`) in
/// the interface's language, to follow a field's label.
pub fn problem(lang: Lang, message: &str) -> String {
    if let Some(detail) = message.strip_prefix("is not valid JSON: ") {
        return match lang {
            Lang::Fi => format!("ei ole kelvollista JSONia: {detail}"),
            Lang::En => message.to_owned(),
        };
    }
    if let Some(rest) = message.strip_prefix("has ") {
        // `has 3 cells where the header has 7`
        let numbers: Vec<&str> = rest
            .split(' ')
            .filter(|w| w.parse::<u64>().is_ok())
            .collect();
        if let (Lang::Fi, [cells, header]) = (lang, numbers.as_slice()) {
            return format!("sisältää {cells} solua, otsikkorivi {header}");
        }
        return message.to_owned();
    }
    if let Some(rest) = message.strip_prefix("is too long (at most ") {
        let limit = rest.split(' ').next().unwrap_or("");
        return match lang {
            Lang::Fi => format!("on liian pitkä (enintään {limit} merkkiä)"),
            Lang::En => message.to_owned(),
        };
    }
    let (fi, en) = match message {
        "is required" => ("on pakollinen", "is required"),
        m if m.starts_with("is required;") => (
            "on pakollinen; kirjoita \u{201d}-\u{201d}, jos sitä ei tiedetä",
            "is required; enter \u{201c}-\u{201d} if it is not known",
        ),
        "is not a valid email address" => (
            "ei ole kelvollinen sähköpostiosoite",
            "is not a valid email address",
        ),
        "is not an ISO 3166-1 alpha-2 country code" => (
            "ei ole kaksikirjaiminen ISO 3166-1 -maakoodi (esimerkiksi FI)",
            "is not an ISO 3166-1 alpha-2 country code (such as FI)",
        ),
        "must not contain NUL characters" => (
            "ei saa sisältää NUL-merkkejä",
            "must not contain NUL characters",
        ),
        m if m.starts_with("must be \"fi_FI\"") => {
            ("on oltava suomi tai englanti", "must be Finnish or English")
        }
        "is not a known field" => ("ei ole tunnettu kenttä", "is not a known field"),
        "must be a string" => ("on oltava merkkijono", "must be a string"),
        "must be an object" => ("on oltava objekti", "must be an object"),
        "must be a JSON object" => ("on oltava JSON-objekti", "must be a JSON object"),
        "is required and cannot be null" => (
            "on pakollinen eikä voi olla null",
            "is required and cannot be null",
        ),
        "is not valid UTF-8" => ("ei ole kelvollista UTF-8-tekstiä", "is not valid UTF-8"),
        other => return other.to_owned(),
    };
    lang.pick(fi, en).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_browsers_weights_decide() {
        assert_eq!(preferred("fi-FI,fi;q=0.9,en;q=0.8"), Some(Lang::Fi));
        assert_eq!(preferred("en-US,en;q=0.9,fi;q=0.8"), Some(Lang::En));
        assert_eq!(preferred("sv-FI,fi;q=0.5,en;q=0.7"), Some(Lang::En));
        assert_eq!(preferred("de-DE"), None);
        assert_eq!(preferred("fi;q=0"), None);
        assert_eq!(preferred(""), None);
    }

    /// Every message the API's rules give a field that the form can send
    /// wrongly, produced by the rules themselves, has a Finnish version.
    #[test]
    fn every_message_a_form_can_meet_has_a_finnish_translation() {
        use crate::domain::input::parse_new;
        use serde_json::json;
        let bodies = [
            json!({"email": "", "address": {"firstname": "", "lastname": "", "city": "",
                   "postcode": "", "country": ""}}),
            json!({"email": "not-an-email", "customer_locale": "sv_SE", "address": {
                   "firstname": "x".repeat(256), "lastname": "a\u{0}b", "city": "c",
                   "postcode": "p", "country": "XX"}}),
        ];
        let mut seen = 0;
        for body in bodies {
            for error in parse_new(&body).unwrap_err().0 {
                let finnish = problem(Lang::Fi, &error.message);
                assert_ne!(finnish, error.message, "{}", error.path);
                assert_ne!(problem(Lang::En, &error.message), "", "{}", error.path);
                seen += 1;
            }
        }
        assert_eq!(seen, 11, "the bodies should meet every rule once");
        assert_eq!(
            problem(Lang::Fi, "is too long (at most 254 characters)"),
            "on liian pitkä (enintään 254 merkkiä)"
        );
    }
}
