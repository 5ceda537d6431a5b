//! The OAuth apps an operator registered with each provider, read from the environment:
//! `SWITCHYARD_OAUTH_<PROVIDER>_CLIENT_ID` and `_CLIENT_SECRET` (required to enable a provider),
//! and optionally `_AUTHORIZE_URL`, `_TOKEN_URL`, `_REVOKE_URL`, `_SCOPES`, `_AUTHORIZE_PARAMS`
//! (extra query parameters, `a=b&c=d`), `_CLIENT_AUTH` (`basic` or `post`), Mailchimp's
//! `_METADATA_URL`, AWeber's `_ACCOUNTS_URL` and HubSpot's `_TOKEN_VERSION` (`v1` or `v3`).

use std::collections::BTreeMap;

/// The connection types that connect through OAuth, and the provider names their settings use.
pub const PROVIDERS: &[&str] = &["slack", "hubspot", "salesforce", "zoom", "aweber", "mailchimp"];

/// How the client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// HTTP Basic with the client id and secret (Zoom, AWeber).
    Basic,
    /// `client_id` and `client_secret` in the form body.
    Post,
}

#[derive(Clone)]
pub struct Provider {
    pub name: String,
    pub client_id: String,
    pub client_secret: String,
    pub authorize_url: String,
    pub token_url: String,
    pub revoke_url: Option<String>,
    pub scopes: String,
    pub authorize_params: Vec<(String, String)>,
    pub client_auth: ClientAuth,
    /// Mailchimp: where the data centre of a token is looked up.
    pub metadata_url: Option<String>,
    /// AWeber: where the account id of a token is looked up.
    pub accounts_url: Option<String>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("name", &self.name)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("authorize_url", &self.authorize_url)
            .field("token_url", &self.token_url)
            .finish_non_exhaustive()
    }
}

struct Defaults {
    authorize: &'static str,
    token: &'static str,
    revoke: Option<&'static str>,
    scopes: &'static str,
    auth: ClientAuth,
}

fn defaults(name: &str, hubspot_version: &str) -> Defaults {
    match name {
        "slack" => Defaults {
            authorize: "https://slack.com/oauth/v2/authorize",
            token: "https://slack.com/api/oauth.v2.access",
            revoke: Some("https://slack.com/api/auth.revoke"),
            scopes: "chat:write",
            auth: ClientAuth::Post,
        },
        "hubspot" => Defaults {
            authorize: "https://app.hubspot.com/oauth/authorize",
            token: if hubspot_version == "v3" { "https://api.hubapi.com/oauth/v3/token" } else { "https://api.hubapi.com/oauth/v1/token" },
            revoke: None,
            scopes: "crm.objects.contacts.read crm.objects.contacts.write crm.lists.read crm.lists.write",
            auth: ClientAuth::Post,
        },
        "salesforce" => Defaults {
            authorize: "https://login.salesforce.com/services/oauth2/authorize",
            token: "https://login.salesforce.com/services/oauth2/token",
            revoke: Some("https://login.salesforce.com/services/oauth2/revoke"),
            scopes: "api refresh_token",
            auth: ClientAuth::Post,
        },
        "zoom" => Defaults {
            authorize: "https://zoom.us/oauth/authorize",
            token: "https://zoom.us/oauth/token",
            revoke: Some("https://zoom.us/oauth/revoke"),
            scopes: "",
            auth: ClientAuth::Basic,
        },
        "aweber" => Defaults {
            authorize: "https://auth.aweber.com/oauth2/authorize",
            token: "https://auth.aweber.com/oauth2/token",
            revoke: Some("https://auth.aweber.com/oauth2/revoke"),
            scopes: "account.read list.read subscriber.read subscriber.write",
            auth: ClientAuth::Basic,
        },
        _ => Defaults {
            authorize: "https://login.mailchimp.com/oauth2/authorize",
            token: "https://login.mailchimp.com/oauth2/token",
            revoke: None,
            scopes: "",
            auth: ClientAuth::Post,
        },
    }
}

/// The configured providers, by connection type.
#[derive(Debug, Clone, Default)]
pub struct Providers(pub BTreeMap<String, Provider>);

