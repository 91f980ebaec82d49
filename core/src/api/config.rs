//! Where requests go: base URL and path style (legacy `v3`/`v4` or date-versioned).

use http::Method;

/// HubSpot's API host (docs/hubspot.md §0: "The base host stays `https://api.hubapi.com`").
pub const DEFAULT_BASE_URL: &str = "https://api.hubapi.com";

/// The date version used by default: `2026-03`, the first date-based version and the one whose
/// OpenAPI specs docs/hubspot.md §4 was checked against (`…/Rollouts/424/2026-03/objects.json`).
pub const DEFAULT_API_VERSION: &str = "2026-03";

/// How CRM paths are spelled (docs/hubspot.md §0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathStyle {
    /// Semantic-versioned paths: `/crm/v3/objects/{type}`, `/crm/v4/associations/…`.
    /// What the official SDK snapshots call; unsupported from September 2027 (v4: March 30,
    /// 2027).
    Legacy,
    /// Date-versioned paths with this version: `/crm/objects/2026-03/{type}`,
    /// `/crm/associations/2026-03/…`. Same request and response shapes as [`Self::Legacy`].
    DateVersioned(String),
}

/// Where API requests are sent.
///
/// The default is [`DEFAULT_BASE_URL`] with
/// [`PathStyle::DateVersioned`]`(`[`DEFAULT_API_VERSION`]`)`. docs/hubspot.md §0: HubSpot moved to
/// date-based versioning on March 30, 2026; legacy v1–v3 paths stop being supported in September
/// 2027 and v4 (associations) on March 30, 2027, and the fact sheet advises a new integration to
/// "prefer the date-versioned equivalent … and keep the version string configurable". `2026-03`
/// rather than the newer `2026-09` because the shapes in docs/hubspot.md were checked against the
/// `2026-03` specs, and `2026-09` adds enforcement of admin-configured validation rules on writes
/// (more 400s); switching is a config change. The OAuth token endpoint is always `/oauth/v1/token`
/// (docs/hubspot.md §6), whatever the style.
///
/// Made by [`ApiConfig::new`], which checks the URL and the version once: every request built
/// from it is valid, so the builders return requests, not `Result`s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiConfig {
    base_url: String,
    path_style: PathStyle,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            path_style: PathStyle::DateVersioned(DEFAULT_API_VERSION.to_owned()),
        }
    }
}

/// A request could not be built. Caller's fault: the configuration is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// `base_url` (or the version string) does not make a valid URI.
    #[error("invalid request uri: {0}")]
    InvalidUri(String),
}

impl RequestError {
    /// Stable code: `invalid_uri`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidUri(_) => "invalid_uri",
        }
    }
}

impl ApiConfig {
    /// Where requests go: `base_url` is a scheme (`https`, or `http` for a local server) and a
    /// host with an optional port (e.g. `https://api.hubapi.com`; a trailing slash is
    /// tolerated), without a path or query; a date version is letters, digits, `-` and `.`.
    ///
    /// # Errors
    /// [`RequestError::InvalidUri`] naming what is wrong.
    pub fn new(base_url: &str, path_style: PathStyle) -> Result<Self, RequestError> {
        let trimmed = base_url.trim_end_matches('/');
        let invalid = |why: &str| RequestError::InvalidUri(format!("{base_url:?}: {why}"));
        let uri: http::Uri = trimmed.parse().map_err(|_| invalid("not a URL"))?;
        if !matches!(uri.scheme_str(), Some("https" | "http")) {
            return Err(invalid(
                "the scheme must be https (or http for a local server)",
            ));
        }
        if uri.authority().is_none_or(|a| a.host().is_empty()) {
            return Err(invalid("no host"));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(invalid("a base URL has no path or query"));
        }
        if let PathStyle::DateVersioned(v) = &path_style {
            let ok = !v.is_empty()
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.'));
            if !ok {
                return Err(RequestError::InvalidUri(format!(
                    "{v:?}: not an API version (letters, digits, - and .)"
                )));
            }
        }
        Ok(Self {
            base_url: trimmed.to_owned(),
            path_style,
        })
    }

    /// The base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The path style and version.
    pub fn path_style(&self) -> &PathStyle {
        &self.path_style
    }

    /// `/crm/v3/objects/{type}` or `/crm/objects/{version}/{type}`, type percent-encoded.
    pub(crate) fn objects_path(&self, object_type: &str) -> String {
        match &self.path_style {
            PathStyle::Legacy => format!("/crm/v3/objects/{}", encode(object_type)),
            PathStyle::DateVersioned(v) => {
                format!("/crm/objects/{}/{}", encode(v), encode(object_type))
            }
        }
    }

