"""The AWS writers the domain hands its work to: the SNS publisher and the DynamoDB
transaction writer. Both batch concurrent callers through one GroupCommit and answer each
caller from its own entry, so they live side by side, apart from the domain that decides
what to write (services/domain) and the plumbing they share (services/common)."""
