//! The JSON API (`/api/v1`): the same actions as the pages, with the same authorisation, for
//! systems (`Authorization: Bearer pwt_…`, a token made with `pharmwatch user token`) and for
//! scripts of a signed-in session (which send the session's CSRF token in `X-CSRF-Token`).
//! `/api/openapi.json` describes it (OpenAPI 3.0).
//!
//! Answers: 200 with the result; 400 bad request, 401 not signed in, 403 role not allowed, 404
//! not found or outside the jurisdiction, 409 not in a state that allows it — each with
//! `{"error": …, "error_zh": …}`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;

use crate::ServeState;
use crate::actions::{CaseAct, RiskQuery};
use crate::web::json;
use pharmwatch_casework::notices::{Edits, Particulars};

type S = State<Arc<ServeState>>;

fn csrf(h: &HeaderMap) -> Option<String> {
    h.get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// A disposition.
#[derive(Debug, Deserialize)]
pub struct DispositionBody {
    list_id: String,
    enterprise_id: String,
    disposition: String,
    #[serde(default)]
    reason: String,
}

/// An action on a draft.
#[derive(Debug, Default, Deserialize)]
pub struct DraftBody {
    #[serde(default)]
    note: String,
    #[serde(default)]
    excluded_items: Vec<usize>,
    /// A penalty document's penalty, basis, provision violated and hearing place.
    #[serde(default)]
    particulars: Particulars,
    #[serde(default)]
    reason: String,
}

/// Every refusal of the API is JSON, including the framework's own (a path segment that is not
/// a number, a body that is not JSON): `{"error": …}` with the status kept.
async fn json_errors(r: Response) -> Response {
    use axum::http::header::CONTENT_TYPE;
    use axum::response::IntoResponse as _;
    let status = r.status();
    let is_json = r
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return r;
    }
    let body = axum::body::to_bytes(r.into_body(), 64 * 1024)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body).to_string();
    (
        status,
        Json(serde_json::json!({"error": text, "error_zh": "请求无效"})),
    )
        .into_response()
}

/// The routes.
pub fn routes() -> axum::Router<Arc<ServeState>> {
    api_routes().layer(axum::middleware::map_response(json_errors))
}

