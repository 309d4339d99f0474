//! The live page at `/`: three files compiled into the binary, so it needs no network,
//! no CDN and no build step; its script reads `/admin/state` once a second.

use base64::Engine;
use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

use crate::reply::Chunks;

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/live.js");
const STYLE: &str = include_str!("assets/live.css");

/// Nothing but this listener may serve the page anything: no inline script, no other
/// origin. A page that tries is broken here before it is broken anywhere else.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                      connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
                      frame-ancestors 'none'; form-action 'none'";

fn asset(path: &str) -> Option<(&'static str, &'static str)> {
    match path {
        "/" => Some((INDEX, "text/html; charset=utf-8")),
        "/assets/live.js" => Some((SCRIPT, "text/javascript; charset=utf-8")),
        "/assets/live.css" => Some((STYLE, "text/css; charset=utf-8")),
        _ => None,
    }
}

pub(super) fn is_page(path: &str) -> bool {
    asset(path).is_some()
}

pub(super) fn serve(path: &str) -> Response<Chunks> {
    let Some((body, content_type)) = asset(path) else {
        return super::text(
            StatusCode::NOT_FOUND,
            "404 page not found\n".into(),
            "text/plain; charset=utf-8",
        );
    };
    let mut response = Response::new(Chunks::from(Bytes::from_static(body.as_bytes())));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // A new binary brings new assets at the same paths.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// The admin token an `Authorization` header offers: `Bearer <token>` from a script,
/// or `Basic` (any user name, the token as password) from a browser.
pub(super) fn offered_token(authorization: &[u8]) -> Option<Vec<u8>> {
    if let Some(token) = authorization.strip_prefix(b"Bearer ") {
        return Some(token.to_vec());
    }
    let encoded = authorization.strip_prefix(b"Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    Some(decoded[colon + 1..].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_read_from_bearer_or_from_basics_password() {
        assert_eq!(offered_token(b"Bearer s3cret"), Some(b"s3cret".to_vec()));
        // "admin:s3cret" and ":s:3" (a colon in the password is the password's).
        assert_eq!(
            offered_token(b"Basic YWRtaW46czNjcmV0"),
            Some(b"s3cret".to_vec())
        );
        assert_eq!(offered_token(b"Basic OnM6Mw=="), Some(b"s:3".to_vec()));
        assert_eq!(offered_token(b"Basic not-base64!"), None);
        assert_eq!(
            offered_token(b"Basic czNjcmV0"),
            None,
            "no colon: no password"
        );
        assert_eq!(offered_token(b"s3cret"), None);
    }

    #[test]
    fn the_page_loads_only_its_own_assets() {
        for (body, _) in [asset("/"), asset("/assets/live.js")].into_iter().flatten() {
            // The SVG namespace is a name, never fetched.
            let body = body.replace("'http://www.w3.org/2000/svg'", "");
            assert!(!body.contains("http://") && !body.contains("https://"));
            assert!(!body.contains("//cdn"));
        }
        assert!(INDEX.contains(r#"src="/assets/live.js""#));
        assert!(INDEX.contains(r#"href="/assets/live.css""#));
        assert!(
            !INDEX.contains("<script>"),
            "inline script is refused by the policy"
        );
        assert!(asset("/admin/state").is_none());
    }
}
