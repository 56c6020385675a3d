//! API keys: `Authorization: Bearer <key>` or `X-API-Key: <key>`, compared in constant time with
//! every configured key. Scopes: `tag` (memos, tagging), `review` (read, review and export the
//! archive) and `admin` (library reload, deleting archived memos).

use axum::http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::{ApiError, Code};
use crate::config::{ApiKey, Scope};

/// Who is calling. `id` is a hash of the key itself: idempotency entries and per-key limits
/// are scoped by it, so two keys never share them, whatever their (optional) names say. `name`
/// is for logs (never the key).
#[derive(Debug, Clone)]
pub struct Caller {
    pub id: CallerId,
    pub name: String,
}

/// SHA-256 of an API key; one fixed value for the anonymous caller of an open API.
pub type CallerId = [u8; 32];

fn key_id(key: &str) -> CallerId {
    let mut h = Sha256::new();
    h.update(b"needtag-api-key\0");
    h.update(key.as_bytes());
    h.finalize().into()
}

fn presented(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(v.trim());
    }
    let auth = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = auth.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Check the request's key for `scope`. With no keys configured the API is open.
pub fn authorize(keys: &[ApiKey], headers: &HeaderMap, scope: Scope) -> Result<Caller, ApiError> {
    if keys.is_empty() {
        return Ok(Caller {
            id: [0; 32],
            name: "anonymous".into(),
        });
    }
    let Some(given) = presented(headers) else {
        return Err(ApiError::new(
            Code::Unauthorized,
            "an API key is required (Authorization: Bearer <key> or X-API-Key)",
        ));
    };
    // Compare with every key without stopping early, so timing does not reveal which matched.
    let mut found: Option<(usize, &ApiKey)> = None;
    for (i, k) in keys.iter().enumerate() {
        let equal: bool = k.key.as_bytes().ct_eq(given.as_bytes()).into();
        if equal {
            found = Some((i, k));
        }
    }
    let Some((index, key)) = found else {
        return Err(ApiError::new(
            Code::Unauthorized,
            "the API key is not valid",
        ));
    };
    if !key.scopes.contains(&scope) {
        return Err(ApiError::new(
            Code::Forbidden,
            format!("this API key lacks the {} scope", scope.as_str()),
        ));
    }
    Ok(Caller {
        id: key_id(&key.key),
        name: if key.name.is_empty() {
            format!("key-{}", index + 1)
        } else {
            key.name.clone()
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Vec<ApiKey> {
        vec![
            ApiKey {
                key: "tag-key-0123456789".into(),
                scopes: vec![Scope::Tag],
                name: "crm".into(),
            },
            ApiKey {
                key: "admin-key-0123456789".into(),
                scopes: vec![Scope::Tag, Scope::Admin],
                name: "ops".into(),
            },
        ]
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn keys_and_scopes() {
        let k = keys();
        assert_eq!(
            authorize(&k, &headers(&[]), Scope::Tag).unwrap_err().code,
            Code::Unauthorized
        );
        assert_eq!(
            authorize(
                &k,
                &headers(&[("authorization", "Bearer nope")]),
                Scope::Tag
            )
            .unwrap_err()
            .code,
            Code::Unauthorized
        );
        assert_eq!(
            authorize(
                &k,
                &headers(&[("authorization", "Bearer tag-key-0123456789")]),
                Scope::Tag
            )
            .unwrap()
            .name,
            "crm"
        );
        assert_eq!(
            authorize(
                &k,
                &headers(&[("x-api-key", "tag-key-0123456789")]),
                Scope::Admin
            )
            .unwrap_err()
            .code,
            Code::Forbidden
        );
        assert_eq!(
            authorize(
                &k,
                &headers(&[("x-api-key", "admin-key-0123456789")]),
                Scope::Admin
            )
            .unwrap()
            .name,
            "ops"
        );
        assert_eq!(
            authorize(&[], &headers(&[]), Scope::Admin).unwrap().name,
            "anonymous"
        );
    }

    #[test]
    fn callers_are_told_apart_by_their_key_not_their_name() {
        let mut k = keys();
        k[0].name = String::new();
        k[1].name = String::new();
        let a = authorize(
            &k,
            &headers(&[("x-api-key", "tag-key-0123456789")]),
            Scope::Tag,
        )
        .unwrap();
        let b = authorize(
            &k,
            &headers(&[("x-api-key", "admin-key-0123456789")]),
            Scope::Tag,
        )
        .unwrap();
        assert_ne!(a.id, b.id);
        assert_ne!(a.name, b.name, "unnamed keys are logged by their position");
        let again = authorize(
            &k,
            &headers(&[("authorization", "Bearer tag-key-0123456789")]),
            Scope::Tag,
        )
        .unwrap();
        assert_eq!(a.id, again.id);
    }
}
