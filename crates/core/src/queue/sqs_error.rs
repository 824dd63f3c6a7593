//! SQS errors by meaning, whatever the server calls them.
//!
//! SQS-speaking servers spell one error several ways: AWS answers a body
//! over `MaximumMessageSize` with `InvalidParameterValue`, LocalStack with
//! `InvalidParameterValueException`; the Rust SDK reports query-compatible
//! codes with an `AWS.SimpleQueueService.` prefix
//! (`AWS.SimpleQueueService.NonExistentQueue`), and the embedded queue uses
//! the bare names. Comparing codes as exact strings anywhere made ingest
//! retry a too-large message instead of re-packing it on LocalStack. So
//! every decision about an SQS error — ingest's sender, the writer's leases,
//! the start-up check — asks [`SqsErrorKind`], and only this module knows
//! spellings: [`classify_code`] for codes (calls and batch entries alike),
//! and the SDK's typed variants where it has them (`sdk_error.rs`).

/// What an SQS error means to Sluice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SqsErrorKind {
    /// One message is over the queue's `MaximumMessageSize`
    /// (`MessageTooLong`).
    MessageTooLarge,
    /// The bodies of one batch call total more than the call may carry
    /// (`BatchRequestTooLong`).
    BatchTooLong,
    /// A parameter was refused (`InvalidParameterValue`). In answer to a
    /// send, whose only parameters are bodies, AWS, moto and LocalStack mean
    /// a body over `MaximumMessageSize`.
    InvalidParameter,
    /// A body holds characters SQS does not carry (`InvalidMessageContents`).
    InvalidContents,
    /// The service asks the caller to slow down (`RequestThrottled`,
    /// `ThrottlingException`, `KMS.ThrottlingException`).
    Throttled,
    /// The queue does not exist (`NonExistentQueue`, `QueueDoesNotExist`).
    QueueMissing,
    /// A receipt handle is not, or no longer, valid
    /// (`ReceiptHandleIsInvalid`, `InvalidReceiptHandle`).
    ReceiptInvalid,
    /// A visibility change for a message that is not in flight
    /// (`MessageNotInflight`): the message is no longer held.
    NotInFlight,
    /// The batch itself is malformed: empty, too many entries, repeated or
    /// bad entry ids. A bug of the caller's.
    BadBatch,
    /// Credentials or permissions (`AccessDenied`, `InvalidSecurity`,
    /// `InvalidClientTokenId`, `SignatureDoesNotMatch`, …).
    AccessDenied,
    /// The service failed on its side (`InternalError`, `ServiceUnavailable`).
    ServerError,
    /// No answer: the connection failed or the call timed out.
    NoAnswer,
    /// The embedded queue refuses sends until the writers drain it, or its
    /// disk is full (`QueueFull`; SQS has no such limit).
    QueueFull,
    /// Anything else.
    Other,
}

impl SqsErrorKind {
    /// The answer to a send means a body, or the call's bodies together,
    /// are too large: re-pack smaller or split the call rather than retry.
    pub fn is_too_large(self) -> bool {
        matches!(
            self,
            Self::MessageTooLarge | Self::BatchTooLong | Self::InvalidParameter
        )
    }

    /// Retrying the same call later may succeed.
    pub fn is_transient(self) -> bool {
        matches!(self, Self::Throttled | Self::ServerError | Self::NoAnswer)
    }

    /// The receipt handle no longer holds its message: it was deleted,
    /// its visibility ran out, or another receive took it.
    pub fn handle_is_gone(self) -> bool {
        matches!(self, Self::ReceiptInvalid | Self::NotInFlight)
    }

