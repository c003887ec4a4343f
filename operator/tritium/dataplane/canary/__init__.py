"""The canary split: which requests a stable gateway sends to the canary revision, and how."""
