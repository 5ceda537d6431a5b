//! Scripts and styles of the embedded pages, compiled into the binary. Each is served with an
//! ETag, gzip-compressed when the browser accepts it, and cached for a year when asked for by its
//! versioned name (`?v=<hash>`, as the pages link them).

use axum::extract::{Path, Query};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::sync::LazyLock;

pub struct Asset {
    pub name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
    gzip: Vec<u8>,
    /// The first 16 hex digits of the body's SHA-256.
    pub hash: String,
}

impl Asset {
    fn new(name: &'static str, content_type: &'static str, body: &'static str) -> Self {
        let hash: String = Sha256::digest(body.as_bytes()).iter().take(8).map(|b| format!("{b:02x}")).collect();
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(body.as_bytes()).expect("compressing into memory");
        let gzip = encoder.finish().expect("compressing into memory");
        Self { name, content_type, body: body.as_bytes(), gzip, hash }
    }

    /// Its size compressed, as a browser downloads it.
    #[cfg(test)]
    fn compressed_len(&self) -> usize {
        self.gzip.len()
    }

    fn respond(&self, request: &HeaderMap, cache: &'static str, cross_origin: bool) -> Response {
        let etag = format!("\"{}\"", self.hash);
        let mut headers = HeaderMap::new();
        headers.insert(header::ETAG, HeaderValue::from_str(&etag).expect("hex"));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
        headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
        if cross_origin {
            headers.insert("cross-origin-resource-policy", HeaderValue::from_static("cross-origin"));
        } else {
            headers.insert("cross-origin-resource-policy", HeaderValue::from_static("same-origin"));
        }
        let matches = request
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
        if matches {
            return (StatusCode::NOT_MODIFIED, headers).into_response();
        }
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(self.content_type));
        let gzip = request
            .get(header::ACCEPT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|e| e.split(';').next().is_some_and(|e| e.trim().eq_ignore_ascii_case("gzip"))));
        if gzip {
            headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            (headers, self.gzip.clone()).into_response()
        } else {
            (headers, self.body).into_response()
        }
    }
}

pub static ASSETS: LazyLock<Vec<Asset>> = LazyLock::new(|| {
    vec![
        Asset::new("ui.js", "text/javascript; charset=utf-8", include_str!("../../assets/embed/ui.js")),
        Asset::new("app.js", "text/javascript; charset=utf-8", include_str!("../../assets/embed/app.js")),
        Asset::new("app.css", "text/css; charset=utf-8", include_str!("../../assets/embed/app.css")),
        Asset::new("oauth.js", "text/javascript; charset=utf-8", include_str!("../../assets/embed/oauth.js")),
        Asset::new("embed.js", "text/javascript; charset=utf-8", include_str!("../../assets/embed/embed.js")),
        // The operator console's own script and styles (its workspace pages are the ones above).
        Asset::new("console.js", "text/javascript; charset=utf-8", include_str!("../../assets/console/console.js")),
        Asset::new("console.css", "text/css; charset=utf-8", include_str!("../../assets/console/console.css")),
    ]
});

/// The asset of this name.
pub fn named(name: &str) -> &'static Asset {
    ASSETS.iter().find(|a| a.name == name).expect("a known asset")
}

/// The path pages link an asset by: versioned, so it may be cached for good.
pub fn href(name: &str) -> String {
    format!("/embed/assets/{name}?v={}", named(name).hash)
}

#[derive(serde::Deserialize)]
pub struct Version {
    v: Option<String>,
}

pub async fn asset(Path(file): Path<String>, Query(version): Query<Version>, headers: HeaderMap) -> Response {
    match ASSETS.iter().find(|a| a.name == file && a.name != "embed.js") {
        Some(asset) => {
            let cache = if version.v.as_deref() == Some(asset.hash.as_str()) { "public, max-age=31536000, immutable" } else { "no-cache" };
            asset.respond(&headers, cache, false)
        }
        None => crate::error::ApiError::not_found("asset").into_response(),
    }
}

/// `/embed.js`: hosts load it by a fixed name, so it is revalidated every five minutes.
pub async fn host_helper(headers: HeaderMap) -> Response {
    named("embed.js").respond(&headers, "public, max-age=300", true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pages' whole weight, compressed, stays under the budget of docs/embedding.md.
    #[test]
    fn scripts_and_styles_stay_under_100_kb_compressed() {
        let embedded = || ASSETS.iter().filter(|a| !a.name.starts_with("console."));
        let total: usize = embedded().map(Asset::compressed_len).sum();
        let raw: usize = embedded().map(|a| a.body.len()).sum();
        println!("embedded assets: {raw} bytes, {total} bytes compressed");
        assert!(total < 100 * 1024, "{total} bytes compressed");
    }
}
