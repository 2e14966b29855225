"""Several regswitch nodes as one switch: the shared location (Redis), this
node's copy of it, the bus that carries kicks and changes to the node that
must act, and the node registry (README "Cluster")."""
