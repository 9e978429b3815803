# /etc/consul.d/consul.hcl for nomadic-07 (client) of cluster nomadic.
# Written by `invoke render` (nomadic); edit the settings and render again rather than this file.
datacenter = "dc1"
node_name  = "nomadic-07"
data_dir   = "/opt/consul"
server     = false

# Bind and advertise the cluster address explicitly: with docker0 present Consul sees several private
# addresses and refuses to guess. The HTTP API and DNS stay on loopback (Nomad and the CLI use them there).
bind_addr      = "10.0.0.8"
advertise_addr = "10.0.0.8"
client_addr    = "127.0.0.1"

retry_join = ["10.0.0.2", "10.0.0.3", "10.0.0.4"]
encrypt    = "Y29uc3VsLWdvc3NpcC1rZXktZm9yLXRlc3RzLW9ubHk="

disable_update_check = true
