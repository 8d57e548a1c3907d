//! The stream crate's error: the core's, and the broker's.

use pharmwatch_core::error::{CoreError, ErrorClass};

/// Result with [`StreamError`].
pub type Result<T, E = StreamError> = std::result::Result<T, E>;

/// Everything that can go wrong in this crate: the core's errors, and its own.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// An error of the core (store, files, queries, configuration …).
    #[error(transparent)]
    Core(#[from] CoreError),
    /// A broker call failed (connect, subscribe, seek, produce, administer topics).
    #[error("kafka ({context}): {source}")]
    Broker {
        /// What was being done (brokers, topic, partition).
        context: String,
        /// The client's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// The broker answered, but not as the service needs (a topic missing, partition counts
    /// that differ, a message refused).
    #[error("kafka ({context}): {reason}")]
    Kafka {
        /// What was being done.
        context: String,
        /// What is wrong and what to do.
        reason: String,
    },
}

impl StreamError {
    /// What a caller should do about the error.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Core(e) => e.class(),
            Self::Broker { .. } => ErrorClass::Retry,
            Self::Kafka { .. } => ErrorClass::BadInput,
        }
    }
}
