#!/bin/sh
# LocalStack runs this once SQS is up (mounted in /etc/localstack/init/ready.d/
# by docker-compose.yml): the queue Sluice uses and its dead-letter queue,
# created here once rather than by each writer racing on `sluice-writer setup`.
#
#   login-queue-dlq  where a message goes after 5 receives (the writer's
#                    WRITER_MAX_RECEIVE_COUNT default), kept 14 days: SQS's
#                    maximum, and longer than the queue's own 4 days, because
#                    a message's age counts from its first send and a DLQ
#                    that keeps it no longer could drop it on arrival
#                    (`sluice-writer setup` sets the same)
#   login-queue      1 MiB messages (SQS's maximum; ingest packs up to
#                    INGEST_MAX_MESSAGE_BYTES), 60 s visibility, redrive to the DLQ
#
# Idempotent: CreateQueue with the same attributes returns the existing queue.
set -eu

queue=${SLUICE_QUEUE_NAME:-login-queue}
dlq="${queue}-dlq"
max_receive_count=${SLUICE_MAX_RECEIVE_COUNT:-5}

dlq_url=$(awslocal sqs create-queue --queue-name "$dlq" \
    --attributes MaximumMessageSize=1048576,MessageRetentionPeriod=1209600 \
    --query QueueUrl --output text)
dlq_arn=$(awslocal sqs get-queue-attributes --queue-url "$dlq_url" \
    --attribute-names QueueArn --query Attributes.QueueArn --output text)

# The redrive policy is JSON inside a JSON string: a file spares the quoting.
attributes=$(mktemp)
cat >"$attributes" <<JSON
{
  "MaximumMessageSize": "1048576",
  "VisibilityTimeout": "60",
  "RedrivePolicy": "{\"deadLetterTargetArn\":\"$dlq_arn\",\"maxReceiveCount\":\"$max_receive_count\"}"
}
JSON
awslocal sqs create-queue --queue-name "$queue" --attributes "file://$attributes" >/dev/null
rm -f "$attributes"

echo "sluice: created $queue (redrive to $dlq after $max_receive_count receives)"
