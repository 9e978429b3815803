# /etc/nomad.d/nomad.hcl for nomadic-07 (client) of cluster nomadic.
# Written by `invoke render` (nomadic); edit the settings and render again rather than this file.
datacenter = "dc1"
name       = "nomadic-07"
data_dir   = "/opt/nomad"

# RPC and gossip on the cluster address only; the HTTP API also on loopback so the nomad CLI works
# on the node and through an SSH tunnel (ssh -L 4646:127.0.0.1:4646 ...).
bind_addr = "10.0.0.8"

addresses {
  http = "127.0.0.1 10.0.0.8"
}

advertise {
  http = "10.0.0.8"
  rpc  = "10.0.0.8"
  serf = "10.0.0.8"
}

server {
  enabled = false
}

client {
  enabled = true
  # The interface that holds this node's cluster address, whatever it is called (ens3 on OCI E2 shapes).
  network_interface = "{{ GetAllInterfaces | include \"address\" \"^10[.]0[.]0[.]8(/[0-9]+)?$\" | attr \"name\" }}"
  cni_path          = "/usr/libexec/cni"

  server_join {
    retry_join = ["10.0.0.2", "10.0.0.3", "10.0.0.4"]
  }

  # Keep room on a 1 GB node for the OS, Docker, Consul and Nomad themselves.
  reserved {
    cpu    = 200
    memory = 400
  }
}

consul {
  address = "127.0.0.1:8500"
}

plugin "docker" {
  config {
    allow_privileged = false

    volumes {
      enabled = false
    }

    gc {
      image       = true
      image_delay = "1h"
    }
  }
}

disable_update_check = true
