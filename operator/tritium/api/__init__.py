"""InferenceService API models (serving.tritium.dev/v1alpha1)."""
