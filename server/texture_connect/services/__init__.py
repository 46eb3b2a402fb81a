"""gRPC adapters: thin servicers and the interceptors for keys, errors and access logs."""
