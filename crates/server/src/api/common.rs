//! Pieces every resource module uses: pagination, query strings, path ids, timestamps.

use crate::error::ApiError;
use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use switchyard_store::Page;

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 200;

/// `?limit=&cursor=` of every listing.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// 1..200, default 50.
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl ListParams {
    /// The store page: one more item than asked for, to know whether another page follows.
    pub fn page(&self) -> Result<Page, ApiError> {
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::invalid("limit", format!("must be between 1 and {MAX_LIMIT}")));
        }
        Ok(Page { limit: limit + 1, before: self.cursor.clone() })
    }
}

/// A page of results, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ListOf<T> {
    pub data: Vec<T>,
    /// Pass as `cursor` for the next page; null on the last one.
    pub next_cursor: Option<String>,
}

impl<T> ListOf<T> {
    /// Builds a page from `limit + 1` fetched items; `id` gives an item's cursor.
    pub fn from_fetched<S>(mut items: Vec<S>, page: &Page, id: impl Fn(&S) -> String, map: impl FnMut(S) -> T) -> Self {
        let limit = (page.limit - 1) as usize;
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(id)
        } else {
            None
        };
        Self { data: items.into_iter().map(map).collect(), next_cursor }
    }
}

/// A query string; malformed values are 400 in the API's error shape.
pub struct Q<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Q<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| Q(v))
            .map_err(|e| ApiError::bad_request(format!("invalid query string: {}", e.body_text())))
    }
}

/// Parses an id from a path; a malformed one is simply not found.
pub fn path_id<T>(raw: &str, parse: fn(&str) -> Option<T>, what: &str) -> Result<T, ApiError> {
    parse(raw).ok_or_else(|| ApiError::not_found(what))
}

/// Parses an optional RFC 3339 query or body value.
pub fn time_param(value: Option<&str>, field: &str) -> Result<Option<i64>, ApiError> {
    value.map(|v| switchyard_core::parse_rfc3339(v).ok_or_else(|| ApiError::invalid(field, "must be an RFC 3339 timestamp"))).transpose()
}

/// Checks a required display name.
pub fn check_name(name: &str, field: &str) -> Result<(), ApiError> {
    if name.trim().is_empty() || name.chars().count() > 200 {
        return Err(ApiError::invalid(field, "must be 1 to 200 characters"));
    }
    Ok(())
}

pub fn ts(ms: i64) -> String {
    switchyard_core::rfc3339(ms)
}

/// `resource` and `resource_id` given together (each 1..256 characters), or neither.
pub fn resource_pair(
    resource: Option<String>,
    resource_id: Option<String>,
) -> Result<Option<switchyard_core::model::ResourceRef>, ApiError> {
    match (resource, resource_id) {
        (Some(resource), Some(resource_id)) => {
            for (field, value) in [("resource", &resource), ("resource_id", &resource_id)] {
                if value.is_empty() || value.len() > super::events::MAX_FIELD_LEN {
                    return Err(ApiError::invalid(field, format!("must be 1 to {} characters", super::events::MAX_FIELD_LEN)));
                }
            }
            Ok(Some(switchyard_core::model::ResourceRef { resource, resource_id }))
        }
        (None, None) => Ok(None),
        _ => Err(ApiError::invalid("resource", "give resource and resource_id together")),
    }
}
