"""The gateway's security layers: allowlist, API keys, rate limits, TLS, redaction, audit and signing."""
