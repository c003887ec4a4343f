"""Rollouts: the revision state machine (pure) and its analysis providers."""
