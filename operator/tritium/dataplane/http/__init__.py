"""HTTP of the data plane: the gateway's server, the stage sidecars' server, and the gateway -> stage hop."""
