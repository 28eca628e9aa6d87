/**
 * The inbox retention window a consumer keeps when it is given none: 7 days. A dead-letter replay
 * uses it as the age limit when no consumer has registered its own window in `inbox_consumers`
 * (a consumer that handled a message may have forgotten it after that long).
 */
export const DEFAULT_INBOX_RETENTION_MS = 7 * 86_400_000;
