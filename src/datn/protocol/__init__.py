"""The node's core, sans-I/O: everything a node decides, with time and ids as inputs."""
