//! A connector's presence code: eight characters printed on the sticker beside its QR code (and in
//! the URL the QR code opens). A phone that shows it was at the charger, so only such a phone may
//! plan the session there: knowing a charger's id from afar is not enough.

use serde::{Deserialize, Serialize};

/// The characters a code uses: capitals and digits a person cannot mistake for one another
/// (no 0/O, 1/I, 2/Z, 5/S, 8/B).
pub const PRESENCE_ALPHABET: &[u8] = b"ACDEFGHJKLMNPQRTUVWXY34679";
pub const PRESENCE_LEN: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PresenceCode(String);

impl PresenceCode {
    /// A code as someone typed or scanned it: case and surrounding spaces do not matter.
    pub fn parse(raw: &str) -> Option<PresenceCode> {
        let code = raw.trim().to_ascii_uppercase();
        let fits = code.len() == PRESENCE_LEN && code.bytes().all(|b| PRESENCE_ALPHABET.contains(&b));
        fits.then_some(PresenceCode(code))
    }

    /// A code from random bytes (one per character; the server draws them).
    pub fn from_random(bytes: [u8; PRESENCE_LEN]) -> PresenceCode {
        // 256 is not a multiple of 26: the first 22 characters come up 10/256 of the time instead of
        // 9.8/256, a bias worth nothing to a guesser against 26^8 codes.
        let n = PRESENCE_ALPHABET.len();
        PresenceCode(bytes.iter().map(|b| char::from(PRESENCE_ALPHABET[usize::from(*b) % n])).collect())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `given` is this code, compared in time that does not depend on where they differ.
    pub fn proven_by(&self, given: Option<&str>) -> bool {
        let Some(given) = given.and_then(PresenceCode::parse) else { return false };
        let differing = self.0.bytes().zip(given.0.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b));
        differing == 0
    }
}

impl std::fmt::Display for PresenceCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_eight_unmistakable_characters() {
        let code = PresenceCode::from_random([0, 1, 25, 26, 255, 128, 77, 3]);
        assert_eq!(code.as_str().len(), PRESENCE_LEN);
        assert!(code.as_str().bytes().all(|b| PRESENCE_ALPHABET.contains(&b)));
        for look_alike in ["0", "O", "1", "I", "2", "Z", "5", "S", "8", "B"] {
            assert!(!PRESENCE_ALPHABET.contains(&look_alike.as_bytes()[0]), "{look_alike}");
        }
    }

    #[test]
    fn a_code_is_proven_by_itself_only_whatever_its_case() {
        let code = PresenceCode::parse("ACDE3479").expect("valid");
        assert!(code.proven_by(Some("acde3479 ")));
        assert!(!code.proven_by(Some("ACDE3476")));
        assert!(!code.proven_by(Some("ACDE347")));
        assert!(!code.proven_by(Some("")));
        assert!(!code.proven_by(None));
        assert_eq!(PresenceCode::parse("ACDE347O"), None, "O is not in the alphabet");
    }
}
