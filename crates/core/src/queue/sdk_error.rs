//! The SDK's errors as [`QueueError`]s, with their meaning.
//!
//! The SDK reports some errors as typed variants, whichever spelling of the
//! code the server sent; the others arrive unhandled and are classified by
//! their code ([`classify_code`](super::sqs_error::classify_code)). Apart from [`super::sqs_error`] so that
//! the classification stays free of the queue's types.

use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_sqs::operation::change_message_visibility_batch::ChangeMessageVisibilityBatchError;
use aws_sdk_sqs::operation::create_queue::CreateQueueError;
use aws_sdk_sqs::operation::delete_message_batch::DeleteMessageBatchError;
use aws_sdk_sqs::operation::get_queue_attributes::GetQueueAttributesError;
use aws_sdk_sqs::operation::get_queue_url::GetQueueUrlError;
use aws_sdk_sqs::operation::receive_message::ReceiveMessageError;
use aws_sdk_sqs::operation::send_message_batch::SendMessageBatchError;
use aws_sdk_sqs::operation::set_queue_attributes::SetQueueAttributesError;

use super::QueueError;
use super::sqs_error::SqsErrorKind;

/// An SDK error as a [`QueueError`]: its code and message on one line, and
/// its meaning.
pub(crate) fn queue_error<E>(err: aws_sdk_sqs::error::SdkError<E>) -> QueueError
where
    E: ProvideErrorMetadata + TypedKind + std::error::Error + 'static,
{
    use aws_sdk_sqs::error::SdkError;
    let code = err.code().map(str::to_owned);
    let message = match (&code, err.message()) {
        (Some(code), Some(msg)) => format!("{code}: {msg}"),
        (Some(code), None) => code.clone(),
        _ => one_line(&DisplayErrorContext(&err).to_string()),
    };
    let typed = match &err {
        SdkError::ServiceError(e) => e.err().typed_kind(),
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => Some(SqsErrorKind::NoAnswer),
        _ => None,
    };
    let error = QueueError::new(code, message);
    match typed {
        Some(kind) => error.with_kind(kind),
        None => error,
    }
}

/// The SDK's typed error variants, where an operation has them: they mean
/// the same whichever spelling of the code the server sent (the SDK matches
/// the spellings it knows; the others arrive unhandled and are classified
/// by their code).
pub(crate) trait TypedKind {
    fn typed_kind(&self) -> Option<SqsErrorKind>;
}

macro_rules! typed_kinds {
    ($($error:ty => { $($($variant:ident)|+ => $kind:ident),* $(,)? })*) => {
        $(
            impl TypedKind for $error {
                fn typed_kind(&self) -> Option<SqsErrorKind> {
                    match self {
                        $($(Self::$variant(_))|+ => Some(SqsErrorKind::$kind),)*
                        _ => None,
                    }
                }
            }
        )*
    };
}

typed_kinds! {
    SendMessageBatchError => {
        BatchRequestTooLong => BatchTooLong,
        BatchEntryIdsNotDistinct | EmptyBatchRequest | InvalidBatchEntryId
            | TooManyEntriesInBatchRequest => BadBatch,
        QueueDoesNotExist => QueueMissing,
        RequestThrottled | KmsThrottled => Throttled,
        InvalidSecurity | KmsAccessDenied => AccessDenied,
    }
    ReceiveMessageError => {
        QueueDoesNotExist => QueueMissing,
        RequestThrottled | KmsThrottled | OverLimit => Throttled,
        InvalidSecurity | KmsAccessDenied => AccessDenied,
    }
    DeleteMessageBatchError => {
        BatchEntryIdsNotDistinct | EmptyBatchRequest | InvalidBatchEntryId
            | TooManyEntriesInBatchRequest => BadBatch,
        QueueDoesNotExist => QueueMissing,
        RequestThrottled => Throttled,
        InvalidSecurity => AccessDenied,
    }
    ChangeMessageVisibilityBatchError => {
        BatchEntryIdsNotDistinct | EmptyBatchRequest | InvalidBatchEntryId
            | TooManyEntriesInBatchRequest => BadBatch,
        QueueDoesNotExist => QueueMissing,
        RequestThrottled => Throttled,
        InvalidSecurity => AccessDenied,
    }
    GetQueueAttributesError => {
        QueueDoesNotExist => QueueMissing,
        RequestThrottled => Throttled,
        InvalidSecurity => AccessDenied,
    }
    GetQueueUrlError => {
        QueueDoesNotExist => QueueMissing,
        RequestThrottled => Throttled,
        InvalidSecurity => AccessDenied,
    }
    CreateQueueError => {
        QueueDeletedRecently => QueueMissing,
        InvalidAttributeValue => InvalidParameter,
        RequestThrottled => Throttled,
        InvalidSecurity => AccessDenied,
    }
    SetQueueAttributesError => {
        QueueDoesNotExist => QueueMissing,
        InvalidAttributeValue => InvalidParameter,
        RequestThrottled | OverLimit => Throttled,
        InvalidSecurity => AccessDenied,
    }
}

/// The SDK's error context spans lines; logs and start-up errors want one.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
