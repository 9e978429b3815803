"""nomadic: bake a Nomad + Consul image for OCI's Always Free tier and launch it as a cluster."""
