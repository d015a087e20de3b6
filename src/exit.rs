//! The process exit codes of DESIGN.md, and how an error chain maps onto them.

/// How `ferry` ends. `main` is the only place that turns this into a process exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Success = 0,
    /// Anything that is not one of the cases below: I/O, network, a missing file.
    Error = 1,
    /// Bad usage or a bad spec file.
    Usage = 2,
    /// A signature or a digest did not verify.
    Verification = 3,
    /// A policy denied it.
    PolicyDenied = 4,
}

impl From<ExitStatus> for std::process::ExitCode {
    fn from(status: ExitStatus) -> Self {
        std::process::ExitCode::from(status as u8)
    }
}

/// An error type that knows which exit code it deserves and, often, how to fix it.
pub trait Classify {
    fn exit_status(&self) -> ExitStatus;
    fn hint(&self) -> Option<String> {
        None
    }
}