    /// A short, stable name for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MessageTooLarge => "message_too_large",
            Self::BatchTooLong => "batch_too_long",
            Self::InvalidParameter => "invalid_parameter",
            Self::InvalidContents => "invalid_contents",
            Self::Throttled => "throttled",
            Self::QueueMissing => "queue_missing",
            Self::ReceiptInvalid => "receipt_invalid",
            Self::NotInFlight => "not_in_flight",
            Self::BadBatch => "bad_batch",
            Self::AccessDenied => "access_denied",
            Self::ServerError => "server_error",
            Self::NoAnswer => "no_answer",
            Self::QueueFull => "queue_full",
            Self::Other => "other",
        }
    }
}

impl std::fmt::Display for SqsErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The codes the embedded queue answers with, as SQS names them (bare).
pub mod codes {
    pub const MESSAGE_TOO_LONG: &str = "MessageTooLong";
    pub const BATCH_REQUEST_TOO_LONG: &str = "BatchRequestTooLong";
    pub const INVALID_PARAMETER_VALUE: &str = "InvalidParameterValue";
    pub const INVALID_MESSAGE_CONTENTS: &str = "InvalidMessageContents";
    pub const MISSING_PARAMETER: &str = "MissingParameter";
    pub const RECEIPT_HANDLE_IS_INVALID: &str = "ReceiptHandleIsInvalid";
    pub const EMPTY_BATCH_REQUEST: &str = "EmptyBatchRequest";
    pub const TOO_MANY_ENTRIES_IN_BATCH_REQUEST: &str = "TooManyEntriesInBatchRequest";
    /// The embedded queue's own: see [`super::SqsErrorKind::QueueFull`].
    pub const QUEUE_FULL: &str = "QueueFull";
}

/// The code without what servers add around it: the `AWS.SimpleQueueService.`
/// (or any `AWS.<service>.`) prefix, a Smithy shape prefix
/// (`com.amazonaws.sqs#`), a `;Sender` fault suffix, and an `Exception`
/// suffix.
pub fn bare_code(code: &str) -> &str {
    let code = code.trim();
    let code = code.split(';').next().unwrap_or(code);
    let code = code.rsplit('#').next().unwrap_or(code);
    let code = code.strip_prefix("AWS.SimpleQueueService.").unwrap_or(code);
    code.strip_suffix("Exception").unwrap_or(code)
}

/// What an SQS error code means; any spelling of it.
pub fn classify_code(code: &str) -> SqsErrorKind {
    use SqsErrorKind::*;
    let bare = bare_code(code);
    // Compared without case: servers disagree on `MessageNotInflight`.
    match bare.to_ascii_lowercase().as_str() {
        "messagetoolong" => MessageTooLarge,
        "batchrequesttoolong" => BatchTooLong,
        "invalidparametervalue" | "invalidparametervalues" | "invalidattributevalue" => {
            InvalidParameter
        }
        "invalidmessagecontents" => InvalidContents,
        "requestthrottled"
        | "throttling"
        | "throttlingexception"
        | "kms.throttling"
        | "toomanyrequests"
        | "overlimit" => Throttled,
        "nonexistentqueue" | "queuedoesnotexist" | "queuedeletedrecently" => QueueMissing,
        "receipthandleisinvalid" | "invalidreceipthandle" => ReceiptInvalid,
        "messagenotinflight" => NotInFlight,
        "emptybatchrequest"
        | "toomanyentriesinbatchrequest"
        | "batchentryidsnotdistinct"
        | "invalidbatchentryid"
        | "missingparameter" => BadBatch,
        "accessdenied"
        | "invalidsecurity"
        | "invalidclienttokenid"
        | "signaturedoesnotmatch"
        | "unrecognizedclient"
        | "missingauthenticationtoken"
        | "incompletesignature"
        | "expiredtoken"
        | "kms.accessdenied" => AccessDenied,
        "internalerror" | "internalfailure" | "serviceunavailable" | "internalservererror" => {
            ServerError
        }
        "queuefull" => QueueFull,
        _ => Other,
    }
}

#[cfg(test)]
mod tests {
    use super::SqsErrorKind::*;
    use super::*;

