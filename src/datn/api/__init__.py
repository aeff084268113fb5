"""The node's HTTP APIs: the traders' (signed requests) and the operator's
(a bearer token on its own address), and the process that serves them
beside the runtime (:func:`datn.api.serve.run_node`)."""
