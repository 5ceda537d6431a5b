//! Prefixed identifiers. The body is a ULID, so identifiers sort by creation time, which is what
//! cursor pagination ("newest first") relies on. A monotonic generator keeps ids made within the
//! same millisecond in creation order too.

use std::sync::Mutex;

static GENERATOR: Mutex<Option<ulid::Generator>> = Mutex::new(None);

fn next_ulid() -> ulid::Ulid {
    let mut guard = GENERATOR.lock().unwrap_or_else(|p| p.into_inner());
    let generator = guard.get_or_insert_with(ulid::Generator::new);
    // Overflow only happens after 2^80 ids in one millisecond; fall back to a fresh ULID.
    generator.generate().unwrap_or_else(|_| ulid::Ulid::new())
}

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A new, unique identifier.
            pub fn generate() -> Self {
                Self(format!("{}{}", $prefix, next_ulid()))
            }

            /// Accepts a string only if it carries this type's prefix and a well-formed body.
            pub fn parse(s: &str) -> Option<Self> {
                let body = s.strip_prefix($prefix)?;
                ulid::Ulid::from_string(body).ok()?;
                Some(Self(s.to_owned()))
            }

            /// Wraps a value read back from the store, which only ever holds ids it generated.
            pub fn from_trusted(s: String) -> Self {
                Self(s)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

prefixed_id!(/// A workspace: the isolation boundary.
    WorkspaceId, "ws_");
prefixed_id!(/// A publishable key's id (its secret value starts `pk_`).
    PublishableKeyId, "pkey_");
prefixed_id!(/// An API key's id (its secret value starts `sk_`).
    ApiKeyId, "key_");
prefixed_id!(/// One entry of the audit log.
    AuditId, "aud_");
prefixed_id!(/// A member of the team that runs the installation (signs in to the console).
    MemberId, "mem_");
prefixed_id!(/// A signed-in console session.
    ConsoleSessionId, "csn_");
prefixed_id!(/// A connection: a configured destination inside one workspace.
    ConnectionId, "conn_");
prefixed_id!(/// A rule routing events to a connection.
    RuleId, "rule_");
prefixed_id!(/// An accepted event.
    EventId, "evt_");
prefixed_id!(/// One event through one rule.
    DeliveryId, "dlv_");
prefixed_id!(/// An embed session.
    SessionId, "sess_");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_carry_their_prefix_and_parse_back() {
        let id = EventId::generate();
        assert!(id.as_str().starts_with("evt_"));
        assert_eq!(EventId::parse(id.as_str()), Some(id));
    }

    #[test]
    fn ids_with_another_prefix_or_a_bad_body_are_refused() {
        let ws = WorkspaceId::generate();
        assert!(EventId::parse(ws.as_str()).is_none());
        assert!(EventId::parse("evt_not-a-ulid").is_none());
    }

    #[test]
    fn ids_sort_in_creation_order() {
        let ids: Vec<_> = (0..1000).map(|_| DeliveryId::generate()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
    }
}
