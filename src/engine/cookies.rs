//! The cookie jar of one browser-like client: RFC 6265's rules (domain, path, expiry,
//! `Secure`, `HttpOnly`) are `cookie_store`'s; this only moves cookies between it and
//! requests. A closed-model user keeps one jar across its iterations, an open-model
//! iteration starts with an empty one.

use cookie_store::{CookieStore, RawCookie};
use http::{HeaderMap, HeaderValue};
use url::Url;

#[derive(Default)]
pub(crate) struct Jar {
    store: CookieStore,
}

impl Jar {
    pub(crate) fn is_empty(&self) -> bool {
        self.store.iter_unexpired().next().is_none()
    }

    /// The `Cookie` header for a request to `url`, if any cookie applies.
    pub(crate) fn header(&self, url: &Url) -> Option<HeaderValue> {
        let mut text = String::new();
        for (name, value) in self.store.get_request_values(url) {
            if !text.is_empty() {
                text.push_str("; ");
            }
            text.push_str(name);
            text.push('=');
            text.push_str(value);
        }
        if text.is_empty() {
            None
        } else {
            HeaderValue::from_str(&text).ok()
        }
    }

    /// Keeps the `Set-Cookie`s of a response from `url`; returns whether there were any.
    pub(crate) fn store(&mut self, headers: &HeaderMap, url: &Url) -> bool {
        let mut cookies = headers
            .get_all(http::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| RawCookie::parse(v.to_string()).ok())
            .peekable();
        if cookies.peek().is_none() {
            return false;
        }
        self.store.store_response_cookies(cookies, url);
        true
    }

    /// The value of the unexpired cookie `name` set for `url`'s host, whatever its path:
    /// what `{{cookie.NAME}}` reads (a template does not know which path it will be sent to).
    pub(crate) fn value(&self, url: &Url, name: &str) -> Option<String> {
        self.store
            .iter_unexpired()
            .filter(|c| c.name() == name && c.domain.matches(url))
            .map(|c| c.value().to_string())
            .last()
    }
}