    /// Every code in every spelling a server has been seen to use, or that
    /// the prefix and suffix rules allow.
    fn spellings(bare: &str) -> Vec<String> {
        vec![
            bare.to_owned(),
            format!("{bare}Exception"),
            format!("AWS.SimpleQueueService.{bare}"),
            format!("AWS.SimpleQueueService.{bare}Exception"),
            format!("com.amazonaws.sqs#{bare}"),
            format!("AWS.SimpleQueueService.{bare};Sender"),
        ]
    }

    #[test]
    fn every_spelling_means_the_same() {
        let cases = [
            ("MessageTooLong", MessageTooLarge),
            ("BatchRequestTooLong", BatchTooLong),
            ("InvalidParameterValue", InvalidParameter),
            ("InvalidMessageContents", InvalidContents),
            ("RequestThrottled", Throttled),
            ("Throttling", Throttled),
            ("NonExistentQueue", QueueMissing),
            ("QueueDoesNotExist", QueueMissing),
            ("ReceiptHandleIsInvalid", ReceiptInvalid),
            ("InvalidReceiptHandle", ReceiptInvalid),
            ("MessageNotInflight", NotInFlight),
            ("MessageNotInFlight", NotInFlight),
            ("EmptyBatchRequest", BadBatch),
            ("TooManyEntriesInBatchRequest", BadBatch),
            ("BatchEntryIdsNotDistinct", BadBatch),
            ("AccessDenied", AccessDenied),
            ("InvalidClientTokenId", AccessDenied),
            ("InternalError", ServerError),
            ("ServiceUnavailable", ServerError),
            ("QueueFull", QueueFull),
        ];
        for (bare, kind) in cases {
            for code in spellings(bare) {
                assert_eq!(classify_code(&code), kind, "{code}");
            }
        }
    }

    #[test]
    fn the_spellings_seen_on_servers() {
        // LocalStack, per entry, for a body over MaximumMessageSize.
        assert!(classify_code("InvalidParameterValueException").is_too_large());
        // AWS and moto, per entry or per call.
        assert!(classify_code("InvalidParameterValue").is_too_large());
        // LocalStack (and moto through the SDK) for a call over 1 MiB.
        assert_eq!(
            classify_code("AWS.SimpleQueueService.BatchRequestTooLong"),
            BatchTooLong
        );
        // The SDK, for a queue URL nobody knows.
        assert_eq!(
            classify_code("AWS.SimpleQueueService.NonExistentQueue"),
            QueueMissing
        );
        // KMS throttling keeps its service prefix.
        assert_eq!(classify_code("KMS.ThrottlingException"), Throttled);
    }

    #[test]
    fn unknown_codes_are_other_and_nothing_more() {
        for code in [
            "",
            "Exception",
            "AWS.SimpleQueueService.",
            "MessageTooLongish",
            "TooLong",
        ] {
            assert_eq!(classify_code(code), Other, "{code:?}");
        }
        assert!(!Other.is_too_large() && !Other.is_transient() && !Other.handle_is_gone());
    }

    #[test]
    fn bare_codes() {
        assert_eq!(
            bare_code("AWS.SimpleQueueService.NonExistentQueue;Sender"),
            "NonExistentQueue"
        );
        assert_eq!(
            bare_code("com.amazonaws.sqs#QueueDoesNotExist"),
            "QueueDoesNotExist"
        );
        assert_eq!(
            bare_code("InvalidParameterValueException"),
            "InvalidParameterValue"
        );
    }

    #[test]
    fn what_each_kind_asks_for() {
        assert!(MessageTooLarge.is_too_large() && BatchTooLong.is_too_large());
        assert!(Throttled.is_transient() && ServerError.is_transient() && NoAnswer.is_transient());
        assert!(!QueueMissing.is_transient() && !AccessDenied.is_transient());
        assert!(ReceiptInvalid.handle_is_gone() && NotInFlight.handle_is_gone());
        assert!(!Throttled.handle_is_gone());
    }
}
