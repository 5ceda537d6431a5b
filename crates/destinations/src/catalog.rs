//! The integrations catalog: what each destination needs and offers, as `GET /integrations` shows it.

use serde::Serialize;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CatalogEntry {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub description: String,
    pub auth: AuthSpec,
    pub config_fields: Vec<FieldSpec>,
    pub actions: Vec<ActionSpec>,
    /// True when a retry after a lost response can create a duplicate at the destination.
    pub retries_may_duplicate: bool,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuthSpec {
    /// `none`, `api_key` or `oauth`.
    #[serde(rename = "type")]
    pub kind: String,
    pub fields: Vec<FieldSpec>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ActionSpec {
    pub key: String,
    pub name: String,
    pub fields: Vec<FieldSpec>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FieldSpec {
    pub key: String,
    pub label: String,
    /// `string`, `url`, `select`, `object`, `secret` or `template`.
    #[serde(rename = "type")]
    pub kind: String,
    pub required: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<serde_json::Value>,
}

impl FieldSpec {
    pub fn new(key: &str, label: &str, kind: &str, required: bool) -> Self {
        Self { key: key.into(), label: label.into(), kind: kind.into(), required, description: None, options: Vec::new(), default: None }
    }

    pub fn describe(mut self, text: &str) -> Self {
        self.description = Some(text.into());
        self
    }

    pub fn options(mut self, options: &[&str]) -> Self {
        self.options = options.iter().map(|o| (*o).to_owned()).collect();
        self
    }

    pub fn default(mut self, value: serde_json::Value) -> Self {
        self.default = Some(value);
        self
    }
}
