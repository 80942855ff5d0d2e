"""The count API's parts: typed errors, request parsing, settings and the endpoint client."""
