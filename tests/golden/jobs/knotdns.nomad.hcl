# Rendered by `invoke deploy knotdns` from jobs/knotdns.nomad.hcl.j2; edit the template, not this file.
# Zone oracle.example.com, serial 1767225600.
job "knotdns" {
  datacenters = ["dc1"]
  type        = "service"

  group "knotdns" {
    # One per client node: a static port can be bound once per node, so a higher count would never place
    # (deploy refuses it before submitting).
    count = 2

    spread {
      attribute = "${node.unique.id}"
    }

    constraint {
      operator = "distinct_hosts"
      value    = "true"
    }

    network {
      # Docker publishes a port label over both TCP and UDP.
      port "dns" {
        static = 53
        to     = 53
      }
    }

    update {
      max_parallel      = 1
      health_check      = "task_states"
      min_healthy_time  = "10s"
      healthy_deadline  = "3m"
      progress_deadline = "5m"
      auto_revert       = true
    }

    task "knotd" {
      driver = "docker"

      config {
        image   = "cznic/knot:3.3"
        command = "knotd"
        args    = ["-c", "/local/knot.conf"]
        ports   = ["dns"]
      }

      template {
        destination   = "local/knot.conf"
        change_mode   = "signal"
        change_signal = "SIGHUP"
        data          = <<EOT
server:
    rundir: "/rundir"
    user: knot:knot
    automatic-acl: off          # no NOTIFY, no transfers: every node serves the same zone file
    answer-rotation: on         # round-robin: the order of an RRset rotates between answers
    listen: [ 0.0.0.0@53 ]

log:
  - target: stdout
    any: info

database:
    storage: "/storage"

mod-cookies:
  - id: default
    secret-lifetime: 30h        # the server secret is regenerated every 30 hours
    badcookie-slip: 3           # only every third query with a wrong cookie gets an answer

mod-rrl:
  - id: default
    rate-limit: 200             # responses per second for each flow
    slip: 2                     # about every other limited response is sent truncated (TC), the rest dropped

template:
  - id: default
    storage: "{{ env "NOMAD_TASK_DIR" }}"
    file: "%s.zone"
    zonefile-sync: -1           # never write the zone back: the template owns it
    zonefile-load: whole
    journal-content: none
    global-module: [ mod-cookies/default, mod-rrl/default ]

zone:
  - domain: oracle.example.com
EOT
      }

      template {
        destination   = "local/oracle.example.com.zone"
        change_mode   = "signal"
        change_signal = "SIGHUP"
        data          = <<EOT
$ORIGIN oracle.example.com.
$TTL 3600
@       SOA     ns1.oracle.example.com. hostmaster.oracle.example.com. (
                1767225600      ; serial: grows with every change (build/<cluster>/jobs/knotdns.serial.json)
                6h              ; refresh
                1h              ; retry
                1w              ; expire
                1d )            ; minimum

        NS      ns1
        NS      ns2
        A       192.0.2.10
        A       198.51.100.11

ns1     A       192.0.2.10
ns1     A       198.51.100.11
ns2     A       192.0.2.10
ns2     A       198.51.100.11
a       A       192.0.2.10
b       A       198.51.100.11
EOT
      }

      resources {
        cpu    = 100
        memory = 64
      }
    }
  }
}