fn api_routes() -> axum::Router<Arc<ServeState>> {
    axum::Router::new()
        .route("/api/openapi.json", get(|| async { Json(openapi()) }))
        .route(
            "/api/v1/risk-list",
            get(|State(s): S, h: HeaderMap, Query(q): Query<RiskQuery>| async move {
                json(s.reader(&h).and_then(|(a, _)| s.risk_list(&a, &q)).map(|(date, _, rows)| {
                    serde_json::json!({"date": date, "rows": rows})
                }))
            }),
        )
        .route(
            "/api/v1/risk-list/disposition",
            post(|State(s): S, h: HeaderMap, Json(b): Json<DispositionBody>| async move {
                json(s.actor(&h, csrf(&h).as_deref()).and_then(|a| {
                    s.dispose(&a, &b.list_id, &b.enterprise_id, &b.disposition, &b.reason)
                }).map(|case_id| serde_json::json!({"case_id": case_id})))
            }),
        )
        .route(
            "/api/v1/findings",
            post(|State(s): S, h: HeaderMap, body: String| async move {
                json(s.actor(&h, csrf(&h).as_deref()).and_then(|a| s.push_findings(&a, &body)))
            }),
        )
        .route(
            "/api/v1/queues",
            get(|State(s): S, h: HeaderMap| async move {
                json(s.reader(&h).and_then(|(a, _)| s.queues(&a)))
            }),
        )
        .route(
            "/api/v1/drafts/{id}",
            get(|State(s): S, h: HeaderMap, UrlPath(id): UrlPath<i64>| async move {
                json(s.reader(&h).and_then(|(a, _)| s.draft(&a, id)).map(|(d, html)| {
                    serde_json::json!({"draft": d, "preview_html": html})
                }))
            }),
        )
        .route(
            "/api/v1/drafts/{id}/{action}",
            post(draft_action),
        )
        .route(
            "/api/v1/cases",
            get(|State(s): S, h: HeaderMap| async move {
                json(s.reader(&h).and_then(|(a, _)| s.cases(&a, false)))
            }),
        )
        .route(
            "/api/v1/cases/{id}",
            get(|State(s): S, h: HeaderMap, UrlPath(id): UrlPath<String>| async move {
                json(s.reader(&h).and_then(|(a, _)| s.case_page(&a, &id)))
            }),
        )
        .route(
            "/api/v1/cases/{id}/{action}",
            post(
                |State(s): S,
                 h: HeaderMap,
                 UrlPath((id, action)): UrlPath<(String, String)>,
                 body: Option<Json<CaseAct>>| async move {
                    let act = body.map(|Json(b)| b).unwrap_or_default();
                    json(
                        s.actor(&h, csrf(&h).as_deref())
                            .and_then(|a| s.case_act(&a, &id, &action, &act))
                            .map(|()| serde_json::json!({"case_id": id, "action": action})),
                    )
                },
            ),
        )
        .route(
            "/api/v1/enterprise/notices",
            get(|State(s): S, h: HeaderMap| async move {
                json(s.reader(&h).and_then(|(a, _)| s.enterprise_notices(&a)))
            }),
        )
        .route(
            "/api/v1/enterprise/notices/{number}/receipt",
            post(|State(s): S, h: HeaderMap, UrlPath(n): UrlPath<String>| async move {
                json(s.actor(&h, csrf(&h).as_deref()).and_then(|a| s.confirm_receipt(&a, &n)).map(|ack| {
                    let (doc, at, already) = match ack {
                        pharmwatch_casework::service::Ack::Recorded(d, at) => (d, at, false),
                        pharmwatch_casework::service::Ack::Already(d, at) => (d, at, true),
                    };
                    serde_json::json!({"number": doc.number, "received_at": at, "already": already})
                }))
            }),
        )
}

async fn draft_action(
    State(s): S,
    h: HeaderMap,
    UrlPath((id, action)): UrlPath<(i64, String)>,
    body: Option<Json<DraftBody>>,
) -> Response {
    let b = body.map(|Json(b)| b).unwrap_or_default();
    let edits = Edits {
        note: b.note,
        excluded_items: b.excluded_items,
        particulars: b.particulars,
    };
    json(
        s.actor(&h, csrf(&h).as_deref())
            .and_then(|a| s.draft_action(&a, id, &action, &edits, &b.reason))
            .map(|no| serde_json::json!({"document_no": no})),
    )
}

