"""The cluster's services as Nomad jobs: render (jobs/*.j2), talk to Nomad's HTTP API, deploy and wait."""
