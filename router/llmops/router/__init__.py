"""The prompt router (``llmops router``): an OpenAI-compatible proxy in front of a model server.

It applies the endpoint's prompt template, splits experiment traffic between
prompt variants by weight (sticky by a header or cookie), forwards to the
model server, streams the answer back and measures every variant for
Prometheus. Modules: ``table`` (the mounted ConfigMaps -> a ``RoutingTable``,
reloaded on change), ``choose`` (a request -> a variant), ``prompt`` (a
variant's template applied to a request body), ``metrics`` (the Prometheus
series), ``proxy`` (the ASGI app that ties them together). It stands alone:
nothing of the API, the CLI or the pipeline stages is imported (an
import-linter contract keeps it so); ``llmops.cli.router_cmd`` runs it.
"""
