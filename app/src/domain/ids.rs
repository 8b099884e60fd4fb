//! Typed identifiers. A raw `String` or `i64` never crosses a domain signature.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a textual identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{kind} must not be empty")]
    Empty { kind: &'static str },
    #[error("{kind} is longer than {max} characters")]
    TooLong { kind: &'static str, max: usize },
    #[error("{kind} may only contain letters, digits and - _ . : (found {found:?})")]
    BadCharacter { kind: &'static str, found: char },
    #[error("{kind} must be a positive number")]
    NotPositive { kind: &'static str },
}

/// The identity a charger presents in its OCPP URL (`/ocpp/{id}`).
///
/// OCPP 2.0.1 Part 2 §A00.FR.20x limits the identity to 48 characters from the URL's unreserved
/// set; we accept the common subset chargers actually use so it is safe in paths, logs and SQL.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ChargerId(String);

impl ChargerId {
    pub const MAX_LEN: usize = 48;

    pub fn parse(raw: &str) -> Result<Self, IdError> {
        const KIND: &str = "charger id";
        if raw.is_empty() {
            return Err(IdError::Empty { kind: KIND });
        }
        if raw.chars().count() > Self::MAX_LEN {
            return Err(IdError::TooLong { kind: KIND, max: Self::MAX_LEN });
        }
        if let Some(found) =
            raw.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')))
        {
            return Err(IdError::BadCharacter { kind: KIND, found });
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ChargerId {
    type Error = IdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<ChargerId> for String {
    fn from(value: ChargerId) -> Self {
        value.0
    }
}

impl fmt::Display for ChargerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A short, URL-safe name (a theme folder, a retailer's slug).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Slug(String);

impl Slug {
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        const KIND: &str = "slug";
        if raw.is_empty() {
            return Err(IdError::Empty { kind: KIND });
        }
        if raw.len() > 64 {
            return Err(IdError::TooLong { kind: KIND, max: 64 });
        }
        if let Some(found) =
            raw.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return Err(IdError::BadCharacter { kind: KIND, found });
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Slug {
    type Error = IdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Slug> for String {
    fn from(value: Slug) -> Self {
        value.0
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Database-assigned identifiers: one newtype each, so a site id can never be passed as a retailer id.
macro_rules! row_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

row_id!(
    /// A retailer: owns sites, a theme and its own dashboard.
    RetailerId
);
row_id!(
    /// A retail site with one grid connection.
    SiteId
);
row_id!(
    /// An operator or retailer account.
    UserId
);
row_id!(
    /// A tariff (prices for one site).
    TariffId
);
row_id!(
    /// A charging transaction as we record it (not the charger's own number).
    TransactionId
);

/// A connector number on a charger, counted from 1 as OCPP 1.6 does (0 means the whole charger).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConnectorNo(u32);

impl ConnectorNo {
    pub fn new(n: u32) -> Result<Self, IdError> {
        if n == 0 {
            return Err(IdError::NotPositive { kind: "connector number" });
        }
        Ok(Self(n))
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for ConnectorNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charger_ids_accept_what_chargers_use_and_refuse_the_rest() {
        let cases: &[(&str, Result<(), IdError>)] = &[
            ("FM-LDN-01", Ok(())),
            ("CP_42.a:b", Ok(())),
            ("", Err(IdError::Empty { kind: "charger id" })),
            ("a/b", Err(IdError::BadCharacter { kind: "charger id", found: '/' })),
            ("a b", Err(IdError::BadCharacter { kind: "charger id", found: ' ' })),
            (&"x".repeat(49), Err(IdError::TooLong { kind: "charger id", max: 48 })),
        ];
        for (raw, want) in cases {
            assert_eq!(ChargerId::parse(raw).map(|_| ()), *want, "{raw:?}");
        }
    }

    #[test]
    fn charger_id_refuses_bad_input_when_deserialized() {
        assert!(serde_json_like("\"ok-1\"").is_ok());
        assert!(serde_json_like("\"no/slash\"").is_err());
    }

    fn serde_json_like(s: &str) -> Result<ChargerId, String> {
        // serde's own value deserializer keeps this crate free of a JSON dependency.
        use serde::de::{value::StringDeserializer, IntoDeserializer};
        let inner = s.trim_matches('"').to_owned();
        let de: StringDeserializer<serde::de::value::Error> = inner.into_deserializer();
        ChargerId::deserialize(de).map_err(|e| e.to_string())
    }

    #[test]
    fn connector_zero_is_not_a_connector() {
        assert!(ConnectorNo::new(0).is_err());
        assert_eq!(ConnectorNo::new(2).map(ConnectorNo::get), Ok(2));
    }

    #[test]
    fn slugs_are_lowercase_words() {
        assert!(Slug::parse("fresh-mart2").is_ok());
        assert!(Slug::parse("Fresh").is_err());
        assert!(Slug::parse("../etc").is_err());
    }
}