impl Providers {
    /// Reads every provider's settings through `var` (the environment, in the binary).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let mut out = BTreeMap::new();
        for name in PROVIDERS {
            let key = |suffix: &str| var(&format!("SWITCHYARD_OAUTH_{}_{suffix}", name.to_uppercase())).filter(|v| !v.trim().is_empty());
            let (Some(client_id), Some(client_secret)) = (key("CLIENT_ID"), key("CLIENT_SECRET")) else {
                if key("CLIENT_ID").is_some() || key("CLIENT_SECRET").is_some() {
                    return Err(format!(
                        "SWITCHYARD_OAUTH_{0}_CLIENT_ID and SWITCHYARD_OAUTH_{0}_CLIENT_SECRET go together",
                        name.to_uppercase()
                    ));
                }
                continue;
            };
            let version = key("TOKEN_VERSION").unwrap_or_else(|| "v1".into());
            if !matches!(version.as_str(), "v1" | "v3") {
                return Err(format!("SWITCHYARD_OAUTH_{}_TOKEN_VERSION must be v1 or v3", name.to_uppercase()));
            }
            let d = defaults(name, &version);
            let client_auth = match key("CLIENT_AUTH").as_deref() {
                None => d.auth,
                Some("basic") => ClientAuth::Basic,
                Some("post") => ClientAuth::Post,
                Some(other) => {
                    return Err(format!("SWITCHYARD_OAUTH_{}_CLIENT_AUTH must be basic or post, not {other:?}", name.to_uppercase()))
                }
            };
            let authorize_params = key("AUTHORIZE_PARAMS")
                .map(|p| url::form_urlencoded::parse(p.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
                .unwrap_or_default();
            let provider = Provider {
                name: (*name).to_owned(),
                client_id,
                client_secret,
                authorize_url: key("AUTHORIZE_URL").unwrap_or_else(|| d.authorize.into()),
                token_url: key("TOKEN_URL").unwrap_or_else(|| d.token.into()),
                revoke_url: key("REVOKE_URL").or_else(|| d.revoke.map(str::to_owned)),
                scopes: key("SCOPES").unwrap_or_else(|| d.scopes.into()),
                authorize_params,
                client_auth,
                metadata_url: (*name == "mailchimp")
                    .then(|| key("METADATA_URL").unwrap_or_else(|| "https://login.mailchimp.com/oauth2/metadata".into())),
                accounts_url: (*name == "aweber")
                    .then(|| key("ACCOUNTS_URL").unwrap_or_else(|| "https://api.aweber.com/1.0/accounts".into())),
            };
            for (what, u) in [("AUTHORIZE_URL", &provider.authorize_url), ("TOKEN_URL", &provider.token_url)] {
                if url::Url::parse(u).map(|u| !matches!(u.scheme(), "http" | "https")).unwrap_or(true) {
                    return Err(format!("SWITCHYARD_OAUTH_{}_{what} is not an http(s) URL", name.to_uppercase()));
                }
            }
            out.insert((*name).to_owned(), provider);
        }
        Ok(Self(out))
    }

    pub fn get(&self, name: &str) -> Option<&Provider> {
        self.0.get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn providers_come_from_the_environment_with_vendor_defaults() {
        let vars: BTreeMap<&str, &str> = [
            ("SWITCHYARD_OAUTH_HUBSPOT_CLIENT_ID", "hs-id"),
            ("SWITCHYARD_OAUTH_HUBSPOT_CLIENT_SECRET", "hs-secret"),
            ("SWITCHYARD_OAUTH_HUBSPOT_TOKEN_VERSION", "v3"),
            ("SWITCHYARD_OAUTH_ZOOM_CLIENT_ID", "z-id"),
            ("SWITCHYARD_OAUTH_ZOOM_CLIENT_SECRET", "z-secret"),
            ("SWITCHYARD_OAUTH_ZOOM_TOKEN_URL", "http://127.0.0.1:9/token"),
            ("SWITCHYARD_OAUTH_ZOOM_AUTHORIZE_PARAMS", "prompt=consent&x=1"),
        ]
        .into();
        let p = Providers::from_vars(|k| vars.get(k).map(|v| v.to_string())).unwrap();
        assert_eq!(p.0.keys().collect::<Vec<_>>(), ["hubspot", "zoom"]);
        assert_eq!(p.get("hubspot").unwrap().token_url, "https://api.hubapi.com/oauth/v3/token");
        let zoom = p.get("zoom").unwrap();
        assert_eq!(zoom.token_url, "http://127.0.0.1:9/token");
        assert_eq!(zoom.client_auth, ClientAuth::Basic);
        assert_eq!(zoom.authorize_params, vec![("prompt".into(), "consent".into()), ("x".into(), "1".into())]);
        assert!(!format!("{zoom:?}").contains("z-secret"));
        let half = Providers::from_vars(|k| (k == "SWITCHYARD_OAUTH_SLACK_CLIENT_ID").then(|| "x".to_owned()));
        assert!(half.unwrap_err().contains("go together"));
    }
}
