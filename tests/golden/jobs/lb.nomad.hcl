# Rendered by `invoke deploy lb` from jobs/lb.nomad.hcl.j2; edit the template, not this file.
job "lb" {
  datacenters = ["dc1"]
  type        = "service"

  group "lb" {
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
      port "http" {
        static = 80
        to     = 8080
      }
    }

    service {
      name     = "lb"
      port     = "http"
      provider = "consul"

      check {
        type     = "tcp"
        interval = "10s"
        timeout  = "2s"
      }
    }

    update {
      max_parallel      = 1
      health_check      = "checks"
      min_healthy_time  = "5s"
      healthy_deadline  = "3m"
      progress_deadline = "5m"
      auto_revert       = true
    }

    task "haproxy" {
      driver = "docker"

      config {
        image = "haproxy:2.8-alpine"
        # Master-worker mode (-W): SIGUSR2 reloads the new backend list without dropping connections.
        args  = ["haproxy", "-W", "-db", "-f", "/local/haproxy.cfg"]
        ports = ["http"]
      }

      # Backends come from Consul through Nomad's template runner: `service "web"` lists only instances whose
      # health checks pass, and the file is rewritten (and HAProxy reloaded) whenever that list changes.
      template {
        destination   = "local/haproxy.cfg"
        change_mode   = "signal"
        change_signal = "SIGUSR2"
        data          = <<EOT
global
    log stdout format raw local0
    maxconn 512

defaults
    mode http
    log global
    option httplog
    timeout connect 3s
    timeout client 30s
    timeout server 30s
    # A backend that refuses or drops the connection before HAProxy's own checks notice: try another one.
    retries 3
    option redispatch 1

frontend http
    bind *:8080
    default_backend web

backend web
    balance roundrobin
    option httpchk GET /healthz
    http-check expect status 200
    default-server inter 2s fall 2 rise 2
{{- range service "web" }}
    server {{ .Node }}-{{ .Port }} {{ .Address }}:{{ .Port }} check
{{- else }}
    # no healthy instance of the web job in Consul yet: HAProxy answers 503 until one passes its checks
{{- end }}
EOT
      }

      resources {
        cpu    = 100
        memory = 64
      }
    }
  }
}
