//! ferry's one error type. Every module's typed error is a variant here, so the exit
//! code of any failure is decided by one `match` the compiler checks (`classify`): a new
//! error type cannot be returned with `?` until it has a variant, and then it needs an
//! arm. Context added on the way up (`.context(...)`) keeps the cause below it, and the
//! cause keeps its exit code and hint.

use crate::exit::{Classify, ExitStatus};

/// A boxed [`ErrorKind`]: one pointer wide, so results stay small on the happy path.
#[derive(Debug)]
pub struct Error(Box<ErrorKind>);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl<E> From<E> for Error
where
    ErrorKind: From<E>,
{
    fn from(e: E) -> Error {
        Error(Box::new(ErrorKind::from(e)))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ErrorKind {
    #[error(transparent)]
    Spec(#[from] crate::spec::SpecError),
    #[error(transparent)]
    Key(#[from] crate::sign::KeyError),
    #[error(transparent)]
    Signature(#[from] crate::sign::SignatureError),
    #[error(transparent)]
    Verify(#[from] crate::bundle::VerifyError),
    #[error(transparent)]
    Write(#[from] crate::bundle::writer::WriteError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Source(#[from] crate::sources::SourceError),
    #[error(transparent)]
    Push(#[from] crate::targets::registry::PushError),
    #[error(transparent)]
    Usage(#[from] crate::commands::UsageError),
    #[error(transparent)]
    Python(#[from] crate::ecosystems::python::PythonError),
    #[error(transparent)]
    Model(#[from] crate::ecosystems::model::ModelError),
    #[error(transparent)]
    Conda(#[from] crate::ecosystems::conda::CondaError),
    #[error(transparent)]
    Name(#[from] crate::names::NameError),
    #[error(transparent)]
    Fetch(#[from] crate::fetch::FetchError),
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyError),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    #[error(transparent)]
    Cosign(#[from] crate::bundle::cosign::CosignError),
    #[error(transparent)]
    Base(#[from] crate::bundle::base::BaseError),
    #[error(transparent)]
    TrustPolicy(#[from] crate::trust::policy::PolicyError),
    #[error(transparent)]
    Serve(#[from] crate::serve::access::ServeError),
    #[error(transparent)]
    Inventory(#[from] crate::inventory::InventoryError),
    /// An error whose JSON form a `--json` command already printed on standard output
    /// (a policy verdict that denies): `main` prints it on stderr only.
    #[error(transparent)]
    Printed(Error),
    /// What ferry was doing when the error below happened.
    #[error("{message}")]
    Context {
        message: String,
        #[source]
        source: Error,
    },
    /// The machine: a file, a directory, a socket.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A failure that says all there is to say.
    #[error("{0}")]
    Message(String),
    /// A library's error with nothing ferry-specific to classify (JSON, HTTP, ...).
    #[error(transparent)]
    Other(Box<dyn std::error::Error + Send + Sync>),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn msg(message: impl Into<String>) -> Error {
        ErrorKind::Message(message.into()).into()
    }

    pub fn context(self, message: impl Into<String>) -> Error {
        ErrorKind::Context {
            message: message.into(),
            source: self,
        }
        .into()
    }

    /// Marks an error as already printed as JSON on standard output.
    pub fn printed(self) -> Error {
        ErrorKind::Printed(self).into()
    }

    /// Whether `--json` output already says what went wrong.
    pub fn was_printed(&self) -> bool {
        matches!(&*self.0, ErrorKind::Printed(_))
    }

    /// The exit code and hint of this error: those of its cause, through any context.
    pub fn classify(&self) -> (ExitStatus, Option<String>) {
        fn of(e: &impl Classify) -> (ExitStatus, Option<String>) {
            (e.exit_status(), e.hint())
        }
        match &*self.0 {
            ErrorKind::Spec(e) => of(e),
            ErrorKind::Key(e) => of(e),
            ErrorKind::Signature(e) => of(e),
            ErrorKind::Verify(e) => of(e),
            ErrorKind::Write(e) => of(e),
            ErrorKind::Store(e) => of(e),
            ErrorKind::Source(e) => of(e),
            ErrorKind::Push(e) => of(e),
            ErrorKind::Usage(e) => of(e),
            ErrorKind::Python(e) => of(e),
            ErrorKind::Model(e) => of(e),
            ErrorKind::Conda(e) => of(e),
            ErrorKind::Name(e) => of(e),
            ErrorKind::Fetch(e) => of(e),
            ErrorKind::TrustPolicy(e) => of(e),
            ErrorKind::Serve(e) => of(e),
            ErrorKind::Inventory(e) => of(e),
            ErrorKind::Cosign(e) => of(e),
            ErrorKind::Base(e) => of(e),
            ErrorKind::Policy(e) => of(e),
            ErrorKind::Audit(e) => of(e),
            ErrorKind::Context { source, .. } | ErrorKind::Printed(source) => source.classify(),
            ErrorKind::Io(_) | ErrorKind::Message(_) | ErrorKind::Other(_) => {
                (ExitStatus::Error, None)
            }
        }
    }

    /// The messages from the top down: this error, then each cause.
    pub fn chain(&self) -> impl Iterator<Item = &(dyn std::error::Error + 'static)> {
        let mut next: Option<&(dyn std::error::Error + 'static)> = Some(self as _);
        std::iter::from_fn(move || {
            let current = next?;
            next = current.source();
            Some(current)
        })
    }
}

/// Library errors that carry no exit code of their own become `Error::Other`.
macro_rules! other {
    ($($t:ty),* $(,)?) => {$(
        impl From<$t> for ErrorKind {
            fn from(e: $t) -> ErrorKind {
                ErrorKind::Other(Box::new(e))
            }
        }
    )*};
}
other!(
    serde_json::Error,
    reqwest::Error,
    tokio::task::JoinError,
    toml::de::Error,
    tempfile::PersistError,
    std::time::SystemTimeError,
    time::error::Format,
    std::string::FromUtf8Error,
    rattler_package_streaming::ExtractError,
    rattler_conda_types::ConvertSubdirError,
    // ferry's own, with no exit code of their own: what they fail on is malformed
    // input that no signature vouched for (an upstream's manifest, a digest string).
    crate::oci::ManifestError,
    crate::digest::BadDigest,
);

/// `.context(...)` and `.with_context(|| ...)` on results and options, as anyhow has.
pub trait Context<T> {
    fn context(self, message: impl Into<String>) -> Result<T>;
    fn with_context<M: Into<String>>(self, message: impl FnOnce() -> M) -> Result<T>;
}

impl<T, E: Into<Error>> Context<T> for std::result::Result<T, E> {
    fn context(self, message: impl Into<String>) -> Result<T> {
        self.map_err(|e| e.into().context(message))
    }
    fn with_context<M: Into<String>>(self, message: impl FnOnce() -> M) -> Result<T> {
        self.map_err(|e| e.into().context(message()))
    }
}

impl<T> Context<T> for Option<T> {
    fn context(self, message: impl Into<String>) -> Result<T> {
        self.ok_or_else(|| Error::msg(message))
    }
    fn with_context<M: Into<String>>(self, message: impl FnOnce() -> M) -> Result<T> {
        self.ok_or_else(|| Error::msg(message()))
    }
}

/// Returns early with a message, as `anyhow::bail!` does.
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::error::Error::msg(format!($($arg)*)))
    };
}
pub(crate) use bail;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_keeps_the_cause_and_its_exit_code() {
        let cause = crate::names::ProjectName::new("../x").unwrap_err();
        let e = Error::from(cause).context("cannot read the record");
        assert_eq!(e.classify().0, ExitStatus::Verification);
        let messages: Vec<String> = e.chain().map(|c| c.to_string()).collect();
        assert_eq!(messages[0], "cannot read the record");
        assert!(messages.len() >= 2);
        assert_eq!(Error::msg("x").classify().0, ExitStatus::Error);
    }
}
