"""Locust load scenarios. `scenarios` is the data-driven table (no locust import, safe anywhere);
`locustfile` holds the users and the load shape and is only ever loaded by the locust runner
(locust monkey-patches the process with gevent on import)."""
