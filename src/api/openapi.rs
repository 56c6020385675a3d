//! The OpenAPI document, generated from the handlers and types (utoipa).

use axum::response::IntoResponse;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{error, jobs, memos, routes, sales};

#[derive(OpenApi)]
#[openapi(
    info(title = "needtag", description = "Mandarin sales memos in; customer needs, sales actions, next steps and contacts out. Errors always have the shape {\"error\": {\"code\", \"message\"}}."),
    paths(routes::memos, routes::tag, routes::tag_batch, routes::library, routes::reload, routes::needs, routes::need, routes::actions, routes::packs, routes::eval, routes::healthz, routes::readyz, routes::metrics,
        memos::list, memos::get_one, memos::audio, memos::delete_one, memos::delete_customer, memos::review, memos::export, memos::blind_spots, memos::retag, sales::sales,
        jobs::submit, jobs::get_one, jobs::dead, jobs::retry_dead),
    components(schemas(error::ErrorBody, error::ErrorDetail, routes::TagRequest, routes::BatchRequest, routes::BatchItem, routes::BatchResponse, routes::BatchResult, routes::Mode, routes::LibraryInfo, routes::NeedView, routes::EvalRequest, routes::Health, routes::Ready,
        memos::ListQuery, memos::ReviewRequest, memos::Deleted, crate::archive::Page, crate::archive::StoredMemo, crate::archive::Mark, crate::archive::ReviewMark, crate::archive::Labels,
        sales::SalesQuery, crate::archive::metrics::SalesMetrics, crate::archive::metrics::SalesRow, crate::archive::metrics::TopNeed, crate::archive::metrics::Trend, crate::archive::metrics::UrgentCustomer, crate::archive::metrics::GroupBy, crate::archive::metrics::Period, crate::archive::blind::BlindSpots, crate::archive::blind::BlindGroup, crate::archive::blind::BlindMemo, memos::RetagRequest, crate::archive::retag::RetagReport, crate::archive::retag::MemoChange, crate::archive::retag::BeforeAfter, crate::archive::retag::Score,
        jobs::Accepted, jobs::DeadList, jobs::Resent, crate::jobs::Job, crate::jobs::Status, crate::jobs::JobFailure, crate::jobs::DeadEvent, crate::jobs::Event)),
    modifiers(&Security),
    tags((name = "memos", description = "Voice memos"), (name = "tagging", description = "Text the CRM already has"), (name = "library", description = "The needs library"), (name = "archive", description = "Stored memos: list, review, export, delete"), (name = "jobs", description = "Memos transcribed later, results pushed to a webhook"), (name = "operations", description = "Health, readiness, metrics"))
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
