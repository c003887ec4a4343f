"""Data plane: the gateway, the stage servers and the model fetcher (run in pods and in local mode)."""
