"""Wire-level emulators of orchestrator APIs, for the sandbox, the benchmark and the tests.

Each speaks its API's real paths, field names, paging and errors closely enough
that the real client library works against it unchanged. They bind to
127.0.0.1 only, keep a request log and inject faults per operation.
"""
