//! Loads every `themes/<slug>/theme.toml` at start-up. A broken file stops start-up with the
//! file and the field at fault; pages then look themes up by slug.

use app::domain::{Slug, Theme, ThemeFile};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The theme used when a retailer's own is missing.
pub const DEFAULT_THEME: &str = "forecourt";

#[derive(Debug, thiserror::Error)]
pub enum ThemeLoadError {
    #[error("cannot read the themes directory {dir}: {reason}")]
    Dir { dir: PathBuf, reason: String },
    #[error("theme file {file}: {reason}")]
    File { file: PathBuf, reason: String },
    #[error("the default theme {DEFAULT_THEME:?} is missing from {0}")]
    NoDefault(PathBuf),
}

#[derive(Debug, Clone)]
pub struct Themes {
    dir: PathBuf,
    by_slug: BTreeMap<Slug, Theme>,
}

impl Themes {
    pub fn load(dir: &Path) -> Result<Self, ThemeLoadError> {
        let entries = std::fs::read_dir(dir)
            .map_err(|e| ThemeLoadError::Dir { dir: dir.to_owned(), reason: e.to_string() })?;
        let mut by_slug = BTreeMap::new();
        for entry in entries {
            let entry =
                entry.map_err(|e| ThemeLoadError::Dir { dir: dir.to_owned(), reason: e.to_string() })?;
            let folder = entry.path();
            let file = folder.join("theme.toml");
            if !folder.is_dir() || !file.exists() {
                continue;
            }
            let fail = |reason: String| ThemeLoadError::File { file: file.clone(), reason };
            let name = entry.file_name().to_string_lossy().into_owned();
            let slug = Slug::parse(&name).map_err(|e| fail(format!("folder name: {e}")))?;
            let text = std::fs::read_to_string(&file).map_err(|e| fail(e.to_string()))?;
            let raw: ThemeFile =
                toml::from_str(&text).map_err(|e| fail(e.to_string().trim_end().to_owned()))?;
            let theme = Theme::from_file(slug.clone(), raw).map_err(|e| fail(e.to_string()))?;
            if let Some(logo) = &theme.logo {
                if !folder.join(logo).is_file() {
                    return Err(fail(format!("field `logo`: {logo} does not exist in {}", folder.display())));
                }
            }
            by_slug.insert(slug, theme);
        }
        let themes = Self { dir: dir.to_owned(), by_slug };
        if themes.by_slug.keys().all(|s| s.as_str() != DEFAULT_THEME) {
            return Err(ThemeLoadError::NoDefault(dir.to_owned()));
        }
        Ok(themes)
    }

    /// The named theme, or the default one.
    pub fn get(&self, slug: &str) -> &Theme {
        self.by_slug
            .iter()
            .find(|(s, _)| s.as_str() == slug)
            .or_else(|| self.by_slug.iter().find(|(s, _)| s.as_str() == DEFAULT_THEME))
            .map(|(_, t)| t)
            .expect("load() guarantees the default theme exists")
    }

    pub fn contains(&self, slug: &str) -> bool {
        self.by_slug.keys().any(|s| s.as_str() == slug)
    }

    /// The file a theme's logo is served from, if `file` is that theme's logo.
    pub fn logo_path(&self, slug: &str, file: &str) -> Option<PathBuf> {
        let theme = self.by_slug.iter().find(|(s, _)| s.as_str() == slug)?.1;
        (theme.logo.as_deref() == Some(file)).then(|| self.dir.join(slug).join(file))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r##"
name = "Test"
[colours]
primary = "#112233"
on_primary = "#ffffff"
accent = "#445566"
background = "#ffffff"
text = "#000000"
[support]
email = "help@example.com"
"##;

    fn dir_with(themes: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        for (slug, text) in themes {
            std::fs::create_dir_all(dir.path().join(slug)).expect("mkdir");
            std::fs::write(dir.path().join(slug).join("theme.toml"), text).expect("write");
        }
        dir
    }

    #[test]
    fn loads_themes_and_falls_back_to_the_default() {
        let dir = dir_with(&[("forecourt", GOOD), ("shop", &GOOD.replace("#112233", "#aa0000"))]);
        let themes = Themes::load(dir.path()).expect("loads");
        assert_eq!(themes.get("shop").colours.primary.css(), "#aa0000");
        assert_eq!(themes.get("missing").slug.as_str(), "forecourt");
    }

    #[test]
    fn a_broken_field_names_the_file_and_field() {
        let dir = dir_with(&[("forecourt", GOOD), ("shop", &GOOD.replace("#445566", "teal"))]);
        let err = Themes::load(dir.path()).expect_err("broken").to_string();
        assert!(err.contains("shop/theme.toml"), "{err}");
        assert!(err.contains("colours.accent"), "{err}");
    }

    #[test]
    fn a_missing_field_and_an_unknown_field_are_reported() {
        let dir = dir_with(&[("forecourt", &GOOD.replace("text = \"#000000\"\n", ""))]);
        let err = Themes::load(dir.path()).expect_err("missing").to_string();
        assert!(err.contains("text"), "{err}");
        let dir = dir_with(&[("forecourt", &GOOD.replace("name =", "colour = 1\nname ="))]);
        let err = Themes::load(dir.path()).expect_err("unknown").to_string();
        assert!(err.contains("colour"), "{err}");
    }

    #[test]
    fn a_missing_logo_file_is_reported() {
        let dir = dir_with(&[("forecourt", &format!("logo = \"logo.svg\"\n{GOOD}"))]);
        let err = Themes::load(dir.path()).expect_err("no logo").to_string();
        assert!(err.contains("logo.svg does not exist"), "{err}");
    }
}
