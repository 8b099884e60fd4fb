//! A retailer's white-label theme: `themes/<slug>/theme.toml` becomes CSS variables the Tailwind
//! classes (`bg-brand`, `text-ink`, …) read, so one set of pages wears every retailer's colours.

use super::ids::Slug;
use serde::{Deserialize, Serialize};

/// The file as written by a person. Every field is checked by [`Theme::from_file`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThemeFile {
    pub name: String,
    pub logo: Option<String>,
    #[serde(default = "default_languages")]
    pub languages: Vec<String>,
    pub colours: ColoursFile,
    pub support: SupportFile,
}

fn default_languages() -> Vec<String> {
    vec!["en".to_owned()]
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColoursFile {
    pub primary: String,
    pub on_primary: String,
    pub accent: String,
    pub background: String,
    pub text: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupportFile {
    pub phone: Option<String>,
    pub email: Option<String>,
}

/// What is wrong with a theme, naming the field so the person editing it can find it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}`: {reason}")]
pub struct ThemeError {
    pub field: &'static str,
    pub reason: String,
}

fn field_error(field: &'static str, reason: impl Into<String>) -> ThemeError {
    ThemeError { field, reason: reason.into() }
}

/// A colour as `#rrggbb`; nothing else can reach a `style` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rgb(pub [u8; 3]);

impl Rgb {
    pub fn parse(raw: &str) -> Option<Self> {
        let hex = raw.strip_prefix('#')?;
        if hex.len() != 6 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).ok();
        Some(Self([byte(0)?, byte(2)?, byte(4)?]))
    }

    pub fn css(&self) -> String {
        format!("#{:02x}{:02x}{:02x}", self.0[0], self.0[1], self.0[2])
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Colours {
    pub primary: Rgb,
    pub on_primary: Rgb,
    pub accent: Rgb,
    pub background: Rgb,
    pub text: Rgb,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Support {
    pub phone: Option<String>,
    pub email: Option<String>,
}

/// A checked theme, ready to render.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Theme {
    pub slug: Slug,
    pub name: String,
    /// File name of the logo inside the theme's folder, served at `/themes/<slug>/<logo>`.
    pub logo: Option<String>,
    pub languages: Vec<String>,
    pub colours: Colours,
    pub support: Support,
}

impl Theme {
    pub fn from_file(slug: Slug, file: ThemeFile) -> Result<Self, ThemeError> {
        let name = file.name.trim().to_owned();
        if name.is_empty() || name.len() > 80 {
            return Err(field_error("name", "must be 1 to 80 characters"));
        }
        let colour = |field: &'static str, raw: &str| {
            Rgb::parse(raw).ok_or_else(|| field_error(field, format!("{raw:?} is not a #rrggbb colour")))
        };
        let colours = Colours {
            primary: colour("colours.primary", &file.colours.primary)?,
            on_primary: colour("colours.on_primary", &file.colours.on_primary)?,
            accent: colour("colours.accent", &file.colours.accent)?,
            background: colour("colours.background", &file.colours.background)?,
            text: colour("colours.text", &file.colours.text)?,
        };
        if let Some(logo) = &file.logo {
            let ok_name = !logo.is_empty()
                && logo.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                && !logo.starts_with('.')
                && [".svg", ".png", ".webp"].iter().any(|ext| logo.ends_with(ext));
            if !ok_name {
                return Err(field_error(
                    "logo",
                    "must be a file name in the theme folder ending .svg, .png or .webp",
                ));
            }
        }
        if file.languages.is_empty() {
            return Err(field_error("languages", "must list at least one language"));
        }
        if let Some(bad) =
            file.languages.iter().find(|l| !(l.len() == 2 && l.chars().all(|c| c.is_ascii_lowercase())))
        {
            return Err(field_error("languages", format!("{bad:?} is not a two-letter ISO 639-1 code")));
        }
        let support = Support { phone: non_empty(file.support.phone), email: non_empty(file.support.email) };
        if support.phone.is_none() && support.email.is_none() {
            return Err(field_error("support", "needs a phone or an email so drivers can get help"));
        }
        if let Some(email) = &support.email {
            if !email.contains('@') {
                return Err(field_error("support.email", format!("{email:?} is not an email address")));
            }
        }
        Ok(Self { slug, name, logo: file.logo, languages: file.languages, colours, support })
    }

    /// The CSS custom properties `style/tailwind.css` maps onto Tailwind colours.
    pub fn css_variables(&self) -> String {
        let c = &self.colours;
        format!(
            "--brand-primary:{};--brand-on-primary:{};--brand-accent:{};--brand-background:{};--brand-text:{};",
            c.primary.css(),
            c.on_primary.css(),
            c.accent.css(),
            c.background.css(),
            c.text.css()
        )
    }

    pub fn logo_url(&self) -> Option<String> {
        self.logo.as_ref().map(|logo| format!("/themes/{}/{logo}", self.slug))
    }
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> ThemeFile {
        ThemeFile {
            name: "FreshMart".into(),
            logo: Some("logo.svg".into()),
            languages: vec!["en".into(), "nl".into()],
            colours: ColoursFile {
                primary: "#0B8A3E".into(),
                on_primary: "#ffffff".into(),
                accent: "#f5b700".into(),
                background: "#f4faf6".into(),
                text: "#10261a".into(),
            },
            support: SupportFile { phone: Some("+44 20 7946 0000".into()), email: None },
        }
    }

    fn slug() -> Slug {
        Slug::parse("freshmart").expect("valid slug")
    }

    #[test]
    fn a_good_theme_becomes_css_variables() {
        let theme = Theme::from_file(slug(), file()).expect("valid theme");
        assert!(theme.css_variables().starts_with("--brand-primary:#0b8a3e;"));
        assert_eq!(theme.logo_url().as_deref(), Some("/themes/freshmart/logo.svg"));
    }

    #[test]
    fn each_broken_field_is_named() {
        type Breaker = fn(&mut ThemeFile);
        let cases: &[(&str, Breaker)] = &[
            ("name", |f| f.name = " ".into()),
            ("colours.primary", |f| f.colours.primary = "green".into()),
            ("colours.text", |f| f.colours.text = "#12345".into()),
            ("colours.accent", |f| f.colours.accent = "#12345g".into()),
            ("logo", |f| f.logo = Some("../secret.svg".into())),
            ("languages", |f| f.languages = vec!["english".into()]),
            ("support", |f| f.support = SupportFile { phone: None, email: Some(" ".into()) }),
            ("support.email", |f| f.support.email = Some("nobody".into())),
        ];
        for (field, breaker) in cases {
            let mut broken = file();
            breaker(&mut broken);
            let err = Theme::from_file(slug(), broken).expect_err(field);
            assert_eq!(err.field, *field);
        }
    }

    #[test]
    fn style_injection_cannot_pass_as_a_colour() {
        assert_eq!(Rgb::parse("#000000;background:url(x)"), None);
        assert_eq!(Rgb::parse("#a1b2c3"), Some(Rgb([0xa1, 0xb2, 0xc3])));
    }
}
