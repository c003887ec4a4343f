"""The stage sidecars: the stage server, the built-in pre/post processors and user scripts."""
