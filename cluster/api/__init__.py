"""The Kubernetes API objects, pure: kinds, schemas, defaulting, validation, patches, selectors,
tables and the Status errors the server answers with. No I/O; the API server composes them."""
