"""Helpers the tests share: wire calls, a real S3 server, certificates, proxies, the access
model, and the store backends of the contract suite."""
