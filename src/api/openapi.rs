//! The OpenAPI document, generated from the handlers and types (utoipa).

use axum::response::IntoResponse;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{error, routes};

#[derive(OpenApi)]
#[openapi(
    info(title = "needtag", description = "Mandarin sales memos in; customer needs, sales actions, next steps and contacts out. Errors always have the shape {\"error\": {\"code\", \"message\"}}."),
    paths(routes::memos, routes::tag, routes::tag_batch, routes::library, routes::reload, routes::needs, routes::need, routes::actions, routes::packs, routes::eval, routes::healthz, routes::readyz, routes::metrics),
    components(schemas(error::ErrorBody, error::ErrorDetail, routes::TagRequest, routes::BatchRequest, routes::BatchItem, routes::BatchResponse, routes::BatchResult, routes::Mode, routes::LibraryInfo, routes::NeedView, routes::EvalRequest, routes::Health, routes::Ready)),
    modifiers(&Security),
    tags((name = "memos", description = "Voice memos"), (name = "tagging", description = "Text the CRM already has"), (name = "library", description = "The needs library"), (name = "operations", description = "Health, readiness, metrics"))
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "api_key_header",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
    }
}

pub async fn spec() -> impl IntoResponse {
    axum::Json(ApiDoc::openapi())
}