fn op(summary: &str, params: serde_json::Value, body: Option<&str>) -> serde_json::Value {
    let mut o = serde_json::json!({
        "summary": summary,
        "parameters": params,
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}},
            "400": {"description": "bad request", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            "401": {"description": "not signed in", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            "403": {"description": "the role may not do this", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            "404": {"description": "not found or outside the jurisdiction", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            "409": {"description": "not in a state that allows it", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            "415": {"description": "the body is not JSON", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            "422": {"description": "the JSON body does not have the documented shape", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
        }
    });
    if let Some(schema) = body {
        o["requestBody"] = serde_json::json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}});
    }
    o
}

fn path_param(name: &str, ty: &str) -> serde_json::Value {
    serde_json::json!({"name": name, "in": "path", "required": true, "schema": {"type": ty}})
}

fn query_param(name: &str) -> serde_json::Value {
    serde_json::json!({"name": name, "in": "query", "required": false, "schema": {"type": "string"}})
}

/// The OpenAPI 3.0 document of the API.
pub fn openapi() -> serde_json::Value {
    let none = serde_json::json!([]);
    let action = serde_json::json!({"name": "action", "in": "path", "required": true,
        "schema": {"type": "string", "enum": ["edit", "submit", "approve", "return", "withdraw"]}});
    let case_action = serde_json::json!({"name": "action", "in": "path", "required": true,
        "schema": {"type": "string", "enum": ["event", "comment", "assign", "escalate", "refer", "close"]}});
    serde_json::json!({
        "openapi": "3.0.3",
        "info": {"title": "pharmwatch workbench API", "version": env!("CARGO_PKG_VERSION"),
                 "description": "The supervisors' workbench and the enterprise end as JSON. Authenticate with `Authorization: Bearer <token>` (pharmwatch user token) or a session cookie plus `X-CSRF-Token`."},
        "security": [{"bearer": []}],
        "paths": {
            "/api/v1/risk-list": {"get": op("The risk list of a day for the caller's jurisdiction", serde_json::json!([query_param("date"), query_param("grade"), query_param("indicator"), query_param("region"), query_param("type"), query_param("sort")]), None)},
            "/api/v1/risk-list/disposition": {"post": op("Confirm (opens a case), dismiss (with a reason) or watch a risk-list row", none.clone(), Some("Disposition"))},
            "/api/v1/queues": {"get": op("The caller's queues", none.clone(), None)},
            "/api/v1/findings": {"post": op("Push inspection findings (the measures-decide format): decided, recorded, documents proposed as drafts", none.clone(), Some("Findings"))},
            "/api/v1/drafts/{id}": {"get": op("A draft and its preview", serde_json::json!([path_param("id", "integer")]), None)},
            "/api/v1/drafts/{id}/{action}": {"post": op("Edit, submit, approve, return or withdraw a draft", serde_json::json!([path_param("id", "integer"), action]), Some("DraftAction"))},
            "/api/v1/cases": {"get": op("The cases of the caller's jurisdiction", none.clone(), None)},
            "/api/v1/cases/{id}": {"get": op("One case: timeline, deadlines, drafts, deliveries, comments, attachments", serde_json::json!([path_param("id", "string")]), None)},
            "/api/v1/cases/{id}/{action}": {"post": op("Act on a case: record an event, comment, assign, escalate on a ground, refer for investigation or close on a ground (approver)", serde_json::json!([path_param("id", "string"), case_action]), Some("CaseAction"))},
            "/api/v1/enterprise/notices": {"get": op("The lead's own notices", none.clone(), None)},
            "/api/v1/enterprise/notices/{number}/receipt": {"post": op("The lead confirms receipt (送达) of its notice", serde_json::json!([path_param("number", "string")]), None)}
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}, "error_zh": {"type": "string"}}},
                "Disposition": {"type": "object", "required": ["list_id", "enterprise_id", "disposition"],
                    "properties": {"list_id": {"type": "string"}, "enterprise_id": {"type": "string"},
                                   "disposition": {"type": "string", "enum": ["confirmed", "dismissed", "watch"]},
                                   "reason": {"type": "string"}}},
                "Findings": {"type": "array", "items": {"type": "object", "required": ["case_id", "enterprise_id", "inspection_date", "conclusion"],
                    "properties": {"case_id": {"type": "string"}, "enterprise_id": {"type": "string"},
                                   "inspection_date": {"type": "string", "format": "date"},
                                   "conclusion": {"type": "string"}, "defects": {"type": "object"},
                                   "flags": {"type": "array", "items": {"type": "string"}}}}},
                "CaseAction": {"type": "object", "properties": {
                    "event": {"type": "string", "enum": ["report-received", "verified", "delivered", "resume-request", "lifted"]},
                    "note": {"type": "string"}, "commitment": {"type": "boolean"},
                    "body": {"type": "string"}, "inspector": {"type": "string"},
                    "ground": {"type": "string", "enum": ["risk_increased", "interview_refused", "compliant", "transferred", "ceased"]}}},
                "DraftAction": {"type": "object", "properties": {"note": {"type": "string"},
                    "excluded_items": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                    "reason": {"type": "string"}}}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_of_the_api_is_in_the_document() {
        let doc = openapi();
        let paths = doc["paths"].as_object().map(|m| m.len()).unwrap_or(0);
        assert_eq!(paths, 11);
    }
}
