//! The engine's error type: every error says whose problem it is and where it happened.

/// Whose problem an error is, which decides what the user is told and whether a retry
/// can help.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorDomain {
    /// A bad job, configuration or input path: the user must change something.
    User,
    /// A failure outside the engine (I/O, a broker): a retry may help.
    External,
    /// A broken invariant inside Sluice: a bug to report.
    Internal,
}

/// An error from building or running a job.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The job graph or a setting is invalid.
    #[error("invalid job: {message}")]
    InvalidJob {
        /// What is wrong and where.
        message: String,
    },
    /// A connector option is missing or has a bad value.
    #[error("invalid option '{key}' of {connector}: {message}")]
    InvalidOption {
        /// The connector that rejected the option.
        connector: String,
        /// The option's key.
        key: String,
        /// Why the value was rejected.
        message: String,
    },
    /// Reading or writing a file failed.
    #[error("cannot read or write {path}")]
    Io {
        /// The file involved.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An operator failed while running.
    #[error("operator '{operator}' failed: {message}")]
    Operator {
        /// The operator's name.
        operator: String,
        /// What went wrong.
        message: String,
    },
    /// The job was cancelled, or another part of it failed first.
    #[error("job cancelled")]
    Cancelled,
    /// A worker thread panicked outside any operator: a bug in Sluice.
    #[error("worker thread '{thread}' panicked: {message}")]
    WorkerPanicked {
        /// The thread's name.
        thread: String,
        /// The panic message.
        message: String,
    },
    /// An operator panicked while it ran: a bug in its user function, or in Sluice.
    #[error("operator '{operator}' panicked on worker {worker}: {message}")]
    OperatorPanicked {
        /// The operator's name.
        operator: String,
        /// The worker it ran on.
        worker: usize,
        /// The panic message.
        message: String,
    },
    /// An invariant inside Sluice does not hold: a bug to report.
    #[error("internal error (a bug in Sluice, please report it): {message}")]
    Internal {
        /// What does not hold, and where.
        message: String,
    },
    /// Keyed state could not be read, written or restored (a failing disk, state written
    /// by another version of the job).
    #[error("state of '{operator}': {message}")]
    State {
        /// The operator whose state failed.
        operator: String,
        /// What went wrong.
        message: String,
    },
    /// Taking, storing or restoring a checkpoint failed.
    #[error("checkpoint {location}: {message}")]
    Checkpoint {
        /// The checkpoint or file involved.
        location: String,
        /// What went wrong.
        message: String,
    },
}

impl Error {
    /// Whose problem this error is.
    pub fn domain(&self) -> ErrorDomain {
        match self {
            Error::InvalidJob { .. } | Error::InvalidOption { .. } => ErrorDomain::User,
            Error::Io { .. } => ErrorDomain::External,
            Error::Operator { .. } => ErrorDomain::External,
            Error::Cancelled => ErrorDomain::External,
            Error::WorkerPanicked { .. } | Error::OperatorPanicked { .. } | Error::Internal { .. } => {
                ErrorDomain::Internal
            }
            Error::Checkpoint { .. } | Error::State { .. } => ErrorDomain::External,
        }
    }

    /// What the user can do about an external failure, if a retry may help: the
    /// failure is not in the job, and running it again (once the cause outside is
    /// fixed) resumes from its latest checkpoint.
    pub fn retry_hint(&self) -> Option<&'static str> {
        match self {
            Error::Io { .. } => Some("check that the path exists, is writable and the disk has room, then run again"),
            Error::Operator { .. } => Some("the operator's service or resource failed; run again once it is back"),
            Error::State { .. } => Some(
                "check the state directory's disk; if the state was written by another version of the job, \
                 restore from a savepoint of this version",
            ),
            Error::Checkpoint { .. } => {
                Some("check the checkpoint location; a job run again resumes from its latest intact checkpoint")
            }
            _ => None,
        }
    }

    /// An [`Error::Internal`]: an invariant of Sluice does not hold.
    pub fn internal(message: impl Into<String>) -> Self {
        Error::Internal { message: message.into() }
    }

    /// An [`Error::InvalidJob`] with the given message.
    pub fn invalid_job(message: impl Into<String>) -> Self {
        Error::InvalidJob { message: message.into() }
    }

    /// An [`Error::Checkpoint`] about `location`.
    pub fn checkpoint(location: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Checkpoint { location: location.into(), message: message.into() }
    }

    /// An [`Error::Io`] for the given path.
    pub fn io(path: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}

/// A result whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
