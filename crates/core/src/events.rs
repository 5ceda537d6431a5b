//! Event names and the patterns rules subscribe with.
//!
//! A name is 1..128 characters of `[A-Za-z0-9_.:-]`. A pattern is an exact name, `*` (everything), or
//! a dotted name whose segments may be `*`: a `*` in the middle matches exactly one segment, a trailing
//! `*` matches one or more (`user.*` matches `user.created` and `user.email.changed`, not `user`).

pub const MAX_EVENT_NAME_LEN: usize = 128;

/// Why an event name was refused, phrased for an API client.
pub fn validate_event_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > MAX_EVENT_NAME_LEN {
        return Err(format!("must be at most {MAX_EVENT_NAME_LEN} characters"));
    }
    if let Some(c) = name.chars().find(|c| !is_name_char(*c)) {
        return Err(format!("contains {c:?}; allowed are letters, digits and _ . : -"));
    }
    Ok(())
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-')
}

/// A parsed subscription pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventPattern {
    Any,
    Exact(String),
    Segments(Vec<Segment>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    Wildcard,
}

impl EventPattern {
    pub fn parse(pattern: &str) -> Result<Self, String> {
        if pattern == "*" {
            return Ok(Self::Any);
        }
        if !pattern.contains('*') {
            validate_event_name(pattern)?;
            return Ok(Self::Exact(pattern.to_owned()));
        }
        if pattern.len() > MAX_EVENT_NAME_LEN {
            return Err(format!("must be at most {MAX_EVENT_NAME_LEN} characters"));
        }
        let mut segments = Vec::new();
        for part in pattern.split('.') {
            if part == "*" {
                segments.push(Segment::Wildcard);
            } else if part.contains('*') {
                return Err("a * must stand alone between dots, as in user.* or *.created".into());
            } else {
                validate_event_name(part)?;
                segments.push(Segment::Literal(part.to_owned()));
            }
        }
        Ok(Self::Segments(segments))
    }

    /// The exact event name, when the pattern is one.
    pub fn exact(&self) -> Option<&str> {
        match self {
            Self::Exact(name) => Some(name),
            _ => None,
        }
    }

    pub fn matches(&self, name: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(exact) => exact == name,
            Self::Segments(segments) => {
                let parts: Vec<&str> = name.split('.').collect();
                let last = segments.len() - 1;
                for (i, segment) in segments.iter().enumerate() {
                    let Some(part) = parts.get(i) else { return false };
                    match segment {
                        Segment::Literal(lit) if lit != part => return false,
                        Segment::Wildcard if i == last => return true,
                        _ => {}
                    }
                }
                parts.len() == segments.len()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_documented_alphabet_and_length() {
        assert!(validate_event_name("user.created").is_ok());
        assert!(validate_event_name("billing:invoice_paid-v2").is_ok());
        assert!(validate_event_name("").is_err());
        assert!(validate_event_name("user created").is_err());
        assert!(validate_event_name(&"a".repeat(129)).is_err());
        assert!(validate_event_name(&"a".repeat(128)).is_ok());
    }

    #[test]
    fn star_matches_everything() {
        let p = EventPattern::parse("*").unwrap();
        assert!(p.matches("user.created"));
        assert!(p.matches("x"));
    }

    #[test]
    fn trailing_star_matches_one_or_more_segments() {
        let p = EventPattern::parse("user.*").unwrap();
        assert!(p.matches("user.created"));
        assert!(p.matches("user.email.changed"));
        assert!(!p.matches("user"));
        assert!(!p.matches("users.created"));
        assert!(!p.matches("account.user.created"));
    }

    #[test]
    fn inner_star_matches_exactly_one_segment() {
        let p = EventPattern::parse("*.created").unwrap();
        assert!(p.matches("user.created"));
        assert!(!p.matches("user.created.late"));
        assert!(!p.matches("a.b.created"));
    }

    #[test]
    fn exact_patterns_match_only_themselves() {
        let p = EventPattern::parse("invoice.paid").unwrap();
        assert!(p.matches("invoice.paid"));
        assert!(!p.matches("invoice.paid.late"));
        assert_eq!(p.exact(), Some("invoice.paid"));
    }

    #[test]
    fn malformed_patterns_are_refused() {
        assert!(EventPattern::parse("user*").is_err());
        assert!(EventPattern::parse("us er.*").is_err());
        assert!(EventPattern::parse("").is_err());
    }
}
