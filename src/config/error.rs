//! Configuration problems, each tied to the key an operator has to edit.

use std::fmt;

/// One problem. `path` is the dotted key path (`upstream.timeout`,
/// `rate_limit.api_keys[0].key`); it is empty for problems with the file as
/// a whole (unreadable, not TOML).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }

    /// A TOML syntax error, located by line and column instead of toml's
    /// multi-line source excerpt so every problem stays one line.
    pub(crate) fn syntax(text: &str, err: &toml::de::Error) -> Self {
        let message = err
            .message()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        let location = err.span().map(|span| {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!(" at line {line}, column {column}")
        });
        Self::new(
            "",
            format!(
                "TOML syntax error{}: {message}",
                location.unwrap_or_default()
            ),
        )
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in one pass, so an operator fixes a file in one go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// The key paths of all problems, in the order they were found.
    pub fn paths(&self) -> Vec<&str> {
        self.0.iter().map(|e| e.path.as_str()).collect()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, err) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{err}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(err: ConfigError) -> Self {
        Self(vec![err])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_one_problem_per_line() {
        let errs = ConfigErrors(vec![
            ConfigError::new("upstream.timeout", "bad"),
            ConfigError::new("", "cannot read x"),
        ]);
        assert_eq!(errs.to_string(), "upstream.timeout: bad\ncannot read x");
    }

    #[test]
    fn syntax_errors_are_single_line_with_location() {
        let text = "[server]\nlisten = \n";
        let err = text.parse::<toml::Table>().unwrap_err();
        let e = ConfigError::syntax(text, &err);
        assert!(e.message.starts_with("TOML syntax error at line 2"), "{e}");
        assert!(!e.message.contains('\n'));
    }
}
