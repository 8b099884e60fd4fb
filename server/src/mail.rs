//! Mail to people (password reset links, invitations) over SMTP via lettre. The server's URL for
//! it may carry a password, so it is kept out of logs like the database's.

use lettre::message::{header::ContentType, Mailbox};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("the SMTP URL is not usable: {0}")]
    Url(String),
    #[error("{0:?} is not an email address")]
    Address(String),
    #[error("the mail could not be built: {0}")]
    Build(String),
    #[error("the SMTP server did not take the mail: {0}")]
    Send(String),
}

/// An SMTP server's URL (`smtp://host:port`, `smtps://user:pass@host`, `smtp://…?tls=required`):
/// shown without its password.
#[derive(Clone)]
pub struct SmtpUrl(String);

impl SmtpUrl {
    pub fn parse(raw: &str) -> Result<SmtpUrl, MailError> {
        let scheme_ok = raw.starts_with("smtp://") || raw.starts_with("smtps://");
        if !scheme_ok {
            return Err(MailError::Url("it must start with smtp:// or smtps://".into()));
        }
        Ok(SmtpUrl(raw.to_owned()))
    }
}

impl std::fmt::Debug for SmtpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Everything between the scheme and '@' is a user and a password.
        match (self.0.split_once("://"), self.0.rfind('@')) {
            (Some((scheme, _)), Some(at)) => write!(f, "{scheme}://***{}", &self.0[at..]),
            _ => write!(f, "{}", self.0),
        }
    }
}

/// Sends mail as one sender.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

/// A mail's subject and plain-text body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Letter {
    pub subject: String,
    pub body: String,
}

impl Mailer {
    pub fn new(url: &SmtpUrl, from: &str) -> Result<Mailer, MailError> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&url.0)
            .map_err(|e| MailError::Url(e.to_string()))?
            .timeout(Some(std::time::Duration::from_secs(20)))
            .build();
        let from = from.parse().map_err(|_| MailError::Address(from.to_owned()))?;
        Ok(Mailer { transport, from })
    }

    pub async fn send(&self, to: &str, letter: Letter) -> Result<(), MailError> {
        let to: Mailbox = to.parse().map_err(|_| MailError::Address(to.to_owned()))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(letter.subject)
            .header(ContentType::TEXT_PLAIN)
            .body(letter.body)
            .map_err(|e| MailError::Build(e.to_string()))?;
        self.transport.send(message).await.map_err(|e| MailError::Send(e.to_string()))?;
        Ok(())
    }
}

/// The mail with a password reset link.
pub fn reset_letter(link: &str, valid_minutes: i64) -> Letter {
    Letter {
        subject: "Reset your Forecourt password".to_owned(),
        body: format!(
            "Someone asked to reset the password of this Forecourt account. If it was you, choose a new \
             password here within {valid_minutes} minutes:\n\n{link}\n\nThe link works once. If it was not you, \
             ignore this mail: your password stays as it is.\n"
        ),
    }
}

/// The mail with an invitation to a new account.
pub fn invite_letter(link: &str, role: &str, invited_by: &str, valid_days: i64) -> Letter {
    Letter {
        subject: "You are invited to Forecourt".to_owned(),
        body: format!(
            "{invited_by} made you a Forecourt account ({role}). Choose your password here within \
             {valid_days} days to start:\n\n{link}\n\nThe link works once.\n"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_smtp_url_never_shows_its_password() {
        let url = SmtpUrl::parse("smtps://mailer:s3cret@smtp.example.com:465").expect("url");
        let shown = format!("{url:?}");
        assert!(!shown.contains("s3cret") && !shown.contains("mailer"), "{shown}");
        assert!(shown.ends_with("@smtp.example.com:465"), "{shown}");
        assert_eq!(
            format!("{:?}", SmtpUrl::parse("smtp://127.0.0.1:8025").expect("url")),
            "smtp://127.0.0.1:8025"
        );
        assert!(SmtpUrl::parse("http://mail.example.com").is_err());
    }

    #[test]
    fn letters_carry_their_link() {
        let reset = reset_letter("https://cp.example/set-password/abc", 60);
        assert!(reset.body.contains("https://cp.example/set-password/abc"));
        assert!(reset.body.contains("60 minutes"));
        let invite =
            invite_letter("https://cp.example/set-password/xyz", "Retailer viewer", "boss@shop.example", 7);
        assert!(invite.body.contains("https://cp.example/set-password/xyz"));
        assert!(invite.body.contains("boss@shop.example"));
    }
}