    /// `/crm/v4/associations/{from}/{to}` or `/crm/associations/{version}/{from}/{to}`.
    pub(crate) fn associations_path(&self, from: &str, to: &str) -> String {
        match &self.path_style {
            PathStyle::Legacy => format!("/crm/v4/associations/{}/{}", encode(from), encode(to)),
            PathStyle::DateVersioned(v) => format!(
                "/crm/associations/{}/{}/{}",
                encode(v),
                encode(from),
                encode(to)
            ),
        }
    }

    /// Assembles a request. `query` is already encoded (see [`Query`]); `path` is built from
    /// encoded segments.
    pub(crate) fn build(
        &self,
        method: Method,
        path: &str,
        query: &Query,
        body: Option<(&'static str, Vec<u8>)>,
    ) -> http::Request<Vec<u8>> {
        let mut uri = format!("{}{}", self.base_url, path);
        if !query.0.is_empty() {
            uri.push('?');
            uri.push_str(&query.0);
        }
        let mut builder = http::Request::builder().method(method).uri(uri.as_str());
        let body = match body {
            Some((content_type, bytes)) => {
                builder = builder.header(http::header::CONTENT_TYPE, content_type);
                bytes
            }
            None => Vec::new(),
        };
        // The base URL was checked by `new`, paths and queries are percent-encoded, the method
        // and content types are constants: nothing here can make an invalid request.
        builder
            .body(body)
            .expect("a request from a checked base URL and encoded parts")
    }
}

/// An encoded query string under construction.
#[derive(Debug, Default)]
pub(crate) struct Query(pub(crate) String);

impl Query {
    /// Appends `name=value`, the value percent-encoded.
    pub(crate) fn push(&mut self, name: &str, value: &str) {
        if !self.0.is_empty() {
            self.0.push('&');
        }
        self.0.push_str(name);
        self.0.push('=');
        self.0.push_str(&encode(value));
    }

    /// Appends `name=a,b,c` (each item encoded, commas literal); nothing when `values` is empty.
    pub(crate) fn push_list(&mut self, name: &str, values: &[String]) {
        if values.is_empty() {
            return;
        }
        let joined: Vec<String> = values.iter().map(|v| encode(v)).collect();
        if !self.0.is_empty() {
            self.0.push('&');
        }
        self.0.push_str(name);
        self.0.push('=');
        self.0.push_str(&joined.join(","));
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters (`A-Z a-z 0-9 - . _ ~`), so
/// the result is safe as a path segment, a query value or a form value.
pub(crate) fn encode(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0F)]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn encodes_reserved_and_non_ascii() {
        assert_eq!(encode("a-b_c.d~1"), "a-b_c.d~1");
        assert_eq!(encode("a b/c?d&e=f"), "a%20b%2Fc%3Fd%26e%3Df");
        assert_eq!(encode("x+y@z.com"), "x%2By%40z.com");
        assert_eq!(encode("é"), "%C3%A9");
        assert_eq!(encode(""), "");
    }

    #[test]
    fn paths_in_both_styles() {
        let legacy = ApiConfig::new(DEFAULT_BASE_URL, PathStyle::Legacy).unwrap();
        let dated = ApiConfig::default();
        assert_eq!(legacy.objects_path("2-123"), "/crm/v3/objects/2-123");
        assert_eq!(
            dated.objects_path("contacts"),
            "/crm/objects/2026-03/contacts"
        );
        assert_eq!(
            legacy.associations_path("contacts", "companies"),
            "/crm/v4/associations/contacts/companies"
        );
        assert_eq!(
            dated.associations_path("contacts", "companies"),
            "/crm/associations/2026-03/contacts/companies"
        );
    }

    #[test]
    fn base_urls_and_versions_checked_once() {
        for ok in [
            "https://api.hubapi.com",
            "https://api.hubapi.com/",
            "http://127.0.0.1:8788",
        ] {
            let cfg = ApiConfig::new(ok, PathStyle::Legacy).unwrap();
            assert!(!cfg.base_url().ends_with('/'), "{ok}");
        }
        for bad in [
            "not a url",
            "ftp://api.hubapi.com",
            "https://",
            "https://api.hubapi.com/crm",
            "https://api.hubapi.com?x=1",
            "",
        ] {
            let err = ApiConfig::new(bad, PathStyle::Legacy).unwrap_err();
            assert_eq!(err.code(), "invalid_uri", "{bad}");
        }
        for bad in ["", "2026/03", "2026 03"] {
            let style = PathStyle::DateVersioned(bad.into());
            assert!(ApiConfig::new(DEFAULT_BASE_URL, style).is_err(), "{bad:?}");
        }
        let cfg = ApiConfig::new("http://127.0.0.1:1", PathStyle::Legacy).unwrap();
        let r = cfg.build(Method::GET, "/x", &Query::default(), None);
        assert_eq!(r.uri().to_string(), "http://127.0.0.1:1/x");
    }
}
