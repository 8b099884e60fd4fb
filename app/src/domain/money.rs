//! Money as integer minor units with its currency. Never a float.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("currency must be three upper-case ISO 4217 letters (found {0:?})")]
    BadCurrency(String),
    #[error("cannot combine {0} with {1}")]
    CurrencyMismatch(Currency, Currency),
    #[error("amount out of range")]
    Overflow,
}

/// An ISO 4217 currency code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency([u8; 3]);

impl Currency {
    pub const EUR: Currency = Currency(*b"EUR");
    pub const GBP: Currency = Currency(*b"GBP");

    pub fn parse(raw: &str) -> Result<Self, MoneyError> {
        let bytes = raw.as_bytes();
        match bytes {
            [a, b, c] if bytes.iter().all(u8::is_ascii_uppercase) => Ok(Self([*a, *b, *c])),
            _ => Err(MoneyError::BadCurrency(raw.to_owned())),
        }
    }

    pub fn code(&self) -> &str {
        // Only ASCII upper-case letters are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }

    /// Digits after the decimal point (ISO 4217 minor unit).
    pub fn exponent(&self) -> u32 {
        match &self.0 {
            b"JPY" | b"KRW" | b"ISK" | b"CLP" | b"VND" => 0,
            b"BHD" | b"KWD" | b"OMR" | b"JOD" | b"TND" => 3,
            _ => 2,
        }
    }

    fn symbol(&self) -> Option<&'static str> {
        match &self.0 {
            b"EUR" => Some("€"),
            b"GBP" => Some("£"),
            b"USD" => Some("$"),
            _ => None,
        }
    }
}

impl TryFrom<String> for Currency {
    type Error = MoneyError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Currency> for String {
    fn from(value: Currency) -> Self {
        value.code().to_owned()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// An amount of money: integer minor units (cents, pence) of one currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    pub minor: i64,
    pub currency: Currency,
}

impl Money {
    pub fn new(minor: i64, currency: Currency) -> Self {
        Self { minor, currency }
    }

    pub fn zero(currency: Currency) -> Self {
        Self { minor: 0, currency }
    }

    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::CurrencyMismatch(self.currency, other.currency));
        }
        let minor = self.minor.checked_add(other.minor).ok_or(MoneyError::Overflow)?;
        Ok(Money { minor, currency: self.currency })
    }
}

impl fmt::Display for Money {
    /// `€1.05`, `-£0.40`, `1,250 JPY`-style output is left to the edges; this is the plain form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let exp = self.currency.exponent();
        let sign = if self.minor < 0 { "-" } else { "" };
        let abs = self.minor.unsigned_abs();
        let scale = 10u64.pow(exp);
        let (whole, frac) = (abs / scale, abs % scale);
        let number = if exp == 0 {
            format!("{whole}")
        } else {
            format!("{whole}.{frac:0width$}", width = exp as usize)
        };
        match self.currency.symbol() {
            Some(sym) => write!(f, "{sign}{sym}{number}"),
            None => write!(f, "{sign}{number} {}", self.currency),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn formats_minor_units_by_currency_exponent() {
        let cases = [
            (Money::new(105, Currency::EUR), "€1.05"),
            (Money::new(-40, Currency::GBP), "-£0.40"),
            (Money::new(0, Currency::EUR), "€0.00"),
            (Money::new(1250, Currency::parse("JPY").expect("valid")), "1250 JPY"),
            (Money::new(1234, Currency::parse("KWD").expect("valid")), "1.234 KWD"),
        ];
        for (money, want) in cases {
            assert_eq!(money.to_string(), want);
        }
    }

    #[test]
    fn currencies_are_three_capital_letters() {
        assert!(Currency::parse("EUR").is_ok());
        assert!(Currency::parse("eur").is_err());
        assert!(Currency::parse("EURO").is_err());
    }

    #[test]
    fn adding_different_currencies_is_an_error() {
        let err = Money::new(1, Currency::EUR).checked_add(Money::new(1, Currency::GBP));
        assert_eq!(err, Err(MoneyError::CurrencyMismatch(Currency::EUR, Currency::GBP)));
    }

    proptest! {
        #[test]
        fn display_round_trips_the_minor_units(minor in -10_000_000i64..10_000_000) {
            let shown = Money::new(minor, Currency::EUR).to_string();
            let digits: String = shown.chars().filter(|c| c.is_ascii_digit()).collect();
            let back: i64 = digits.parse().expect("digits");
            prop_assert_eq!(back, minor.abs());
            prop_assert_eq!(shown.starts_with('-'), minor < 0);
        }
    }
}
