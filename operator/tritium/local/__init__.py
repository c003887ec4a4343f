"""Local mode: one InferenceService as processes on this machine, wired exactly like a pod."""
