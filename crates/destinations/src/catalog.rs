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
    /// What a new connection gets unless it says otherwise: the vendor's own limits.
    pub limits: Limits,
}

/// Per-connection limits a new connection starts with (both can be overridden per connection).
#[derive(Debug, Clone, Copy, Default, Serialize, utoipa::ToSchema)]
pub struct Limits {
    /// Requests in flight at once; the server's default when absent.
    pub max_in_flight: Option<u32>,
    /// Deliveries started per minute; unlimited when absent.
    pub rate_limit_per_minute: Option<u32>,
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
    /// `string`, `secret`, `url`, `select`, `object`, `template`, `mapping`, `integer`.
    #[serde(rename = "type")]
    pub kind: String,
    pub required: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<serde_json::Value>,
    /// For templates: the output is HTML, so printed values are escaped.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub html: bool,
    /// The destination lists this field's choices: `GET /connections/{id}/options/{choices}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub choices: Option<String>,
}

impl CatalogEntry {
    /// An entry without limits, fields or actions, to be filled in by the connector.
    pub fn new(kind: &str, name: &str, description: &str, auth_kind: &str) -> Self {
        Self {
            kind: kind.into(),
            name: name.into(),
            description: description.into(),
            auth: AuthSpec { kind: auth_kind.into(), fields: Vec::new() },
            config_fields: Vec::new(),
            actions: Vec::new(),
            retries_may_duplicate: false,
            limits: Limits::default(),
        }
    }

    pub fn auth_fields(mut self, fields: Vec<FieldSpec>) -> Self {
        self.auth.fields = fields;
        self
    }

    pub fn config(mut self, fields: Vec<FieldSpec>) -> Self {
        self.config_fields = fields;
        self
    }

    pub fn action(mut self, key: &str, name: &str, fields: Vec<FieldSpec>) -> Self {
        self.actions.push(ActionSpec { key: key.into(), name: name.into(), fields });
        self
    }

    pub fn duplicates_on_retry(mut self, may: bool) -> Self {
        self.retries_may_duplicate = may;
        self
    }

    pub fn limits(mut self, max_in_flight: Option<u32>, rate_limit_per_minute: Option<u32>) -> Self {
        self.limits = Limits { max_in_flight, rate_limit_per_minute };
        self
    }
}

impl FieldSpec {
    pub fn new(key: &str, label: &str, kind: &str, required: bool) -> Self {
        Self {
            key: key.into(),
            label: label.into(),
            kind: kind.into(),
            required,
            description: None,
            options: Vec::new(),
            default: None,
            html: false,
            choices: None,
        }
    }

    pub fn describe(mut self, text: &str) -> Self {
        self.description = Some(text.into());
        self
    }

    pub fn options(mut self, options: &[&str]) -> Self {
        self.options = options.iter().map(|o| (*o).to_owned()).collect();
        self
    }

    /// Names the set of choices the destination lists for this field (`channels`, `lists`, ...).
    pub fn choices(mut self, set: &str) -> Self {
        self.choices = Some(set.into());
        self
    }

    /// Marks a template whose output is HTML.
    pub fn html(mut self) -> Self {
        self.html = true;
        self
    }

    pub fn default(mut self, value: serde_json::Value) -> Self {
        self.default = Some(value);
        self
    }
}
