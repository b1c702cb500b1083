"""Alert e-mails: SMTP settings, the messages, and the worker that sends the outbox (issue 17)."""
